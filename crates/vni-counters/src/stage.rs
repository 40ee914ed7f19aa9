//! The counting stages. Per burst: one table lookup for the input port (`FromVms`), and counter adds
//! once per run of packets to one network (`ToVms`); per packet, a branch on its verdict and a sum.
//! No allocation, lock, syscall or log line.
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

    /// Packets in a row to one network are summed first and added once: a burst usually goes to one port.
    fn count_to_vms<P: PacketBuf>(&self, burst: &mut Burst<P>) {
        let slots = &*self.current;
        let mut run: Option<(usize, u64, u64)> = None;
        let mut count = |verdict: Verdict, len: usize| {
            let Verdict::Forward(port) = verdict else { return };
            let Some(slot) = slots.slot(port) else { return };
            match &mut run {
                Some((s, packets, bytes)) if *s == slot => (*packets, *bytes) = (*packets + 1, *bytes + len as u64),
                _ => {
                    if let Some((s, packets, bytes)) = run.replace((slot, 1, len as u64)) {
                        self.counters.add(s, packets, bytes);
                    }
                }
            }
        };
        for (packet, verdict) in burst.iter_mut() {
            count(*verdict, packet.len());
        }
        for (packet, verdict) in burst.made() {
            count(*verdict, packet.len());
        }
        if let Some((slot, packets, bytes)) = run {
            self.counters.add(slot, packets, bytes);
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
