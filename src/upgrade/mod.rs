//! The hitless upgrade of the switching unit through an intermediate unit
//! (docs/upgrade.md): the orchestrator and what it reports.
mod library;
mod orchestrator;
mod record;

pub use library::{open_unit_library, UnitFile, UnitFileRefused};
pub use orchestrator::{LibraryLoader, UnitLoader, UpgradeCounts, Upgrader};
pub use crate::model::unix_us;
pub use record::{
    ConfigGate, Outcome, Resumed, StepRecord, UnitDescription, UpgradeRecord, UpgradeRefused, UpgradeStatus,
    STEP_NAMES,
};
#[cfg(test)]
mod tests;
