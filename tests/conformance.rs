//! Layer 2 conformance suite of malformed input: a table of cases, each a pcap committed under
//! tests/conformance/pcap/<case>.pcap, sent into one port of the binary in pcap mode under one of six configs,
//! with its verdict: the drop reasons that must count it, or the exact frames that must come out of which port.
//! Nothing else may be dropped or sent. docs/pcap-mode.md, "Accept/drop policy for malformed input", says why.
//!
//! Cases of one config run together in as few runs as keep every verdict attributable: within a run no drop
//! reason is expected by two cases (a case that wrongly moved another's counter shows as a wrong count, one that
//! was wrongly forwarded as an extra output frame). `committed_pcaps_match_the_generator` keeps the committed
//! files equal to what `cases()` makes; `cargo test --test conformance -- --ignored regenerate` rewrites them.
mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use common::frames::*;
use common::overlay::NEXT_HOP;
use common::switch::nonzero_drops;
use common::*;
use switchyard::overlay::{encapsulate, Tunnel};
use switchyard::pipeline::{BytesPacket, PacketBuf};
use switchyard::wire::block::{BlockPacket, BlockRepr, Flags, Op, Status, UserKey, HEADER_LEN as BLOCK_HEADER_LEN};
use switchyard::wire::checksum::checksum;
use switchyard::wire::MacAddr;

const VM_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const VM_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
const REMOTE_VM: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x14]);
const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// A compute node of the gateway's cloud, where table 2 puts VM_B.
const COMPUTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
/// net_pcap ports' MACs: 02:70:63:61:70:<port id>.
const fn port_mac(index: u8) -> MacAddr {
    MacAddr([2, 0x70, 0x63, 0x61, 0x70, index])
}
/// The address-rewrite config: VM A's primary IP (what peers use) and where it lives now; VM B's IP.
const PRIMARY: [u8; 4] = [10, 1, 0, 5];
const POST: [u8; 4] = [10, 2, 0, 5];
const PEER: [u8; 4] = [10, 1, 0, 1];
/// Storage: the server, its user (id 1, a fixed secret), the user's 1 MiB image (id 1), a stranger's IP.
const SERVER_IP: [u8; 4] = [10, 77, 0, 1];
const CLIENT_IP: [u8; 4] = [10, 77, 0, 2];
const STRANGER_IP: [u8; 4] = [10, 77, 0, 9];
const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x77]);
const SECRET: [u8; 32] = [0x5c; 32];
const IMAGE_SIZE: u64 = 1 << 20;
/// IPv4 flags/fragment offset: more fragments.
const MF: u16 = 0x2000;

/// The configs the cases run under (`config_toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    /// The vRouter switching L2 between two VM ports (VM_A on vm0, VM_B on vm1), no uplink; 9216-byte mbufs.
    L2,
    /// L2 plus an uplink VTEP (REMOTE_VM behind REMOTE_VTEP); default 2048-byte mbufs.
    Overlay,
    /// Overlay plus the address-rewrite stage: PRIMARY migrated to POST on vm0, VM_B at PEER on vm1.
    Rewrite,
    /// An inter-cloud gateway: the other cloud's VNI 200 is network 100, table 2 puts VM_B at COMPUTE_VTEP.
    Gateway,
    /// The storage server on the uplink (user 1 at CLIENT_IP with image 1).
    Storage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Port {
    Vm0,
    Vm1,
    Uplink,
}

const PORTS: [Port; 3] = [Port::Vm0, Port::Vm1, Port::Uplink];

impl Port {
    fn name(self) -> &'static str {
        match self {
            Port::Vm0 => "vm0",
            Port::Vm1 => "vm1",
            Port::Uplink => "uplink",
        }
    }
}

/// A storage reply the server must send (its MAC is checked under the user's key).
#[derive(Clone, Debug)]
struct Reply {
    request_id: u64,
    status: Status,
    /// For an OK READ: the data.
    data: Vec<u8>,
}

/// One case: frames into `port` under `config`, and what must happen to them.
struct Case {
    name: &'static str,
    config: Config,
    port: Port,
    frames: Vec<Vec<u8>>,
    /// Drop reasons and how many of the frames each must count.
    drops: Vec<(&'static str, u64)>,
    /// Frames that must come out, exactly, and where.
    outputs: Vec<(Port, Vec<u8>)>,
    /// Storage replies that must come out of the uplink.
    replies: Vec<Reply>,
}

impl Case {
    fn dropped(name: &'static str, config: Config, port: Port, frames: Vec<Vec<u8>>, reason: &'static str) -> Case {
        let count = frames.len() as u64;
        Case { name, config, port, frames, drops: vec![(reason, count)], outputs: vec![], replies: vec![] }
    }

    /// One frame in, `out` out of `to`.
    fn forwarded(name: &'static str, config: Config, port: Port, frame: Vec<u8>, to: Port, out: Vec<u8>) -> Case {
        Case { name, config, port, frames: vec![frame], drops: vec![], outputs: vec![(to, out)], replies: vec![] }
    }

    /// One frame in, the same bytes out of `to`.
    fn unchanged(name: &'static str, config: Config, port: Port, frame: Vec<u8>, to: Port) -> Case {
        Case::forwarded(name, config, port, frame.clone(), to, frame)
    }

    fn answered(name: &'static str, frames: Vec<Vec<u8>>, replies: Vec<Reply>) -> Case {
        Case { name, config: Config::Storage, port: Port::Uplink, frames, drops: vec![], outputs: vec![], replies }
    }

