//! Counters written by one worker and read by the control plane.
//!
//! Each counter has a single writer (its worker), so an increment is a relaxed
//! load and store (a plain `mov` on x86), never a locked read-modify-write.
use core::sync::atomic::{AtomicU64, Ordering};

use super::DropReason;

/// A monotonic counter with one writer and any number of readers.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One counter per `DropReason`.
#[derive(Debug)]
pub struct DropCounters([Counter; DropReason::COUNT]);

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters(core::array::from_fn(|_| Counter::default()))
    }
}

impl DropCounters {
    #[inline]
    pub fn add(&self, reason: DropReason, n: u64) {
        self.0[reason.index()].add(n);
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()].get()
    }
}

/// Traffic of one worker on one port.
#[derive(Default, Debug)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Received here and dropped by a stage (any reason but `TxRefused`).
    pub rx_dropped: Counter,
    /// Meant for transmission here and not accepted by the queue.
    pub tx_dropped: Counter,
    /// Received here and sent back out here: an inter-cloud gateway's second
    /// hop, a migration source's relay to the destination.
    pub rx_relayed: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_per_reason() {
        let drops = DropCounters::default();
        drops.add(DropReason::TxRefused, 3);
        drops.add(DropReason::TxRefused, 2);
        drops.add(DropReason::NoVerdict, 1);
        assert_eq!(drops.get(DropReason::TxRefused), 5);
        assert_eq!(drops.get(DropReason::NoVerdict), 1);
        assert_eq!(drops.get(DropReason::MultiSegmentMbuf), 0);
    }
}
