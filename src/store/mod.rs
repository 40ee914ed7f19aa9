//! The configuration's values (`switchyard-model`) and its database
//! (`switchyard-configdb`) under one name for the crates not yet split out.
pub use switchyard_configdb::*;
pub use switchyard_model::*;
pub use switchyard_service::database::{
    check_database_command, check_databases_with, open_whole, RedbError, RedbFile, CHECK_REFUSED,
};
