//! The buffer-or-forward stage on byte vectors (no EAL).
use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam::utils::CachePadded;

use super::*;
use switchyard_overlay::{encapsulate, Tunnel};
use switchyard_pipeline::{Burst, BytesPacket, DropReason, PacketBuf, PortId, Side, Stage, Verdict};
use switchyard_wire::MacAddr;

const VNI: u32 = 100;
const VM_PORT: PortId = PortId(0);
const OTHER_VM_PORT: PortId = PortId(1);
const UPLINK: PortId = PortId(2);
const X: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const Y: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
const SENDER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0c]);

fn vm(mac: MacAddr) -> VmKey {
    VmKey { vni: VNI, mac }
}

/// An Ethernet frame to `dst` whose last byte is `seq`.
fn frame(dst: MacAddr, seq: u8) -> BytesPacket {
    let mut bytes = vec![0u8; 60];
    bytes[0..6].copy_from_slice(&dst.0);
    bytes[6..12].copy_from_slice(&SENDER.0);
    bytes[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    bytes[59] = seq;
    BytesPacket::new(&bytes)
}

/// The VTEP that relays in these tests (the migration's source).
const RELAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

fn vxlan(dst: MacAddr, seq: u8) -> BytesPacket {
    vxlan_from(RELAY, dst, seq)
}

fn vxlan_from(src_ip: Ipv4Addr, dst: MacAddr, seq: u8) -> BytesPacket {
    let mut packet = frame(dst, seq);
    let tunnel = Tunnel {
        vni: VNI,
        src_mac: MacAddr([2, 0, 0, 0, 1, 1]),
        dst_mac: MacAddr([2, 0, 0, 0, 1, 2]),
        src_ip,
        dst_ip: Ipv4Addr::new(192, 0, 2, 1),
        mtu: 1500,
    };
    encapsulate(&mut packet, &tunnel).unwrap();
    packet
}

fn last_byte(packet: &BytesPacket) -> u8 {
    packet.data()[packet.len() - 1]
}

struct Rig {
    shared: Arc<HoldShared>,
    stage: MigrationStage<BytesPacket>,
    counters: Arc<CachePadded<HoldCounters>>,
}

impl Rig {
    fn new(limits: HoldLimits) -> Self {
        let shared = Arc::new(HoldShared::new(limits));
        let counters = Arc::new(CachePadded::new(HoldCounters::default()));
        let stage = MigrationStage::new(shared.clone(), vec![Side::Vm, Side::Vm, Side::Uplink], counters.clone());
        Rig { shared, stage, counters }
    }

    /// Publishes `entries` and lets the stage pass a quiescent point.
    fn table(&mut self, entries: &[(MacAddr, Handling, Role)]) {
        let entries = entries.iter().map(|&(mac, handling, role)| (vm(mac), HoldEntry { handling, role }));
        self.shared.publish(entries, vec![Some(VNI), Some(VNI), None]);
        self.stage.quiescent(0);
    }

    /// Runs one burst from `port`; returns the verdicts.
    fn receive(&mut self, port: PortId, packets: Vec<BytesPacket>) -> Vec<Verdict> {
        let mut burst = Burst::new(port);
        for p in packets {
            burst.push(p).unwrap();
        }
        self.stage.process(&mut burst);
        let verdicts = burst.verdicts().to_vec();
        burst.drain(|_, _| {});
        verdicts
    }

    /// Every released burst as (input port, sequence bytes).
    fn release_all(&mut self) -> Vec<(PortId, Vec<u8>)> {
        let mut out = Vec::new();
        let mut burst = Burst::new(PortId(9));
        while self.stage.release(&mut burst) {
            let mut seqs = Vec::new();
            let port = burst.in_port();
            burst.drain(|p, _| seqs.push(last_byte(&p)));
            if !seqs.is_empty() {
                out.push((port, seqs));
            }
        }
        out
    }
}

const ROOMY: HoldLimits = HoldLimits { packets: 64, bytes: 64 * 1024 };

#[test]
fn an_empty_table_touches_nothing() {
    let mut rig = Rig::new(ROOMY);
    assert_eq!(rig.receive(VM_PORT, vec![frame(X, 1), frame(Y, 2)]), [Verdict::Pending; 2]);
    assert!(rig.release_all().is_empty());
}

#[test]
fn packets_for_a_held_vm_are_taken_from_both_sides_and_others_pass() {
    let mut rig = Rig::new(ROOMY);
    rig.table(&[(X, Handling::Hold, Role::Source)]);
    let verdicts = rig.receive(OTHER_VM_PORT, vec![frame(X, 1), frame(Y, 2), frame(X, 3)]);
    assert_eq!(verdicts, [Verdict::Consumed, Verdict::Pending, Verdict::Consumed]);
    let verdicts = rig.receive(UPLINK, vec![vxlan(X, 4), vxlan(Y, 5)]);
    assert_eq!(verdicts, [Verdict::Consumed, Verdict::Pending]);
    assert_eq!(rig.counters.held.get(), 3);
    assert!(rig.release_all().is_empty(), "nothing is released while the VM is held");
}

#[test]
fn held_packets_are_released_in_order_before_newer_ones() {
    let mut rig = Rig::new(ROOMY);
    rig.table(&[(X, Handling::Hold, Role::Source)]);
    rig.receive(OTHER_VM_PORT, vec![frame(X, 1), frame(X, 2)]);
    rig.receive(UPLINK, vec![vxlan(X, 3)]);
    rig.receive(OTHER_VM_PORT, vec![frame(X, 4)]);
    rig.table(&[(X, Handling::Pass, Role::Source)]);
    // Packets that arrive before the buffer is empty queue behind it.
    assert_eq!(rig.receive(UPLINK, vec![vxlan(X, 5), vxlan(Y, 6)]), [Verdict::Consumed, Verdict::Pending]);
    let released = rig.release_all();
    assert_eq!(released, vec![(OTHER_VM_PORT, vec![1, 2]), (UPLINK, vec![3]), (OTHER_VM_PORT, vec![4]), (UPLINK, vec![5])]);
    assert_eq!(rig.counters.released.get(), 5);
    assert_eq!(rig.counters.peak_packets.load(std::sync::atomic::Ordering::Relaxed), 5);
    // Once empty, the VM's packets pass straight through.
    assert_eq!(rig.receive(OTHER_VM_PORT, vec![frame(X, 7)]), [Verdict::Pending]);
}

#[test]
fn direct_frames_wait_behind_the_relayed_stream_at_the_destination() {
    let mut rig = Rig::new(ROOMY);
    let direct_vtep = Ipv4Addr::new(192, 0, 2, 9);
    rig.table(&[(X, Handling::Hold, Role::Destination)]);
    rig.receive(UPLINK, vec![vxlan(X, 1)]);
    // The VM runs here: relayed frames go on (behind the older held one), direct ones wait.
    rig.table(&[(X, Handling::HoldDirect { relay: RELAY }, Role::Destination)]);
    let verdicts = rig.receive(UPLINK, vec![vxlan(X, 2), vxlan_from(direct_vtep, X, 3), vxlan_from(direct_vtep, Y, 4)]);
    assert_eq!(verdicts, [Verdict::Consumed, Verdict::Consumed, Verdict::Pending]);
    assert_eq!(rig.receive(OTHER_VM_PORT, vec![frame(X, 5)]), [Verdict::Consumed], "a local sender is direct too");
    assert_eq!(rig.release_all(), vec![(UPLINK, vec![1, 2])], "the relayed stream goes on");
    assert_eq!(rig.receive(UPLINK, vec![vxlan(X, 6)]), [Verdict::Pending], "and passes once nothing older waits");
    assert_eq!(rig.shared.relayed.load(std::sync::atomic::Ordering::Relaxed), 2, "relayed frames 2 and 6 are counted");
    // The stream ended: the direct frames go, and newer ones queue behind them.
    rig.table(&[(X, Handling::Pass, Role::Destination)]);
    assert_eq!(rig.receive(UPLINK, vec![vxlan_from(direct_vtep, X, 7)]), [Verdict::Consumed]);
    assert_eq!(rig.release_all(), vec![(UPLINK, vec![3]), (OTHER_VM_PORT, vec![5]), (UPLINK, vec![7])]);
    assert_eq!(rig.receive(UPLINK, vec![vxlan_from(direct_vtep, X, 8)]), [Verdict::Pending]);
}

#[test]
fn a_release_comes_in_bursts_and_a_removed_entry_releases_too() {
    let mut rig = Rig::new(ROOMY);
    rig.table(&[(X, Handling::Hold, Role::Destination)]);
    for chunk in 0..2u8 {
        rig.receive(UPLINK, (0..30).map(|i| vxlan(X, chunk * 30 + i)).collect());
    }
    rig.table(&[]);
    let released = rig.release_all();
    assert_eq!(released.iter().map(|(_, s)| s.len()).collect::<Vec<_>>(), [32, 28]);
    assert_eq!(released.iter().flat_map(|(_, s)| s.clone()).collect::<Vec<_>>(), (0..60).collect::<Vec<_>>());
}

#[test]
fn a_full_buffer_drops_under_a_named_reason() {
    let mut rig = Rig::new(HoldLimits { packets: 2, bytes: 64 * 1024 });
    rig.table(&[(X, Handling::Hold, Role::Source)]);
    let verdicts = rig.receive(VM_PORT, vec![frame(X, 1), frame(X, 2), frame(X, 3)]);
    assert_eq!(verdicts, [Verdict::Consumed, Verdict::Consumed, Verdict::Drop(DropReason::MigrationBufferFull)]);
    // Bytes count too: two 60-byte frames fit in 150 bytes, a third does not.
    let mut rig = Rig::new(HoldLimits { packets: 100, bytes: 150 });
    rig.table(&[(X, Handling::Hold, Role::Source)]);
    let verdicts = rig.receive(VM_PORT, vec![frame(X, 1), frame(X, 2), frame(X, 3)]);
    assert_eq!(verdicts[2], Verdict::Drop(DropReason::MigrationBufferFull));
    assert_eq!(rig.release_all(), vec![]);
    rig.table(&[(X, Handling::Pass, Role::Source)]);
    assert_eq!(rig.release_all(), vec![(VM_PORT, vec![1, 2])], "what was held is all released");
}

#[test]
fn a_worker_holds_for_at_most_max_held_vms() {
    let mut rig = Rig::new(ROOMY);
    let macs: Vec<MacAddr> = (0..=MAX_HELD_VMS as u8).map(|i| MacAddr([2, 0, 0, 0, 9, i])).collect();
    let entries: Vec<_> = macs.iter().map(|&m| (m, Handling::Hold, Role::Source)).collect();
    rig.table(&entries);
    let verdicts = rig.receive(VM_PORT, macs.iter().map(|&m| frame(m, 0)).collect());
    assert_eq!(verdicts[..MAX_HELD_VMS], [Verdict::Consumed; MAX_HELD_VMS]);
    assert_eq!(verdicts[MAX_HELD_VMS], Verdict::Drop(DropReason::MigrationBufferFull));
}

fn announcement(ethertype: u16, sender_ip: [u8; 4], target_ip: [u8; 4]) -> BytesPacket {
    let mut bytes = vec![0u8; 60];
    bytes[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    bytes[6..12].copy_from_slice(&X.0);
    bytes[12..14].copy_from_slice(&ethertype.to_be_bytes());
    bytes[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    bytes[22..28].copy_from_slice(&X.0);
    bytes[28..32].copy_from_slice(&sender_ip);
    bytes[38..42].copy_from_slice(&target_ip);
    BytesPacket::new(&bytes)
}

#[test]
fn the_destination_notices_the_vm_announce_itself_once() {
    let mut rig = Rig::new(ROOMY);
    rig.table(&[(X, Handling::Hold, Role::Destination)]);
    let request = announcement(0x0806, [10, 0, 0, 10], [10, 0, 0, 1]);
    rig.receive(VM_PORT, vec![request]);
    assert!(rig.shared.arrivals.pop().is_none(), "an ordinary ARP request is no announcement");
    let rarp = announcement(0x8035, [0; 4], [0; 4]);
    let garp = announcement(0x0806, [10, 0, 0, 10], [10, 0, 0, 10]);
    let verdicts = rig.receive(OTHER_VM_PORT, vec![rarp.clone(), garp.clone()]);
    assert_eq!(verdicts, [Verdict::Pending; 2], "announcements are broadcast, not held");
    assert_eq!(rig.shared.arrivals.pop(), Some(Arrival { vm: vm(X), port: OTHER_VM_PORT }));
    assert!(rig.shared.arrivals.pop().is_none(), "reported once");
    // Not at the source, and not once the VM runs here.
    for (handling, role) in [(Handling::Hold, Role::Source), (Handling::Pass, Role::Destination)] {
        rig.table(&[(X, handling, role)]);
        rig.receive(VM_PORT, vec![garp.clone()]);
        assert!(rig.shared.arrivals.pop().is_none(), "{handling:?} {role:?}");
    }
}

#[test]
fn frames_the_stage_cannot_read_pass_to_the_unit() {
    let mut rig = Rig::new(ROOMY);
    rig.table(&[(X, Handling::Hold, Role::Source)]);
    let runt = BytesPacket::new(&X.0);
    let mut not_vxlan = vxlan(X, 1);
    not_vxlan.data_mut()[36..38].copy_from_slice(&4790u16.to_be_bytes());
    let mut truncated = vxlan(X, 2);
    let len = truncated.len();
    truncated.trim(len - 55);
    assert_eq!(rig.receive(UPLINK, vec![runt.clone(), not_vxlan, truncated]), [Verdict::Pending; 3]);
    assert_eq!(rig.receive(VM_PORT, vec![runt]), [Verdict::Pending]);
}
