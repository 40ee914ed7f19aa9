//! Tunnels coming up on demand (on the first packet, or in advance when
//! configured): after the switching unit, frames the unit
//! encapsulated towards a VTEP whose underlay next hop has no MAC yet
//! (`DropReason::NextHopUnresolved`, outer destination MAC zero) are taken out
//! of the burst into a per-VTEP FIFO on this worker, in order, with no copy.
//! When the workers' view of the neighbour table has the MAC the FIFO is handed
//! back (`Stage::release`) with the MAC filled in, before any newer frame to
//! that VTEP; if it does not come within the resolve timeout the FIFO is
//! dropped as `tunnel_unresolved`. The ARP request is repeated meanwhile.
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;
use rustc_hash::FxHashMap;

use super::arp;
use super::tables::Underlay;
use switchyard_pipeline::{Allocator, Burst, Counter, DropReason, PacketBuf, Side, Stage, Verdict};
use switchyard_unit_abi::{Reader, Versioned};
use switchyard_wire::{ethernet, MacAddr};

/// VTEPs one worker can queue frames for at once.
pub const MAX_RESOLVING_TUNNELS: usize = 16;
/// Per-tunnel episode reports waiting for the control plane.
const REPORT_QUEUE_LEN: usize = 256;
/// In-advance ARP requests waiting for a worker to send them.
const ASK_QUEUE_LEN: usize = 256;
/// An ARP request for a queued tunnel is repeated this often (10 per second).
const ARP_RETRY_PER_SECOND: u64 = 10;

/// How a tunnel comes up: on the first frame, or when the configuration names its VTEP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelMode {
    OnDemand,
    InAdvance,
}

/// How much one worker queues for one tunnel coming up, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TunnelLimits {
    pub packets: usize,
    pub bytes: usize,
    pub resolve_timeout_ms: u64,
}

/// The workers' view of the underlay neighbours (next hop -> MAC), one immutable version.
#[derive(Debug, Default)]
pub struct NeighborView {
    pub macs: FxHashMap<Ipv4Addr, MacAddr>,
}

/// What one worker says about a tunnel when its queue ends (never per packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelReport {
    pub vtep: Ipv4Addr,
    pub queued: u64,
    pub released: u64,
    pub dropped: u64,
    /// The queue started (true) or ended; an ended one timed out if `timed_out`.
    pub started: bool,
    pub timed_out: bool,
}

/// The stage's counters on one worker (single writer).
#[derive(Default, Debug)]
pub struct TunnelCounters {
    pub queued: Counter,
    pub released: Counter,
    pub dropped: Counter,
    /// Frames in this worker's queues now.
    pub waiting: AtomicU64,
}

/// Shared between the control plane and every worker's stage.
pub struct TunnelShared {
    pub view: Arc<Versioned<NeighborView>>,
    pub limits: TunnelLimits,
    pub reports: ArrayQueue<TunnelReport>,
    /// Next hops the control plane wants an ARP request sent for (in-advance mode).
    pub asks: ArrayQueue<Ipv4Addr>,
}

impl TunnelShared {
    pub fn new(limits: TunnelLimits) -> Self {
        TunnelShared {
            view: Arc::new(Versioned::new(Arc::new(NeighborView::default()))),
            limits,
            reports: ArrayQueue::new(REPORT_QUEUE_LEN),
            asks: ArrayQueue::new(ASK_QUEUE_LEN),
        }
    }

    /// Publishes the neighbours workers fill queued frames from.
    pub fn publish(&self, macs: FxHashMap<Ipv4Addr, MacAddr>) {
        self.view.publish_both(Arc::new(NeighborView { macs }));
    }

    pub fn reclaim(&self) {
        self.view.reclaim();
    }
}

/// One VTEP's queued frames on one worker, oldest first.
struct TunnelQueue<P> {
    vtep: Option<Ipv4Addr>,
    next_hop: Ipv4Addr,
    packets: VecDeque<P>,
    bytes: usize,
    started: u64,
    last_arp: u64,
    queued: u64,
    released: u64,
    dropped: u64,
}