    fn pcap(&self) -> PathBuf {
        pcap_dir().join(format!("{}.pcap", self.name))
    }
}

fn pcap_dir() -> PathBuf {
    repo().join("tests/conformance/pcap")
}

// ---- frame builders ----

/// An ICMP destination unreachable (type 3 code 1) quoting `quoted`.
fn icmp_unreachable(quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![3, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(quoted);
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// An IPv4 frame VM_A -> VM_B (10.0.0.10 -> 10.0.0.20) around `ip`.
fn a_to_b(ip: Vec<u8>) -> Vec<u8> {
    ethernet(VM_B, VM_A, 0x0800, &ip)
}

/// `inner` as VXLAN from `src` to LOCAL_VTEP with VNI `vni`, all headers valid.
fn vxlan_from(src: Ipv4Addr, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut packet = BytesPacket::new(inner);
    let tunnel = Tunnel { vni, src_mac: NEXT_HOP, dst_mac: port_mac(2), src_ip: src, dst_ip: LOCAL_VTEP, mtu: 9216 };
    encapsulate(&mut packet, &tunnel).unwrap();
    packet.data().to_vec()
}

fn vxlan(inner: &[u8]) -> Vec<u8> {
    vxlan_from(REMOTE_VTEP, 100, inner)
}

/// Rewrites the outer IPv4 header of a VXLAN frame with `change`, then fixes its checksum.
fn outer_ip(mut frame: Vec<u8>, change: impl FnOnce(&mut [u8])) -> Vec<u8> {
    outer_ip_header(&mut frame, 20, change);
    frame
}

/// A VXLAN frame's outer IPv4 packet replaced by fragment `flags_offset` carrying `payload` (the outer
/// UDP/VXLAN headers, or later bytes).
fn outer_fragment(flags_offset: u16, payload: &[u8]) -> Vec<u8> {
    let ip = ipv4(REMOTE_VTEP.octets(), LOCAL_VTEP.octets(), UDP, flags_offset, payload);
    ethernet(port_mac(2), NEXT_HOP, 0x0800, &ip)
}

/// What the gateway sends to COMPUTE_VTEP for `inner`: a fresh encapsulation with VNI 100.
fn gateway_out(inner: &[u8]) -> Vec<u8> {
    let mut packet = BytesPacket::new(inner);
    let tunnel = Tunnel { vni: 100, src_mac: port_mac(0), dst_mac: NEXT_HOP, src_ip: LOCAL_VTEP, dst_ip: COMPUTE_VTEP, mtu: 1500 };
    encapsulate(&mut packet, &tunnel).unwrap();
    packet.data().to_vec()
}

// ---- storage datagrams ----

fn key() -> UserKey {
    UserKey::new(SECRET)
}

fn block(request_id: u64, op: Op, offset: u64, length: u32, payload_len: u16) -> BlockRepr {
    BlockRepr {
        op,
        flags: Flags::NONE,
        user_id: 1,
        image_id: 1,
        request_id,
        offset,
        length,
        fragment_offset: 0,
        payload_len,
        status: Status::Ok,
    }
}

/// `header` and `data` MAC'd under the user's key. Offset and length are written as given, also where `emit`
/// refuses them (zero, oversize, past 2^64): the server must refuse them itself.
fn signed(header: &BlockRepr, data: &[u8]) -> Vec<u8> {
    let valid = BlockRepr { offset: 0, length: data.len().max(1) as u32, payload_len: data.len() as u16, ..*header };
    let mut bytes = vec![0; BLOCK_HEADER_LEN + data.len()];
    valid.emit(&mut bytes).unwrap_or_else(|e| panic!("{valid:?}: {e}"));
    bytes[24..32].copy_from_slice(&header.offset.to_be_bytes());
    bytes[32..36].copy_from_slice(&header.length.to_be_bytes());
    bytes[BLOCK_HEADER_LEN..].copy_from_slice(data);
    BlockPacket::new_unchecked(&mut bytes[..]).fill_mac(&key());
    bytes
}

/// `datagram` from `src` (UDP port 40000) to the service, as a frame on the uplink.
fn storage_frame(src: [u8; 4], datagram: &[u8]) -> Vec<u8> {
    let port = switchyard::wire::block::UDP_PORT;
    ethernet(port_mac(0), CLIENT_MAC, 0x0800, &ipv4(src, SERVER_IP, UDP, 0x4000, &udp(src, SERVER_IP, (40000, port), datagram, true)))
}

fn request(header: &BlockRepr, data: &[u8]) -> Vec<u8> {
    storage_frame(CLIENT_IP, &signed(header, data))
}

fn reply(request_id: u64, status: Status) -> Reply {
    Reply { request_id, status, data: vec![] }
}

// ---- the table ----

fn cases() -> Vec<Case> {
    use Config::*;
    use Port::*;
    let (a, b) = ([10, 0, 0, 10], [10, 0, 0, 20]);
    let datagram = udp(a, b, (1000, 5000), &payload(40), true);
    let good = a_to_b(ipv4(a, b, UDP, 0, &datagram));
    // A 64-byte UDP datagram in fragments of 24 + 24 + 16 (offsets in 8-byte units).
    let whole = udp(a, b, (1000, 5000), &payload(56), true);
    let first = a_to_b(ipv4(a, b, UDP, MF, &whole[..24]));
    let middle = a_to_b(ipv4(a, b, UDP, MF | 3, &whole[24..48]));
    let last = a_to_b(ipv4(a, b, UDP, 6, &whole[48..]));
    let overlapping = a_to_b(ipv4(a, b, TCP, 1, &payload(16)));
    let tiny = a_to_b(ipv4(a, b, TCP, MF, &tcp(a, b, &[])[..8]));
    // Distinct frames REMOTE_VM -> VM_A (UDP source port `n`), so every forwarded case's output is its own.
    let to_a = |n: u16| swap(&a_to_b(ipv4(a, b, UDP, 0, &udp(a, b, (n, 5000), &payload(40), true))));
    let truncated_quote = icmp_unreachable(&ipv4(b, a, UDP, 0, &datagram)[..12]);
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 10]);
    let jumbo = a_to_b(ipv4(a, b, UDP, 0, &udp(a, b, (1000, 5000), &payload(9014 - 14 - 28), true)));
    let oversize = a_to_b(ipv4(a, b, UDP, 0, &udp(a, b, (1000, 5000), &payload(9300 - 14 - 28), true)));

    let mut cases = vec![
        // Plain L2 switching: the vRouter forwards what it does not need to understand.
        Case::dropped("l2_runt_13_bytes", L2, Vm0, vec![good[..13].to_vec()], "truncated_ethernet"),
        Case::unchanged("l2_ethernet_header_only", L2, Vm0, good[..14].to_vec(), Vm1),
        Case::unchanged("l2_ipv4_truncated_header", L2, Vm0, good[..14 + 10].to_vec(), Vm1),
        Case::unchanged("l2_ipv4_ihl_below_5", L2, Vm0, a_to_b(ipv4_raw(a, b, UDP, 0, 4, 68, &datagram)), Vm1),
        Case::unchanged("l2_ipv4_total_length_below_header", L2, Vm0, a_to_b(ipv4_raw(a, b, UDP, 0, 5, 12, &datagram)), Vm1),
        Case::unchanged("l2_ipv4_total_length_beyond_frame", L2, Vm0, a_to_b(ipv4_raw(a, b, UDP, 0, 5, 1400, &datagram)), Vm1),
        Case::unchanged("l2_ethernet_padding_beyond_ipv4", L2, Vm0, padded.clone(), Vm1),
        Case::unchanged("l2_ipv4_protocol_0", L2, Vm0, a_to_b(ipv4(a, b, 0, 0, &payload(30))), Vm1),
        Case::unchanged("l2_fragment_first", L2, Vm0, first.clone(), Vm1),
        Case::unchanged("l2_fragment_middle", L2, Vm0, middle.clone(), Vm1),
        Case::unchanged("l2_fragment_last", L2, Vm0, last.clone(), Vm1),
        Case::unchanged("l2_fragment_overlapping", L2, Vm0, overlapping.clone(), Vm1),
        Case::unchanged("l2_fragment_tiny", L2, Vm0, tiny.clone(), Vm1),
        Case::unchanged("l2_icmp_error_truncated_quote", L2, Vm0, a_to_b(ipv4(a, b, ICMP, 0, &truncated_quote)), Vm1),
        Case::unchanged("l2_jumbo_9014_bytes", L2, Vm0, jumbo, Vm1),
        Case::dropped("l2_oversize_beyond_mbuf", L2, Vm0, vec![oversize.clone()], "multi_segment_mbuf"),
        // VXLAN on the uplink: the VTEP terminates the tunnel and checks every outer header.
        Case::forwarded("vxlan_good", Overlay, Uplink, vxlan(&to_a(1)), Vm0, to_a(1)),
        Case::dropped("vxlan_runt", Overlay, Uplink, vec![vxlan(&swap(&good))[..13].to_vec()], "truncated_ethernet"),
        Case::dropped("vxlan_outer_ipv4_truncated", Overlay, Uplink, vec![vxlan(&swap(&good))[..14 + 12].to_vec()], "malformed_outer_ipv4"),
        Case::dropped("vxlan_outer_ihl_below_5", Overlay, Uplink, vec![outer_ip(vxlan(&swap(&good)), |ip| ip[0] = 0x44)], "malformed_outer_ipv4"),
        Case::dropped(
            "vxlan_outer_total_length_below_header",
            Overlay,
            Uplink,
            vec![outer_ip(vxlan(&swap(&good)), |ip| ip[2..4].copy_from_slice(&16u16.to_be_bytes()))],
            "malformed_outer_ipv4",
        ),
        Case::dropped(
            "vxlan_outer_total_length_beyond_frame",
            Overlay,
            Uplink,
            vec![outer_ip(vxlan(&swap(&good)), |ip| ip[2..4].copy_from_slice(&1400u16.to_be_bytes()))],
            "malformed_outer_ipv4",
        ),
        Case::dropped("vxlan_outer_bad_checksum", Overlay, Uplink, vec![{
            let mut f = vxlan(&swap(&good));
            f[24] ^= 0x55;
            f
        }], "bad_outer_ipv4_checksum"),
        Case::forwarded("vxlan_outer_ethernet_padding", Overlay, Uplink, [vxlan(&to_a(2)), vec![0; 12]].concat(), Vm0, to_a(2)),
        Case::dropped("vxlan_outer_protocol_0", Overlay, Uplink, vec![outer_ip(vxlan(&swap(&good)), |ip| ip[9] = 0)], "not_vxlan"),
        Case::dropped("vxlan_outer_fragment_first", Overlay, Uplink, vec![outer_fragment(MF, &vxlan(&swap(&good))[34..34 + 48])], "outer_fragment"),
        Case::dropped("vxlan_outer_fragment_middle", Overlay, Uplink, vec![outer_fragment(MF | 6, &payload(40))], "outer_fragment"),
        Case::dropped("vxlan_outer_fragment_last", Overlay, Uplink, vec![outer_fragment(6, &payload(40))], "outer_fragment"),
        Case::dropped("vxlan_outer_fragment_overlapping", Overlay, Uplink, vec![outer_fragment(1, &payload(40))], "outer_fragment"),
        Case::dropped("vxlan_outer_fragment_tiny", Overlay, Uplink, vec![outer_fragment(MF, &vxlan(&swap(&good))[34..34 + 8])], "outer_fragment"),
        Case::dropped("vxlan_udp_truncated", Overlay, Uplink, vec![truncate_outer(vxlan(&swap(&good)), 4)], "truncated_vxlan"),
        Case::dropped("vxlan_header_truncated", Overlay, Uplink, vec![truncate_outer(vxlan(&swap(&good)), 8 + 4)], "truncated_vxlan"),
        Case::dropped("vxlan_udp_length_beyond_ip_payload", Overlay, Uplink, vec![udp_length(vxlan(&swap(&good)), 1400)], "truncated_vxlan"),
        Case::dropped("vxlan_udp_length_below_header", Overlay, Uplink, vec![udp_length(vxlan(&swap(&good)), 4)], "truncated_vxlan"),
        Case::forwarded("vxlan_udp_length_below_ip_payload", Overlay, Uplink, bytes_past_udp_length(vxlan(&to_a(6)), 6), Vm0, to_a(6)),
        Case::forwarded("vxlan_outer_ipv4_options", Overlay, Uplink, outer_options(vxlan(&to_a(5))), Vm0, to_a(5)),
        Case::dropped("vxlan_flag_i_clear", Overlay, Uplink, vec![vxlan_bytes(vxlan(&swap(&good)), 42, 0x00)], "vxlan_flag_not_set"),
        Case::forwarded("vxlan_reserved_flags_set", Overlay, Uplink, vxlan_bytes(vxlan(&to_a(3)), 42, 0xff), Vm0, to_a(3)),
        Case::forwarded(
            "vxlan_reserved_fields_set",
            Overlay,
            Uplink,
            [43, 44, 45, 49].into_iter().fold(vxlan(&to_a(4)), |f, at| vxlan_bytes(f, at, 0xa5)),
            Vm0,
            to_a(4),
        ),
        Case::dropped("vxlan_unknown_vni", Overlay, Uplink, vec![vxlan_from(REMOTE_VTEP, 4242, &swap(&good))], "unknown_vni"),
        Case::dropped("vxlan_inner_runt", Overlay, Uplink, vec![vxlan(&swap(&good)[..13])], "truncated_inner_ethernet"),
        Case::forwarded(
            "vxlan_inner_ipv4_malformed",
            Overlay,
            Uplink,
            vxlan(&swap(&a_to_b(ipv4_raw(a, b, UDP, 0, 3, 9, &datagram)))),
            Vm0,
            swap(&a_to_b(ipv4_raw(a, b, UDP, 0, 3, 9, &datagram))),
        ),
        Case::dropped("vxlan_oversize_beyond_mbuf", Overlay, Uplink, vec![vxlan(&swap(&oversize[..9000]))], "multi_segment_mbuf"),
        Case::dropped("vm_oversize_beyond_mbuf", Overlay, Vm0, vec![padded_to(&to_remote(&good), 2049)], "multi_segment_mbuf"),
        Case::dropped("vm_beyond_uplink_mtu", Overlay, Vm0, vec![padded_to(&to_remote(&good), 1500 - 36 + 1)], "exceeds_uplink_mtu"),
    ];
    cases.extend(rewrite_cases());
    cases.extend(gateway_cases());
    cases.extend(storage_cases());
    cases
}

/// The frame turned around: VM_B's frame to VM_A (what comes to vm0 from the tunnel).
fn swap(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    if f.len() >= 12 {
        f[0..6].copy_from_slice(&VM_A.0);
        f[6..12].copy_from_slice(&REMOTE_VM.0);
    }
    f
}

/// The frame to REMOTE_VM (behind REMOTE_VTEP).
fn to_remote(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&REMOTE_VM.0);
    f
}

