//! What the control plane publishes to every worker's block-I/O stage when storage changes: the users and
//! images as the service checks them, and each image's open file.
use std::fs::File;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::service::{Catalog, ServiceImage, ServiceUser};
use switchyard_model::{LastUse, StorageCatalog};
use switchyard_wire::block::UserKey;

/// An image the workers serve: its file (opened by the control plane) and where its use is recorded.
#[derive(Clone, Debug)]
pub struct ImageFile {
    pub file: Arc<File>,
    pub last_use: Arc<LastUse>,
}

#[derive(Clone, Debug, Default)]
pub struct StorageVersion {
    pub catalog: Arc<Catalog>,
    pub files: FxHashMap<u32, ImageFile>,
}

impl StorageVersion {
    /// The committed users and images, with every image file opened (read-only images read-only). An image
    /// whose file does not open is logged and stays in the catalog without a file: its I/O fails with EIO.
    pub fn from_catalog(storage: &StorageCatalog) -> StorageVersion {
        let mut catalog = Catalog::default();
        for user in storage.users() {
            let key = UserKey::new(user.secret.0);
            catalog.users.insert(user.id, ServiceUser { id: user.id, key, ips: user.ips.clone() });
        }
        let mut files = FxHashMap::default();
        for image in storage.images() {
            let served = ServiceImage { id: image.id, owner: image.owner, size: image.size, read_only: image.read_only };
            catalog.images.insert(image.id, served);
            match File::options().read(true).write(!image.read_only).open(&image.file) {
                Ok(file) => {
                    files.insert(image.id, ImageFile { file: Arc::new(file), last_use: image.last_use.clone() });
                }
                Err(e) => log::error!("storage: image {} ({}): cannot open {}: {e}", image.name, image.id, image.file.display()),
            }
        }
        StorageVersion { catalog: Arc::new(catalog), files }
    }
}
