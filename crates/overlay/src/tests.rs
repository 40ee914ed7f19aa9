//! The vRouter on byte arrays, without EAL.
use std::net::Ipv4Addr;
use std::sync::Arc;


use super::*;
use switchyard_model::VtepConfig;
use switchyard_pipeline::{Burst, BytesPacket, DropReason, PacketBuf, PortId, Stage, Verdict};
use switchyard_model::{ConfigSnapshot, Network, PortNetwork, RemoteEndpoint, VmEndpoint};
use switchyard_unit_abi::{LearnEvent, LearnQueue, Location, Side, SwitchingUnit, WorkerLocal};
use switchyard_wire::{ipv4, udp, vxlan, MacAddr};

const VNI: u32 = 100;
const VM0: PortId = PortId(0);
const VM1: PortId = PortId(1);
const UPLINK: PortId = PortId(2);
const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const FLOOD_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const UPLINK_MAC: MacAddr = MacAddr([2, 0xee, 0, 0, 0, 1]);
const ROUTER_MAC: MacAddr = MacAddr([2, 0xee, 0, 0, 0, 2]);

fn mac(last: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, last])
}

fn underlay(next_hop_mac: Option<MacAddr>) -> Underlay {
    let vtep = VtepConfig { address: LOCAL_VTEP, prefix_len: 24, gateway: None, next_hop_mac, mtu: 1500 };
    Underlay { port: UPLINK, mac: UPLINK_MAC, vtep, gateway_role: None }
}

/// VM ports vm0 (endpoint mac 10 / 10.0.0.10) and vm1 (bound), a remote MAC 20
/// at REMOTE_VTEP, flood list [FLOOD_VTEP].
fn config() -> ConfigSnapshot {
    ConfigSnapshot {
        generation: 1,
        networks: vec![Network { vni: VNI, name: "blue".into(), flood_vteps: vec![FLOOD_VTEP] }],
        endpoints: vec![VmEndpoint { vni: VNI, mac: mac(10), ip: Some(Ipv4Addr::new(10, 0, 0, 10)), port: "vm0".into() }],
        remotes: vec![RemoteEndpoint { vni: VNI, mac: mac(20), ip: Some(Ipv4Addr::new(10, 0, 0, 20)), vtep: REMOTE_VTEP, source: Default::default() }],
        ports: vec![PortNetwork { port: "vm1".into(), vni: VNI }],
        address_migrations: vec![],
        storage: Default::default(),
    }
}

fn vm_ports() -> Vec<VmPort> {
    vec![VmPort { name: "vm0".into(), id: VM0 }, VmPort { name: "vm1".into(), id: VM1 }]
}

fn vrouter(next_hop_mac: Option<MacAddr>) -> VRouter {
    VRouter::new(VRouterTables::build(&config(), &Learned::default(), &vm_ports(), Some(underlay(next_hop_mac))))
}

fn local() -> (WorkerLocal, Arc<LearnQueue>) {
    let queue = Arc::new(LearnQueue::new(64));
    (WorkerLocal::new(queue.clone(), 1_000_000, 10), queue)
}

/// An untagged IPv4/UDP frame of `payload` bytes.
fn udp_frame(dst: MacAddr, src: MacAddr, payload: usize, sport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 28 + payload;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 10, 10, 0, 0, 20]);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&[0x13, 0x88, ((8 + payload) >> 8) as u8, (8 + payload) as u8, 0, 0]);
    f.extend(std::iter::repeat_n(0xab, payload));
    f
}

fn arp_request_frame(sender: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    super::arp::write_request(&mut f, sender, sender_ip, target_ip);
    f
}

/// Runs one burst through `unit` and returns (verdict, bytes) of every packet, received then made.
fn run(unit: &VRouter, side: Side, in_port: PortId, frames: &[Vec<u8>], local: &mut WorkerLocal) -> Vec<(Verdict, Vec<u8>)> {
    let mut burst = Burst::new(in_port);
    for f in frames {
        burst.push(BytesPacket::new(f)).unwrap();
    }
    unit.switch(side, &mut burst, local);
    let mut out = Vec::new();
    burst.drain(|p, v| out.push((v, p.data().to_vec())));
    out
}

/// Wraps `inner` as VXLAN from REMOTE_VTEP to `dst` with `flags` and `vni`.
fn vxlan_frame(inner: &[u8], dst: Ipv4Addr, flags: u8, vni: u32) -> Vec<u8> {
    let mut p = BytesPacket::new(inner);
    let tunnel = Tunnel { vni, src_mac: ROUTER_MAC, dst_mac: UPLINK_MAC, src_ip: REMOTE_VTEP, dst_ip: dst, mtu: 9000 };
    encapsulate(&mut p, &tunnel).unwrap();
    let mut f = p.data().to_vec();
    f[42] = flags;
    f
}

fn assert_outer(frame: &[u8], vni: u32, dst_ip: Ipv4Addr, dst_mac: MacAddr, inner: &[u8]) {
    assert_eq!(&frame[0..6], &dst_mac.0);
    assert_eq!(&frame[6..12], &UPLINK_MAC.0);
    let ip = ipv4::Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(ip.verify_checksum(), "outer IPv4 checksum");
    assert!(ip.dont_frag(), "DF set");
    assert_eq!((ip.src_addr(), ip.dst_addr(), ip.protocol(), ip.ttl()), (LOCAL_VTEP, dst_ip, 17, 64));
    assert_eq!(usize::from(ip.total_len()), frame.len() - 14);
    let datagram = udp::UdpDatagram::new_checked(ip.payload()).unwrap();
    assert_eq!(datagram.dst_port(), 4789);
    assert!(datagram.src_port() >= 49152, "source port in the dynamic range");
    assert_eq!(datagram.checksum(), 0);
    let header = vxlan::VxlanHeader::new_checked(datagram.payload()).unwrap();
    assert!(header.has_vni() && header.reserved_bits_clear());
    assert_eq!(header.vni(), vni);
    assert_eq!(header.payload(), inner);
}

