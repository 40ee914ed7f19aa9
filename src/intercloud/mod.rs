//! Inter-cloud connectivity through gateway nodes (docs/intercloud.md): the
//! control plane. Roles, each a subcommand of the binary:
//!
//! - the *coordinator* (`coordinator`, `http`): links the clouds; from the VMs
//!   the controllers hand over it serves each cloud's table 2 (gateway view:
//!   VM -> compute node) and table 1 (forwarding view: the other clouds' VMs ->
//!   their gateway: the gateway rewrite);
//! - a cloud's *controller* (`controller`, `tasks`): takes its switch agents'
//!   announcements, hands them to the coordinator, stores the coordinator's
//!   table 1 for its cloud and serves it to its switch agents;
//! - the *agents* (`agent`, `reconcile`): beside a compute node's switch
//!   (announce its VMs, program table 1) or the gateway's (program table 2),
//!   through the switch's control API.
//!
//! Followers long-poll whole views; everything a role is told is committed to
//! its redb file (`store`, behind `IntercloudStore`) before it answers.
//! docs/intercloud.md has the protocol. Sits at the top with `control`, whose
//! client it uses to reach the switches.
pub mod agent;
pub mod cli;
pub mod client;
pub mod controller;
pub mod coordinator;
pub mod http;
pub mod model;
pub mod reconcile;
pub mod serve;
pub mod store;
pub mod tasks;
#[cfg(test)]
mod tests;

pub use controller::Controller;
pub use coordinator::{Coordinator, ViewKind};
pub use model::{Announce, Cloud, Entry, View, VmKey, VmRecord, Withdrawn};
pub use store::{IntercloudStore, MemoryStore, RedbIntercloudStore};