pub struct TunnelStage<P> {
    shared: Arc<TunnelShared>,
    reader: Reader,
    current: Arc<NeighborView>,
    underlay: Underlay,
    queues: Vec<TunnelQueue<P>>,
    active: usize,
    now: u64,
    timeout_cycles: u64,
    arp_cycles: u64,
    counters: Arc<CachePadded<TunnelCounters>>,
    /// Gives an empty buffer for in-advance ARP requests.
    alloc: Option<Allocator<P>>,
}

impl<P: PacketBuf> TunnelStage<P> {
    /// Every queue is allocated for the packet limit up front: queueing never allocates.
    pub fn new(shared: Arc<TunnelShared>, underlay: Underlay, tsc_hz: u64, counters: Arc<CachePadded<TunnelCounters>>) -> Self {
        let capacity = shared.limits.packets;
        let queues = (0..MAX_RESOLVING_TUNNELS)
            .map(|_| TunnelQueue {
                vtep: None,
                next_hop: Ipv4Addr::UNSPECIFIED,
                packets: VecDeque::with_capacity(capacity),
                bytes: 0,
                started: 0,
                last_arp: 0,
                queued: 0,
                released: 0,
                dropped: 0,
            })
            .collect();
        let timeout_cycles = tsc_hz.saturating_mul(shared.limits.resolve_timeout_ms) / 1000;
        TunnelStage {
            reader: shared.view.reader(),
            current: shared.view.active(Side::Vm),
            shared,
            underlay,
            queues,
            active: 0,
            now: 0,
            timeout_cycles,
            arp_cycles: tsc_hz / ARP_RETRY_PER_SECOND,
            counters,
            alloc: None,
        }
    }

    /// Lets the stage send in-advance ARP requests in buffers from `alloc`.
    pub fn with_allocator(mut self, alloc: Allocator<P>) -> Self {
        self.alloc = Some(alloc);
        self
    }

    fn mac_of(&self, next_hop: Ipv4Addr) -> Option<MacAddr> {
        self.underlay.vtep.next_hop_mac.or_else(|| self.current.macs.get(&next_hop).copied())
    }

    /// Takes a frame (verdict `verdict`) into its VTEP's queue if it waits for
    /// the tunnel or must stay behind frames that do: `Ok(Some(queue))` to take it.
    fn admit(&mut self, packet: &P, verdict: Verdict) -> Result<Option<usize>, DropReason> {
        let waiting = verdict == Verdict::Drop(DropReason::NextHopUnresolved);
        let behind_queue = self.active > 0 && verdict == Verdict::Forward(self.underlay.port);
        if !waiting && !behind_queue {
            return Ok(None);
        }
        let Some(vtep) = vxlan_destination(packet.data()) else { return Ok(None) };
        let existing = self.queues.iter().position(|q| q.vtep == Some(vtep));
        let index = match existing {
            Some(index) => index,
            None if !waiting => return Ok(None),
            None => {
                let next_hop = self.underlay.next_hop(vtep).ok_or(DropReason::NoRouteToVtep)?;
                let index = self.queues.iter().position(|q| q.vtep.is_none()).ok_or(DropReason::TunnelQueueFull)?;
                let queue = &mut self.queues[index];
                (queue.vtep, queue.next_hop, queue.started, queue.last_arp) = (Some(vtep), next_hop, self.now, self.now);
                (queue.queued, queue.released, queue.dropped) = (0, 0, 0);
                self.active += 1;
                let report = TunnelReport { vtep, queued: 0, released: 0, dropped: 0, started: true, timed_out: false };
                let _ = self.shared.reports.push(report);
                index
            }
        };
        let limits = self.shared.limits;
        let queue = &mut self.queues[index];
        if queue.packets.len() >= limits.packets || queue.bytes + packet.len() > limits.bytes {
            queue.dropped += 1;
            return Err(DropReason::TunnelQueueFull);
        }
        Ok(Some(index))
    }