#[test]
fn vm_to_known_local_mac_is_switched_and_its_source_learned() {
    let (mut local, queue) = local();
    let frame = udp_frame(mac(10), mac(11), 20, 1000);
    let out = run(&vrouter(None), Side::Vm, VM1, std::slice::from_ref(&frame), &mut local);
    assert_eq!(out, vec![(Verdict::Forward(VM0), frame)]);
    assert_eq!(queue.pop(), Some(LearnEvent::Mac { vni: VNI, mac: mac(11), at: Location::Port(VM1) }));
}

#[test]
fn vm_to_remote_mac_is_encapsulated_with_a_flow_hashed_source_port() {
    let (mut local, _) = local();
    let unit = vrouter(Some(ROUTER_MAC));
    let a = udp_frame(mac(20), mac(10), 20, 1000);
    let b = udp_frame(mac(20), mac(10), 20, 1001);
    let out = run(&unit, Side::Vm, VM0, &[a.clone(), a.clone(), b.clone()], &mut local);
    for (i, inner) in [&a, &a, &b].into_iter().enumerate() {
        assert_eq!(out[i].0, Verdict::Forward(UPLINK));
        assert_outer(&out[i].1, VNI, REMOTE_VTEP, ROUTER_MAC, inner);
    }
    let sport = |f: &[u8]| u16::from_be_bytes([f[34], f[35]]);
    assert_eq!(sport(&out[0].1), sport(&out[1].1), "one flow, one source port");
    assert_ne!(sport(&out[0].1), sport(&out[2].1), "another flow, (here) another port");
}

#[test]
fn too_big_for_the_uplink_mtu_is_dropped_and_the_largest_fitting_frame_passes() {
    let (mut local, _) = local();
    let unit = vrouter(Some(ROUTER_MAC));
    // The MTU counts the outer IPv4 packet: 20 + 8 + 8 bytes of headers, then
    // the inner frame, so inner frames of up to 1464 bytes fit a 1500 MTU.
    let fits = udp_frame(mac(20), mac(10), 1464 - 42, 1);
    let too_big = udp_frame(mac(20), mac(10), 1465 - 42, 1);
    let out = run(&unit, Side::Vm, VM0, &[fits, too_big.clone()], &mut local);
    assert_eq!(out[0].0, Verdict::Forward(UPLINK));
    assert_eq!(out[0].1.len(), 1464 + 50);
    assert_eq!(out[1].0, Verdict::Drop(DropReason::ExceedsUplinkMtu));
    assert!(out[1].1 == too_big, "dropped unchanged");
}

#[test]
fn an_unresolved_next_hop_drops_and_sends_one_arp_request() {
    let (mut local, _) = local();
    let unit = vrouter(None);
    let frame = udp_frame(mac(20), mac(10), 20, 1);
    let out = run(&unit, Side::Vm, VM0, &[frame.clone(), frame.clone()], &mut local);
    assert_eq!(out[0].0, Verdict::Drop(DropReason::NextHopUnresolved));
    assert_eq!(out[1].0, Verdict::Drop(DropReason::NextHopUnresolved));
    assert_eq!(out.len(), 3, "one request for two packets");
    assert_eq!(out[2].0, Verdict::Forward(UPLINK));
    let request = super::arp::parse(&out[2].1).unwrap();
    assert_eq!((request.sender_mac, request.sender_ip, request.target_ip), (UPLINK_MAC, LOCAL_VTEP, REMOTE_VTEP));
    assert_eq!(&out[2].1[0..6], &MacAddr::BROADCAST.0);
}

#[test]
fn broadcast_from_a_vm_floods_to_other_ports_and_replicates_to_the_flood_list() {
    let (mut local, _) = local();
    let unit = vrouter(Some(ROUTER_MAC));
    let frame = udp_frame(MacAddr::BROADCAST, mac(10), 20, 1);
    let out = run(&unit, Side::Vm, VM0, std::slice::from_ref(&frame), &mut local);
    assert_eq!(out.len(), 2, "vm1 and one VTEP: {out:?}");
    assert_eq!(out[0].0, Verdict::Forward(UPLINK), "the received packet goes to the last target");
    assert_outer(&out[0].1, VNI, FLOOD_VTEP, ROUTER_MAC, &frame);
    assert_eq!(out[1], (Verdict::Forward(VM1), frame.clone()));
    let unknown = udp_frame(mac(99), mac(10), 20, 1);
    assert_eq!(run(&unit, Side::Vm, VM0, &[unknown], &mut local).len(), 2, "unknown unicast floods too");
}

#[test]
fn arp_for_a_known_endpoint_is_answered_locally() {
    let (mut local, _) = local();
    let unit = vrouter(Some(ROUTER_MAC));
    let request = arp_request_frame(mac(11), Ipv4Addr::new(10, 0, 0, 11), Ipv4Addr::new(10, 0, 0, 20));
    let out = run(&unit, Side::Vm, VM1, &[request], &mut local);
    assert_eq!(out.len(), 1, "not flooded");
    assert_eq!(out[0].0, Verdict::Forward(VM1));
    let reply = super::arp::parse(&out[0].1).unwrap();
    assert_eq!((reply.sender_mac, reply.sender_ip), (mac(20), Ipv4Addr::new(10, 0, 0, 20)), "remote endpoints answered too");
    let unknown = arp_request_frame(mac(11), Ipv4Addr::new(10, 0, 0, 11), Ipv4Addr::new(10, 0, 0, 99));
    assert_eq!(run(&unit, Side::Vm, VM1, &[unknown], &mut local).len(), 2, "unknown target: flooded");
    let own = arp_request_frame(mac(10), Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 10));
    assert_eq!(run(&unit, Side::Vm, VM0, &[own], &mut local).len(), 2, "a VM asking for itself is not answered");
}

