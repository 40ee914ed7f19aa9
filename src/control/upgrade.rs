//! `POST /v1/upgrade`: the body, its checks, and the hand-over to the runtime's
//! orchestrator with `Control` as its config gate.
use serde::{Deserialize, Serialize};

use super::core::Control;
use super::error::ApiError;
use crate::upgrade::{open_unit_library, UnitFile, UpgradeRecord, UpgradeRefused};

/// `POST /v1/upgrade`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeStart {
    /// The new unit's shared library: a file name in the unit directory
    /// (`[upgrade] library_dir`), or the absolute path of a file directly in it.
    pub library: String,
}

impl Control {
    /// The library an upgrade request names, opened and checked: in the unit
    /// directory, root's and writable by root alone (`open_unit_library`).
    /// Anything else is a 400 naming the rule, and nothing is loaded.
    pub fn unit_library(&self, requested: &str) -> Result<UnitFile, ApiError> {
        let library = open_unit_library(&self.runtime().unit_directory(), requested);
        library.map_err(|refused| {
            log::warn!("control: upgrade to {requested:?} refused: {refused}");
            ApiError::bad_request("library", refused.to_string())
        })
    }

    /// Runs an upgrade to completion (blocking), with this control plane as the
    /// gate that pauses config requests at step 1 and applies them at step 8.
    pub fn upgrade(&self, library: &UnitFile) -> Result<UpgradeRecord, UpgradeRefused> {
        log::info!("control: upgrade to {} requested", library.path().display());
        self.runtime().upgrade(library, self)
    }
}
