//! Frames built byte by byte for the pcap tests: Ethernet, IPv4 (also with a wrong IHL or total length),
//! UDP and TCP with their checksums computed from scratch.
use switchyard::wire::checksum::{checksum, Checksum};
use switchyard::wire::MacAddr;

pub(crate) const TCP: u8 = 6;
pub(crate) const UDP: u8 = 17;
pub(crate) const ICMP: u8 = 1;

pub(crate) fn ethernet(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = [dst.0, src.0].concat();
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header of `ihl` words (options zero; below 5 it is still 20 bytes long) with this total length and
/// flags/fragment offset, its checksum valid, then `payload`.
pub(crate) fn ipv4_raw(src: [u8; 4], dst: [u8; 4], protocol: u8, flags_offset: u16, ihl: u8, total: u16, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x40 | ihl, 0, (total >> 8) as u8, total as u8, 0xab, 0xcd];
    ip.extend_from_slice(&flags_offset.to_be_bytes());
    ip.extend_from_slice(&[64, protocol, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.resize(usize::from(ihl.max(5)) * 4, 0);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(payload);
    ip
}

/// A well-formed IPv4 packet (no options) around `payload`.
pub(crate) fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, flags_offset: u16, payload: &[u8]) -> Vec<u8> {
    ipv4_raw(src, dst, protocol, flags_offset, 5, (20 + payload.len()) as u16, payload)
}

pub(crate) fn l4_checksum(src: [u8; 4], dst: [u8; 4], protocol: u8, segment: &[u8]) -> u16 {
    let mut c = Checksum::new();
    c.add_pseudo_header_ipv4(src.into(), dst.into(), protocol, segment.len() as u16);
    c.add_bytes(segment);
    c.finish()
}

/// A UDP datagram; without `with_checksum` its checksum is 0 ("none", RFC 768).
pub(crate) fn udp(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), payload: &[u8], with_checksum: bool) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut d = [ports.0.to_be_bytes(), ports.1.to_be_bytes(), (len as u16).to_be_bytes(), [0, 0]].concat();
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

/// A TCP segment 40000 -> 80, PSH/ACK, with `payload`.
pub(crate) fn tcp(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
    s.extend_from_slice(payload);
    let c = l4_checksum(src, dst, TCP, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}
