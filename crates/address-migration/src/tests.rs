//! Layer 1 for the address rewrite: frames built from scratch with the old
//! addresses, rewritten, must equal the same frames built from scratch with the
//! new ones (every checksum recomputed in full), for every rewrite rule (docs/address-migration.md);
//! malformed input gets its named reason; the stages on bursts of byte
//! vectors, reports included; the workers' judgement agrees with the control
//! plane's.
use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam::utils::CachePadded;

use super::*;
use switchyard_pipeline::{Burst, BytesPacket, DropReason, PacketBuf, PortId, Stage, Verdict};
use switchyard_model::rules::judge_report;
use switchyard_model::{AddressMigration, ConfigSnapshot, AddressMigrationSource, Network, PortNetwork, VmEndpoint};
use switchyard_wire::address_report::{kind, REPORT_ADDRESS, REPORT_PORT};
use switchyard_wire::checksum::{checksum, Checksum};
use switchyard_wire::test_util::{fuzz, XorShift};
use switchyard_wire::{AddressReport, Ipv4Packet, MacAddr, ReportStatus, UdpDatagram};

const PRIMARY: [u8; 4] = [10, 1, 0, 5];
const POST: [u8; 4] = [10, 2, 0, 5];
const PEER: [u8; 4] = [10, 1, 0, 1];
const VM_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

fn map(from: [u8; 4], to: [u8; 4]) -> AddressMap {
    let mut map = AddressMap::default();
    map.insert(Ipv4Addr::from(from), Ipv4Addr::from(to));
    map
}

/// The rewrite maps of a VM whose primary IP is PRIMARY and which lives at POST.
fn to_vm() -> AddressMap {
    map(PRIMARY, POST)
}
fn from_vm() -> AddressMap {
    map(POST, PRIMARY)
}

fn l4_checksum(src: [u8; 4], dst: [u8; 4], protocol: u8, segment: &[u8]) -> u16 {
    let mut c = Checksum::new();
    c.add_pseudo_header_ipv4(src.into(), dst.into(), protocol, segment.len() as u16);
    c.add_bytes(segment);
    c.finish()
}

fn udp(src: [u8; 4], dst: [u8; 4], payload: &[u8], with_checksum: bool) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut d = vec![0x30, 0x39, 0x13, 0x88, (len >> 8) as u8, len as u8, 0, 0];
    d.extend_from_slice(payload);
    if with_checksum {
        let c = match l4_checksum(src, dst, UDP, &d) {
            0 => 0xffff,
            c => c,
        };
        d[6..8].copy_from_slice(&c.to_be_bytes());
    }
    d
}

