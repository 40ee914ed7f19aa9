//! The per-packet verdict and the `Stage` trait.
use super::{Burst, DropReason, PacketBuf, PortId};

/// What happens to a packet when the pipeline is done with it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// No stage has decided yet; a packet still pending after the last stage is
    /// dropped as `DropReason::NoVerdict`.
    Pending,
    /// Transmit out of this port. Later stages may still rewrite or redirect it.
    Forward(PortId),
    /// Drop, counted under the reason.
    Drop(DropReason),
    /// Hand to the control plane (ARP resolution, learning, ...).
    ToControl,
    /// A stage took ownership of the packet (buffered it, for instance).
    Consumed,
    /// Addressed to the switch itself and handled there (an ARP reply for the
    /// VTEP, say): freed and counted as absorbed, not as a drop.
    Absorbed,
}

impl Verdict {
    /// Drop, control, consume and absorb are final: later stages skip such packets.
    pub fn is_final(self) -> bool {
        matches!(self, Verdict::Drop(_) | Verdict::ToControl | Verdict::Consumed | Verdict::Absorbed)
    }
}

/// One step of packet processing, run on a whole burst at a time.
///
/// A stage looks only at packets whose verdict is not final (`Burst::iter_mut`)
/// and must not allocate, lock, make a syscall or log per packet.
pub trait Stage<P: PacketBuf> {
    /// Short name for logs and stats.
    fn name(&self) -> &'static str;
    fn process(&mut self, burst: &mut Burst<P>);
    /// Called once per run-loop iteration, outside any burst, with the TSC: the
    /// stage holds no reference into shared tables from before this point (a
    /// quiescent state).
    fn quiescent(&mut self, _now: u64) {}
    /// Packets the stage held that are to go on now: it fills `burst` (after
    /// `Burst::reset` to their input port) and returns true, and the worker runs
    /// the burst through the stages after this one. Called between bursts.
    fn release(&mut self, _burst: &mut Burst<P>) -> bool {
        false
    }
}
