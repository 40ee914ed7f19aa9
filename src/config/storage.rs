//! `[storage]`: the network block device's images directory, the UDP port of
//! its service, and how long an image counts as attached after a client used it
//! (docs/storage-management.md). Without the table the storage API refuses.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Problems;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StorageConfig {
    /// Where the image files `<id>.img` live; created when missing.
    pub images: PathBuf,
    /// The UDP port the block-I/O service answers on.
    pub port: u16,
    /// An image is attached while a client used it within this time.
    pub attach_lease_ms: u64,
}

impl StorageConfig {
    pub const DEFAULT_PORT: u16 = 10810;
    pub const DEFAULT_ATTACH_LEASE_MS: u64 = 15_000;

    /// `images` with the default port and lease.
    pub fn new(images: impl Into<PathBuf>) -> StorageConfig {
        StorageConfig {
            images: images.into(),
            port: Self::DEFAULT_PORT,
            attach_lease_ms: Self::DEFAULT_ATTACH_LEASE_MS,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    #[serde(default)]
    pub images: Option<Spanned<String>>,
    #[serde(default)]
    pub port: Option<Spanned<i64>>,
    #[serde(default)]
    pub attach_lease_ms: Option<Spanned<i64>>,
}

pub(super) fn validate(p: &mut Problems, raw: Option<Spanned<RawStorage>>) -> Option<StorageConfig> {
    let table_pos = raw.as_ref()?.span().start;
    let raw = raw?.into_inner();
    let images = match &raw.images {
        None => {
            p.at(table_pos, "storage.images", "is missing: give the directory the image files live in");
            PathBuf::new()
        }
        Some(dir) if dir.get_ref().is_empty() => {
            p.at(dir.span().start, "storage.images", "is empty");
            PathBuf::new()
        }
        Some(dir) if dir.get_ref().contains('\0') => {
            p.at(dir.span().start, "storage.images", format!("{:?} contains a NUL character", dir.get_ref()));
            PathBuf::new()
        }
        Some(dir) => PathBuf::from(dir.get_ref()),
    };
    let port = p.int(&raw.port, "storage.port", StorageConfig::DEFAULT_PORT, 1..=65_535, "");
    let lease = StorageConfig::DEFAULT_ATTACH_LEASE_MS;
    let attach_lease_ms = p.int(&raw.attach_lease_ms, "storage.attach_lease_ms", lease, 100..=3_600_000, "");
    Some(StorageConfig {
        images,
        port: port.unwrap_or(StorageConfig::DEFAULT_PORT),
        attach_lease_ms: attach_lease_ms.unwrap_or(lease),
    })
}
