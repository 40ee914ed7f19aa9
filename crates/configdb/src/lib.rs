//! The config database: the record of configuration, and the config requests
//! queued during an upgrade (`requests.rs`).
//!
//! One redb file (pure Rust, copy-on-write B-trees, checksummed commits fsync'd
//! before `commit` returns), opened as every database of the product is
//! (`switchyard_service::database`). The TOML config seeds it on first start
//! (`bootstrap_if_empty`); afterwards it is the record, changed only by `commit`.
mod db;
mod requests;
pub mod stress;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod file_tests;

pub use db::{Store, StoreError, SCHEMA_VERSION};
pub use requests::{RequestOutcome, RequestRecord, RequestState, FINISHED_KEPT};