    fn enqueue(&mut self, index: usize, packet: P) {
        let queue = &mut self.queues[index];
        queue.bytes += packet.len();
        queue.packets.push_back(packet);
        queue.queued += 1;
        self.counters.queued.add(1);
    }

    /// Frees queue `index` once empty and reports how its episode went.
    fn finish(&mut self, index: usize, timed_out: bool) {
        let queue = &mut self.queues[index];
        let Some(vtep) = queue.vtep.take() else { return };
        queue.bytes = 0;
        self.active -= 1;
        let report =
            TunnelReport { vtep, queued: queue.queued, released: queue.released, dropped: queue.dropped, started: false, timed_out };
        let _ = self.shared.reports.push(report);
    }

    fn waiting(&self) -> u64 {
        self.queues.iter().map(|q| q.packets.len() as u64).sum()
    }
}

impl<P: PacketBuf> Stage<P> for TunnelStage<P> {
    fn name(&self) -> &'static str {
        "tunnels"
    }

    fn process(&mut self, burst: &mut Burst<P>) {
        // The fast path: no frame waits for a tunnel and none is queued.
        if self.active == 0 && !burst.has_unresolved() {
            return;
        }
        for i in 0..burst.len() {
            let Some((packet, verdict)) = burst.slot_mut(i) else { continue };
            match self.admit(packet, *verdict) {
                Ok(None) => {}
                Ok(Some(index)) => {
                    if let Some(packet) = burst.take(i) {
                        self.enqueue(index, packet);
                    }
                }
                Err(reason) => {
                    *verdict = Verdict::Drop(reason);
                    self.counters.dropped.add(1);
                }
            }
        }
        // Flood copies to VTEPs are made packets.
        let mut i = 0;
        while let Some((packet, verdict)) = burst.made_get_mut(i) {
            match self.admit(packet, *verdict) {
                Ok(Some(index)) => {
                    if let Some(packet) = burst.take_made(i) {
                        self.enqueue(index, packet);
                    }
                    continue;
                }
                Ok(None) => {}
                Err(reason) => {
                    *verdict = Verdict::Drop(reason);
                    self.counters.dropped.add(1);
                }
            }
            i += 1;
        }
        self.counters.waiting.store(self.waiting(), Ordering::Relaxed);
    }

    fn quiescent(&mut self, now: u64) {
        self.now = now;
        if let Some(generation) = self.reader.moved(&self.shared.view) {
            self.current = self.shared.view.active(Side::Vm);
            self.reader.announce(generation);
        }
    }

    fn release(&mut self, burst: &mut Burst<P>) -> bool {
        let port = self.underlay.port;
        if let Some(next_hop) = self.shared.asks.pop() {
            // In advance: the request is made in a new buffer (the control plane asks again
            // if the pool had none).
            if let Some(request) = self.alloc.as_ref().and_then(|alloc| alloc()).and_then(|like| arp::request_from_vtep(&like, &self.underlay, next_hop)) {
                burst.reset(port);
                burst.add_made(request, Verdict::Forward(port));
                return true;
            }
        }
        if self.active == 0 {
            return false;
        }
        for index in 0..self.queues.len() {
            let Some(_) = self.queues[index].vtep else { continue };
            let next_hop = self.queues[index].next_hop;
            let (verdict, timed_out) = match self.mac_of(next_hop) {
                Some(_) => (None, false),
                None if self.now.wrapping_sub(self.queues[index].started) >= self.timeout_cycles => {
                    (Some(Verdict::Drop(DropReason::TunnelUnresolved)), true)
                }
                None if self.now.wrapping_sub(self.queues[index].last_arp) >= self.arp_cycles => {
                    self.queues[index].last_arp = self.now;
                    let like = self.queues[index].packets.front();
                    let Some(request) = like.and_then(|like| arp::request_from_vtep(like, &self.underlay, next_hop)) else { continue };
                    burst.reset(port);
                    burst.add_made(request, Verdict::Forward(port));
                    return true;
                }
                None => continue,
            };
            let mac = self.mac_of(next_hop).unwrap_or(MacAddr::ZERO);
            burst.reset(port);
            let queue = &mut self.queues[index];
            while !burst.is_full() {
                let Some(mut packet) = queue.packets.pop_front() else { break };
                queue.bytes -= packet.len();
                let verdict = verdict.unwrap_or_else(|| {
                    packet.data_mut()[0..6].copy_from_slice(&mac.0);
                    Verdict::Forward(port)
                });
                if verdict == Verdict::Forward(port) {
                    queue.released += 1;
                    self.counters.released.add(1);
                } else {
                    queue.dropped += 1;
                    self.counters.dropped.add(1);
                }
                let _ = burst.push_decided(packet, verdict);
            }
            if queue.packets.is_empty() {
                self.finish(index, timed_out);
            }
            self.counters.waiting.store(self.waiting(), Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// The outer IPv4 destination of a VXLAN frame (UDP to port 4789); `None` otherwise.
fn vxlan_destination(frame: &[u8]) -> Option<Ipv4Addr> {
    if frame.get(12..14)? != ethernet::ethertype::IPV4.to_be_bytes() || *frame.get(23)? != 17 {
        return None;
    }
    let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
    let udp = ethernet::HEADER_LEN + ihl;
    if frame.get(udp + 2..udp + 4)? != 4789u16.to_be_bytes() {
        return None;
    }
    let dst = frame.get(30..34)?;
    Some(Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]))
}

/// Asks again for an unresolved in-advance next hop this often.
const IN_ADVANCE_RETRY: Duration = Duration::from_secs(1);
/// Re-asks for a resolved in-advance next hop this often, well within the
/// neighbour ageing time (300 s by default), so it never ages out unseen.
const IN_ADVANCE_REFRESH: Duration = Duration::from_secs(60);

/// The control side of tunnels: publishes the learned neighbours to the
/// workers' stages, asks for in-advance next hops, and keeps per-VTEP state.
pub struct TunnelControl {
    shared: Arc<TunnelShared>,
    underlay: Option<Underlay>,
    in_advance: bool,
    published: FxHashMap<Ipv4Addr, MacAddr>,
    asked: FxHashMap<Ipv4Addr, Instant>,
    last_scan: Option<Instant>,
    /// Addresses whose next hops are kept resolved in any mode: the storage users' (`keep_resolved`).
    peers: Vec<Ipv4Addr>,
    /// Per VTEP: what the API shows (`GET /v1/tunnels`).
    pub table: TunnelTable,
}

/// Where a tunnel stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelState {
    /// The next hop's MAC is not known yet: a frame or the configuration asked for it.
    #[default]
    Resolving,
    /// The next hop's MAC is known: frames go out at once.
    Up,
    /// A worker's queue waited the whole resolve timeout and dropped its frames;
    /// the next frame tries again.
    Failed,
}

