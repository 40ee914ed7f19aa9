//! Version 2's improvement: packets handed to the unit, by side. Each worker
//! counts in its own cache line; `info` sums them.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use switchyard_unit_abi::Mbuf;
use switchyard_unit_abi::{Burst, Side};
use switchyard_unit_abi::UnitWorker;

type Counts = Arc<[AtomicU64; 2]>;

#[derive(Default)]
pub struct SideCounters {
    workers: Mutex<Vec<Counts>>,
}

impl SideCounters {
    /// Wraps a worker binding so it counts what passes through it.
    pub fn attach(&self, inner: Box<dyn UnitWorker<Mbuf>>) -> Box<dyn UnitWorker<Mbuf>> {
        let counts: Counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        self.workers.lock().unwrap_or_else(PoisonError::into_inner).push(counts.clone());
        Box::new(Counting { inner, counts })
    }

    pub fn totals(&self) -> serde_json::Value {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let sum = |i: usize| workers.iter().map(|c| c[i].load(Ordering::Relaxed)).sum::<u64>();
        serde_json::json!({ "vm": sum(0), "uplink": sum(1) })
    }
}

struct Counting {
    inner: Box<dyn UnitWorker<Mbuf>>,
    counts: Counts,
}

impl UnitWorker<Mbuf> for Counting {
    #[inline]
    fn process(&mut self, side: Side, burst: &mut Burst<Mbuf>) {
        let slot = &self.counts[usize::from(side == Side::Uplink)];
        // One writer per counter: a plain load and store, no locked add.
        slot.store(slot.load(Ordering::Relaxed) + burst.len() as u64, Ordering::Relaxed);
        self.inner.process(side, burst);
    }

    fn quiescent(&mut self, now: u64) {
        self.inner.quiescent(now);
    }
}
