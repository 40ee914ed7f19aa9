//! Per-network traffic counters: for each virtual network (VNI) with a VM port on this switch, the
//! packets and bytes its VMs sent into the switch (`from_vms`) and those the switch delivered to them
//! (`to_vms`), flood copies included. Counted on VM ports only: traffic of a network that only passes
//! through on the uplink is not (docs/vni-counters.md).
//!
//! `VniCounters` is the shared side: the control plane publishes which network each VM port is bound
//! to (`apply`) and sums every worker's counters (`totals`). Each worker runs two `VniCountStage`s,
//! one before the switching unit (`FromVms`) and one after it (`ToVms`), each counting into a block
//! of its own, written by that worker alone.
mod stage;

pub use stage::{Direction, VniCountStage};

use std::sync::{Arc, Mutex, PoisonError};

use crossbeam::utils::CachePadded;
use rustc_hash::FxHashMap;
use serde::Serialize;
use switchyard_model::{ConfigSnapshot, Vni};
use switchyard_pipeline::{Counter, PortId};
use switchyard_unit_abi::Versioned;

/// Networks counted at most; a network bound to a VM port after that many is not counted.
pub const MAX_NETWORKS: usize = 1024;

/// Which counter slot each VM port counts into, by port id: one slot per network.
#[derive(Debug, Default)]
pub struct PortSlots {
    slot_of_port: Vec<Option<u16>>,
}

impl PortSlots {
    #[inline]
    fn slot(&self, port: PortId) -> Option<usize> {
        self.slot_of_port.get(port.index()).copied().flatten().map(usize::from)
    }
}

/// One stage's packets and bytes, by slot.
pub struct SlotCounters(Box<[(Counter, Counter)]>);

impl Default for SlotCounters {
    fn default() -> Self {
        SlotCounters((0..MAX_NETWORKS).map(|_| (Counter::default(), Counter::default())).collect())
    }
}

impl SlotCounters {
    #[inline]
    fn add(&self, slot: usize, packets: u64, bytes: u64) {
        let (p, b) = &self.0[slot];
        p.add(packets);
        b.add(bytes);
    }
}

/// One network's traffic on this switch, summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VniTotals {
    pub vni: Vni,
    pub from_vms_packets: u64,
    pub from_vms_bytes: u64,
    pub to_vms_packets: u64,
    pub to_vms_bytes: u64,
}

/// Shared by the control plane and every worker's stages.
pub struct VniCounters {
    /// VM port names by port id: bindings name ports.
    ports: Vec<(String, PortId)>,
    slots: Arc<Versioned<PortSlots>>,
    /// Each network's slot (numbered from 0 in the order networks were first bound), kept for the whole
    /// run so that its counts never move to another network.
    slot_of_vni: Mutex<FxHashMap<Vni, u16>>,
    /// Every stage's counters, by direction.
    from_vms: Mutex<Vec<Arc<CachePadded<SlotCounters>>>>,
    to_vms: Mutex<Vec<Arc<CachePadded<SlotCounters>>>>,
}

impl VniCounters {
    /// Counts on the VM ports `vm_ports` (name, id).
    pub fn new(vm_ports: Vec<(String, PortId)>) -> Self {
        VniCounters {
            ports: vm_ports,
            slots: Arc::new(Versioned::new(Arc::new(PortSlots::default()))),
            slot_of_vni: Mutex::default(),
            from_vms: Mutex::default(),
            to_vms: Mutex::default(),
        }
    }

    /// A worker's stage for `direction`, with counters of its own.
    pub fn stage(&self, direction: Direction) -> VniCountStage {
        let counters = Arc::new(CachePadded::new(SlotCounters::default()));
        let list = match direction {
            Direction::FromVms => &self.from_vms,
            Direction::ToVms => &self.to_vms,
        };
        list.lock().unwrap_or_else(PoisonError::into_inner).push(counters.clone());
        VniCountStage::new(direction, &self.slots, counters)
    }

    /// Publishes which network each VM port is bound to in `config`.
    pub fn apply(&self, config: &ConfigSnapshot) {
        let mut slot_of_vni = self.slot_of_vni.lock().unwrap_or_else(PoisonError::into_inner);
        let mut slot_of_port = vec![None; self.ports.iter().map(|(_, id)| id.index() + 1).max().unwrap_or(0)];
        for binding in &config.ports {
            let Some((_, id)) = self.ports.iter().find(|(name, _)| *name == binding.port) else { continue };
            let next = slot_of_vni.len();
            let slot = match slot_of_vni.get(&binding.vni) {
                Some(&slot) => slot,
                None if next < MAX_NETWORKS => *slot_of_vni.entry(binding.vni).or_insert(next as u16),
                None => continue,
            };
            slot_of_port[id.index()] = Some(slot);
        }
        self.slots.publish_both(Arc::new(PortSlots { slot_of_port }));
    }

    /// Frees table versions no worker reads any more.
    pub fn reclaim(&self) {
        self.slots.reclaim();
    }

    /// Every counted network's traffic, summed over workers, by VNI.
    pub fn totals(&self) -> Vec<VniTotals> {
        let slot_of_vni = self.slot_of_vni.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let sum = |list: &Mutex<Vec<Arc<CachePadded<SlotCounters>>>>, slot: usize| {
            let list = list.lock().unwrap_or_else(PoisonError::into_inner);
            list.iter().fold((0, 0), |(p, b), c| (p + c.0[slot].0.get(), b + c.0[slot].1.get()))
        };
        let mut totals: Vec<VniTotals> = slot_of_vni
            .into_iter()
            .map(|(vni, slot)| {
                let slot = usize::from(slot);
                let (from_vms_packets, from_vms_bytes) = sum(&self.from_vms, slot);
                let (to_vms_packets, to_vms_bytes) = sum(&self.to_vms, slot);
                VniTotals { vni, from_vms_packets, from_vms_bytes, to_vms_packets, to_vms_bytes }
            })
            .collect();
        totals.sort_by_key(|t| t.vni);
        totals
    }
}

#[cfg(test)]
mod tests;
