//! The record of configuration as values: networks (VNIs), endpoints, address
//! migrations, storage users and images, the changes that move a snapshot on,
//! the rules a change must keep, and the underlay the overlay runs over.
//! Plain serde types, no I/O: the config database stores them, the features
//! switch by them.
mod catalog;
mod change;
mod image_use;
pub mod rules;
mod snapshot;
mod storage;
mod underlay;

pub use catalog::{image_file, CatalogImage, CatalogUser, StorageCatalog};
pub use change::Change;
pub use image_use::{unix_ms, unix_us, ImageUse, LastUse, TOUCH_EVERY_MS};
pub use snapshot::{
    vni_mac_key, AddressMigration, AddressMigrationSource, ConfigSnapshot, Network, PortNetwork, RemoteEndpoint, RemoteSource,
    VmEndpoint, Vni, VNI_MAX,
};
pub use underlay::{on_link, GatewayConfig, VniMapping, VtepConfig};
pub use storage::{ImageId, ImageIntent, Secret, StorageImage, StorageRecords, StorageUser, UserId, SECTOR_BYTES};
