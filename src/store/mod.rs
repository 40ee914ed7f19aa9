//! The config database: the record of configuration. Imports only `wire`.
//!
//! One redb file (pure Rust, copy-on-write B-trees, checksummed commits fsync'd
//! before `commit` returns). The TOML config seeds it on first start
//! (`bootstrap_if_empty`); afterwards it is the record, changed only by `commit`.
//! It also holds the config requests queued during an upgrade (`requests.rs`).
mod change;
mod db;
mod file;
mod model;
mod requests;
pub mod rules;
mod catalog;
mod image_use;
mod storage;
pub mod stress;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod file_tests;

pub use change::Change;
pub use db::{Store, StoreError, SCHEMA_VERSION};
pub use file::{check_database_command, check_databases_with, open_whole, RedbError, RedbFile, CHECK_REFUSED};
pub use model::{
    vni_mac_key, AddressMigration, AddressMigrationSource, ConfigSnapshot, Network, PortNetwork, RemoteEndpoint, RemoteSource,
    VmEndpoint, Vni, VNI_MAX,
};
pub use requests::{unix_us, RequestOutcome, RequestRecord, RequestState, FINISHED_KEPT};
pub use catalog::{image_file, CatalogImage, CatalogUser, StorageCatalog};
pub use image_use::{unix_ms, ImageUse, LastUse, TOUCH_EVERY_MS};
pub use storage::{ImageId, ImageIntent, Secret, StorageImage, StorageRecords, StorageUser, UserId, SECTOR_BYTES};
