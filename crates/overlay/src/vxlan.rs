//! VXLAN encapsulation and decapsulation (RFC 7348) on one packet buffer.
use std::net::Ipv4Addr;

use switchyard_pipeline::{DropReason, PacketBuf};
use switchyard_model::Vni;
use switchyard_unit_abi::mix;
use switchyard_wire::{checksum, ethernet, ipv4, udp, vxlan, MacAddr};

/// Outer Ethernet + IPv4 (no options) + UDP + VXLAN.
pub(crate) const ENCAP_LEN: usize = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;
/// Outer IPv4 bytes on top of the inner frame.
const OUTER_IP_OVERHEAD: usize = ENCAP_LEN - ethernet::HEADER_LEN;

/// Where an encapsulated frame goes on the underlay.
#[derive(Clone, Copy, Debug)]
pub struct Tunnel {
    pub vni: Vni,
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub mtu: u16,
}

/// Wraps the frame in `packet` for `tunnel`: outer Ethernet/IPv4/UDP/VXLAN with
/// the UDP source port from the inner flow hash (RFC 7348 section 5, in the
/// dynamic range 49152-65535), DF set, TTL 64, the IPv4 checksum filled and the
/// UDP checksum zero (allowed for IPv4, RFC 7348 section 5).
pub fn encapsulate<P: PacketBuf>(packet: &mut P, tunnel: &Tunnel) -> Result<(), DropReason> {
    let inner_len = packet.len();
    let ip_len = OUTER_IP_OVERHEAD + inner_len;
    if ip_len > usize::from(tunnel.mtu) {
        return Err(DropReason::ExceedsUplinkMtu);
    }
    let src_port = 49152 | (inner_flow_hash(packet.data()) as u16 & 0x3fff);
    let outer = packet.prepend(ENCAP_LEN).ok_or(DropReason::NoHeadroom)?;
    outer[0..6].copy_from_slice(&tunnel.dst_mac.0);
    outer[6..12].copy_from_slice(&tunnel.src_mac.0);
    outer[12..14].copy_from_slice(&ethernet::ethertype::IPV4.to_be_bytes());
    let ip = &mut outer[14..34];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&[0, 0]); // DF set: the ID may be zero (RFC 6864)
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = ipv4::protocol::UDP;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&tunnel.src_ip.octets());
    ip[16..20].copy_from_slice(&tunnel.dst_ip.octets());
    let sum = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp_header = &mut outer[34..42];
    udp_header[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp_header[2..4].copy_from_slice(&vxlan::UDP_PORT.to_be_bytes());
    udp_header[4..6].copy_from_slice(&((ip_len - ipv4::MIN_HEADER_LEN) as u16).to_be_bytes());
    udp_header[6..8].copy_from_slice(&[0, 0]);
    let vx = &mut outer[42..50];
    vx[0] = vxlan::FLAG_I;
    vx[1..4].copy_from_slice(&[0, 0, 0]);
    vx[4..7].copy_from_slice(&tunnel.vni.to_be_bytes()[1..4]);
    vx[7] = 0;
    Ok(())
}

/// A hash of the inner frame's flow: MACs, and for IPv4 the addresses,
/// protocol and (unfragmented TCP/UDP) ports. Same flow, same source port.
pub(crate) fn inner_flow_hash(frame: &[u8]) -> u64 {
    let word = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    let mut hash = mix(word(&frame[..frame.len().min(12)]));
    if frame.len() >= 34 && frame[12..14] == ethernet::ethertype::IPV4.to_be_bytes() {
        let ip = &frame[14..];
        hash = mix(hash ^ word(&ip[12..20]) ^ (u64::from(ip[9]) << 56));
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        let unfragmented = ip[6] & 0x3f == 0 && ip[7] == 0;
        if unfragmented && matches!(ip[9], ipv4::protocol::TCP | ipv4::protocol::UDP) && ip.len() >= header_len + 4 {
            hash = mix(hash ^ word(&ip[header_len..header_len + 4]));
        }
    }
    hash ^ (hash >> 32)
}

/// A source address no host may send from (RFC 1122 section 3.2.1.3):
/// 0.0.0.0 (only while booting, never to a VTEP), loopback 127/8, multicast
/// 224/4, class E 240/4 and the limited broadcast 255.255.255.255. A packet
/// from one is dropped and its sender never learned as a VTEP or neighbour.
pub(crate) fn is_martian_source(source: Ipv4Addr) -> bool {
    source.is_unspecified() || source.is_loopback() || source.is_multicast() || source.octets()[0] >= 240
}

/// What a VXLAN packet from the uplink carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decapsulated {
    pub vni: Vni,
    /// The outer source address: the VTEP the inner source MAC lives behind.
    pub remote_vtep: Ipv4Addr,
}

/// Checks an IPv4 frame from the uplink as VXLAN to `local_vtep` and strips the
/// outer headers (and any Ethernet padding), leaving the inner frame.
/// Nothing is changed unless the packet is accepted.
pub fn decapsulate<P: PacketBuf>(packet: &mut P, local_vtep: Ipv4Addr) -> Result<Decapsulated, DropReason> {
    let frame = packet.data();
    let ip = frame.get(ethernet::HEADER_LEN..).ok_or(DropReason::MalformedOuterIpv4)?;
    let packet_view = ipv4::Ipv4Packet::new_checked(ip).map_err(|_| DropReason::MalformedOuterIpv4)?;
    if !packet_view.verify_checksum() {
        return Err(DropReason::BadOuterIpv4Checksum);
    }
    if packet_view.dst_addr() != local_vtep {
        return Err(DropReason::VxlanWrongDestination);
    }
    if is_martian_source(packet_view.src_addr()) || packet_view.src_addr() == local_vtep {
        return Err(DropReason::MartianOuterSource);
    }
    if packet_view.ttl() == 0 {
        return Err(DropReason::OuterTtlZero);
    }
    if packet_view.is_fragment() {
        return Err(DropReason::OuterFragment);
    }
    if packet_view.protocol() != ipv4::protocol::UDP {
        return Err(DropReason::NotVxlan);
    }
    let payload = packet_view.payload();
    let datagram = udp::UdpDatagram::new_checked(payload).map_err(|_| DropReason::TruncatedVxlan)?;
    if datagram.dst_port() != vxlan::UDP_PORT {
        return Err(DropReason::NotVxlan);
    }
    let header = vxlan::VxlanHeader::new_checked(datagram.payload()).map_err(|_| DropReason::TruncatedVxlan)?;
    if !header.has_vni() {
        return Err(DropReason::VxlanFlagNotSet);
    }
    let inner_len = header.payload().len();
    if inner_len < ethernet::HEADER_LEN {
        return Err(DropReason::TruncatedInnerEthernet);
    }
    let decapsulated = Decapsulated { vni: header.vni(), remote_vtep: packet_view.src_addr() };
    let strip = ethernet::HEADER_LEN + packet_view.header_len() + udp::HEADER_LEN + vxlan::HEADER_LEN;
    // Ethernet padding past the IPv4 total length, and bytes past the UDP length.
    let trailing = frame.len() - strip - inner_len;
    // Cannot fail: both lengths lie within the frame, checked by the views above.
    let stripped = packet.trim(trailing) && packet.adj(strip);
    debug_assert!(stripped);
    Ok(decapsulated)
}