fn tcp(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
    s.extend_from_slice(payload);
    let c = l4_checksum(src, dst, TCP, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

fn icmp(msg_type: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut m = vec![msg_type, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(payload);
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An IPv4 packet with a correct header checksum; `flags_offset` is the raw field.
fn ipv4_packet(src: [u8; 4], dst: [u8; 4], protocol: u8, flags_offset: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total = header_len + payload.len();
    let mut ip = vec![0x40 | (header_len / 4) as u8, 0, (total >> 8) as u8, total as u8, 0x12, 0x34];
    ip.extend_from_slice(&flags_offset.to_be_bytes());
    ip.extend_from_slice(&[64, protocol, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(options);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(payload);
    ip
}

fn ethernet(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = [dst.0, src.0].concat();
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn frame(src: [u8; 4], dst: [u8; 4], protocol: u8, l4: &[u8]) -> Vec<u8> {
    ethernet(VM_MAC, PEER_MAC, 0x0800, &ipv4_packet(src, dst, protocol, 0x4000, &[], l4))
}

fn rewritten(mut frame: Vec<u8>, direction: Direction, map: &AddressMap) -> (Vec<u8>, Result<Rewritten, DropReason>) {
    let result = rewrite_frame(&mut frame, direction, map);
    (frame, result)
}

const DONE: Result<Rewritten, DropReason> = Ok(Rewritten::Address { icmp_error: false });
const DONE_ICMP: Result<Rewritten, DropReason> = Ok(Rewritten::Address { icmp_error: true });

#[test]
fn network_to_vm_rewrites_the_destination_with_every_checksum() {
    let payload = b"0123456789abcdefX";
    for (protocol, old_l4, new_l4) in [
        (UDP, udp(PEER, PRIMARY, payload, true), udp(PEER, POST, payload, true)),
        (TCP, tcp(PEER, PRIMARY, payload), tcp(PEER, POST, payload)),
        (ICMP, icmp(8, 0, [0, 1, 0, 7], payload), icmp(8, 0, [0, 1, 0, 7], payload)),
    ] {
        let (got, result) = rewritten(frame(PEER, PRIMARY, protocol, &old_l4), Direction::ToVm, &to_vm());
        assert_eq!(result, DONE, "protocol {protocol}");
        assert_eq!(got, frame(PEER, POST, protocol, &new_l4), "protocol {protocol}: as if built with the new address");
    }
}

#[test]
fn vm_to_network_rewrites_the_source_with_every_checksum() {
    let payload = b"reply";
    for (protocol, old_l4, new_l4) in [
        (UDP, udp(POST, PEER, payload, true), udp(PRIMARY, PEER, payload, true)),
        (TCP, tcp(POST, PEER, payload), tcp(PRIMARY, PEER, payload)),
        (ICMP, icmp(0, 0, [0, 1, 0, 7], payload), icmp(0, 0, [0, 1, 0, 7], payload)),
    ] {
        let (got, result) = rewritten(frame(POST, PEER, protocol, &old_l4), Direction::FromVm, &from_vm());
        assert_eq!(result, DONE);
        assert_eq!(got, frame(PRIMARY, PEER, protocol, &new_l4), "protocol {protocol}");
    }
}

#[test]
fn each_direction_looks_only_at_its_own_address() {
    // A packet *from* the primary IP into the VM, or *to* the post-migration IP
    // out of it, is none of the rewrite's business.
    for (packet, direction, map) in [
        (frame(PRIMARY, PEER, UDP, &udp(PRIMARY, PEER, b"x", true)), Direction::ToVm, to_vm()),
        (frame(PEER, POST, UDP, &udp(PEER, POST, b"x", true)), Direction::FromVm, from_vm()),
        (frame(PEER, [10, 9, 9, 9], UDP, &udp(PEER, [10, 9, 9, 9], b"x", true)), Direction::ToVm, to_vm()),
    ] {
        let (got, result) = rewritten(packet.clone(), direction, &map);
        assert_eq!(result, Ok(Rewritten::Unchanged));
        assert_eq!(got, packet);
    }
}

#[test]
fn a_zero_udp_checksum_stays_zero_and_a_computed_zero_is_sent_as_ffff() {
    let (got, result) = rewritten(frame(PEER, PRIMARY, UDP, &udp(PEER, PRIMARY, b"none", false)), Direction::ToVm, &to_vm());
    assert_eq!(result, DONE);
    assert_eq!(got, frame(PEER, POST, UDP, &udp(PEER, POST, b"none", false)));
    assert_eq!(&got[14 + 20 + 6..14 + 20 + 8], &[0, 0]);

    // A payload word chosen so that, with the new address, the checksum computes
    // to 0: RFC 768 sends that as 0xFFFF.
    let mut payload = vec![0u8; 6];
    let c = l4_checksum(PEER, POST, UDP, &udp(PEER, POST, &payload, false));
    payload[4..6].copy_from_slice(&c.to_be_bytes());
    assert_eq!(l4_checksum(PEER, POST, UDP, &udp(PEER, POST, &payload, false)), 0);
    let (got, _) = rewritten(frame(PEER, PRIMARY, UDP, &udp(PEER, PRIMARY, &payload, true)), Direction::ToVm, &to_vm());
    assert_eq!(&got[14 + 20 + 6..14 + 20 + 8], &[0xff, 0xff]);
    assert_eq!(got, frame(PEER, POST, UDP, &udp(PEER, POST, &payload, true)));
}

#[test]
fn options_and_ethernet_padding_are_kept() {
    let options = [0x94, 0x04, 0, 0]; // router alert
    let old = ipv4_packet(PEER, PRIMARY, UDP, 0, &options, &udp(PEER, PRIMARY, b"o", true));
    let new = ipv4_packet(PEER, POST, UDP, 0, &options, &udp(PEER, POST, b"o", true));
    let mut padded = ethernet(VM_MAC, PEER_MAC, 0x0800, &old);
    padded.resize(60, 0xee);
    let (got, result) = rewritten(padded, Direction::ToVm, &to_vm());
    assert_eq!(result, DONE);
    let mut expected = ethernet(VM_MAC, PEER_MAC, 0x0800, &new);
    expected.resize(60, 0xee);
    assert_eq!(got, expected, "the padding past the total length is not touched");
}

#[test]
fn a_wrong_checksum_stays_wrong() {
    let mut packet = frame(PEER, PRIMARY, UDP, &udp(PEER, PRIMARY, b"bad", true));
    packet[14 + 10] ^= 0x01; // IPv4 header checksum
    packet[14 + 20 + 7] ^= 0x40; // UDP checksum
    let (got, result) = rewritten(packet, Direction::ToVm, &to_vm());
    assert_eq!(result, DONE);
    let ip = Ipv4Packet::new_checked(&got[14..]).unwrap();
    assert!(!ip.verify_checksum(), "RFC 1624: the error is carried, the receiver still sees it");
    assert!(!UdpDatagram::new_checked(ip.payload()).unwrap().verify_checksum(POST.into(), PEER.into()));
    let mut fixed = got.clone();
    fixed[14 + 10] ^= 0x01;
    fixed[14 + 20 + 7] ^= 0x40;
    assert_eq!(fixed, frame(PEER, POST, UDP, &udp(PEER, POST, b"bad", true)), "and by exactly the same bits");
}

/// A UDP datagram too long for one fragment, split at `at` (a multiple of 8) of its bytes.
fn fragments(src: [u8; 4], dst: [u8; 4], protocol: u8, datagram: &[u8], at: usize) -> (Vec<u8>, Vec<u8>) {
    let first = ipv4_packet(src, dst, protocol, 0x2000, &[], &datagram[..at]);
    let second = ipv4_packet(src, dst, protocol, (at / 8) as u16, &[], &datagram[at..]);
    (ethernet(VM_MAC, PEER_MAC, 0x0800, &first), ethernet(VM_MAC, PEER_MAC, 0x0800, &second))
}

#[test]
fn fragments_first_gets_the_l4_checksum_later_ones_only_the_address() {
    let payload: Vec<u8> = (0..100u8).collect();
    for (protocol, old, new) in [
        (UDP, udp(PEER, PRIMARY, &payload, true), udp(PEER, POST, &payload, true)),
        (TCP, tcp(PEER, PRIMARY, &payload), tcp(PEER, POST, &payload)),
    ] {
        let (first, second) = fragments(PEER, PRIMARY, protocol, &old, 48);
        let (first, r1) = rewritten(first, Direction::ToVm, &to_vm());
        let (second, r2) = rewritten(second, Direction::ToVm, &to_vm());
        assert_eq!((r1, r2), (DONE, DONE));
        let expected = fragments(PEER, POST, protocol, &new, 48);
        assert_eq!(first, expected.0, "protocol {protocol}: the checksum of the whole datagram, fixed in the first fragment");
        assert_eq!(second, expected.1, "protocol {protocol}: the rest of the datagram untouched");
    }
    // A non-first fragment whose payload happens to look like anything is never read as L4.
    let (_, second) = fragments(PEER, PRIMARY, ICMP, &[3u8; 64], 8);
    let (got, result) = rewritten(second.clone(), Direction::ToVm, &to_vm());
    assert_eq!(result, DONE);
    assert_eq!(&got[34..], &second[34..]);
}

#[test]
fn truncated_l4_and_malformed_ipv4_get_named_reasons_and_stay_unchanged() {
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (frame(PEER, PRIMARY, UDP, &udp(PEER, PRIMARY, b"", true)[..6]), DropReason::RewriteTruncatedL4),
        (frame(PEER, PRIMARY, TCP, &tcp(PEER, PRIMARY, b"")[..17]), DropReason::RewriteTruncatedL4),
        // RFC 1858: a first fragment too short to hold the TCP checksum.
        (fragments(PEER, PRIMARY, TCP, &tcp(PEER, PRIMARY, &[0; 40]), 8).0, DropReason::RewriteTruncatedL4),
        (
            {
                let mut f = frame(PEER, PRIMARY, UDP, &udp(PEER, PRIMARY, b"x", true));
                f[14] = 0x44; // IHL 4
                f
            },
            DropReason::RewriteMalformedIpv4,
        ),
        (
            {
                let mut f = frame(PEER, PRIMARY, UDP, &udp(PEER, PRIMARY, b"x", true));
                f[14 + 3] += 1; // total length one past the frame
                f
            },
            DropReason::RewriteMalformedIpv4,
        ),
        (
            {
                let mut f = frame(PEER, PRIMARY, UDP, &udp(PEER, PRIMARY, b"x", true));
                f[14] = 0x4f; // header longer than the packet
                f
            },
            DropReason::RewriteMalformedIpv4,
        ),
    ];
    for (packet, reason) in cases {
        let (got, result) = rewritten(packet.clone(), Direction::ToVm, &to_vm());
        assert_eq!(result, Err(reason));
        assert_eq!(got, packet, "{reason:?}: nothing written");
    }
    // Shorter than an IPv4 header, or not version 4: not ours to judge, passes.
    for packet in [frame(PEER, PRIMARY, UDP, b"")[..14 + 19].to_vec(), {
        let mut f = frame(PEER, PRIMARY, UDP, &udp(PEER, PRIMARY, b"x", true));
        f[14] = 0x65;
        f
    }] {
        let (got, result) = rewritten(packet.clone(), Direction::ToVm, &to_vm());
        assert_eq!((result, got), (Ok(Rewritten::Unchanged), packet));
    }
}

/// The packet a VM sent (UDP from the primary IP once rewritten), as quoted in
/// an ICMP error about it, cut to `quoted` bytes.
fn quoted_udp(from: [u8; 4], quoted: usize) -> Vec<u8> {
    let datagram = udp(from, PEER, b"the original payload", true);
    let mut packet = ipv4_packet(from, PEER, UDP, 0x4000, &[], &datagram);
    packet.truncate(quoted);
    packet
}

fn quoted_tcp(from: [u8; 4], quoted: usize) -> Vec<u8> {
    let mut packet = ipv4_packet(from, PEER, TCP, 0x4000, &[], &tcp(from, PEER, b"segment data"));
    packet.truncate(quoted);
    packet
}

#[test]
fn icmp_errors_to_the_vm_carry_the_quoted_packet_translated_at_any_length() {
    // Port unreachable from the peer about what the VM sent: quoted whole, as
    // IPv4 + 8 bytes (RFC 792), IPv4 + 12 (the TCP checksum cut off), and the
    // IPv4 header alone.
    for (quoted_old, quoted_new) in [
        (quoted_udp(PRIMARY, 999), quoted_udp(POST, 999)),
        (quoted_udp(PRIMARY, 28), quoted_udp(POST, 28)),
        (quoted_tcp(PRIMARY, 999), quoted_tcp(POST, 999)),
        (quoted_tcp(PRIMARY, 32), quoted_tcp(POST, 32)),
        (quoted_tcp(PRIMARY, 20), quoted_tcp(POST, 20)),
    ] {
        let old = frame(PEER, PRIMARY, ICMP, &icmp(3, 3, [0; 4], &quoted_old));
        let (got, result) = rewritten(old, Direction::ToVm, &to_vm());
        assert_eq!(result, DONE_ICMP);
        assert_eq!(got, frame(PEER, POST, ICMP, &icmp(3, 3, [0; 4], &quoted_new)), "{} bytes quoted", quoted_old.len());
    }
    // An error about somebody else's packet keeps its quote.
    let other = quoted_udp([10, 1, 0, 77], 999);
    let (got, result) = rewritten(frame(PEER, PRIMARY, ICMP, &icmp(11, 0, [0; 4], &other)), Direction::ToVm, &to_vm());
    assert_eq!(result, DONE);
    assert_eq!(got, frame(PEER, POST, ICMP, &icmp(11, 0, [0; 4], &other)));
}

#[test]
fn icmp_errors_from_the_vm_translate_the_quoted_destination() {
    // The VM's port unreachable about a packet it received at POST.
    let quote = |to: [u8; 4]| {
        let mut packet = ipv4_packet(PEER, to, UDP, 0, &[], &udp(PEER, to, b"to the VM", true));
        packet.truncate(28);
        packet
    };
    let old = frame(POST, PEER, ICMP, &icmp(3, 3, [0; 4], &quote(POST)));
    let (got, result) = rewritten(old, Direction::FromVm, &from_vm());
    assert_eq!(result, DONE_ICMP);
    assert_eq!(got, frame(PRIMARY, PEER, ICMP, &icmp(3, 3, [0; 4], &quote(PRIMARY))));
}

#[test]
fn icmp_errors_without_a_readable_quoted_header_are_dropped_by_name() {
    let mut ihl_4 = quoted_udp(PRIMARY, 28);
    ihl_4[0] = 0x44;
    let mut ipv6 = quoted_udp(PRIMARY, 28);
    ipv6[0] = 0x60;
    for quoted in [quoted_udp(PRIMARY, 19), ihl_4, ipv6, vec![]] {
        let packet = frame(PEER, PRIMARY, ICMP, &icmp(3, 1, [0; 4], &quoted));
        let (got, result) = rewritten(packet.clone(), Direction::ToVm, &to_vm());
        assert_eq!(result, Err(DropReason::RewriteMalformedIcmpError), "{} bytes", quoted.len());
        assert_eq!(got, packet);
    }
    // The first fragment of an error that cuts the quoted header.
    let error = icmp(3, 1, [0; 4], &quoted_udp(PRIMARY, 28));
    let (first, _) = fragments(PEER, PRIMARY, ICMP, &error, 24);
    assert_eq!(rewritten(first, Direction::ToVm, &to_vm()).1, Err(DropReason::RewriteMalformedIcmpError));
}

fn arp(operation: u16, sender: ([u8; 6], [u8; 4]), target: ([u8; 6], [u8; 4])) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0, 6, 4];
    a.extend_from_slice(&operation.to_be_bytes());
    a.extend_from_slice(&sender.0);
    a.extend_from_slice(&sender.1);
    a.extend_from_slice(&target.0);
    a.extend_from_slice(&target.1);
    ethernet(MacAddr::BROADCAST, PEER_MAC, 0x0806, &a)
}

#[test]
fn arp_speaks_for_the_primary_ip() {
    // A peer's request for the primary IP reaches the VM as one for its address.
    let (got, result) = rewritten(arp(1, (PEER_MAC.0, PEER), ([0; 6], PRIMARY)), Direction::ToVm, &to_vm());
    assert_eq!(result, DONE);
    assert_eq!(got, arp(1, (PEER_MAC.0, PEER), ([0; 6], POST)));
    // The VM's requests and announcements speak for the primary IP.
    let (got, _) = rewritten(arp(1, (VM_MAC.0, POST), ([0; 6], PEER)), Direction::FromVm, &from_vm());
    assert_eq!(got, arp(1, (VM_MAC.0, PRIMARY), ([0; 6], PEER)));
    let (got, _) = rewritten(arp(1, (VM_MAC.0, POST), ([0; 6], POST)), Direction::FromVm, &from_vm());
    assert_eq!(got, arp(1, (VM_MAC.0, PRIMARY), ([0; 6], PRIMARY)), "a gratuitous ARP announces the primary IP");
    // Truncated or not Ethernet/IPv4: left alone.
    let short = arp(1, (PEER_MAC.0, PEER), ([0; 6], PRIMARY))[..14 + 27].to_vec();
    assert_eq!(rewritten(short.clone(), Direction::ToVm, &to_vm()), (short, Ok(Rewritten::Unchanged)));
}

#[test]
fn incremental_updates_equal_full_recomputation_on_random_packets() {
    let mut rng = XorShift::new(0x6006);
    for _ in 0..3000 {
        let (old, new) = (rng.u32().to_be_bytes(), rng.u32().to_be_bytes());
        let peer = rng.u32().to_be_bytes();
        if old == new || peer == old {
            continue;
        }
        let mut payload = vec![0u8; rng.below(64)];
        rng.fill(&mut payload);
        let m = map(old, new);
        let (protocol, before, after) = match rng.below(3) {
            0 => (UDP, udp(peer, old, &payload, true), udp(peer, new, &payload, true)),
            1 => (TCP, tcp(peer, old, &payload), tcp(peer, new, &payload)),
            _ => (UDP, udp(peer, old, &payload, false), udp(peer, new, &payload, false)),
        };
        let (got, result) = rewritten(frame(peer, old, protocol, &before), Direction::ToVm, &m);
        assert_eq!(result, DONE);
        assert_eq!(got, frame(peer, new, protocol, &after));
    }
}

#[test]
fn no_panic_on_any_input() {
    let good = [
        frame(PEER, PRIMARY, UDP, &udp(PEER, PRIMARY, b"abc", true)),
        frame(PEER, PRIMARY, ICMP, &icmp(3, 3, [0; 4], &quoted_tcp(PRIMARY, 40))),
        frame(POST, PEER, ICMP, &icmp(3, 3, [0; 4], &quoted_udp(PEER, 28))),
        arp(1, (PEER_MAC.0, PEER), ([0; 6], PRIMARY)),
    ];
    let refs: Vec<&[u8]> = good.iter().map(Vec::as_slice).collect();
    let mut both = to_vm();
    both.insert(POST.into(), PRIMARY.into());
    fuzz(&refs, |buf| {
        let _ = rewrite_frame(buf, Direction::ToVm, &both);
        let _ = rewrite_frame(buf, Direction::FromVm, &both);
    });
}

// The table, the stages and reports.

const VM0: PortId = PortId(0);
const VM1: PortId = PortId(1);
const UPLINK: PortId = PortId(2);
const VM2: PortId = PortId(3);
const VM0_MAC: MacAddr = MacAddr([2, 0x53, 0x59, 0, 0, 0]);

fn ports() -> Vec<RewritePort> {
    vec![
        RewritePort { name: "vm0".into(), id: VM0, mac: VM0_MAC },
        RewritePort { name: "vm1".into(), id: VM1, mac: MacAddr([2, 0x53, 0x59, 0, 0, 1]) },
        RewritePort { name: "vm2".into(), id: VM2, mac: MacAddr([2, 0x53, 0x59, 0, 0, 3]) },
    ]
}

/// vm0 (the migrated VM, endpoint at POST) and vm1 (a peer, endpoint at PEER)
/// in network 100; vm2 in network 200. PRIMARY registered for vm0, with
/// `post` as its post-migration IP.
fn config(post: Option<[u8; 4]>) -> ConfigSnapshot {
    let endpoint = |last: u8, ip: [u8; 4], port: &str, vni| VmEndpoint {
        vni,
        mac: MacAddr([2, 0, 0, 0, 0, last]),
        ip: Some(ip.into()),
        port: port.into(),
    };
    ConfigSnapshot {
        generation: 3,
        networks: vec![
            Network { vni: 100, name: "blue".into(), flood_vteps: vec![] },
            Network { vni: 200, name: "red".into(), flood_vteps: vec![] },
        ],
        endpoints: vec![
            endpoint(0x0a, POST, "vm0", 100),
            endpoint(0x0b, PEER, "vm1", 100),
            endpoint(0x0c, [10, 2, 0, 6], "vm1", 100),
            endpoint(0x0d, [10, 2, 0, 7], "vm2", 200),
        ],
        remotes: vec![],
        ports: vec![PortNetwork { port: "vm2".into(), vni: 200 }],
        address_migrations: vec![
            AddressMigration {
                vni: 100,
                primary_ip: PRIMARY.into(),
                post_migration_ip: post.map(Ipv4Addr::from),
                port: "vm0".into(),
                source: AddressMigrationSource::Notification,
            },
            AddressMigration {
                vni: 100,
                primary_ip: [10, 1, 0, 6].into(),
                post_migration_ip: None,
                port: "vm1".into(),
                source: AddressMigrationSource::Notification,
            },
        ],
        storage: Default::default(),
    }
}

struct Stages {
    migrations: AddressMigrations,
    from_vm: AddressRewrite,
    to_vm: AddressRewrite,
    counters: Arc<CachePadded<RewriteCounters>>,
}

fn stages(config: &ConfigSnapshot) -> Stages {
    let migrations = AddressMigrations::new(config, ports());
    let counters: Arc<CachePadded<RewriteCounters>> = Arc::default();
    Stages {
        from_vm: migrations.stage(Direction::FromVm, counters.clone()),
        to_vm: migrations.stage(Direction::ToVm, counters.clone()),
        migrations,
        counters,
    }
}

fn burst(port: PortId, frames: &[Vec<u8>]) -> Burst<BytesPacket> {
    let mut burst = Burst::new(port);
    for f in frames {
        burst.push(BytesPacket::new(f)).unwrap();
    }
    burst
}

fn drained(burst: &mut Burst<BytesPacket>) -> Vec<(Vec<u8>, Verdict)> {
    let mut out = Vec::new();
    burst.drain(|p, v| out.push((p.data().to_vec(), v)));
    out
}

#[test]
fn the_table_rewrites_only_complete_migrations_of_ports_in_their_network() {
    let table = build(&config(Some(POST)), &ports());
    assert_eq!(table.generation, 3);
    assert_eq!(table.sizes(), (1, 1), "vm1's registration has no post-migration IP yet");
    assert_eq!(table.port(VM0).map(|p| p.to_vm.get(u32::from_be_bytes(PRIMARY))), Some(Some(u32::from_be_bytes(POST))));
    assert_eq!(table.port(VM0).map(|p| p.from_vm.get(u32::from_be_bytes(POST))), Some(Some(u32::from_be_bytes(PRIMARY))));
    assert!(table.port(VM1).is_none() && table.port(UPLINK).is_none() && table.port(VM2).is_none());
    // vm0 moved to network 200: its migration in 100 stops rewriting.
    let mut moved = config(Some(POST));
    moved.ports.push(PortNetwork { port: "vm0".into(), vni: 200 });
    assert_eq!(build(&moved, &ports()).sizes(), (0, 2));
    assert!(build(&ConfigSnapshot::default(), &ports()).is_empty());
}

#[test]
fn with_an_empty_table_the_stages_touch_nothing() {
    let mut s = stages(&ConfigSnapshot::default());
    let report = report_frame(POST, PRIMARY, POST, 1);
    let frames = vec![frame(POST, PEER, UDP, &udp(POST, PEER, b"x", true)), report.clone()];
    let mut b = burst(VM0, &frames);
    s.from_vm.process(&mut b);
    b.decide_all(Verdict::Forward(VM0));
    s.to_vm.process(&mut b);
    assert_eq!(drained(&mut b), frames.into_iter().map(|f| (f, Verdict::Forward(VM0))).collect::<Vec<_>>());
    assert_eq!(s.counters.from_vm.get() + s.counters.to_vm.get(), 0);
}

#[test]
fn stages_rewrite_by_direction_and_port() {
    let mut s = stages(&config(Some(POST)));
    // From the VM port: sources rewritten; from the uplink or another VM port: not.
    let out = frame(POST, PEER, UDP, &udp(POST, PEER, b"x", true));
    for (port, expected) in [(VM0, frame(PRIMARY, PEER, UDP, &udp(PRIMARY, PEER, b"x", true))), (VM1, out.clone()), (UPLINK, out.clone())] {
        let mut b = burst(port, std::slice::from_ref(&out));
        s.from_vm.process(&mut b);
        assert_eq!(drained(&mut b), vec![(expected, Verdict::Pending)], "{port:?}");
    }
    assert_eq!(s.counters.from_vm.get(), 1);
    // Into vm0 (received or made): destinations rewritten; into vm1: not; drops untouched.
    let inbound = frame(PEER, PRIMARY, UDP, &udp(PEER, PRIMARY, b"y", true));
    let rewritten_in = frame(PEER, POST, UDP, &udp(PEER, POST, b"y", true));
    let mut b = burst(UPLINK, &[inbound.clone(), inbound.clone(), inbound.clone()]);
    let verdicts = [Verdict::Forward(VM0), Verdict::Forward(VM1), Verdict::Drop(DropReason::SamePort)];
    for (i, v) in verdicts.iter().enumerate() {
        *b.get_mut(i).unwrap().1 = *v;
    }
    b.add_made(BytesPacket::new(&inbound), Verdict::Forward(VM0));
    s.to_vm.process(&mut b);
    let got = drained(&mut b);
    assert_eq!(got[0], (rewritten_in.clone(), Verdict::Forward(VM0)));
    assert_eq!(got[1], (inbound.clone(), Verdict::Forward(VM1)));
    assert_eq!(got[2], (inbound.clone(), Verdict::Drop(DropReason::SamePort)));
    assert_eq!(got[3], (rewritten_in, Verdict::Forward(VM0)), "a flood copy too");
    assert_eq!(s.counters.to_vm.get(), 2);
    // A malformed packet for the VM is dropped by name.
    let mut truncated = inbound.clone();
    truncated.truncate(14 + 20 + 4);
    truncated[14 + 3] = 24;
    let mut b = burst(UPLINK, &[truncated]);
    b.decide_all(Verdict::Forward(VM0));
    s.to_vm.process(&mut b);
    assert_eq!(b.verdicts(), &[Verdict::Drop(DropReason::RewriteTruncatedL4)]);
    drained(&mut b);
}

#[test]
fn a_new_table_version_reaches_the_stages_at_their_quiescent_point() {
    let mut s = stages(&config(None));
    let out = frame(POST, PEER, UDP, &udp(POST, PEER, b"x", true));
    let mut b = burst(VM0, std::slice::from_ref(&out));
    Stage::<BytesPacket>::process(&mut s.from_vm, &mut b);
    assert_eq!(drained(&mut b)[0].0, out, "registered only: nothing rewritten");
    s.migrations.apply(&ConfigSnapshot { generation: 4, ..config(Some(POST)) });
    let mut b = burst(VM0, std::slice::from_ref(&out));
    Stage::<BytesPacket>::process(&mut s.from_vm, &mut b);
    assert_eq!(drained(&mut b)[0].0, out, "not before the quiescent point");
    Stage::<BytesPacket>::quiescent(&mut s.from_vm, 0);
    let mut b = burst(VM0, &[out]);
    Stage::<BytesPacket>::process(&mut s.from_vm, &mut b);
    assert_eq!(drained(&mut b)[0].0, frame(PRIMARY, PEER, UDP, &udp(PRIMARY, PEER, b"x", true)));
    assert_eq!(s.migrations.current().generation, 4);
}

/// A report as a VM's stack sends it: UDP from `source` to the report address.
fn report_frame(source: [u8; 4], primary: [u8; 4], post: [u8; 4], request_id: u32) -> Vec<u8> {
    let mut message = [0u8; 20];
    AddressReport::new_unchecked(&mut message[..]).emit(kind::REPORT, 0, request_id, primary.into(), post.into());
    let mut datagram = udp(source, REPORT_ADDRESS.octets(), &message, false);
    datagram[2..4].copy_from_slice(&REPORT_PORT.to_be_bytes());
    let c = l4_checksum(source, REPORT_ADDRESS.octets(), UDP, &datagram);
    datagram[6..8].copy_from_slice(&c.to_be_bytes());
    ethernet(VM0_MAC, VM_MAC, 0x0800, &ipv4_packet(source, REPORT_ADDRESS.octets(), UDP, 0, &[], &datagram))
}

/// Runs one report through the from-VM stage on `port`; returns the reply's
/// status and text, and the events queued for the control plane.
fn send_report(s: &mut Stages, port: PortId, report: Vec<u8>) -> (Option<(ReportStatus, String)>, Vec<crate::AddressReport>) {
    let mut b = burst(port, &[report]);
    s.from_vm.process(&mut b);
    let out = drained(&mut b);
    let events = s.migrations.take_reports();
    if out[0].1 != Verdict::Absorbed {
        return (None, events);
    }
    assert_eq!(out.len(), 2, "the report absorbed, the reply made");
    let (reply, verdict) = &out[1];
    assert_eq!(*verdict, Verdict::Forward(port), "the reply goes back out of the port the report came in on");
    assert_eq!(&reply[0..6], &VM_MAC.0);
    let ip = Ipv4Packet::new_checked(&reply[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr(), REPORT_ADDRESS);
    let datagram = UdpDatagram::new_checked(ip.payload()).unwrap();
    assert!(datagram.checksum() != 0 && datagram.verify_checksum(ip.src_addr(), ip.dst_addr()));
    assert_eq!((datagram.src_port(), datagram.dst_port()), (REPORT_PORT, 0x3039));
    let message = AddressReport::new_checked(datagram.payload()).unwrap();
    assert_eq!(message.kind(), kind::REPLY);
    let status = ReportStatus::from_code(message.status()).unwrap();
    (Some((status, String::from_utf8(message.text().to_vec()).unwrap())), events)
}

#[test]
fn reports_are_judged_answered_and_handed_to_the_control_plane() {
    let mut s = stages(&config(None));
    let (reply, events) = send_report(&mut s, VM0, report_frame(POST, PRIMARY, POST, 7));
    assert_eq!(reply, Some((ReportStatus::Accepted, "accepted: the switch is applying it".into())));
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].port.as_str(), events[0].status, events[0].request_id), ("vm0", ReportStatus::Accepted, 7));
    assert_eq!((events[0].primary_ip, events[0].post_migration_ip), (PRIMARY.into(), POST.into()));

    // From the wrong port: vm1 claims vm0's post-migration IP.
    let (reply, events) = send_report(&mut s, VM1, report_frame(POST, PRIMARY, POST, 8));
    assert_eq!(reply.map(|r| r.0), Some(ReportStatus::PostMigrationIpOnOtherPort));
    assert_eq!(events[0].status, ReportStatus::PostMigrationIpOnOtherPort, "refusals are logged too");
    // For a foreign primary IP: vm1, at its own 10.2.0.6, claims vm0's primary IP.
    let (reply, _) = send_report(&mut s, VM1, report_frame([10, 2, 0, 6], PRIMARY, [10, 2, 0, 6], 9));
    assert_eq!(
        reply,
        Some((ReportStatus::PrimaryIpOfOtherPort, "refused: the primary IP is registered for another VM port".into()))
    );
    let (reply, _) = send_report(&mut s, VM0, report_frame([10, 2, 0, 9], PRIMARY, POST, 10));
    assert_eq!(reply.map(|r| r.0), Some(ReportStatus::SourceNotPostMigrationIp));
    let (reply, _) = send_report(&mut s, VM0, report_frame(POST, [10, 1, 0, 99], POST, 11));
    assert_eq!(reply.map(|r| r.0), Some(ReportStatus::PrimaryIpNotRegistered));

    // Once applied, the same report is in effect, and not handed on again.
    s.migrations.apply(&ConfigSnapshot { generation: 4, ..config(Some(POST)) });
    Stage::<BytesPacket>::quiescent(&mut s.from_vm, 0);
    let (reply, events) = send_report(&mut s, VM0, report_frame(POST, PRIMARY, POST, 12));
    assert_eq!(reply.map(|r| r.0), Some(ReportStatus::InEffect));
    assert!(events.is_empty());
    let counted: Vec<u64> = s.counters.reports.iter().map(|c| c.get()).collect();
    assert_eq!(counted[ReportStatus::Accepted.index()], 1);
    assert_eq!(counted[ReportStatus::InEffect.index()], 1);
    assert_eq!(counted.iter().sum::<u64>(), 6);
}

#[test]
fn malformed_reports_are_dropped_by_name_and_other_traffic_to_the_address_passes() {
    let mut s = stages(&config(Some(POST)));
    let good = report_frame(POST, PRIMARY, POST, 1);
    let mut bad_magic = good.clone();
    bad_magic[14 + 20 + 8] = b'X';
    let mut bad_udp_checksum = good.clone();
    bad_udp_checksum[14 + 20 + 7] ^= 1;
    let mut short = good.clone();
    short.truncate(14 + 20 + 8 + 19);
    short[14 + 3] -= 1;
    short[14 + 20 + 5] -= 1;
    let mut fragment = good.clone();
    fragment[14 + 6] = 0x20;
    for (name, frame) in [("magic", bad_magic), ("udp checksum", bad_udp_checksum), ("short", short), ("fragment", fragment)] {
        let mut b = burst(VM0, &[frame]);
        s.from_vm.process(&mut b);
        assert_eq!(b.verdicts(), &[Verdict::Drop(DropReason::MalformedAddressReport)], "{name}");
        assert!(b.made().is_empty());
        drained(&mut b);
    }
    // UDP to another port of the address is not a report.
    let mut other_port = good;
    other_port[14 + 20 + 3] ^= 1;
    let mut b = burst(VM0, &[other_port.clone()]);
    s.from_vm.process(&mut b);
    assert_eq!(drained(&mut b), vec![(other_port, Verdict::Pending)]);
}

#[test]
fn arp_for_the_report_address_is_answered_with_the_port_mac() {
    let mut s = stages(&config(Some(POST)));
    let request = arp(1, (VM_MAC.0, POST), ([0; 6], REPORT_ADDRESS.octets()));
    let mut b = burst(VM0, &[request]);
    s.from_vm.process(&mut b);
    let out = drained(&mut b);
    assert_eq!(out[0].1, Verdict::Absorbed);
    let mut expected = arp(2, (VM0_MAC.0, REPORT_ADDRESS.octets()), (VM_MAC.0, POST));
    expected[0..6].copy_from_slice(&VM_MAC.0);
    expected[6..12].copy_from_slice(&VM0_MAC.0);
    assert_eq!(out[1], (expected, Verdict::Forward(VM0)));
    assert_eq!(s.counters.report_arp_replies.get(), 1);
}

#[test]
fn workers_judge_reports_exactly_as_the_control_plane_does() {
    let candidates: [[u8; 4]; 6] = [PRIMARY, POST, PEER, [10, 2, 0, 6], [10, 1, 0, 6], [10, 2, 0, 7]];
    for post in [None, Some(POST), Some([10, 2, 0, 6])] {
        let config = config(post);
        let table = build(&config, &ports());
        for port in ports() {
            for source in candidates {
                for primary in candidates {
                    for claimed in candidates {
                        let (rules, why) = judge_report(&config, &port.name, source.into(), primary.into(), claimed.into());
                        let worker = table.judge_report(port.id, source.into(), primary.into(), claimed.into());
                        assert_eq!(worker, rules, "{} {source:?} {primary:?} {claimed:?} ({why})", port.name);
                    }
                }
            }
        }
    }
}

#[test]
fn judgements_name_the_records_involved() {
    let config = config(None);
    let judge = |port: &str, source: [u8; 4], primary: [u8; 4], post: [u8; 4]| {
        judge_report(&config, port, source.into(), primary.into(), post.into())
    };
    assert_eq!(
        judge("vm1", POST, PRIMARY, POST),
        (ReportStatus::PostMigrationIpOnOtherPort, "the post-migration IP 10.2.0.5 is bound to port vm0, not vm1".into())
    );
    assert_eq!(
        judge("vm1", [10, 2, 0, 6], PRIMARY, [10, 2, 0, 6]),
        (ReportStatus::PrimaryIpOfOtherPort, "the primary IP 10.1.0.5 is registered for port vm0, not vm1".into())
    );
    assert_eq!(judge("vm0", POST, PRIMARY, POST).0, ReportStatus::Accepted);
    assert_eq!(
        judge("vm0", [10, 9, 9, 9], PRIMARY, [10, 9, 9, 9]).1,
        "no VM endpoint in network 100 has the post-migration IP 10.9.9.9"
    );
}
