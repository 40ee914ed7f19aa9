//! What the block-I/O stage serves from: an immutable view of the committed
//! storage users and images, keyed the way requests name them (user id, image
//! id, source IP). The control plane builds one per committed change to
//! storage and hands it to the data plane (`Runtime::apply_storage`); workers
//! only read it.
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::image_use::{ImageUse, LastUse};
use super::snapshot::ConfigSnapshot;
use super::storage::{ImageId, Secret, UserId};

/// The file of image `id` in the images directory (`storage.images`).
pub fn image_file(images_dir: &Path, id: ImageId) -> PathBuf {
    images_dir.join(format!("{id}.img"))
}

#[derive(Debug)]
pub struct CatalogUser {
    pub id: UserId,
    pub name: String,
    /// The key of the protocol's keyed MAC.
    pub secret: Secret,
    pub ips: Vec<Ipv4Addr>,
    pub quota_bytes: u64,
    /// The user's images, by id.
    pub images: Vec<ImageId>,
}

#[derive(Debug)]
pub struct CatalogImage {
    pub id: ImageId,
    pub name: String,
    pub owner: UserId,
    pub size: u64,
    pub read_only: bool,
    pub file: PathBuf,
    /// Where a served request is recorded (`LastUse::touch`): the image is
    /// attached while it was used within `storage.attach_lease_ms`.
    pub last_use: Arc<LastUse>,
}

#[derive(Debug, Default)]
pub struct StorageCatalog {
    /// The configuration generation it was built from.
    pub generation: u64,
    users: FxHashMap<UserId, CatalogUser>,
    images: FxHashMap<ImageId, CatalogImage>,
    user_by_ip: FxHashMap<Ipv4Addr, UserId>,
}

impl StorageCatalog {
    /// The storage records of `snapshot`, with files in `images_dir` and use
    /// records from `uses` (the same `LastUse` for an image in every version).
    pub fn from_snapshot(snapshot: &ConfigSnapshot, images_dir: &Path, uses: &ImageUse) -> StorageCatalog {
        let storage = &snapshot.storage;
        let user_id: FxHashMap<&str, UserId> = storage.users.iter().map(|u| (u.name.as_str(), u.id)).collect();
        let mut users: FxHashMap<UserId, CatalogUser> = storage
            .users
            .iter()
            .map(|u| {
                let user = CatalogUser {
                    id: u.id,
                    name: u.name.clone(),
                    secret: u.secret.clone(),
                    ips: u.ips.clone(),
                    quota_bytes: u.quota_bytes,
                    images: Vec::new(),
                };
                (u.id, user)
            })
            .collect();
        let mut images = FxHashMap::default();
        for image in &storage.images {
            // The control plane never commits an image without its owner.
            let Some(&owner) = user_id.get(image.owner.as_str()) else { continue };
            if let Some(user) = users.get_mut(&owner) {
                user.images.push(image.id);
            }
            let entry = CatalogImage {
                id: image.id,
                name: image.name.clone(),
                owner,
                size: image.size,
                read_only: image.read_only,
                file: image_file(images_dir, image.id),
                last_use: uses.slot(image.id),
            };
            images.insert(image.id, entry);
        }
        for user in users.values_mut() {
            user.images.sort_unstable();
        }
        let user_by_ip = storage.users.iter().flat_map(|u| u.ips.iter().map(move |ip| (*ip, u.id))).collect();
        StorageCatalog { generation: snapshot.generation, users, images, user_by_ip }
    }

    pub fn user(&self, id: UserId) -> Option<&CatalogUser> {
        self.users.get(&id)
    }

    pub fn image(&self, id: ImageId) -> Option<&CatalogImage> {
        self.images.get(&id)
    }

    /// The user `ip` is assigned to.
    pub fn user_by_ip(&self, ip: Ipv4Addr) -> Option<&CatalogUser> {
        self.user_by_ip.get(&ip).and_then(|id| self.users.get(id))
    }

    pub fn users(&self) -> impl Iterator<Item = &CatalogUser> {
        self.users.values()
    }

    pub fn images(&self) -> impl Iterator<Item = &CatalogImage> {
        self.images.values()
    }
}

#[cfg(test)]
mod tests {
    use super::super::storage::{StorageImage, StorageRecords, StorageUser};
    use super::*;

    fn user(name: &str, id: UserId, ip: [u8; 4]) -> StorageUser {
        StorageUser {
            name: name.into(),
            id,
            ips: vec![Ipv4Addr::from(ip)],
            quota_bytes: 1 << 30,
            secret: Secret([id as u8; 32]),
        }
    }

    fn image(name: &str, id: ImageId, owner: &str) -> StorageImage {
        StorageImage { name: name.into(), id, owner: owner.into(), size: 4096, read_only: id == 2 }
    }

    #[test]
    fn users_and_images_by_id_and_by_ip() {
        let snapshot = ConfigSnapshot {
            generation: 9,
            storage: StorageRecords {
                users: vec![user("alice", 1, [10, 0, 0, 5]), user("bob", 2, [10, 0, 0, 6])],
                images: vec![image("a1", 3, "alice"), image("a0", 1, "alice"), image("b", 2, "bob")],
                last_user_id: 2,
                last_image_id: 3,
            },
            ..ConfigSnapshot::default()
        };
        let uses = ImageUse::new();
        let catalog = StorageCatalog::from_snapshot(&snapshot, Path::new("/srv/images"), &uses);
        assert_eq!(catalog.generation, 9);
        let alice = catalog.user(1).unwrap();
        assert_eq!((alice.name.as_str(), alice.images.as_slice(), alice.secret.0[0]), ("alice", &[1, 3][..], 1));
        assert_eq!(catalog.user_by_ip(Ipv4Addr::new(10, 0, 0, 6)).unwrap().name, "bob");
        assert!(catalog.user_by_ip(Ipv4Addr::new(10, 0, 0, 7)).is_none());
        assert!(catalog.user(3).is_none());
        let b = catalog.image(2).unwrap();
        assert_eq!((b.owner, b.size, b.read_only, b.file.as_path()), (2, 4096, true, Path::new("/srv/images/2.img")));
        assert_eq!(catalog.images().count(), 3);

        // A worker's use of an image is seen by the control plane, and a new
        // catalog version hands out the same record.
        catalog.image(3).unwrap().last_use.touch(5_000);
        assert_eq!(uses.last_used_ms(3), Some(5_000));
        let next = StorageCatalog::from_snapshot(&snapshot, Path::new("/srv/images"), &uses);
        assert!(Arc::ptr_eq(&next.image(3).unwrap().last_use, &catalog.image(3).unwrap().last_use));
    }
}