fn padded_to(frame: &[u8], len: usize) -> Vec<u8> {
    let mut f = frame.to_vec();
    f.resize(len, 0);
    f
}

fn vxlan_bytes(mut frame: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
    frame[at] = value;
    frame
}

/// A VXLAN frame with the outer UDP length field set to `len`.
fn udp_length(mut frame: Vec<u8>, len: u16) -> Vec<u8> {
    frame[38..40].copy_from_slice(&len.to_be_bytes());
    frame
}

/// A VXLAN frame with `extra` bytes after the UDP datagram inside the outer IPv4 packet: the UDP length
/// stays, the outer total length grows.
fn bytes_past_udp_length(frame: Vec<u8>, extra: usize) -> Vec<u8> {
    outer_ip([frame, vec![0xee; extra]].concat(), |ip| {
        let total = u16::from_be_bytes([ip[2], ip[3]]) + extra as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes())
    })
}

/// A VXLAN frame whose outer IPv4 header carries 4 bytes of options (NOP, NOP, NOP, EOL; IHL 6).
fn outer_options(frame: Vec<u8>) -> Vec<u8> {
    let mut f = [&frame[..34], &[1, 1, 1, 0][..], &frame[34..]].concat();
    let total = u16::from_be_bytes([f[16], f[17]]) + 4;
    outer_ip_header(&mut f, 24, |ip| {
        ip[0] = 0x46;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
    });
    f
}

