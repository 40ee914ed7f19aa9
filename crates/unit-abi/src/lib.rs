//! Switching units: the forwarding logic with its tables, as one replaceable
//! object with an identifier and a version, configured through commands, and
//! the versioned pair through which workers reach the unit bound to each side
//! without ever taking a lock on the fast path. `c_abi` is how a unit built as
//! a shared library and the daemon talk (docs/unit-abi.md). A unit crate
//! depends on this crate and the features it forwards with, nothing else.
#![allow(unsafe_code)]

pub mod c_abi;
mod learn;
mod loaded;
mod stage;
mod state;
mod versioned;

pub use learn::{mix, LearnEvent, LearnQueue, Location, WorkerLocal};
pub use loaded::{Exported, ExportedBinding, LoadError, LoadedUnit, UnitFactory};
pub use stage::UnitStage;
pub use state::{LearnedMac, LearnedNeighbor, UnitCommand, UnitState};
pub use versioned::{Reader, Versioned};

// What a unit crate names besides this crate's own, so that it needs no other crate of ours.
pub use switchyard_dpdk::Mbuf;
pub use switchyard_pipeline::{Burst, DropReason, Side, Verdict};
use switchyard_pipeline::PacketBuf;

/// A running switching unit. The control plane configures it (`apply`), asks
/// for its state (`export`) and gives it time (`housekeeping`); each worker
/// forwards through a binding of its own (`attach`).
pub trait SwitchingUnit<P: PacketBuf>: Send + Sync {
    /// Names the implementation ("vrouter", "intermediate").
    fn id(&self) -> &str;
    /// The implementation's version string.
    fn version(&self) -> &str;
    /// The configuration generation its tables were built from.
    fn generation(&self) -> u64;
    /// A worker's binding, made on that worker at a quiescent point.
    fn attach(&self, tsc_hz: u64) -> Box<dyn UnitWorker<P>>;
    /// Applies one configuration command (the changes of one commit).
    fn apply(&self, command: &UnitCommand) -> Result<(), String>;
    /// The configuration it runs and what it learned.
    fn export(&self) -> Result<UnitState, String>;
    /// The underlay neighbours it learned (next hop, MAC): what tunnels coming up wait for.
    fn neighbors(&self) -> Vec<(std::net::Ipv4Addr, switchyard_wire::MacAddr)> {
        self.export().map(|state| state.neighbors.iter().map(|n| (n.ip, n.mac)).collect()).unwrap_or_default()
    }
    /// Folds in what workers learned, ages entries out, frees table versions no
    /// worker uses. Called every few milliseconds off the fast path.
    fn housekeeping(&self);
    /// Table sizes and counters for `GET /v1/unit` and metrics.
    fn info(&self) -> serde_json::Value;
    /// The shared library it came from; `None` when compiled into the daemon.
    fn library(&self) -> Option<&std::path::Path> {
        None
    }
}

/// A worker's binding to a unit: never shared between workers.
pub trait UnitWorker<P: PacketBuf>: Send {
    /// Decides every pending packet of a burst received on a port of `side`.
    fn process(&mut self, side: Side, burst: &mut Burst<P>);
    /// Once per run-loop iteration, outside any burst, with the TSC.
    fn quiescent(&mut self, now: u64);
}