#[test]
fn vxlan_from_the_uplink_is_decapsulated_learned_and_delivered() {
    let (mut local, queue) = local();
    let unit = vrouter(None);
    let inner = udp_frame(mac(10), mac(30), 20, 1);
    let mut padded = vxlan_frame(&inner, LOCAL_VTEP, vxlan::FLAG_I, VNI);
    padded.extend_from_slice(&[0; 6]);
    let out = run(&unit, Side::Uplink, UPLINK, &[padded], &mut local);
    assert_eq!(out, vec![(Verdict::Forward(VM0), inner.clone())], "outer headers and padding stripped");
    assert_eq!(queue.pop(), Some(LearnEvent::Mac { vni: VNI, mac: mac(30), at: Location::Vtep(REMOTE_VTEP) }));
    let broadcast = udp_frame(MacAddr::BROADCAST, mac(30), 20, 1);
    let out = run(&unit, Side::Uplink, UPLINK, &[vxlan_frame(&broadcast, LOCAL_VTEP, vxlan::FLAG_I, VNI)], &mut local);
    let mut ports: Vec<_> = out.iter().map(|(v, _)| *v).collect();
    ports.sort_by_key(|v| format!("{v:?}"));
    assert_eq!(ports, vec![Verdict::Forward(VM0), Verdict::Forward(VM1)], "flooded to VM ports only (split horizon)");
}

#[test]
fn every_bad_vxlan_packet_has_its_own_drop_reason() {
    let (mut local, _) = local();
    let unit = vrouter(None);
    let inner = udp_frame(mac(10), mac(30), 20, 1);
    let good = vxlan_frame(&inner, LOCAL_VTEP, vxlan::FLAG_I, VNI);
    let mut bad_checksum = good.clone();
    bad_checksum[24] ^= 1;
    let mut fragment = vxlan_frame(&inner, LOCAL_VTEP, vxlan::FLAG_I, VNI);
    fragment[20] = 0x20; // MF set, DF clear
    refill_checksum(&mut fragment);
    let mut not_4789 = good.clone();
    not_4789[36..38].copy_from_slice(&4790u16.to_be_bytes());
    let mut tcp = good.clone();
    tcp[23] = 6;
    refill_checksum(&mut tcp);
    let mut ihl4 = good.clone();
    ihl4[14] = 0x44;
    let to_remote = vxlan_frame(&udp_frame(mac(20), mac(30), 20, 1), LOCAL_VTEP, vxlan::FLAG_I, VNI);
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vxlan_frame(&inner, LOCAL_VTEP, 0, VNI), DropReason::VxlanFlagNotSet),
        (vxlan_frame(&inner, LOCAL_VTEP, vxlan::FLAG_I, 4242), DropReason::UnknownVni),
        (vxlan_frame(&inner, Ipv4Addr::new(192, 0, 2, 9), vxlan::FLAG_I, VNI), DropReason::VxlanWrongDestination),
        (good[..14 + 19].to_vec(), DropReason::MalformedOuterIpv4),
        (ihl4, DropReason::MalformedOuterIpv4),
        (bad_checksum, DropReason::BadOuterIpv4Checksum),
        (fragment, DropReason::OuterFragment),
        (tcp, DropReason::NotVxlan),
        (not_4789, DropReason::NotVxlan),
        (truncate_ip(&good, 14 + 20 + 8 + 4), DropReason::TruncatedVxlan),
        (truncate_ip(&good, 14 + 20 + 8 + 8 + 13), DropReason::TruncatedInnerEthernet),
        (to_remote, DropReason::RemoteToRemote),
        (good[..10].to_vec(), DropReason::TruncatedEthernet),
        (ipv6_frame(), DropReason::UplinkNotOverlay),
    ];
    for (frame, reason) in cases {
        let out = run(&unit, Side::Uplink, UPLINK, &[frame], &mut local);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, Verdict::Drop(reason), "{reason:?}");
    }
}

fn ipv6_frame() -> Vec<u8> {
    let mut f = udp_frame(UPLINK_MAC, ROUTER_MAC, 20, 1);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f
}

/// The frame cut so that the outer IPv4 and UDP lengths end at `len` (consistently).
fn truncate_ip(frame: &[u8], len: usize) -> Vec<u8> {
    let mut f = frame[..len].to_vec();
    let ip_len = (len - 14) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    refill_checksum(&mut f);
    f
}

fn refill_checksum(frame: &mut [u8]) {
    let mut ip = ipv4::Ipv4Packet::new_unchecked(&mut frame[14..34]);
    ip.fill_checksum();
}

