//! `[upgrade]`: where unit libraries for `POST /v1/upgrade` are loaded from
//! (docs/unit-abi.md). A unit runs as root inside the switch, so only files in
//! this directory, owned by root and writable by root alone, are ever loaded.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Problems;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpgradeConfig {
    /// The unit directory: an upgrade names a library file directly in it.
    pub library_dir: PathBuf,
}

impl UpgradeConfig {
    pub const DEFAULT_LIBRARY_DIR: &'static str = "/usr/lib/switchyard/units";
}

impl Default for UpgradeConfig {
    fn default() -> Self {
        UpgradeConfig { library_dir: PathBuf::from(Self::DEFAULT_LIBRARY_DIR) }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpgrade {
    #[serde(default)]
    pub library_dir: Option<Spanned<String>>,
}

pub(super) fn validate(p: &mut Problems, raw: Option<Spanned<RawUpgrade>>) -> UpgradeConfig {
    let Some(dir) = raw.and_then(|raw| raw.into_inner().library_dir) else { return UpgradeConfig::default() };
    let text = dir.get_ref();
    let problem = if text.contains('\0') {
        format!("{text:?} contains a NUL character")
    } else if !text.starts_with('/') {
        format!("{text:?} is not an absolute path; give the directory unit libraries are loaded from")
    } else if text.split('/').any(|part| part == "..") {
        format!("{text:?} contains `..`; give the directory's own path")
    } else {
        return UpgradeConfig { library_dir: PathBuf::from(text) };
    };
    p.at(dir.span().start, "upgrade.library_dir", problem);
    UpgradeConfig::default()
}
