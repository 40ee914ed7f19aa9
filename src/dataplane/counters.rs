//! A worker's counters, and the sum over workers the control plane reports.
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crossbeam::utils::CachePadded;
use serde::Serialize;

use crate::block_server::service::ServiceCounters;
use crate::vm_migration::HoldCounters;
use crate::overlay::TunnelCounters;

use crate::pipeline::{Counter, DropCounters, DropReason, PortCounters};
use crate::address_migration::{RewriteCounters, RewriteTotals};

/// Everything one worker counts: per port (indexed by port id) and per drop reason.
#[derive(Debug)]
pub struct WorkerCounters {
    pub ports: Vec<PortCounters>,
    pub drops: DropCounters,
    /// Packets stages made (flood copies, replicas, ARP requests), including
    /// those they could not make (counted as `copy_not_made` drops too).
    pub made: Counter,
    /// Packets addressed to the switch itself and handled there.
    pub absorbed: Counter,
    /// The longest pause in this worker's output, for the upgrade bench.
    pub output_gap: OutputGap,
    /// The buffer-or-forward stage's counters (a migrating VM's packets).
    pub migration: Arc<CachePadded<HoldCounters>>,
    /// The tunnel stage's (tunnels coming up on demand).
    pub tunnels: Arc<CachePadded<TunnelCounters>>,
    /// Written by this worker's address rewrite stages.
    pub rewrite: Arc<CachePadded<RewriteCounters>>,
    /// The block-I/O stage's service (storage requests, bytes).
    pub storage: Arc<CachePadded<ServiceCounters>>,
}

/// The longest time between two run-loop iterations that transmitted, since
/// the control plane last opened a measuring window. The control plane writes
/// `window`, the worker `longest_cycles`: each has a single writer.
#[derive(Debug, Default)]
pub struct OutputGap {
    pub window: std::sync::atomic::AtomicU64,
    pub longest_cycles: std::sync::atomic::AtomicU64,
}

/// The worker's side of `OutputGap`.
#[derive(Debug, Default)]
pub(super) struct GapMeter {
    window: u64,
    last_output: u64,
    longest: u64,
}

impl GapMeter {
    /// Called once per run-loop iteration with whether it transmitted.
    #[inline]
    pub(super) fn record(&mut self, shared: &OutputGap, now: u64, transmitted: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let window = shared.window.load(Relaxed);
        if window != self.window {
            (self.window, self.last_output, self.longest) = (window, now, 0);
            shared.longest_cycles.store(0, Relaxed);
        }
        if transmitted {
            let gap = now.wrapping_sub(self.last_output);
            if gap > self.longest && self.last_output != 0 {
                self.longest = gap;
                shared.longest_cycles.store(gap, Relaxed);
            }
            self.last_output = now;
        }
    }
}

impl WorkerCounters {
    pub fn new(port_slots: usize) -> Self {
        WorkerCounters {
            ports: (0..port_slots).map(|_| PortCounters::default()).collect(),
            drops: DropCounters::default(),
            made: Counter::default(),
            absorbed: Counter::default(),
            output_gap: OutputGap::default(),
            migration: Arc::default(),
            tunnels: Arc::default(),
            rewrite: Arc::default(),
            storage: Arc::default(),
        }
    }
}

/// Traffic on one port summed over workers.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    /// Received here and sent back out here (a gateway's hop 2, a migration relay).
    pub rx_relayed: u64,
}

/// Counters summed over all workers.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Indexed by port id.
    pub ports: Vec<PortTotals>,
    /// Every drop reason, zero or not, by its stable name.
    pub drops: BTreeMap<&'static str, u64>,
    pub made: u64,
    pub absorbed: u64,
    pub migration: MigrationTotals,
    pub address_rewrite: RewriteTotals,
    pub tunnels: TunnelTotals,
    pub storage: StorageTotals,
}