#[test]
fn uplink_arp_for_the_vtep_is_answered_and_replies_teach_neighbours() {
    let (mut local, queue) = local();
    let unit = vrouter(None);
    let request = arp_request_frame(ROUTER_MAC, REMOTE_VTEP, LOCAL_VTEP);
    let out = run(&unit, Side::Uplink, UPLINK, &[request], &mut local);
    assert_eq!(out[0].0, Verdict::Forward(UPLINK));
    let reply = super::arp::parse(&out[0].1).unwrap();
    assert_eq!((reply.sender_mac, reply.sender_ip, reply.target_ip), (UPLINK_MAC, LOCAL_VTEP, REMOTE_VTEP));
    assert_eq!(queue.pop(), Some(LearnEvent::Neighbor { ip: REMOTE_VTEP, mac: ROUTER_MAC }));
    let mut their_reply = out[0].1.clone();
    let parsed = super::arp::parse(&their_reply).unwrap();
    super::arp::reply_in_place(&mut their_reply, &parsed, mac(77));
    let out = run(&unit, Side::Uplink, UPLINK, &[their_reply], &mut local);
    assert_eq!(out[0].0, Verdict::Absorbed);
    let other = arp_request_frame(ROUTER_MAC, REMOTE_VTEP, Ipv4Addr::new(192, 0, 2, 77));
    assert_eq!(run(&unit, Side::Uplink, UPLINK, &[other], &mut local)[0].0, Verdict::Drop(DropReason::ArpNotForUs));
    let short = arp_request_frame(ROUTER_MAC, REMOTE_VTEP, LOCAL_VTEP)[..40].to_vec();
    assert_eq!(run(&unit, Side::Uplink, UPLINK, &[short], &mut local)[0].0, Verdict::Drop(DropReason::MalformedArp));
}

#[test]
fn vm_side_drops_have_names() {
    let (mut local, _) = local();
    let unit = vrouter(Some(ROUTER_MAC));
    let cases = [
        (VM0, udp_frame(mac(10), mac(11), 4, 1), DropReason::SamePort),
        (VM0, udp_frame(mac(11), MacAddr([3, 0, 0, 0, 0, 1]), 4, 1), DropReason::InvalidSourceMac),
        (VM0, vec![0; 13], DropReason::TruncatedEthernet),
        (PortId(5), udp_frame(mac(11), mac(12), 4, 1), DropReason::PortNotInNetwork),
    ];
    for (port, frame, reason) in cases {
        let out = run(&unit, Side::Vm, port, &[frame], &mut local);
        assert_eq!(out[0].0, Verdict::Drop(reason), "{reason:?}");
    }
    let no_uplink = VRouter::new(VRouterTables::build(&config(), &Learned::default(), &vm_ports(), None));
    let out = run(&no_uplink, Side::Vm, VM0, &[udp_frame(mac(20), mac(10), 4, 1)], &mut local);
    assert_eq!(out[0].0, Verdict::Drop(DropReason::NoUplink));
}

#[test]
fn learned_entries_reach_the_tables_and_age_out() {
    use std::time::{Duration, Instant};
    let unit = VRouterUnit::new(setup());
    let queue = unit.learn_queue();
    assert!(queue.push(LearnEvent::Mac { vni: VNI, mac: mac(30), at: Location::Vtep(FLOOD_VTEP) }));
    assert!(queue.push(LearnEvent::Neighbor { ip: REMOTE_VTEP, mac: ROUTER_MAC }));
    let start = Instant::now();
    unit.tick(start);
    let tables = unit.current();
    assert_eq!(tables.tables().mac_location(VNI, mac(30)), Some(Location::Vtep(FLOOD_VTEP)));
    assert_eq!(tables.tables().neighbors.get(&REMOTE_VTEP), Some(&ROUTER_MAC));
    assert_eq!(SwitchingUnit::<BytesPacket>::generation(&unit), 1, "learning moves no configuration generation");
    let exported = SwitchingUnit::<BytesPacket>::export(&unit).unwrap();
    assert_eq!(exported.macs.len(), 1);
    assert_eq!(exported.neighbors[0].ip, REMOTE_VTEP);
    unit.tick(start + Duration::from_secs(301));
    assert_eq!(unit.current().tables().mac_location(VNI, mac(30)), None, "aged out");
    assert!(SwitchingUnit::<BytesPacket>::export(&unit).unwrap().neighbors.is_empty());
}

/// The unit's setup for these tests, with nothing learned.
fn setup() -> UnitSetup {
    UnitSetup {
        vm_ports: vm_ports(),
        underlay: Some(underlay(None)),
        ageing_ms: 300_000,
        state: switchyard_unit_abi::UnitState { config: config(), ..Default::default() },
    }
}

#[test]
fn commands_change_the_configuration_in_generation_order() {
    let unit = VRouterUnit::new(setup());
    let apply = |generation, changes| {
        SwitchingUnit::<BytesPacket>::apply(&unit, &switchyard_unit_abi::UnitCommand::Apply { generation, changes })
    };
    let remote = RemoteEndpoint { vni: VNI, mac: mac(40), ip: None, vtep: REMOTE_VTEP, source: Default::default() };
    apply(2, vec![switchyard_model::Change::PutRemote(remote.clone())]).unwrap();
    assert_eq!(unit.current().tables().mac_location(VNI, mac(40)), Some(Location::Vtep(REMOTE_VTEP)));
    let stale = apply(2, vec![]).unwrap_err();
    assert!(stale.contains("generation 2 is not newer"), "{stale}");
    let exported = SwitchingUnit::<BytesPacket>::export(&unit).unwrap();
    assert_eq!(exported.config.generation, 2);
    assert!(exported.config.remotes.contains(&remote));
    let replaced = ConfigSnapshot { generation: 9, ..config() };
    SwitchingUnit::<BytesPacket>::apply(&unit, &switchyard_unit_abi::UnitCommand::Replace(replaced.clone())).unwrap();
    assert_eq!(SwitchingUnit::<BytesPacket>::export(&unit).unwrap().config, replaced);
}