/// One tunnel as the API shows it (`GET /v1/tunnels`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TunnelInfo {
    pub state: TunnelState,
    /// When the tunnel entered `state` (milliseconds since the Unix epoch).
    pub since_ms: u64,
    pub next_hop: Option<Ipv4Addr>,
    pub next_hop_mac: Option<MacAddr>,
    /// Configured (in advance), or brought up by traffic.
    pub in_advance: bool,
    pub packets_queued: u64,
    pub packets_released: u64,
    pub packets_dropped: u64,
    pub timeouts: u64,
    /// The last queue episode timed out and none started since.
    #[serde(skip)]
    timed_out: bool,
}

impl TunnelInfo {
    /// Adds a worker's report of a queue episode (started, or ended).
    pub fn record(&mut self, report: &TunnelReport) {
        self.packets_queued += report.queued;
        self.packets_released += report.released;
        self.packets_dropped += report.dropped;
        self.timeouts += u64::from(report.timed_out);
        self.timed_out = if report.started { false } else { report.timed_out };
    }

    /// Sets the state from what is known now; `since_ms` moves only on a change.
    pub fn settle(&mut self, next_hop_mac: Option<MacAddr>, now_ms: u64) {
        self.next_hop_mac = next_hop_mac;
        let state = match (next_hop_mac, self.timed_out) {
            (Some(_), _) => TunnelState::Up,
            (None, true) => TunnelState::Failed,
            (None, false) => TunnelState::Resolving,
        };
        if state != self.state || self.since_ms == 0 {
            (self.state, self.since_ms) = (state, now_ms);
        }
    }
}