/// What the block-I/O stages served, summed over workers (docs/block-io.md).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct StorageTotals {
    /// Authenticated request datagrams (each WRITE fragment counts).
    pub requests: u64,
    /// Retransmissions answered from the anti-replay window, not executed again.
    pub answered_from_window: u64,
    /// Replies with an error status.
    pub error_replies: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// What the tunnel stage did, summed over workers: frames that waited for a
/// tunnel's next hop, handed on when it resolved, dropped, waiting now.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TunnelTotals {
    pub queued: u64,
    pub released: u64,
    pub dropped: u64,
    pub waiting: u64,
}

/// What the buffer-or-forward stage did, summed over workers (peaks: the
/// largest on any one worker).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct MigrationTotals {
    /// Packets for migrating VMs taken into a buffer.
    pub held: u64,
    /// Held packets handed back to the pipeline (delivered or relayed).
    pub released: u64,
    /// Packets in buffers now.
    pub holding: u64,
    /// The most packets and bytes one VM's buffer held.
    pub peak_packets: u64,
    pub peak_bytes: u64,
}

impl Totals {
    pub fn sum<'a>(workers: impl IntoIterator<Item = &'a WorkerCounters>, port_slots: usize) -> Totals {
        let mut totals = Totals {
            ports: vec![PortTotals::default(); port_slots],
            drops: DropReason::ALL.iter().map(|r| (r.name(), 0)).collect(),
            address_rewrite: RewriteTotals::new(),
            ..Totals::default()
        };
        for worker in workers {
            for (total, c) in totals.ports.iter_mut().zip(&worker.ports) {
                total.rx_packets += c.rx_packets.get();
                total.rx_bytes += c.rx_bytes.get();
                total.tx_packets += c.tx_packets.get();
                total.tx_bytes += c.tx_bytes.get();
                total.rx_dropped += c.rx_dropped.get();
                total.tx_dropped += c.tx_dropped.get();
                total.rx_relayed += c.rx_relayed.get();
            }
            for &reason in DropReason::ALL {
                *totals.drops.entry(reason.name()).or_default() += worker.drops.get(reason);
            }
            totals.made += worker.made.get();
            totals.absorbed += worker.absorbed.get();
            let (m, c) = (&mut totals.migration, &worker.migration);
            m.held += c.held.get();
            m.released += c.released.get();
            m.holding += c.holding.load(Relaxed);
            m.peak_packets = m.peak_packets.max(c.peak_packets.load(Relaxed));
            m.peak_bytes = m.peak_bytes.max(c.peak_bytes.load(Relaxed));
            totals.address_rewrite.add(&worker.rewrite);
            let (t, c) = (&mut totals.tunnels, &worker.tunnels);
            t.queued += c.queued.get();
            t.released += c.released.get();
            t.dropped += c.dropped.get();
            t.waiting += c.waiting.load(Relaxed);
            let (s, c) = (&mut totals.storage, &worker.storage);
            s.requests += c.requests.get();
            s.answered_from_window += c.answered_from_window.get();
            s.error_replies += c.error_replies.get();
            s.bytes_read += c.bytes_read.get();
            s.bytes_written += c.bytes_written.get();
        }
        totals
    }

    pub fn rx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.rx_packets).sum()
    }
    pub fn tx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.tx_packets).sum()
    }
    pub fn dropped(&self) -> u64 {
        self.drops.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_workers_per_port_and_reason() {
        let a = WorkerCounters::new(2);
        let b = WorkerCounters::new(2);
        a.ports[0].rx_packets.add(10);
        b.ports[0].rx_packets.add(5);
        a.ports[1].tx_packets.add(12);
        a.drops.add(DropReason::TruncatedEthernet, 2);
        b.drops.add(DropReason::TruncatedEthernet, 1);
        let totals = Totals::sum([&a, &b], 2);
        assert_eq!(totals.ports[0].rx_packets, 15);
        assert_eq!(totals.rx_packets(), 15);
        assert_eq!(totals.tx_packets(), 12);
        assert_eq!(totals.drops["truncated_ethernet"], 3);
        assert_eq!(totals.drops["tx_refused"], 0, "every reason is listed");
        assert_eq!(totals.dropped(), 3);
    }
}
