//! The buffer-or-forward stage (docs/migration.md): before the switching unit, packets
//! for a VM that no copy can receive right now are taken out of the burst and
//! held in order; when the VM can receive again they are handed back to the
//! stages after this one (the unit then delivers or relays them), before any
//! newer packet for that VM. At the destination the stage also notices the
//! VM's gratuitous ARP or RARP, the sign that it runs there.
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;
use rustc_hash::FxHashMap;

use super::table::{Handling, Role, VmKey};
use switchyard_pipeline::{Burst, Counter, DropReason, PacketBuf, PortId, Side, Stage, Verdict, BURST_SIZE};
use switchyard_model::{vni_mac_key, Vni};
use switchyard_unit_abi::{Reader, Versioned};
use switchyard_wire::{ethernet, ipv4, vxlan, MacAddr};

/// VMs one worker can hold packets for at once.
pub const MAX_HELD_VMS: usize = 8;
/// Bursts of held packets a worker hands back per run-loop iteration, so a
/// release never keeps it from polling its queues for long.
pub const RELEASE_BURSTS_PER_LOOP: usize = 8;
/// Gratuitous ARP/RARP sightings waiting for the control plane.
const ARRIVAL_QUEUE_LEN: usize = 64;
/// Marks the buffer of a VM's direct frames (`Handling::HoldDirect`) apart
/// from the buffer of its other held frames; (VNI, MAC) keys use 88 bits.
const DIRECT: u128 = 1 << 127;

/// How much one worker holds for one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HoldLimits {
    pub packets: usize,
    pub bytes: usize,
}

/// What the stage knows about one migrating VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldEntry {
    pub handling: Handling,
    pub role: Role,
}

/// One immutable version of what every worker's stage looks up.
#[derive(Debug, Default)]
pub struct HoldTable {
    entries: FxHashMap<u128, (VmKey, HoldEntry)>,
    /// By port id: the network of a VM port (frames from VM ports carry no VNI).
    port_vni: Vec<Option<Vni>>,
    limits: Option<HoldLimits>,
}

impl HoldTable {
    fn new(entries: impl IntoIterator<Item = (VmKey, HoldEntry)>, port_vni: Vec<Option<Vni>>, limits: HoldLimits) -> Self {
        let entries = entries.into_iter().map(|(vm, entry)| (vni_mac_key(vm.vni, vm.mac), (vm, entry))).collect();
        HoldTable { entries, port_vni, limits: Some(limits) }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the stage does with packets for `vm`; `None` if it is not migrating.
    pub fn handling(&self, vm: VmKey) -> Option<Handling> {
        self.get(vni_mac_key(vm.vni, vm.mac)).map(|e| e.handling)
    }

    /// The network of VM port `port`.
    pub fn port_vni(&self, port: PortId) -> Option<Vni> {
        self.port_vni.get(port.index()).copied().flatten()
    }

    fn get(&self, key: u128) -> Option<&HoldEntry> {
        self.entries.get(&key).map(|(_, entry)| entry)
    }
}

/// A VM's gratuitous ARP or RARP seen on a VM port at its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub vm: VmKey,
    pub port: PortId,
}

/// The stage's counters on one worker (single writer).
#[derive(Default, Debug)]
pub struct HoldCounters {
    /// Packets taken into a buffer.
    pub held: Counter,
    /// Packets handed back to the pipeline.
    pub released: Counter,
    /// Packets in this worker's buffers now.
    pub holding: AtomicU64,
    /// The most packets and bytes one VM's buffer held on this worker.
    pub peak_packets: AtomicU64,
    pub peak_bytes: AtomicU64,
}

/// Shared between the control plane and every worker's stage.
pub struct HoldShared {
    pub table: Arc<Versioned<HoldTable>>,
    pub arrivals: ArrayQueue<Arrival>,
    pub limits: HoldLimits,
    /// Frames a source relayed that went through during a `HoldDirect` window
    /// (added once per burst): the control plane ends the window when it stops moving.
    pub relayed: AtomicU64,
}

impl HoldShared {
    pub fn new(limits: HoldLimits) -> Self {
        HoldShared {
            table: Arc::new(Versioned::new(Arc::new(HoldTable::default()))),
            arrivals: ArrayQueue::new(ARRIVAL_QUEUE_LEN),
            limits,
            relayed: AtomicU64::new(0),
        }
    }

    /// Publishes a new version: the migrating VMs and the network of each VM port.
    pub fn publish(&self, entries: impl IntoIterator<Item = (VmKey, HoldEntry)>, port_vni: Vec<Option<Vni>>) {
        self.table.publish_both(Arc::new(HoldTable::new(entries, port_vni, self.limits)));
    }

    /// Frees table versions no worker uses any more.
    pub fn reclaim(&self) {
        self.table.reclaim();
    }
}

/// One VM's held packets on one worker, oldest first, with the port each came in on.
struct Held<P> {
    owner: Option<u128>,
    packets: VecDeque<(P, PortId)>,
    bytes: usize,
    /// The VM's entry says Pass (or is gone): hand the packets back.
    releasing: bool,
}