/// Every tunnel this switch has, by remote VTEP.
pub type TunnelTable = Arc<Mutex<BTreeMap<Ipv4Addr, TunnelInfo>>>;

impl TunnelControl {
    pub fn new(shared: Arc<TunnelShared>, underlay: Option<Underlay>, in_advance: bool) -> Self {
        TunnelControl {
            shared,
            underlay,
            in_advance,
            published: FxHashMap::default(),
            asked: FxHashMap::default(),
            last_scan: None,
            peers: Vec::new(),
            table: Arc::default(),
        }
    }

    /// Keeps the next hops of `peers` resolved whatever the mode, as in-advance mode does for VTEPs: asked
    /// for every second until resolved, then every 60 s. The block-I/O service replies only to MACs resolved
    /// for its users' addresses (docs/block-io.md); a change is asked for at the next tick.
    pub fn keep_resolved(&mut self, mut peers: Vec<Ipv4Addr>) {
        peers.sort_unstable();
        peers.dedup();
        if peers != self.peers {
            self.peers = peers;
            self.last_scan = None;
        }
    }

    /// Called every housekeeping interval.
    pub fn tick<P: PacketBuf + 'static>(&mut self, host: &super::UnitHost<P>, now: Instant) {
        let Some(underlay) = &self.underlay else { return };
        let scan = self.last_scan.is_none_or(|at| now.duration_since(at) >= IN_ADVANCE_RETRY);
        // The configured VTEPs (an export of the unit's state) only once a second, in advance only.
        let (neighbors, vteps) = host.neighbors_and_vteps(scan && self.in_advance);
        let macs: FxHashMap<Ipv4Addr, MacAddr> = neighbors.into_iter().collect();
        if macs != self.published {
            self.shared.publish(macs.clone());
            self.published = macs;
        }
        self.shared.reclaim();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(report) = self.shared.reports.pop() {
            table.entry(report.vtep).or_default().record(&report);
        }
        if scan && (self.in_advance || !self.peers.is_empty()) {
            self.last_scan = Some(now);
            let mut next_hops = Vec::new();
            for vtep in vteps {
                let Some(next_hop) = underlay.next_hop(vtep) else { continue };
                table.entry(vtep).or_default().in_advance = true;
                next_hops.push(next_hop);
            }
            next_hops.extend(self.peers.iter().filter_map(|&peer| underlay.next_hop(peer)));
            next_hops.sort_unstable();
            next_hops.dedup();
            for next_hop in next_hops {
                let resolved = underlay.vtep.next_hop_mac.is_some() || self.published.contains_key(&next_hop);
                let every = if resolved { IN_ADVANCE_REFRESH } else { IN_ADVANCE_RETRY };
                if self.asked.get(&next_hop).is_none_or(|at| now.duration_since(*at) >= every) && underlay.vtep.next_hop_mac.is_none() {
                    let _ = self.shared.asks.push(next_hop);
                    self.asked.insert(next_hop, now);
                }
            }
        }
        let now_ms = switchyard_model::unix_ms(SystemTime::now());
        for (vtep, info) in table.iter_mut() {
            info.next_hop = underlay.next_hop(*vtep);
            let mac = underlay.vtep.next_hop_mac.or_else(|| info.next_hop.and_then(|h| self.published.get(&h).copied()));
            info.settle(mac, now_ms);
        }
    }
}
