//! Address migration: a VM that moved to another network
//! got a new IP, but its peers keep using its primary IP. The address migration
//! table (per virtual network: primary IP <-> post-migration IP, with the VM's
//! port) comes from the network control system (the API) or from the VM's own
//! report on its VM port; the `AddressRewrite` stages rewrite addresses by it,
//! direction-aware:
//!
//! - network -> VM: a destination IP equal to a primary IP becomes the
//!   post-migration IP (after the switching unit chose the VM port, so on
//!   decapsulated VXLAN too);
//! - VM -> network: a source IP equal to a post-migration IP becomes the
//!   primary IP (before the unit switches or encapsulates it).
//!
//! Datapath (`table`, `translate`, `report`, `stage`) uses pipeline and wire
//! only; `control` builds table versions from the config database's records.
//! Rules and the report format: docs/address-migration.md.
mod control;
mod counters;
mod report;
mod stage;
mod table;
mod translate;
#[cfg(test)]
mod tests;

pub use control::{build, AddressMigrations, AddressReport, RewritePort};
pub use counters::{RewriteCounters, RewriteTotals};
pub use report::{ReportEvent, ReportQueue};
pub use stage::AddressRewrite;
pub use table::{AddressMap, AddressMigrationTable, AddressMigrationRecord, PortRewrites, VmPortRecord};
pub use translate::{rewrite_frame, Direction, Rewritten};