#[test]
fn the_intermediate_unit_forwards_on_the_state_it_was_given_and_refuses_commands() {
    let mut given = UnitSetup { underlay: Some(underlay(Some(ROUTER_MAC))), ..setup() };
    given.state.macs.push(switchyard_unit_abi::LearnedMac { vni: VNI, mac: mac(30), location: Location::Vtep(FLOOD_VTEP), age_ms: 5 });
    let unit = IntermediateUnit::new(given.clone());
    let mut worker = SwitchingUnit::<BytesPacket>::attach(&unit, 1000);
    let mut burst = Burst::new(VM1);
    burst.push(BytesPacket::new(&udp_frame(mac(10), mac(11), 4, 1))).unwrap();
    burst.push(BytesPacket::new(&udp_frame(mac(30), mac(11), 4, 1))).unwrap();
    worker.process(Side::Vm, &mut burst);
    assert_eq!(burst.verdicts()[0], Verdict::Forward(VM0), "configured endpoint");
    assert_eq!(burst.verdicts()[1], Verdict::Forward(UPLINK), "learned by the old unit: tunnelled, not flooded");
    let refused = SwitchingUnit::<BytesPacket>::apply(&unit, &switchyard_unit_abi::UnitCommand::Replace(config())).unwrap_err();
    assert!(refused.contains("paused during an upgrade"), "{refused}");
    assert_eq!(SwitchingUnit::<BytesPacket>::export(&unit).unwrap(), given.state);
}

#[test]
fn a_migrating_vm_is_relayed_between_tunnels_but_never_back() {
    let mut config = config();
    let migrating = |m: u8, vtep| RemoteEndpoint { vni: VNI, mac: mac(m), ip: None, vtep, source: switchyard_model::RemoteSource::Migration };
    config.remotes = vec![migrating(20, REMOTE_VTEP), migrating(40, FLOOD_VTEP)];
    let unit = VRouter::new(VRouterTables::build(&config, &Learned::default(), &vm_ports(), Some(underlay(Some(ROUTER_MAC)))));
    let (mut local, _) = local();
    let inner = udp_frame(mac(40), mac(30), 20, 1);
    let out = run(&unit, Side::Uplink, UPLINK, &[vxlan_frame(&inner, LOCAL_VTEP, vxlan::FLAG_I, VNI)], &mut local);
    assert_eq!(out[0].0, Verdict::Forward(UPLINK));
    assert_outer(&out[0].1, VNI, FLOOD_VTEP, ROUTER_MAC, &inner);
    // mac(20) lives behind REMOTE_VTEP, which sent the frame: relaying it back would loop.
    let back = vxlan_frame(&udp_frame(mac(20), mac(30), 20, 1), LOCAL_VTEP, vxlan::FLAG_I, VNI);
    assert_eq!(run(&unit, Side::Uplink, UPLINK, &[back], &mut local)[0].0, Verdict::Drop(DropReason::RelayLoop));
}

/// A compute node of the gateway's own cloud.
const COMPUTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
/// The VNI the other cloud uses for VNI 100.
const OTHER_CLOUD_VNI: u32 = 200;

/// `config()` on a gateway (VNI 200 mapped to 100), with table 2 holding mac(20)
/// at REMOTE_VTEP (the sender of `vxlan_frame`) and mac(21) (10.0.0.21) at COMPUTE_VTEP.
fn gateway() -> VRouter {
    let mut config = config();
    let remote = RemoteEndpoint { vni: VNI, mac: mac(21), ip: Some(Ipv4Addr::new(10, 0, 0, 21)), vtep: COMPUTE_VTEP, source: Default::default() };
    config.remotes.push(remote);
    let vni_map = vec![switchyard_model::VniMapping { remote_vni: OTHER_CLOUD_VNI, local_vni: VNI }];
    let underlay = Underlay { gateway_role: Some(switchyard_model::GatewayConfig { vni_map }), ..underlay(Some(ROUTER_MAC)) };
    VRouter::new(VRouterTables::build(&config, &Learned::default(), &vm_ports(), Some(underlay)))
}

#[test]
fn a_gateway_re_encapsulates_to_the_compute_node_of_table_2_with_the_local_vni() {
    let (mut local, queue) = local();
    let unit = gateway();
    let inner = udp_frame(mac(21), mac(30), 20, 1);
    let frames = [vxlan_frame(&inner, LOCAL_VTEP, vxlan::FLAG_I, VNI), vxlan_frame(&inner, LOCAL_VTEP, vxlan::FLAG_I, OTHER_CLOUD_VNI)];
    let out = run(&unit, Side::Uplink, UPLINK, &frames, &mut local);
    for (verdict, frame) in &out {
        assert_eq!(*verdict, Verdict::Forward(UPLINK));
        assert_outer(frame, VNI, COMPUTE_VTEP, ROUTER_MAC, &inner);
    }
    assert_eq!(queue.pop(), Some(LearnEvent::Mac { vni: VNI, mac: mac(30), at: Location::Vtep(REMOTE_VTEP) }), "learned in the local VNI");
    let to_port = udp_frame(mac(10), mac(30), 20, 1);
    let out = run(&unit, Side::Uplink, UPLINK, &[vxlan_frame(&to_port, LOCAL_VTEP, vxlan::FLAG_I, OTHER_CLOUD_VNI)], &mut local);
    assert_eq!(out, vec![(Verdict::Forward(VM0), to_port)], "a VM on the gateway itself is delivered");
}

