//! The counting stages. Per burst: one table lookup for the input port (`FromVms`); per packet, one
//! branch on its verdict and, for a VM port, two relaxed counter adds. No allocation, lock, syscall
//! or log line.
use std::sync::Arc;

use crossbeam::utils::CachePadded;
use switchyard_pipeline::{Burst, PacketBuf, Side, Stage, Verdict};
use switchyard_unit_abi::{Reader, Versioned};

use super::{PortSlots, SlotCounters};

/// Which traffic a stage counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Before the switching unit: what a VM port received, under the port's network.
    FromVms,
    /// After it: what the switch decided to send out of a VM port (flood copies included).
    ToVms,
}

pub struct VniCountStage {
    direction: Direction,
    slots: Arc<Versioned<PortSlots>>,
    reader: Reader,
    current: Arc<PortSlots>,
    counters: Arc<CachePadded<SlotCounters>>,
}

impl VniCountStage {
    pub(super) fn new(direction: Direction, slots: &Arc<Versioned<PortSlots>>, counters: Arc<CachePadded<SlotCounters>>) -> Self {
        VniCountStage { direction, slots: slots.clone(), reader: slots.reader(), current: slots.active(Side::Vm), counters }
    }

    fn count_from_vms<P: PacketBuf>(&self, burst: &mut Burst<P>) {
        let Some(slot) = self.current.slot(burst.in_port()) else { return };
        let (mut packets, mut bytes) = (0, 0);
        for (packet, _) in burst.iter_mut() {
            packets += 1;
            bytes += packet.len() as u64;
        }
        self.counters.add(slot, packets, bytes);
    }

    fn count_to_vms<P: PacketBuf>(&self, burst: &mut Burst<P>) {
        let (slots, counters) = (&*self.current, &self.counters);
        let count = |verdict: Verdict, len: usize| {
            if let Verdict::Forward(port) = verdict {
                if let Some(slot) = slots.slot(port) {
                    counters.add(slot, 1, len as u64);
                }
            }
        };
        for (packet, verdict) in burst.iter_mut() {
            count(*verdict, packet.len());
        }
        for (packet, verdict) in burst.made() {
            count(*verdict, packet.len());
        }
    }
}

impl<P: PacketBuf> Stage<P> for VniCountStage {
    fn name(&self) -> &'static str {
        match self.direction {
            Direction::FromVms => "vni-count-from-vms",
            Direction::ToVms => "vni-count-to-vms",
        }
    }

    fn process(&mut self, burst: &mut Burst<P>) {
        match self.direction {
            Direction::FromVms => self.count_from_vms(burst),
            Direction::ToVms => self.count_to_vms(burst),
        }
    }

    fn quiescent(&mut self, _now: u64) {
        if let Some(generation) = self.reader.moved(&self.slots) {
            self.current = self.slots.active(Side::Vm);
            self.reader.announce(generation);
        }
    }
}
