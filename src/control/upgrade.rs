//! `POST /v1/upgrade`: the body, its checks, and the hand-over to the runtime's
//! orchestrator with `Control` as its config gate.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::core::Control;
use super::error::ApiError;
use crate::upgrade::{UpgradeRecord, UpgradeRefused};

/// `POST /v1/upgrade`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeStart {
    /// The new unit's shared library, as an absolute path on the switch's host.
    pub library: String,
}

impl UpgradeStart {
    /// The library as a path: absolute (the daemon's working directory means
    /// nothing to a client) and an existing file, so a typo is a 400 at once
    /// instead of an upgrade that rolls back at step 5.
    pub fn checked_library(&self) -> Result<PathBuf, ApiError> {
        let text = &self.library;
        if text.trim().is_empty() {
            return Err(ApiError::bad_request("library", "the library path is empty; give the unit's .so file"));
        }
        let path = Path::new(text);
        if !path.is_absolute() {
            return Err(ApiError::bad_request(
                "library",
                format!("{text:?} is not an absolute path; give the full path of the unit's .so file on the switch"),
            ));
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => Ok(path.to_path_buf()),
            Ok(_) => Err(ApiError::bad_request("library", format!("{text} is not a file"))),
            Err(e) => Err(ApiError::bad_request("library", format!("{text} cannot be used: {e}"))),
        }
    }
}

impl Control {
    /// Runs an upgrade to completion (blocking), with this control plane as the
    /// gate that pauses config requests at step 1 and applies them at step 8.
    pub fn upgrade(&self, library: &Path) -> Result<UpgradeRecord, UpgradeRefused> {
        log::info!("control: upgrade to {} requested", library.display());
        self.runtime().upgrade(library, self)
    }
}
