//! Switching units: the forwarding logic and its tables as one replaceable
//! object with an identifier and a version (seed 000), and the versioned table
//! through which workers reach the active unit without ever taking a lock.
mod learn;
mod table;

pub use learn::{mix, LearnEvent, LearnQueue, Location, WorkerLocal};
pub use table::{UnitStage, UnitTable};

use crate::pipeline::{Burst, PacketBuf};

/// Which side of the switch a port is on (seed 000: the VM vports and the
/// uplink vports are switched to a new unit one side after the other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Vm,
    Uplink,
}

/// A switching unit: immutable once published. A configuration change builds a
/// new unit value (copy-on-write) and publishes it in the `UnitTable`.
pub trait SwitchingUnit<P: PacketBuf>: Send + Sync {
    /// Names the unit implementation ("vrouter").
    fn id(&self) -> &str;
    /// The implementation's version string.
    fn version(&self) -> &str;
    /// The configuration generation its tables were built from.
    fn generation(&self) -> u64;
    /// Decides every pending packet of a burst received on a port of `side`.
    /// `local` is the calling worker's own mutable state.
    fn process(&self, side: Side, burst: &mut Burst<P>, local: &mut WorkerLocal);
}