#[test]
fn a_gateway_drops_what_table_2_cannot_place_under_named_reasons() {
    let (mut local, _) = local();
    let unit = gateway();
    // A gateway that learned mac(31) behind FLOOD_VTEP from traffic.
    let learned = VRouterUnit::new(UnitSetup { underlay: gateway().tables().underlay.clone(), ..setup() });
    assert!(learned.learn_queue().push(LearnEvent::Mac { vni: VNI, mac: mac(31), at: Location::Vtep(FLOOD_VTEP) }));
    learned.tick(std::time::Instant::now());
    let wrap = |dst: MacAddr, vni: u32| vxlan_frame(&udp_frame(dst, mac(30), 20, 1), LOCAL_VTEP, vxlan::FLAG_I, vni);
    let cases = [
        (wrap(mac(99), OTHER_CLOUD_VNI), DropReason::GatewayUnknownDestination),
        (wrap(mac(20), VNI), DropReason::RelayLoop),
        (wrap(mac(21), 4242), DropReason::UnknownVni),
        (wrap(MacAddr::BROADCAST, VNI), DropReason::GatewayBroadcast),
        (vxlan_frame(&udp_frame(mac(21), mac(30), 20, 1), LOCAL_VTEP, 0, VNI), DropReason::VxlanFlagNotSet),
    ];
    for (frame, reason) in cases {
        assert_eq!(run(&unit, Side::Uplink, UPLINK, &[frame], &mut local)[0].0, Verdict::Drop(reason), "{reason:?}");
    }
    let out = run(&learned.current(), Side::Uplink, UPLINK, &[wrap(mac(31), VNI)], &mut local);
    assert_eq!(out[0].0, Verdict::Drop(DropReason::GatewayUnknownDestination), "learned, not in table 2");
}

#[test]
fn a_gateway_answers_arp_for_table_2_back_through_the_tunnel_and_floods_nothing() {
    let (mut local, _) = local();
    let unit = gateway();
    let asker = Ipv4Addr::new(10, 0, 0, 30);
    let known = arp_request_frame(mac(30), asker, Ipv4Addr::new(10, 0, 0, 21));
    let unknown = arp_request_frame(mac(30), asker, Ipv4Addr::new(10, 0, 0, 99));
    let frames = [vxlan_frame(&known, LOCAL_VTEP, vxlan::FLAG_I, OTHER_CLOUD_VNI), vxlan_frame(&unknown, LOCAL_VTEP, vxlan::FLAG_I, VNI)];
    let out = run(&unit, Side::Uplink, UPLINK, &frames, &mut local);
    assert_eq!(out.len(), 2, "no copies");
    assert_eq!(out[0].0, Verdict::Forward(UPLINK));
    let mut expected = known.clone();
    super::arp::reply_in_place(&mut expected, &super::arp::parse(&known).unwrap(), mac(21));
    assert_outer(&out[0].1, OTHER_CLOUD_VNI, REMOTE_VTEP, ROUTER_MAC, &expected);
    assert_eq!(out[1].0, Verdict::Drop(DropReason::GatewayBroadcast));
}

// Tunnels on demand (docs/tunnels.md): the tunnel stage after the unit.

const TSC_HZ: u64 = 1_000_000;

fn tunnel_stage(packets: usize, timeout_ms: u64) -> (TunnelStage<BytesPacket>, Arc<TunnelShared>) {
    let shared = Arc::new(TunnelShared::new(TunnelLimits { packets, bytes: 1 << 20, resolve_timeout_ms: timeout_ms }));
    let stage = TunnelStage::new(shared.clone(), underlay(None), TSC_HZ, Arc::default());
    (stage, shared)
}

/// One burst from VM0 through the unit and the tunnel stage: what is left in it.
fn run_with_stage(unit: &VRouter, stage: &mut TunnelStage<BytesPacket>, frames: &[Vec<u8>], local: &mut WorkerLocal) -> Vec<(Verdict, Vec<u8>)> {
    let mut burst = Burst::new(VM0);
    for f in frames {
        burst.push(BytesPacket::new(f)).unwrap();
    }
    unit.switch(Side::Vm, &mut burst, local);
    stage.process(&mut burst);
    let mut out = Vec::new();
    burst.drain(|p, v| out.push((v, p.data().to_vec())));
    out
}

/// Every burst the stage hands back now.
fn released(stage: &mut TunnelStage<BytesPacket>) -> Vec<(Verdict, Vec<u8>)> {
    let (mut burst, mut out) = (Burst::new(VM0), Vec::new());
    while stage.release(&mut burst) {
        burst.drain(|p, v| out.push((v, p.data().to_vec())));
    }
    out
}

fn numbered(n: u16) -> Vec<u8> {
    udp_frame(mac(20), mac(10), 20, 1000 + n)
}

/// The inner UDP source port of an encapsulated `numbered` frame.
fn number_of(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[50 + 34], frame[50 + 35]]) - 1000
}

#[test]
fn first_frames_wait_for_the_tunnel_in_order_and_go_before_newer_ones() {
    let (mut local, _) = local();
    let (mut stage, shared) = tunnel_stage(64, 1000);
    stage.quiescent(1);
    let out = run_with_stage(&vrouter(None), &mut stage, &[numbered(0), numbered(1)], &mut local);
    assert_eq!(out.len(), 1, "both frames queued, only the ARP request left: {out:?}");
    assert!(super::arp::parse(&out[0].1).is_some_and(|a| a.target_ip == REMOTE_VTEP));
    let out = run_with_stage(&vrouter(None), &mut stage, &[numbered(2)], &mut local);
    assert!(out.is_empty(), "queued behind, no second request within 100 ms");
    assert!(released(&mut stage).is_empty(), "nothing to hand back yet");

    // The neighbour is learned: the unit's tables have it before the stage's view does.
    let learned = Learned { neighbors: [(REMOTE_VTEP, (ROUTER_MAC, std::time::Instant::now()))].into(), ..Default::default() };
    let resolved = VRouter::new(VRouterTables::build(&config(), &learned, &vm_ports(), Some(underlay(None))));
    let out = run_with_stage(&resolved, &mut stage, &[numbered(3)], &mut local);
    assert!(out.is_empty(), "a newer frame stays behind the queued ones");
    shared.publish([(REMOTE_VTEP, ROUTER_MAC)].into_iter().collect());
    stage.quiescent(2);
    let out = released(&mut stage);
    assert_eq!(out.iter().map(|(_, f)| number_of(f)).collect::<Vec<_>>(), [0, 1, 2, 3]);
    for (verdict, frame) in &out {
        assert_eq!(*verdict, Verdict::Forward(UPLINK));
        assert_outer(frame, VNI, REMOTE_VTEP, ROUTER_MAC, &frame[50..]);
    }
    let out = run_with_stage(&resolved, &mut stage, &[numbered(4)], &mut local);
    assert_eq!(out[0].0, Verdict::Forward(UPLINK), "the tunnel is up: straight through");
    let reports: Vec<_> = std::iter::from_fn(|| shared.reports.pop()).collect();
    assert_eq!(reports.len(), 2);
    assert!(reports[0].started);
    assert_eq!((reports[1].queued, reports[1].released, reports[1].dropped, reports[1].timed_out), (4, 4, 0, false));
}

