//! The hitless upgrade of the switching unit through an intermediate unit
//! (seed 000): the orchestrator and what it reports.
mod record;

pub use record::{
    unix_us, ConfigGate, Outcome, Resumed, StepRecord, UnitDescription, UpgradeRecord, UpgradeRefused, UpgradeStatus,
    STEP_NAMES,
};
