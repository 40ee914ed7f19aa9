//! What an upgrade reports: each upgrade step with its wall-clock start and its
//! duration, the outcome, and the units before and after. Served by
//! `GET /v1/upgrade`, printed by `switchyard ctl upgrade`, exported as metrics.
use serde::{Deserialize, Serialize};

/// The eight upgrade steps (docs/upgrade.md), in order; `step` numbers are 1-based.
pub const STEP_NAMES: [&str; 8] = [
    "pause config requests",
    "load the intermediate unit and write the running configuration into it",
    "switch VM-side ports, then uplink ports, to the intermediate unit",
    "clear and unload the old unit",
    "load the new unit and write the configuration into it",
    "switch VM-side ports, then uplink ports, to the new unit",
    "clear and unload the intermediate unit",
    "resume config requests and apply the queued ones in order",
];

/// A unit as the operator names it: implementation id, version and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitDescription {
    /// The implementation ("vrouter", "intermediate").
    pub id: String,
    pub version: String,
    /// The shared library it was loaded from; `None` for a unit compiled into the daemon.
    pub library: Option<String>,
}

/// One step as it ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1..=8 for the upgrade steps (`STEP_NAMES`); 0 for a rollback action.
    pub step: u8,
    pub name: String,
    /// Wall-clock start, microseconds since the Unix epoch.
    pub started_unix_us: u64,
    pub duration_us: u64,
    /// What the step did or why it failed ("unit vrouter 0.2.0 (v2) loaded", ...).
    pub detail: String,
    pub ok: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still going (only ever seen in `GET /v1/upgrade` while it runs).
    Running,
    /// The new unit forwards.
    Upgraded,
    /// The new unit was refused; the previous unit forwards again (or, if its
    /// library could not be loaded again, the embedded vRouter).
    RolledBack,
}

/// One upgrade, finished or running.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeRecord {
    /// Counts upgrades since the daemon started, from 1.
    pub id: u64,
    /// The library asked for.
    pub library: String,
    pub from: UnitDescription,
    /// The unit forwarding at the end (the new one, or the restored previous one).
    pub to: Option<UnitDescription>,
    pub outcome: Outcome,
    /// Why the new unit was refused, for `RolledBack`.
    pub error: Option<String>,
    pub started_unix_us: u64,
    pub duration_us: u64,
    pub steps: Vec<StepRecord>,
    /// Config requests queued during the upgrade and applied at step 8
    /// (`failed` of them were refused when applied; see `GET /v1/requests/{id}`).
    pub queued_applied: usize,
    pub queued_failed: usize,
}

/// `GET /v1/upgrade`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeStatus {
    /// The units bound to the VM side and the uplink now.
    pub vm: UnitDescription,
    pub uplink: UnitDescription,
    /// The upgrade in progress, if any.
    pub running: Option<UpgradeRecord>,
    /// Finished upgrades, oldest first (the last 100).
    pub history: Vec<UpgradeRecord>,
}

/// Why an upgrade did not even start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRefused {
    #[error("an upgrade is already running (id {0}); wait for it to finish")]
    InProgress(u64),
    #[error("upgrades need the vRouter; this switch runs the cross-connect (ports with forward_to)")]
    NoUnit,
}

/// The result of step 8, reported by the `ConfigGate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resumed {
    pub applied: usize,
    pub failed: usize,
}

/// Steps 1 and 8 belong to the control plane, which owns config requests: the
/// orchestrator calls it at those steps so they are timed and logged with the rest.
pub trait ConfigGate: Send + Sync {
    /// Step 1: from now on change requests are persisted and answered 202, not applied.
    fn pause(&self);
    /// Steps 2 and 5: the configuration as committed in the config database.
    fn committed(&self) -> Result<crate::model::ConfigSnapshot, String>;
    /// Step 8: applies the queued requests in arrival order, then lets requests
    /// through again. Called on every path out of an upgrade, failed ones too.
    fn resume(&self) -> Resumed;
}