#[test]
fn a_full_tunnel_queue_drops_under_its_name() {
    let (mut local, _) = local();
    let (mut stage, _) = tunnel_stage(2, 1000);
    let out = run_with_stage(&vrouter(None), &mut stage, &[numbered(0), numbered(1), numbered(2)], &mut local);
    assert_eq!(out[0].0, Verdict::Drop(DropReason::TunnelQueueFull), "the third frame: {out:?}");
    assert_eq!(out.len(), 2, "and the ARP request");
}

#[test]
fn an_unresolved_tunnel_drops_its_queue_after_the_timeout_and_asks_again_meanwhile() {
    let (mut local, _) = local();
    let (mut stage, shared) = tunnel_stage(64, 500);
    stage.quiescent(1);
    run_with_stage(&vrouter(None), &mut stage, &[numbered(0), numbered(1)], &mut local);
    stage.quiescent(1 + TSC_HZ / 5);
    let out = released(&mut stage);
    assert_eq!(out.len(), 1, "a repeated ARP request after 200 ms");
    assert!(super::arp::parse(&out[0].1).is_some_and(|a| a.target_ip == REMOTE_VTEP));
    stage.quiescent(1 + TSC_HZ);
    let out = released(&mut stage);
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [Verdict::Drop(DropReason::TunnelUnresolved); 2]);
    let last = std::iter::from_fn(|| shared.reports.pop()).last().unwrap();
    assert_eq!((last.queued, last.dropped, last.timed_out), (2, 2, true));
}

#[test]
fn flood_copies_to_an_unresolved_vtep_wait_too() {
    let (mut local, _) = local();
    let (mut stage, _) = tunnel_stage(64, 1000);
    let broadcast = udp_frame(MacAddr::BROADCAST, mac(10), 20, 1);
    let out = run_with_stage(&vrouter(None), &mut stage, &[broadcast], &mut local);
    assert!(out.iter().all(|(v, _)| !matches!(v, Verdict::Drop(_))), "{out:?}");
}

#[test]
fn in_advance_asks_are_sent_without_traffic() {
    let (stage, shared) = tunnel_stage(64, 1000);
    let mut stage = stage.with_allocator(Box::new(|| Some(BytesPacket::new(&[]))));
    shared.asks.push(FLOOD_VTEP).unwrap();
    let out = released(&mut stage);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, Verdict::Forward(UPLINK));
    assert!(super::arp::parse(&out[0].1).is_some_and(|a| a.target_ip == FLOOD_VTEP && a.sender_ip == LOCAL_VTEP));
}

#[test]
fn a_tunnel_is_resolving_then_failed_after_a_timeout_then_up_and_its_since_moves_only_on_a_change() {
    use super::{TunnelInfo, TunnelReport, TunnelState};
    let report = |started, timed_out, queued, dropped| TunnelReport {
        vtep: REMOTE_VTEP, queued, released: 0, dropped, started, timed_out,
    };
    let mut info = TunnelInfo::default();
    info.record(&report(true, false, 0, 0));
    info.settle(None, 1000);
    assert_eq!((info.state, info.since_ms), (TunnelState::Resolving, 1000));
    info.settle(None, 1100);
    assert_eq!(info.since_ms, 1000, "no change, same since");
    info.record(&report(false, true, 3, 3));
    info.settle(None, 2000);
    assert_eq!((info.state, info.since_ms, info.timeouts, info.packets_dropped), (TunnelState::Failed, 2000, 1, 3));
    // The next frame starts a new episode: resolving again, then the reply comes.
    info.record(&report(true, false, 0, 0));
    info.settle(None, 3000);
    assert_eq!(info.state, TunnelState::Resolving);
    info.settle(Some(mac(9)), 3050);
    assert_eq!((info.state, info.since_ms, info.next_hop_mac), (TunnelState::Up, 3050, Some(mac(9))));
    info.record(&report(false, false, 2, 0));
    info.settle(Some(mac(9)), 4000);
    assert_eq!((info.state, info.since_ms, info.packets_queued, info.timeouts), (TunnelState::Up, 3050, 5, 1));
}