/// Changes the outer IPv4 header (`len` bytes) and fixes its checksum.
fn outer_ip_header(frame: &mut [u8], len: usize, change: impl FnOnce(&mut [u8])) {
    change(&mut frame[14..14 + len]);
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum(&frame[14..14 + len]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
}

/// A VXLAN frame cut to `ip_payload` bytes after its outer IPv4 header, the outer total length agreeing.
fn truncate_outer(frame: Vec<u8>, ip_payload: usize) -> Vec<u8> {
    let frame = frame[..34 + ip_payload].to_vec();
    outer_ip(frame, |ip| ip[2..4].copy_from_slice(&((20 + ip_payload) as u16).to_be_bytes()))
}

/// The address-rewrite stage: frames from VM_B (vm1) to PRIMARY reach VM_A (vm0) addressed to POST.
fn rewrite_cases() -> Vec<Case> {
    use Config::Rewrite;
    use Port::*;
    let to_a = |ip: Vec<u8>| ethernet(VM_A, VM_B, 0x0800, &ip);
    let rewritten = |name, build: &dyn Fn([u8; 4]) -> Vec<u8>| Case::forwarded(name, Rewrite, Vm1, build(PRIMARY), Vm0, build(POST));
    let dropped = |name, frame, reason| Case::dropped(name, Rewrite, Vm1, vec![frame], reason);
    let datagram = |dst| udp(PEER, dst, (1000, 5000), &payload(40), true);
    let whole = |dst| udp(PEER, dst, (1000, 5000), &payload(56), true);
    vec![
        dropped("rewrite_ipv4_ihl_below_5", to_a(ipv4_raw(PEER, PRIMARY, UDP, 0, 4, 68, &datagram(PRIMARY))), "rewrite_malformed_ipv4"),
        dropped(
            "rewrite_ipv4_total_length_below_header",
            to_a(ipv4_raw(PEER, PRIMARY, UDP, 0, 5, 12, &datagram(PRIMARY))),
            "rewrite_malformed_ipv4",
        ),
        dropped(
            "rewrite_ipv4_total_length_beyond_frame",
            to_a(ipv4_raw(PEER, PRIMARY, UDP, 0, 5, 1400, &datagram(PRIMARY))),
            "rewrite_malformed_ipv4",
        ),
        // Too short to hold the destination address: nothing to rewrite, switched as L2.
        Case::unchanged("rewrite_ipv4_truncated_header", Rewrite, Vm1, to_a(ipv4(PEER, PRIMARY, UDP, 0, &datagram(PRIMARY)))[..14 + 12].to_vec(), Vm0),
        rewritten("rewrite_ethernet_padding_kept", &|dst| [to_a(ipv4(PEER, dst, UDP, 0, &datagram(dst))), vec![0; 10]].concat()),
        rewritten("rewrite_ipv4_protocol_0", &|dst| to_a(ipv4(PEER, dst, 0, 0, &payload(30)))),
        dropped("rewrite_udp_truncated", to_a(ipv4(PEER, PRIMARY, UDP, 0, &datagram(PRIMARY)[..6])), "rewrite_truncated_l4"),
        rewritten("rewrite_fragment_first", &|dst| to_a(ipv4(PEER, dst, UDP, MF, &whole(dst)[..24]))),
        rewritten("rewrite_fragment_middle", &|dst| to_a(ipv4(PEER, dst, UDP, MF | 3, &whole(dst)[24..48]))),
        rewritten("rewrite_fragment_last", &|dst| to_a(ipv4(PEER, dst, UDP, 6, &whole(dst)[48..]))),
        rewritten("rewrite_fragment_overlapping", &|dst| to_a(ipv4(PEER, dst, TCP, 1, &payload(16)))),
        dropped("rewrite_fragment_tiny", to_a(ipv4(PEER, PRIMARY, TCP, MF, &tcp(PEER, PRIMARY, &[])[..8])), "rewrite_truncated_l4"),
        dropped(
            "rewrite_icmp_error_truncated_quote",
            to_a(ipv4(PEER, PRIMARY, ICMP, 0, &icmp_unreachable(&ipv4(PRIMARY, PEER, UDP, 0, &datagram(PEER))[..12]))),
            "rewrite_malformed_icmp_error",
        ),
        // RFC 792 quotes the IPv4 header and 64 bits: the quote's UDP checksum is there and translated too.
        rewritten("rewrite_icmp_error_rfc792_quote", &|addr| {
            to_a(ipv4(PEER, addr, ICMP, 0, &icmp_unreachable(&ipv4(addr, PEER, UDP, 0, &udp(addr, PEER, (5000, 1000), &payload(40), true))[..28])))
        }),
        // A quote of the IPv4 header alone (RFC 1812 allows any length): the header is translated.
        rewritten("rewrite_icmp_error_header_only_quote", &|addr| {
            to_a(ipv4(PEER, addr, ICMP, 0, &icmp_unreachable(&ipv4(addr, PEER, UDP, 0, &udp(addr, PEER, (5000, 1000), &payload(40), true))[..20])))
        }),
    ]
}

/// The gateway: the other cloud's VNI 200 re-encapsulated as 100 to COMPUTE_VTEP; everything else named.
fn gateway_cases() -> Vec<Case> {
    use Config::Gateway;
    use Port::Uplink;
    let (a, b) = ([10, 0, 0, 10], [10, 0, 0, 20]);
    // VM_A -> VM_B (table 2 puts VM_B at COMPUTE_VTEP), UDP source port `n`: each case's output is its own.
    let inner = |n: u16| a_to_b(ipv4(a, b, UDP, 0, &udp(a, b, (n, 5000), &payload(40), true)));
    let from_other_cloud = |vni, n| vxlan_from(REMOTE_VTEP, vni, &inner(n));
    vec![
        Case::forwarded("gateway_good", Gateway, Uplink, from_other_cloud(200, 1), Uplink, gateway_out(&inner(1))),
        Case::forwarded(
            "gateway_reserved_bits_set",
            Gateway,
            Uplink,
            [42, 43, 49].into_iter().fold(from_other_cloud(200, 2), |f, at| vxlan_bytes(f, at, 0xff)),
            Uplink,
            gateway_out(&inner(2)),
        ),
        Case::forwarded(
            "gateway_outer_ethernet_padding",
            Gateway,
            Uplink,
            [from_other_cloud(200, 3), vec![0; 12]].concat(),
            Uplink,
            gateway_out(&inner(3)),
        ),
        Case::dropped("gateway_flag_i_clear", Gateway, Uplink, vec![vxlan_bytes(from_other_cloud(200, 4), 42, 0x00)], "vxlan_flag_not_set"),
        Case::dropped("gateway_unknown_vni", Gateway, Uplink, vec![from_other_cloud(300, 5)], "unknown_vni"),
        Case::dropped("gateway_inner_runt", Gateway, Uplink, vec![vxlan_from(REMOTE_VTEP, 200, &inner(6)[..10])], "truncated_inner_ethernet"),
        Case::dropped(
            "gateway_outer_fragment",
            Gateway,
            Uplink,
            vec![outer_ip(from_other_cloud(200, 7), |ip| ip[6..8].copy_from_slice(&MF.to_be_bytes()))],
            "outer_fragment",
        ),
    ]
}

/// The storage server: refusals the protocol answers get their status, the rest are dropped by name.
fn storage_cases() -> Vec<Case> {
    let read = |id, offset, length| block(id, Op::Read, offset, length, 0);
    let write = |id, offset, data: &[u8]| block(id, Op::Write, offset, data.len() as u32, data.len() as u16);
    vec![
        Case::answered("storage_read_zero_length", vec![request(&read(100, 0, 0), &[])], vec![reply(100, Status::Invalid)]),
        Case::answered("storage_read_out_of_range", vec![request(&read(200, IMAGE_SIZE, 512), &[])], vec![reply(200, Status::Invalid)]),
        Case::answered(
            "storage_read_straddling_the_end",
            vec![request(&read(300, IMAGE_SIZE - 512, 1024), &[])],
            vec![reply(300, Status::Invalid)],
        ),
        Case::answered(
            "storage_write_out_of_range",
            vec![request(&write(400, IMAGE_SIZE, &payload(512)), &payload(512))],
            vec![reply(400, Status::NoSpace)],
        ),
        Case::answered("storage_read_oversize", vec![request(&read(500, 0, 64 * 1024 + 1), &[])], vec![reply(500, Status::Overflow)]),
        Case::answered("storage_read_offset_overflow", vec![request(&read(600, u64::MAX - 10, 512), &[])], vec![reply(600, Status::Invalid)]),
        // The image is byte-addressed: unaligned I/O is served. (Requests in flight together run in any order,
        // as NBD allows: the read is of other bytes than the write.)
        Case::answered(
            "storage_unaligned_write_and_read",
            vec![request(&write(700, 1001, &payload(13)), &payload(13)), request(&read(701, 2001, 13), &[])],
            vec![reply(700, Status::Ok), Reply { request_id: 701, status: Status::Ok, data: vec![0; 13] }],
        ),
        // The same WRITE twice in one burst: executed once; the copy finds it executing and is dropped (the
        // reply is coming). A copy after the reply would be answered from the recorded status (layer 1:
        // src/blockio/replay.rs).
        Case {
            drops: vec![("storage_executing", 1)],
            ..Case::answered(
                "storage_replayed_same_source",
                vec![request(&write(800, 4096, &payload(64)), &payload(64)); 2],
                vec![reply(800, Status::Ok)],
            )
        },
        // A request id far below the highest taken (800 + the 1024-id window): ESTALE.
        Case::answered("storage_stale_request_id", vec![request(&read(3000, 0, 512), &[]), request(&read(1, 0, 512), &[])], vec![
            Reply { request_id: 3000, status: Status::Ok, data: vec![0; 512] },
            reply(1, Status::StaleRequestId),
        ]),
        Case::dropped(
            "storage_replayed_from_another_ip",
            Config::Storage,
            Port::Uplink,
            vec![storage_frame(STRANGER_IP, &signed(&read(4000, 0, 512), &[]))],
            "storage_wrong_source",
        ),
        Case::dropped(
            "storage_bad_mac",
            Config::Storage,
            Port::Uplink,
            vec![{
                let mut datagram = signed(&read(4100, 0, 512), &[]);
                datagram[60] ^= 1;
                storage_frame(CLIENT_IP, &datagram)
            }],
            "storage_bad_mac",
        ),
        Case::dropped(
            "storage_unknown_user",
            Config::Storage,
            Port::Uplink,
            vec![request(&BlockRepr { user_id: 9, ..read(4200, 0, 512) }, &[])],
            "storage_unknown_user",
        ),
        // The block-I/O stage takes unfragmented datagrams only; a fragment to the server's address is the
        // VTEP's, which does not reassemble.
        Case::dropped(
            "storage_ip_fragment",
            Config::Storage,
            Port::Uplink,
            vec![{
                let mut frame = request(&read(4400, 0, 512), &[]);
                frame[20..22].copy_from_slice(&MF.to_be_bytes());
                outer_ip(frame, |_| {})
            }],
            "outer_fragment",
        ),
        // Layer 2 and 3 as a host checks them: the client's READ from another source MAC (a replay by another
        // host on the link) and from a broadcast one, to another host's MAC, with a bad IPv4 header checksum.
        Case::dropped(
            "storage_from_another_source_mac",
            Config::Storage,
            Port::Uplink,
            vec![{
                let mut frame = request(&read(4500, 0, 512), &[]);
                frame[6..12].copy_from_slice(&[2, 0x66, 0, 0, 0, 0x66]);
                frame
            }],
            "storage_wrong_source_mac",
        ),
        Case::dropped(
            "storage_from_a_broadcast_source_mac",
            Config::Storage,
            Port::Uplink,
            vec![{
                let mut frame = request(&read(4600, 0, 512), &[]);
                frame[6..12].copy_from_slice(&MacAddr::BROADCAST.0);
                frame
            }],
            "invalid_source_mac",
        ),
        Case::dropped(
            "storage_to_another_mac",
            Config::Storage,
            Port::Uplink,
            vec![{
                let mut frame = request(&read(4700, 0, 512), &[]);
                frame[0..6].copy_from_slice(&[2, 0x66, 0, 0, 0, 0x67]);
                frame
            }],
            "storage_wrong_destination_mac",
        ),
        Case::dropped(
            "storage_bad_ipv4_checksum",
            Config::Storage,
            Port::Uplink,
            vec![{
                let mut frame = request(&read(4800, 0, 512), &[]);
                frame[24] ^= 0x40;
                frame
            }],
            "storage_bad_ipv4_checksum",
        ),
        Case::dropped(
            "storage_truncated_header",
            Config::Storage,
            Port::Uplink,
            vec![storage_frame(CLIENT_IP, &signed(&read(4300, 0, 512), &[])[..40])],
            "storage_malformed",
        ),
    ]
}

// ---- the committed pcaps ----

#[test]
#[ignore = "rewrites tests/conformance/pcap/ from the generator"]
fn regenerate() {
    let dir = pcap_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for case in cases() {
        std::fs::write(case.pcap(), pcap_bytes(&case.frames)).unwrap();
    }
}

#[test]
fn committed_pcaps_match_the_generator() {
    let cases = cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    for case in &cases {
        let committed = std::fs::read(case.pcap()).unwrap_or_else(|e| panic!("{}: {e} (run the ignored test `regenerate`)", case.pcap().display()));
        assert!(committed == pcap_bytes(&case.frames), "{} differs from the generator (run the ignored test `regenerate`)", case.name);
    }
    let mut files: Vec<String> = std::fs::read_dir(pcap_dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort_unstable();
    let mut expected: Vec<String> = cases.iter().map(|c| format!("{}.pcap", c.name)).collect();
    expected.sort_unstable();
    assert_eq!(files, expected, "no pcap without a case");
}

// ---- running ----

fn config_toml(config: Config, dir: &Path, devargs: &BTreeMap<Port, String>) -> String {
    let mut toml = match config {
        Config::L2 => ONE_WORKER.replace("mbufs = 4095\n", "mbufs = 4095\ndata_room = 9344\n"),
        _ => ONE_WORKER.to_string(),
    };
    toml += &format!("[control]\nsocket = \"{dir}/api.sock\"\ndatabase = \"{dir}/config.redb\"\n", dir = dir.display());
    let port = |port: Port, role: &str, more: &str| format!("[[port]]\nname = \"{}\"\ndevargs = \"{}\"\nrole = \"{role}\"\n{more}", port.name(), devargs[&port]);
    let uplink = |mtu: u16| format!("address = \"{LOCAL_VTEP}/24\"\nnext_hop_mac = \"{NEXT_HOP}\"\nmtu = {mtu}\n");
    let network = "[[network]]\nvni = 100\nname = \"blue\"\n";
    let endpoint = |mac: MacAddr, ip: Ipv4Addr, port: &str| format!("[[endpoint]]\nvni = 100\nmac = \"{mac}\"\nip = \"{ip}\"\nport = \"{port}\"\n");
    match config {
        Config::L2 | Config::Overlay | Config::Rewrite => {
            toml += &port(Port::Vm0, "vm", "vni = 100\n");
            toml += &port(Port::Vm1, "vm", "vni = 100\n");
            if config != Config::L2 {
                toml += &port(Port::Uplink, "uplink", &uplink(1500));
            }
            toml += network;
            let (a_ip, b_ip) = if config == Config::Rewrite { (POST.into(), PEER.into()) } else { ([10, 0, 0, 10].into(), [10, 0, 0, 20].into()) };
            toml += &endpoint(VM_A, a_ip, "vm0");
            toml += &endpoint(VM_B, b_ip, "vm1");
            if config != Config::L2 {
                toml += &format!("[[remote]]\nvni = 100\nmac = \"{REMOTE_VM}\"\nvtep = \"{REMOTE_VTEP}\"\n");
            }
            if config == Config::Rewrite {
                let (primary, post) = (Ipv4Addr::from(PRIMARY), Ipv4Addr::from(POST));
                toml += &format!("[[address_migration]]\nvni = 100\nprimary_ip = \"{primary}\"\npost_migration_ip = \"{post}\"\nport = \"vm0\"\n");
            }
        }
        Config::Gateway => {
            toml += &port(Port::Uplink, "uplink", &uplink(1500));
            toml += network;
            toml += &format!("[[remote]]\nvni = 100\nmac = \"{VM_B}\"\nvtep = \"{COMPUTE_VTEP}\"\n");
            toml += "[gateway]\n[[gateway.vni_map]]\nremote_vni = 200\nlocal_vni = 100\n";
        }
        Config::Storage => {
            let server = Ipv4Addr::from(SERVER_IP);
            // Replies go to the MAC resolved for the client's IP; no ARP reply comes in pcap mode, so the
            // client's MAC is the configured next hop.
            toml += &port(Port::Uplink, "uplink", &format!("address = \"{server}/24\"\nnext_hop_mac = \"{CLIENT_MAC}\"\n"));
            toml += &format!("[storage]\nimages = \"{}/images\"\n", dir.display());
        }
    }
    toml
}

/// The storage user and image, put in the config database before the switch opens it (the API would give the
/// user a random secret; the committed pcaps need a fixed one).
fn seed_storage(dir: &Path) {
    use switchyard::model::{Secret, StorageImage, StorageUser};
    use switchyard::configdb::Store;
    use switchyard::model::Change;
    let store = Store::open(dir.join("config.redb")).unwrap();
    let user = StorageUser { name: "alice".into(), id: 1, ips: vec![CLIENT_IP.into()], quota_bytes: 1 << 30, secret: Secret(SECRET) };
    let image = StorageImage { name: "disk".into(), id: 1, owner: "alice".into(), size: IMAGE_SIZE, read_only: false };
    store.commit(&[Change::PutStorageUser(user), Change::PutStorageImage(image)]).unwrap();
    drop(store);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::File::create(dir.join("images/1.img")).unwrap().set_len(IMAGE_SIZE).unwrap();
}

/// Splits cases into runs in which no drop reason is expected by two cases.
fn rounds<'a>(cases: &[&'a Case]) -> Vec<Vec<&'a Case>> {
    let mut rounds: Vec<Vec<&Case>> = Vec::new();
    for &case in cases {
        let clashes = |round: &Vec<&Case>| round.iter().any(|other| other.drops.iter().any(|(r, _)| case.drops.iter().any(|(s, _)| r == s)));
        match rounds.iter_mut().find(|round| !clashes(round)) {
            Some(round) => round.push(case),
            None => rounds.push(vec![case]),
        }
    }
    rounds
}

