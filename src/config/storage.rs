//! `[storage]`: the network block device's images directory, the UDP port of
//! its service, how long an image counts as attached after a client used it,
//! the group that may read image files and the directory imports read from
//! (docs/storage-management.md). Without the table the storage API refuses.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Problems;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StorageConfig {
    /// Where the image files `<id>.img` live; created when missing (0700).
    pub images: PathBuf,
    /// The UDP port the block-I/O service answers on.
    pub port: u16,
    /// An image is attached while a client used it within this time.
    pub attach_lease_ms: u64,
    /// The group image files belong to and may read (0640, directory 0750);
    /// `None`: only the switch's user (0600, directory 0700).
    pub image_group: Option<ImageGroup>,
    /// The only directory `import_from` paths are read from (relative to it);
    /// `None`: imports are refused.
    pub import_dir: Option<PathBuf>,
}

/// `storage.image_group`, resolved when the config is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageGroup {
    pub name: String,
    pub gid: u32,
}

impl StorageConfig {
    pub const DEFAULT_PORT: u16 = 10810;
    pub const DEFAULT_ATTACH_LEASE_MS: u64 = 15_000;

    /// `images` with the default port and lease, no group, no imports.
    pub fn new(images: impl Into<PathBuf>) -> StorageConfig {
        StorageConfig {
            images: images.into(),
            port: Self::DEFAULT_PORT,
            attach_lease_ms: Self::DEFAULT_ATTACH_LEASE_MS,
            image_group: None,
            import_dir: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    #[serde(default)]
    pub images: Option<Spanned<String>>,
    #[serde(default)]
    pub port: Option<Spanned<i64>>,
    #[serde(default)]
    pub attach_lease_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub image_group: Option<Spanned<String>>,
    #[serde(default)]
    pub import_dir: Option<Spanned<String>>,
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
    let image_group = raw.image_group.as_ref().and_then(|group| {
        let (pos, name) = (group.span().start, group.get_ref());
        match nix::unistd::Group::from_name(name) {
            Ok(Some(found)) => Some(ImageGroup { name: name.clone(), gid: found.gid.as_raw() }),
            Ok(None) => {
                p.at(pos, "storage.image_group", format!("there is no group named {name:?} on this host"));
                None
            }
            Err(e) => {
                p.at(pos, "storage.image_group", format!("cannot look up group {name:?}: {e}"));
                None
            }
        }
    });
    let import_dir = raw.import_dir.as_ref().and_then(|dir| {
        let (pos, text) = (dir.span().start, dir.get_ref());
        if text.contains('\0') {
            p.at(pos, "storage.import_dir", format!("{text:?} contains a NUL character"));
            None
        } else if !text.starts_with('/') {
            p.at(pos, "storage.import_dir", format!("{text:?} is not an absolute path"));
            None
        } else {
            Some(PathBuf::from(text))
        }
    });
    Some(StorageConfig {
        images,
        port: port.unwrap_or(StorageConfig::DEFAULT_PORT),
        attach_lease_ms: attach_lease_ms.unwrap_or(lease),
        image_group,
        import_dir,
    })
}