pub struct MigrationStage<P> {
    shared: Arc<HoldShared>,
    reader: Reader,
    current: Arc<HoldTable>,
    buffers: Vec<Held<P>>,
    side_of_port: Vec<Side>,
    counters: Arc<CachePadded<HoldCounters>>,
    /// Arrivals reported since the table last changed (one report per VM is enough).
    reported: Vec<u128>,
}

impl<P: PacketBuf> MigrationStage<P> {
    /// Each of the `MAX_HELD_VMS` buffers is allocated for the packet limit up
    /// front, so holding never allocates on the worker.
    pub fn new(shared: Arc<HoldShared>, side_of_port: Vec<Side>, counters: Arc<CachePadded<HoldCounters>>) -> Self {
        let capacity = shared.limits.packets;
        let buffers =
            (0..MAX_HELD_VMS).map(|_| Held { owner: None, packets: VecDeque::with_capacity(capacity), bytes: 0, releasing: false }).collect();
        MigrationStage {
            reader: shared.table.reader(),
            current: shared.table.active(Side::Vm),
            shared,
            buffers,
            side_of_port,
            counters,
            reported: Vec::with_capacity(MAX_HELD_VMS),
        }
    }

    fn side(&self, port: PortId) -> Side {
        self.side_of_port.get(port.index()).copied().unwrap_or(Side::Vm)
    }

    /// The buffer a packet for `dst` (`handling`: its VM's entry; `relayed`: it
    /// is the source's relayed stream) joins, if any: its VM is held; or it came
    /// directly while the source still relays; or older packets of the VM are
    /// still being handed back, which it must not overtake (direct ones last).
    fn hold_key(&self, dst: u128, handling: Option<Handling>, relayed: bool) -> Option<u128> {
        let direct = dst | DIRECT;
        let behind: &[u128] = match handling {
            Some(Handling::Hold) => return Some(dst),
            Some(Handling::HoldDirect { .. }) if !relayed => return Some(direct),
            // Relayed while direct ones wait: behind older relayed ones only.
            Some(Handling::HoldDirect { .. }) => &[dst],
            _ => &[direct, dst],
        };
        behind.iter().copied().find(|key| self.buffers.iter().any(|b| b.owner == Some(*key)))
    }

    /// The buffer a packet of `len` bytes for `dst` goes to, if it has room.
    fn buffer_for(&self, dst: u128, len: usize) -> Result<usize, DropReason> {
        let limits = self.current.limits.ok_or(DropReason::MigrationBufferFull)?;
        let index = self
            .buffers
            .iter()
            .position(|b| b.owner == Some(dst))
            .or_else(|| self.buffers.iter().position(|b| b.owner.is_none()))
            .ok_or(DropReason::MigrationBufferFull)?;
        let buffer = &self.buffers[index];
        if buffer.packets.len() >= limits.packets || buffer.bytes + len > limits.bytes {
            return Err(DropReason::MigrationBufferFull);
        }
        Ok(index)
    }

    fn hold(&mut self, index: usize, dst: u128, packet: P, in_port: PortId) {
        let buffer = &mut self.buffers[index];
        buffer.owner = Some(dst);
        buffer.bytes += packet.len();
        buffer.packets.push_back((packet, in_port));
        let counters = &self.counters;
        counters.held.add(1);
        store(&counters.holding, load(&counters.holding) + 1);
        store(&counters.peak_packets, load(&counters.peak_packets).max(buffer.packets.len() as u64));
        store(&counters.peak_bytes, load(&counters.peak_bytes).max(buffer.bytes as u64));
    }

    /// A VM at its destination announcing itself (QEMU sends RARP after a
    /// migration, guests send gratuitous ARP): reported once per table version.
    fn notice_arrival(&mut self, frame: &[u8], vni: Vni, in_port: PortId) {
        if frame.len() < ethernet::HEADER_LEN || !is_announcement(frame) {
            return;
        }
        let src = vni_mac_key(vni, MacAddr::from_bytes(&frame[6..12]));
        let Some((vm, entry)) = self.current.entries.get(&src) else { return };
        if entry.role == Role::Destination
            && entry.handling == Handling::Hold
            && !self.reported.contains(&src)
            && self.shared.arrivals.push(Arrival { vm: *vm, port: in_port }).is_ok()
        {
            self.reported.push(src);
        }
    }
}

// The counters have one writer (this worker): plain loads and stores, no locked add.
fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn store(counter: &AtomicU64, value: u64) {
    counter.store(value, Ordering::Relaxed)
}