fn conformance(config: Config) {
    let cases = cases();
    let mine: Vec<&Case> = cases.iter().filter(|c| c.config == config).collect();
    for (i, round) in rounds(&mine).iter().enumerate() {
        run_round(config, i, round);
    }
}

fn run_round(config: Config, index: usize, cases: &[&Case]) {
    let dir = scratch(&format!("conformance-{config:?}-{index}"));
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    let ports: &[Port] = match config {
        Config::L2 | Config::Overlay | Config::Rewrite => &PORTS[..if config == Config::L2 { 2 } else { 3 }],
        Config::Gateway | Config::Storage => &[Port::Uplink],
    };
    let mut devargs = BTreeMap::new();
    let mut outputs = BTreeMap::new();
    for (id, &port) in ports.iter().enumerate() {
        // Each case's committed pcap, in table order, is the port's input.
        let frames: Vec<Vec<u8>> = cases.iter().filter(|c| c.port == port).flat_map(|c| read_pcap(&c.pcap())).collect();
        let (input, output) = (dir.join(format!("{}-in.pcap", port.name())), dir.join(format!("{}-out.pcap", port.name())));
        write_pcap(&input, &frames);
        devargs.insert(port, format!("net_pcap{id},rx_pcap={},tx_pcap={}", input.display(), output.display()));
        outputs.insert(port, output);
    }
    if config == Config::Storage {
        seed_storage(&dir);
    }
    let stats_path = dir.join("stats.json");
    let out = run_config(&dir, "switch", &config_toml(config, &dir, &devargs), &["--stats-json", stats_path.to_str().unwrap()]);
    assert!(out.status.success(), "{names:?}: switchyard failed: {}", String::from_utf8_lossy(&out.stderr));
    let stats = json(&stats_path);
    assert_eq!(stats["unaccounted"], 0, "{names:?}: {stats}");
    assert_eq!(stats["mempool_in_use"], 0, "{names:?}");

    // Every drop counter: exactly what the cases expect, so nothing else was dropped.
    let mut expected_drops: BTreeMap<&str, u64> = BTreeMap::new();
    for case in cases {
        for &(reason, n) in &case.drops {
            *expected_drops.entry(reason).or_default() += n;
        }
    }
    for (reason, count) in stats["drops"].as_object().unwrap() {
        let want = expected_drops.remove(reason.as_str()).unwrap_or(0);
        let by = cases.iter().find(|c| c.drops.iter().any(|(r, _)| r == reason)).map_or("no case", |c| c.name);
        assert_eq!(count.as_u64().unwrap(), want, "drop reason {reason} (expected by {by}); run {names:?}: {}", nonzero_drops(&stats));
    }
    assert!(expected_drops.is_empty(), "unknown drop reasons {expected_drops:?}");

    // Every output frame: exactly the expected ones on each port (ports are read in parallel: compared sorted).
    for &port in ports {
        let mut got = read_pcap(&outputs[&port]);
        if config == Config::Storage {
            check_replies(&got, cases);
            continue;
        }
        let mut want: Vec<Vec<u8>> = cases.iter().flat_map(|c| c.outputs.iter().filter(|(p, _)| *p == port).map(|(_, f)| f.clone())).collect();
        got.sort();
        want.sort();
        if got != want {
            // The multiset differences: frames no case expects here, and the cases whose frame did not come.
            let mut unexpected = got.clone();
            let mut missing = Vec::new();
            for case in cases {
                for (_, frame) in case.outputs.iter().filter(|(p, _)| *p == port) {
                    match unexpected.iter().position(|f| f == frame) {
                        Some(at) => drop(unexpected.remove(at)),
                        None => missing.push(case.name),
                    }
                }
            }
            let unexpected: Vec<String> = unexpected.iter().map(hex::encode).collect();
            panic!("{} output differs: cases missing their frame {missing:?}; unexpected frames {unexpected:?}", port.name());
        }
    }
}

