//! Storage users and virtual storage images (network block device): the records the
//! block-I/O service serves. A user's requests carry its numeric id, are
//! authenticated with its 32-byte secret and come from one of its IPs; an
//! image is a file `<storage.images>/<id>.img` of `size` bytes owned by one
//! user (docs/storage-management.md).
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub type UserId = u32;
pub type ImageId = u32;

/// Images are whole sectors: sizes and growth are multiples of this.
pub const SECTOR_BYTES: u64 = 512;

/// A user's key for the protocol's keyed MAC: 32 random bytes from the
/// server. Never serialized by serde (`StorageUser` skips it): the config
/// database stores it beside the record, and the API returns it only in the
/// reply to a create or a rotation. `Debug` does not print it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub [u8; 32]);

impl Secret {
    /// 32 bytes from the operating system's random source.
    pub fn generate() -> Result<Secret, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("the system's random source failed: {e}"))?;
        Ok(Secret(bytes))
    }

    /// 64 lower-case hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<Secret, String> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|e| format!("not 64 hex characters: {e}"))?;
        Ok(Secret(bytes))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A user of the block-I/O service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUser {
    pub name: String,
    /// Assigned at create, never reused while the database lives.
    pub id: UserId,
    /// The addresses the user's packets may come from; each belongs to one user.
    pub ips: Vec<Ipv4Addr>,
    /// The sum of the sizes of the user's images may not exceed it.
    pub quota_bytes: u64,
    #[serde(skip)]
    pub secret: Secret,
}

/// A virtual storage image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageImage {
    pub name: String,
    /// Assigned at create, never reused; names the file `<id>.img`.
    pub id: ImageId,
    /// The owning user's name.
    pub owner: String,
    /// Bytes, a multiple of `SECTOR_BYTES`; only grows.
    pub size: u64,
    #[serde(default)]
    pub read_only: bool,
}

/// The storage part of a configuration snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageRecords {
    /// By name.
    pub users: Vec<StorageUser>,
    /// By name.
    pub images: Vec<StorageImage>,
    /// The highest ids ever assigned (0: none yet), so ids are never reused.
    #[serde(default)]
    pub last_user_id: UserId,
    #[serde(default)]
    pub last_image_id: ImageId,
}

impl StorageRecords {
    pub fn user(&self, name: &str) -> Option<&StorageUser> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn image(&self, name: &str) -> Option<&StorageImage> {
        self.images.iter().find(|i| i.name == name)
    }

    pub fn images_of<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = &'a StorageImage> + 'a {
        self.images.iter().filter(move |i| i.owner == owner)
    }

    /// The sum of the sizes of `owner`'s images (what the quota limits).
    pub fn used_bytes(&self, owner: &str) -> u64 {
        self.images_of(owner).fold(0u64, |sum, i| sum.saturating_add(i.size))
    }

    /// The user `ip` is assigned to.
    pub fn ip_owner(&self, ip: Ipv4Addr) -> Option<&StorageUser> {
        self.users.iter().find(|u| u.ips.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.images.is_empty()
    }
}

/// File work on an image's file that the database records before it is done,
/// so that a start finishes or undoes exactly that work and never touches a
/// file this database did not make (docs/storage-management.md, "Ordering of
/// file work and commits"). Kept in the database until the work is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ImageIntent {
    /// A creation of image `id`: recorded before its data is written to
    /// `<id>.<nonce>.img.creating`; the random `nonce` tells this creation's
    /// staging file from any other file. `adopted_from`: the staging file is an
    /// unknown file of the directory renamed there (an adoption), put back
    /// when the image is not committed.
    Create {
        id: ImageId,
        nonce: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adopted_from: Option<String>,
    },
    /// A deletion of image `id`: recorded in the transaction that deletes its
    /// record; `<id>.img` is unlinked after it.
    Delete { id: ImageId },
}

impl ImageIntent {
    pub fn id(&self) -> ImageId {
        match self {
            ImageIntent::Create { id, .. } | ImageIntent::Delete { id } => *id,
        }
    }

    /// A creation of image `id` with a new random nonce.
    pub fn create(id: ImageId, adopted_from: Option<String>) -> Result<ImageIntent, String> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| format!("the system's random source failed: {e}"))?;
        Ok(ImageIntent::Create { id, nonce: hex::encode(bytes), adopted_from })
    }
}