/// The (VNI, destination MAC) key of a frame, with the outer source address
/// for VXLAN from the uplink; `None` if it is not a frame this stage can read
/// (the switching unit then drops it with its reason).
fn destination<P: PacketBuf>(packet: &P, side: Side, port_vni: Option<Vni>) -> Option<(u128, Option<Ipv4Addr>)> {
    let frame = packet.data();
    match side {
        Side::Vm => {
            let vni = port_vni.filter(|_| frame.len() >= ethernet::HEADER_LEN)?;
            Some((vni_mac_key(vni, MacAddr::from_bytes(&frame[0..6])), None))
        }
        Side::Uplink => {
            // Outer Ethernet, IPv4, UDP to 4789, VXLAN with the I flag, inner Ethernet.
            let ip = frame.get(ethernet::HEADER_LEN..)?;
            if frame[12..14] != ethernet::ethertype::IPV4.to_be_bytes() || ip.len() < ipv4::MIN_HEADER_LEN {
                return None;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[9] != ipv4::protocol::UDP || ihl < ipv4::MIN_HEADER_LEN {
                return None;
            }
            let udp = ip.get(ihl..)?;
            let vx = udp.get(8..8 + vxlan::HEADER_LEN)?;
            if udp[2..4] != vxlan::UDP_PORT.to_be_bytes() || vx[0] & vxlan::FLAG_I == 0 {
                return None;
            }
            let inner = udp.get(8 + vxlan::HEADER_LEN..8 + vxlan::HEADER_LEN + 6)?;
            let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
            let outer_src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            Some((vni_mac_key(vni, MacAddr::from_bytes(inner)), Some(outer_src)))
        }
    }
}

/// RARP (RFC 903), or a gratuitous ARP: sender and target address equal.
fn is_announcement(frame: &[u8]) -> bool {
    const RARP: [u8; 2] = 0x8035u16.to_be_bytes();
    let ethertype = &frame[12..14];
    if ethertype == RARP {
        return true;
    }
    // Ethernet/IPv4 ARP: sender IP at 28..32, target IP at 38..42.
    ethertype == ethernet::ethertype::ARP.to_be_bytes() && frame.len() >= 42 && frame[28..32] == frame[38..42]
}

impl<P: PacketBuf> Stage<P> for MigrationStage<P> {
    fn name(&self) -> &'static str {
        "migration"
    }

    #[inline]
    fn process(&mut self, burst: &mut Burst<P>) {
        if self.current.is_empty() && self.buffers.iter().all(|b| b.owner.is_none()) {
            return;
        }
        let in_port = burst.in_port();
        let side = self.side(in_port);
        let port_vni = self.current.port_vni.get(in_port.index()).copied().flatten();
        let mut relayed = 0;
        for i in 0..burst.len() {
            let Some((packet, _)) = burst.get_mut(i) else { continue };
            if let (Side::Vm, Some(vni)) = (side, port_vni) {
                self.notice_arrival(packet.data(), vni, in_port);
            }
            let Some((dst, relayed_from)) = destination(packet, side, port_vni) else { continue };
            let handling = self.current.get(dst).map(|e| e.handling);
            let is_relayed = matches!(handling, Some(Handling::HoldDirect { relay }) if relayed_from == Some(relay));
            relayed += u64::from(is_relayed);
            let Some(key) = self.hold_key(dst, handling, is_relayed) else { continue };
            match self.buffer_for(key, packet.len()) {
                Ok(index) => {
                    if let Some(packet) = burst.take(i) {
                        self.hold(index, key, packet, in_port);
                    }
                }
                Err(reason) => {
                    if let Some((_, verdict)) = burst.get_mut(i) {
                        *verdict = Verdict::Drop(reason);
                    }
                }
            }
        }
        if relayed > 0 {
            self.shared.relayed.fetch_add(relayed, Ordering::Relaxed);
        }
    }

    fn quiescent(&mut self, _now: u64) {
        if let Some(generation) = self.reader.moved(&self.shared.table) {
            self.current = self.shared.table.active(Side::Vm);
            self.reader.announce(generation);
            self.reported.clear();
            for buffer in &mut self.buffers {
                if let Some(owner) = buffer.owner {
                    buffer.releasing = match self.current.get(owner & !DIRECT).map(|e| e.handling) {
                        None | Some(Handling::Pass) => true,
                        Some(Handling::Hold) => false,
                        Some(Handling::HoldDirect { .. }) => owner & DIRECT == 0,
                    };
                }
            }
        }
    }

    fn release(&mut self, burst: &mut Burst<P>) -> bool {
        let Some(buffer) = self.buffers.iter_mut().find(|b| b.releasing && !b.packets.is_empty()) else { return false };
        let in_port = buffer.packets.front().map_or(PortId(0), |(_, port)| *port);
        burst.reset(in_port);
        let mut n = 0;
        while n < BURST_SIZE && buffer.packets.front().is_some_and(|(_, port)| *port == in_port) {
            let Some((packet, _)) = buffer.packets.pop_front() else { break };
            buffer.bytes -= packet.len();
            if let Err(packet) = burst.push(packet) {
                buffer.packets.push_front((packet, in_port));
                break;
            }
            n += 1;
        }
        if buffer.packets.is_empty() {
            buffer.owner = None;
            buffer.bytes = 0;
            buffer.releasing = false;
        }
        self.counters.released.add(n as u64);
        store(&self.counters.holding, load(&self.counters.holding).saturating_sub(n as u64));
        true
    }
}