/// Storage replies: each a datagram from the service to the client, MAC'd under the user's key, answering its
/// request with the expected status (and data); as many as expected, nothing else.
fn check_replies(frames: &[Vec<u8>], cases: &[&Case]) {
    let mut want: Vec<(u64, Status, Vec<u8>, &str)> =
        cases.iter().flat_map(|c| c.replies.iter().map(|r| (r.request_id, r.status, r.data.clone(), c.name))).collect();
    for frame in frames {
        assert_eq!(&frame[0..6], &CLIENT_MAC.0, "to the client's MAC");
        assert_eq!(&frame[26..34], &[SERVER_IP, CLIENT_IP].concat()[..], "from the service to the client's IP");
        let datagram = &frame[42..];
        let packet = BlockPacket::new_checked(datagram).unwrap();
        packet.verify_mac(&key()).expect("the reply's MAC verifies under the user's key");
        let reply = BlockRepr::parse_reply(&packet).unwrap();
        let got = (reply.request_id, reply.status, packet.payload().to_vec());
        let Some(at) = want.iter().position(|w| (w.0, w.1, &w.2) == (got.0, got.1, &got.2)) else {
            panic!("an unexpected reply {reply:?} (payload {} bytes); still expected {want:?}", got.2.len());
        };
        want.remove(at);
    }
    assert!(want.is_empty(), "replies that did not come: {want:?}");
}

#[test]
fn l2_vrouter_forwards_what_it_need_not_understand() {
    conformance(Config::L2);
}

#[test]
fn vxlan_uplink_checks_what_it_decapsulates() {
    conformance(Config::Overlay);
}

#[test]
fn address_rewrite_refuses_what_it_cannot_rewrite_correctly() {
    conformance(Config::Rewrite);
}

#[test]
fn gateway_checks_what_it_re_encapsulates() {
    conformance(Config::Gateway);
}

#[test]
fn storage_server_answers_or_names_every_bad_request() {
    conformance(Config::Storage);
}
