//! The vocabulary every stage shares: a burst of packets with a verdict each,
//! the `Stage` trait, named drop reasons and their counters.
//! Imports only `wire`; knows nothing of DPDK, so stages are tested on byte vectors.

mod burst;
mod counters;
mod drop_reason;
mod packet;
mod stage;

pub use burst::{Burst, Slot, BURST_SIZE, MADE_PER_BURST};
pub use counters::{Counter, DropCounters, PortCounters};
pub use drop_reason::DropReason;
pub use packet::{Allocator, BytesPacket, PacketBuf};
pub use stage::{Stage, Verdict};

use core::fmt;

/// Which side of the switch a port is on (in an upgrade the VM vports and the
/// uplink vports are switched to a new unit one side after the other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Vm,
    Uplink,
}

/// A port, numbered as DPDK numbers its ethdevs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PortId(pub u16);

/// A receive or transmit queue of a port.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct QueueId(pub u16);

impl PortId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue {}", self.0)
    }
}