#[test]
fn a_unit_setup_with_a_vtep_prefix_over_32_is_refused_by_name() {
    // Found by the unit_config fuzz target (fuzz/regressions/unit_config/vtep-prefix-39): it panicked in on_link.
    let vtep = |len: u8| format!(r#"{{"address": "192.0.2.1", "prefix_len": {len}, "gateway": null, "next_hop_mac": null, "mtu": 1500}}"#);
    let blob = |len: u8| {
        let underlay = format!(r#"{{"port": 2, "mac": "02:ee:00:00:00:01", "vtep": {}, "gateway_role": null}}"#, vtep(len));
        format!(r#"{{"vm_ports": [], "underlay": {underlay}, "ageing_ms": 1000, "state": {{"config": {{"generation": 1, "networks": [], "endpoints": [], "remotes": [], "ports": []}}, "macs": [], "neighbors": []}}}}"#)
    };
    assert!(matches!(UnitSetup::decode(blob(39).as_bytes()), Err(UnitSetupError::VtepPrefixTooLong(39))));
    assert!(UnitSetup::decode(blob(32).as_bytes()).is_ok());
    assert!(matches!(UnitSetup::decode(b"{"), Err(UnitSetupError::Unreadable(_))));
}

/// The storage users' addresses are kept resolved in on-demand mode too: asked for as soon as they are named,
/// again every second while unresolved, and never with a configured next-hop MAC.
#[test]
fn storage_peers_are_asked_for_without_traffic_in_any_mode() {
    use std::time::{Duration, Instant};
    let setup = |next_hop_mac| UnitSetup { vm_ports: Vec::new(), underlay: Some(underlay(next_hop_mac)), ageing_ms: 300_000, state: Default::default() };
    let host = UnitHost::<BytesPacket>::new(setup(None));
    let shared = Arc::new(TunnelShared::new(TunnelLimits { packets: 4, bytes: 1 << 16, resolve_timeout_ms: 1000 }));
    let mut control = TunnelControl::new(shared.clone(), Some(underlay(None)), false);
    let asks = || std::iter::from_fn(|| shared.asks.pop()).collect::<Vec<Ipv4Addr>>();
    let start = Instant::now();
    control.tick(&host, start);
    assert_eq!(asks(), Vec::<Ipv4Addr>::new(), "no storage users, on demand: nothing asked");
    control.keep_resolved(vec![FLOOD_VTEP, REMOTE_VTEP, FLOOD_VTEP]);
    control.tick(&host, start + Duration::from_millis(10));
    assert_eq!(asks(), [REMOTE_VTEP, FLOOD_VTEP]);
    control.tick(&host, start + Duration::from_millis(500));
    assert_eq!(asks(), Vec::<Ipv4Addr>::new());
    control.tick(&host, start + Duration::from_millis(1100));
    assert_eq!(asks(), [REMOTE_VTEP, FLOOD_VTEP], "again while unresolved");
    assert!(control.table.lock().unwrap().is_empty(), "storage peers are no tunnels");

    let host = UnitHost::<BytesPacket>::new(setup(Some(ROUTER_MAC)));
    let mut control = TunnelControl::new(shared.clone(), Some(underlay(Some(ROUTER_MAC))), false);
    control.keep_resolved(vec![REMOTE_VTEP]);
    control.tick(&host, start);
    assert_eq!(asks(), Vec::<Ipv4Addr>::new(), "a configured next-hop MAC is never asked for");
}

/// VXLAN to the local VTEP from `src` with outer TTL `ttl` (checksum refilled).
fn vxlan_frame_from(inner: &[u8], src: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let mut f = vxlan_frame(inner, LOCAL_VTEP, vxlan::FLAG_I, VNI);
    f[14 + 8] = ttl;
    f[26..30].copy_from_slice(&src.octets());
    refill_checksum(&mut f);
    f
}

#[test]
fn martian_outer_sources_and_ttl_zero_are_dropped_and_never_learned() {
    let (mut local, queue) = local();
    let unit = vrouter(None);
    let inner = udp_frame(mac(10), mac(30), 20, 1);
    let martians = [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 9, 9, 9),
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(239, 255, 255, 250),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(240, 0, 0, 1),
        Ipv4Addr::new(254, 1, 2, 3),
        LOCAL_VTEP,
    ];
    for source in martians {
        let out = run(&unit, Side::Uplink, UPLINK, &[vxlan_frame_from(&inner, source, 64)], &mut local);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, Verdict::Drop(DropReason::MartianOuterSource), "from {source}");
    }
    let out = run(&unit, Side::Uplink, UPLINK, &[vxlan_frame_from(&inner, REMOTE_VTEP, 0)], &mut local);
    assert_eq!(out[0].0, Verdict::Drop(DropReason::OuterTtlZero));
    assert_eq!(queue.pop(), None, "nothing learned from a martian");
    // The same frame from a real VTEP with TTL 1 is still taken and learned.
    let out = run(&unit, Side::Uplink, UPLINK, &[vxlan_frame_from(&inner, REMOTE_VTEP, 1)], &mut local);
    assert_eq!(out[0].0, Verdict::Forward(VM0));
    assert_eq!(queue.pop(), Some(LearnEvent::Mac { vni: VNI, mac: mac(30), at: Location::Vtep(REMOTE_VTEP) }));
}

#[test]
fn decapsulate_leaves_a_martian_frame_unchanged() {
    let inner = udp_frame(mac(10), mac(30), 20, 1);
    let frame = vxlan_frame_from(&inner, Ipv4Addr::new(127, 0, 0, 1), 64);
    let mut packet = BytesPacket::new(&frame);
    assert_eq!(decapsulate(&mut packet, LOCAL_VTEP), Err(DropReason::MartianOuterSource));
    assert_eq!(packet.data(), &frame[..]);
}

#[test]
fn uplink_arp_from_a_martian_sender_teaches_no_neighbour() {
    let (mut local, queue) = local();
    let unit = vrouter(None);
    let request = arp_request_frame(ROUTER_MAC, Ipv4Addr::new(127, 0, 0, 1), LOCAL_VTEP);
    run(&unit, Side::Uplink, UPLINK, &[request], &mut local);
    assert_eq!(queue.pop(), None);
}
