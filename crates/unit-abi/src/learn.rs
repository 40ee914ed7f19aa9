//! What workers learn from traffic (MAC locations, underlay neighbours) goes to
//! the control plane through a bounded lock-free queue; the control plane folds
//! it into the next table version, so every worker sees it and published units
//! stay immutable.
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

use switchyard_pipeline::PortId;
use switchyard_model::Vni;
use switchyard_wire::MacAddr;

/// Where a MAC address lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// Behind a VM-role port of this switch.
    Port(PortId),
    /// Behind a remote VTEP.
    Vtep(Ipv4Addr),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Port(port) => write!(f, "port {}", port.0),
            Location::Vtep(ip) => write!(f, "vtep {ip}"),
        }
    }
}

/// One observation a worker reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnEvent {
    /// Source MAC `mac` in network `vni` was seen at `at`.
    Mac { vni: Vni, mac: MacAddr, at: Location },
    /// An underlay host answered ARP (or asked us): `ip` is at `mac`.
    Neighbor { ip: Ipv4Addr, mac: MacAddr },
}

/// The bounded queue workers push to and the control plane drains. A report
/// that finds it full is counted and dropped: the worker never waits.
pub struct LearnQueue {
    events: ArrayQueue<LearnEvent>,
    lost: AtomicU64,
}

impl LearnQueue {
    pub fn new(capacity: usize) -> Self {
        LearnQueue { events: ArrayQueue::new(capacity), lost: AtomicU64::new(0) }
    }

    /// False (and counted) if the queue is full.
    pub fn push(&self, event: LearnEvent) -> bool {
        let pushed = self.events.push(event).is_ok();
        if !pushed {
            // Only when the control side is behind, so the shared add costs nothing per packet.
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        pushed
    }

    pub fn pop(&self) -> Option<LearnEvent> {
        self.events.pop()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Reports lost because the queue was full.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

const FILTER_SLOTS: usize = 1024;

/// Per-worker state a unit may use (never shared between workers): published
/// units are immutable, so what a worker learns or rate-limits lives here.
pub struct WorkerLocal {
    /// TSC at the start of the current burst.
    pub now: u64,
    pub tsc_hz: u64,
    /// `None` for a unit that does not learn (the intermediate unit).
    queue: Option<Arc<LearnQueue>>,
    /// Re-report an unchanged observation after this many TSC cycles, so the
    /// control plane can age out what is no longer seen.
    refresh_cycles: u64,
    /// Direct-mapped memory of recent reports: (observation hash, TSC). Keeps a
    /// busy flow from pushing one event per packet.
    reported: Box<[(u64, u64); FILTER_SLOTS]>,
    /// Last ARP request sent per target slot: at most one per target per `arp_interval`.
    /// (target + 1, TSC); 0 marks an empty slot.
    arp_sent: Box<[(u64, u64); FILTER_SLOTS]>,
    arp_interval: u64,
}

impl WorkerLocal {
    pub fn new(queue: Arc<LearnQueue>, tsc_hz: u64, refresh_seconds: u64) -> Self {
        Self::reporting_to(Some(queue), tsc_hz, refresh_seconds)
    }

    /// For a unit that learns nothing: reports go nowhere.
    pub fn without_learning(tsc_hz: u64) -> Self {
        Self::reporting_to(None, tsc_hz, 1)
    }

    fn reporting_to(queue: Option<Arc<LearnQueue>>, tsc_hz: u64, refresh_seconds: u64) -> Self {
        WorkerLocal {
            now: 0,
            tsc_hz,
            queue,
            refresh_cycles: tsc_hz.saturating_mul(refresh_seconds),
            reported: Box::new([(0, 0); FILTER_SLOTS]),
            arp_sent: Box::new([(0, 0); FILTER_SLOTS]),
            arp_interval: tsc_hz / 10,
        }
    }

    /// Reports an observation unless the same one was reported recently.
    #[inline]
    pub fn report(&mut self, event: LearnEvent) {
        let Some(queue) = &self.queue else { return };
        let hash = event_hash(&event);
        let slot = &mut self.reported[(hash as usize) % FILTER_SLOTS];
        if slot.0 == hash && self.now.wrapping_sub(slot.1) < self.refresh_cycles {
            return;
        }
        if queue.push(event) {
            *slot = (hash, self.now);
        }
    }

    /// Whether an ARP request for `target` may go out now (at most one per
    /// target every 100 ms); records it if so.
    pub fn may_send_arp(&mut self, target: Ipv4Addr) -> bool {
        let key = u64::from(u32::from(target)) + 1;
        let slot = &mut self.arp_sent[(mix(key) as usize) % FILTER_SLOTS];
        if slot.0 == key && self.now.wrapping_sub(slot.1) < self.arp_interval {
            return false;
        }
        *slot = (key, self.now);
        true
    }
}

fn event_hash(event: &LearnEvent) -> u64 {
    let mac = |m: &MacAddr| m.0.iter().fold(0u64, |h, &b| (h << 8) | u64::from(b));
    match *event {
        LearnEvent::Mac { vni, mac: m, at } => {
            let at = match at {
                Location::Port(p) => u64::from(p.0),
                Location::Vtep(ip) => (1 << 32) | u64::from(u32::from(ip)),
            };
            mix(mac(&m) ^ (u64::from(vni) << 48)) ^ mix(at.wrapping_add(0x9e37_79b9))
        }
        LearnEvent::Neighbor { ip, mac: m } => mix(mac(&m) ^ (u64::from(u32::from(ip)) << 16) ^ (1 << 63)),
    }
}

/// A 64-bit finaliser (splitmix64): cheap and well mixed.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(capacity: usize) -> (WorkerLocal, Arc<LearnQueue>) {
        let queue = Arc::new(LearnQueue::new(capacity));
        (WorkerLocal::new(queue.clone(), 1000, 10), queue)
    }

    #[test]
    fn repeated_observations_are_reported_once_per_refresh() {
        let (mut local, queue) = local(8);
        let event = LearnEvent::Mac { vni: 7, mac: MacAddr([2, 0, 0, 0, 0, 1]), at: Location::Port(PortId(1)) };
        local.now = 5;
        local.report(event);
        local.report(event);
        assert_eq!(queue.len(), 1);
        let moved = LearnEvent::Mac { vni: 7, mac: MacAddr([2, 0, 0, 0, 0, 1]), at: Location::Port(PortId(2)) };
        local.report(moved);
        assert_eq!(queue.len(), 2, "a move is reported at once");
        local.now = 5 + 10_000;
        local.report(moved);
        assert_eq!(queue.len(), 3, "refreshed after refresh_seconds");
    }

    #[test]
    fn a_full_queue_is_counted_not_blocking() {
        let (mut local, queue) = local(1);
        local.report(LearnEvent::Neighbor { ip: Ipv4Addr::new(10, 0, 0, 1), mac: MacAddr([2, 0, 0, 0, 0, 1]) });
        local.report(LearnEvent::Neighbor { ip: Ipv4Addr::new(10, 0, 0, 2), mac: MacAddr([2, 0, 0, 0, 0, 2]) });
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.lost(), 1);
    }

    #[test]
    fn arp_requests_are_rate_limited_per_target() {
        let (mut local, _) = local(1);
        let target = Ipv4Addr::new(192, 0, 2, 1);
        assert!(local.may_send_arp(target));
        assert!(!local.may_send_arp(target));
        assert!(local.may_send_arp(Ipv4Addr::new(192, 0, 2, 2)));
        local.now = 100;
        assert!(local.may_send_arp(target), "again after 100 ms");
    }
}
