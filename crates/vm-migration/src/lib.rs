//! Zero-loss VM live migration: the migration information table and its state
//! machine (`table`), and the buffer-or-forward stage workers run before the
//! switching unit (`datapath`). The control plane (`control::migration`) turns
//! events into table versions, configuration changes and bulletin-board calls
//! (docs/migration.md).
mod datapath;
mod table;
#[cfg(test)]
mod tests;

pub use datapath::{
    Arrival, HoldCounters, HoldEntry, HoldLimits, HoldShared, HoldTable, MigrationStage, MAX_HELD_VMS, RELEASE_BURSTS_PER_LOOP,
};
pub use table::{EventRefused, Handling, Migration, MigrationEvent, Phase, Role, Transition, Unchanged, VmKey};
