//! Per-packet cost of the `wire` views and checksums.
//!
//! `cargo bench --bench wire` (add `-- --quick` for a short run, `-- --test`
//! to only check that every benchmark runs).

use core::net::Ipv4Addr;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use switchyard::wire::ethernet::ethertype;
use switchyard::wire::ipv4::protocol;
use switchyard::wire::block::{self, UserKey};
use switchyard::wire::{checksum, BlockPacket, BlockRepr, EthernetFrame, Ipv4Packet, UdpDatagram, VxlanHeader};

// 64-byte frame on the wire (60 + FCS): IPv4/UDP 10.0.0.1:1024 -> 10.0.0.2:2048.
#[rustfmt::skip]
const FRAME64: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x2e, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x26, 0xbc, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0x04, 0x00, 0x08, 0x00, 0x00, 0x1a, 0xdf, 0xb7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// VXLAN header (I flag, VNI 5001) + a 14-byte inner Ethernet header.
#[rustfmt::skip]
const VXLAN: [u8; 22] = [
    0x08, 0x00, 0x00, 0x00, 0x00, 0x13, 0x89, 0x00,
    0x02, 0xaa, 0x00, 0x00, 0x00, 0x02, 0x02, 0xaa, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
];

/// Parses Ethernet/IPv4/UDP and returns a 5-tuple-ish digest.
#[inline(never)]
fn parse_eth_ipv4_udp(frame: &[u8]) -> Option<(u32, u32, u16, u16, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != protocol::UDP || ip.frag_offset() != 0 {
        return None;
    }
    let udp = UdpDatagram::new_checked(ip.payload()).ok()?;
    Some((ip.src_addr().to_bits(), ip.dst_addr().to_bits(), udp.src_port(), udp.dst_port(), eth.vid().unwrap_or(0)))
}

fn benches(c: &mut Criterion) {
    // Sanity: the inputs are what the benchmarks claim.
    assert!(parse_eth_ipv4_udp(&FRAME64).is_some());
    assert!(Ipv4Packet::new_checked(&FRAME64[14..]).unwrap().verify_checksum());

    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));

    g.bench_function("parse_eth_ipv4_udp_64B", |b| b.iter(|| parse_eth_ipv4_udp(black_box(&FRAME64))));

    let header = &FRAME64[14..34];
    g.bench_function("ipv4_verify_checksum_20B", |b| {
        b.iter(|| Ipv4Packet::new_unchecked(black_box(header)).verify_checksum())
    });

    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..1500)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u8
        })
        .collect();
    g.bench_function("checksum_1500B", |b| b.iter(|| checksum::checksum(black_box(&data))));

    let (old, new) = (Ipv4Addr::new(10, 0, 0, 1).to_bits(), Ipv4Addr::new(203, 0, 113, 7).to_bits());
    g.bench_function("update_u32_ipv4_addr", |b| {
        b.iter(|| checksum::update_u32(black_box(0x26bc), black_box(old), black_box(new)))
    });

    g.bench_function("vxlan_parse", |b| {
        b.iter(|| {
            let h = VxlanHeader::new_checked(black_box(&VXLAN[..])).ok()?;
            (h.has_vni() && h.reserved_bits_clear()).then(|| (h.vni(), h.payload().len()))
        })
    });

    // A full WRITE fragment of the storage protocol: its MAC is the per-datagram cost of authentication.
    let key = UserKey::new([7; block::KEY_LEN]);
    let fragment = BlockRepr {
        op: block::Op::Write,
        flags: block::Flags::NONE,
        user_id: 7,
        image_id: 1,
        request_id: 1,
        offset: 0,
        length: block::MAX_IO_LEN,
        fragment_offset: 0,
        payload_len: block::MAX_FRAGMENT_PAYLOAD,
        status: block::Status::Ok,
    };
    let mut datagram = vec![0u8; block::HEADER_LEN + usize::from(block::MAX_FRAGMENT_PAYLOAD)];
    fragment.emit(&mut datagram).unwrap();
    datagram[block::HEADER_LEN..].copy_from_slice(&data[..usize::from(block::MAX_FRAGMENT_PAYLOAD)]);
    BlockPacket::new_unchecked(&mut datagram[..]).fill_mac(&key);
    g.bench_function("block_parse_and_verify_mac_1408B", |b| {
        b.iter(|| {
            let packet = BlockPacket::new_checked(black_box(&datagram[..])).ok()?;
            packet.verify_mac(&key).ok()?;
            BlockRepr::parse_request(&packet).ok()
        })
    });
    g.finish();
}

criterion_group!(wire, benches);
criterion_main!(wire);
