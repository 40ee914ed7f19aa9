//! The control plane's REST/JSON API and its CLI client, off the fast path.
//!
//! `spawn` serves the API on a thread of its own (a single-threaded tokio
//! runtime; started from the main thread after EAL init it inherits the main
//! lcore's affinity). Each change request is validated against the current
//! configuration, committed to the config database (`store`), and then handed to
//! the data plane through the `Runtime` trait, which the data plane implements.
//! While an upgrade of the switching unit runs, change requests are queued in
//! the database and applied in order when it ends (`queue.rs`).
//!
//! Wiring, in `run`:
//! ```text
//! let store = control::open_database(&config)?;        // opens, seeds from the TOML on first start
//! let handle = control::spawn(&config.control, store, runtime)?; // applies the database once, serves
//! // or spawn_with_storage(&config.control, config.storage.clone(), store, runtime) with `[storage]`
//! // ... drop(handle) stops the server and removes the socket
//! ```
mod address_migration;
mod board_agent;
pub mod cli;
pub mod client;
mod core;
mod error;
pub mod http;
mod image_files;
mod migration;
#[cfg(test)]
mod migration_tests;
mod monitor_runtime;
pub mod openapi;
mod queue;
mod request;
mod runtime;
mod serve;
mod storage;
pub mod storage_cli;
#[cfg(test)]
mod storage_tests;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod upgrade;

pub use self::core::{
    AddressMigrationNotify, Applied, Control, EndpointCreate, NetworkCreate, NetworkReplace, PortBind, RemoteCreate,
};
pub use address_migration::{AddressReportOutcome, AddressReportRecord, ADDRESS_REPORTS_KEPT};
pub use error::{ApiError, ErrorBody, ErrorKind};
pub use migration::{EventReply, MigrationEventBody, MigrationPlane};
pub use monitor_runtime::MonitorRuntime;
pub use queue::{RequestStatus, Submitted};
pub use request::ConfigRequest;
pub use runtime::{PortStatus, PortView, Runtime, TunnelView};
pub use serve::{spawn, spawn_with_storage, ControlError, ControlHandle};
pub use storage::{
    StorageImageClone, StorageImageCreate, StorageImageGrow, StorageImageReadOnly, StorageImageView, StorageOrphan,
    StorageOrphanAdopt, StorageUserCreate,
    StorageUserIps, StorageUserQuota, StorageUserView, StorageUserWithSecret,
};
pub use upgrade::UpgradeStart;

use crate::config::Config;
use crate::configdb::{Store, StoreError};

/// Opens the config database named by `control.database` and, on first start
/// (nothing ever committed), seeds it from the TOML bootstrap records.
pub fn open_database(config: &Config) -> Result<Store, StoreError> {
    let store = Store::open(&config.control.database)?;
    if store.bootstrap_if_empty(&config.bootstrap_snapshot())? {
        log::info!("control: config database {} seeded from the TOML config", store.path().display());
    }
    Ok(store)
}
