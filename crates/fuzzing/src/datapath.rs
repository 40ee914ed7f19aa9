//! The data path on one frame, without EAL: the whole pipeline, VXLAN decapsulation, the address rewrite
//! (ICMP errors with their inner packets too) and the inter-cloud gateway. Input: a control byte
//! (`fixture::Options`), then the frame.
use std::net::Ipv4Addr;

use super::fixture::{self, Options, Switch, LOCAL_VTEP, POST_IP, PRIMARY_IP, UPLINK};
use super::MAX_FRAME;
use switchyard::overlay::decapsulate;
use switchyard::pipeline::{BytesPacket, PacketBuf, Verdict};
use switchyard::address_migration::{rewrite_frame, AddressMap, Direction, Rewritten};
use switchyard::wire::{ethernet, icmp, ipv4, udp, vxlan, Icmpv4Packet, Ipv4Packet, TcpSegment, UdpDatagram};

fn split(data: &[u8]) -> Option<(Options, Vec<u8>)> {
    let (&control, frame) = data.split_first()?;
    let options = Options::from_byte(control);
    let mut frame = frame[..frame.len().min(MAX_FRAME)].to_vec();
    if options.fix_outer && options.in_port == UPLINK {
        fixture::aim_at_vtep(&mut frame);
    }
    Some((options, frame))
}

/// Fuzz body `pipeline`: one frame through a worker's stages (migration hold, address rewrite from VMs,
/// the vRouter unit, tunnels coming up, address rewrite to VMs) from any port.
pub fn pipeline(data: &[u8]) {
    let Some((options, frame)) = split(data) else { return };
    let out = Switch::new(Options { gateway: false, ..options }).run(&frame);
    fixture::check_output(&out);
}

/// Fuzz body `gateway`: one frame from the uplink of an inter-cloud gateway (docs/gateway.md).
/// Besides the pipeline's checks: a relayed frame never goes back to the VTEP it came from.
pub fn gateway(data: &[u8]) {
    let Some((options, frame)) = split(data) else { return };
    let options = Options { gateway: true, in_port: UPLINK, ..options };
    let out = Switch::new(options).run(&frame);
    fixture::check_output(&out);
    let Some(came_from) = outer_vxlan(&frame).map(|(source, _)| source) else { return };
    for (verdict, sent) in &out {
        if let (Verdict::Forward(UPLINK), Some((_, inner))) = (verdict, outer_vxlan(sent)) {
            let inner_is_arp = inner.get(12..14) == Some(&ethernet::ethertype::ARP.to_be_bytes()[..]);
            let to = Ipv4Packet::new_checked(&sent[ethernet::HEADER_LEN..]).map(|ip| ip.dst_addr()).ok();
            assert!(inner_is_arp || to != Some(came_from), "relayed back to the VTEP it came from ({came_from})");
        }
    }
}

/// The outer source address and the inner frame of a VXLAN frame.
fn outer_vxlan(frame: &[u8]) -> Option<(Ipv4Addr, &[u8])> {
    let ip = Ipv4Packet::new_checked(frame.get(ethernet::HEADER_LEN..)?).ok()?;
    if ip.protocol() != ipv4::protocol::UDP || frame[12..14] != ethernet::ethertype::IPV4.to_be_bytes() {
        return None;
    }
    let source = ip.src_addr();
    let datagram = UdpDatagram::new_checked(ip.payload()).ok()?;
    if datagram.dst_port() != vxlan::UDP_PORT {
        return None;
    }
    let header = vxlan::VxlanHeader::new_checked(datagram.payload()).ok()?;
    let start = ethernet::HEADER_LEN + ip.header_len() + udp::HEADER_LEN + vxlan::HEADER_LEN;
    Some((source, &frame[start..start + header.payload().len()]))
}

/// Fuzz body `vxlan_decap`: `overlay::decapsulate` on an IPv4 frame from the uplink. Accepted: what is left is the
/// VXLAN payload, at least an Ethernet header. Refused: the packet is unchanged (a named drop reason).
pub fn vxlan_decap(data: &[u8]) {
    let Some((options, frame)) = split(data) else { return };
    // The vRouter hands it IPv4 frames only (ARP and other ethertypes are decided before).
    let ipv4 = frame.get(12..14) == Some(&ethernet::ethertype::IPV4.to_be_bytes()[..]);
    let mut packet = BytesPacket::new(&frame);
    if ipv4 {
        match decapsulate(&mut packet, LOCAL_VTEP) {
            Ok(decapsulated) => {
                let (source, inner) = outer_vxlan(&frame).expect("an accepted frame is VXLAN");
                assert_eq!(decapsulated.remote_vtep, source);
                assert_eq!(packet.data(), inner, "decapsulation leaves exactly the VXLAN payload");
                assert!(packet.len() >= ethernet::HEADER_LEN);
            }
            Err(_) => assert_eq!(packet.data(), &frame[..], "a refused frame is left alone"),
        }
    }
    // And the same frame through the unit on the uplink side.
    fixture::check_output(&Switch::new(Options { in_port: UPLINK, ..options }).run(&frame));
}

/// Fuzz body `address_rewrite`: `rewrite::rewrite_frame` both ways with the fixture's migration and one
/// more pair of addresses from the input, then the rewrite stages. Refused or unchanged: not a byte
/// changed. Rewritten: every checksum that was right before (IPv4 header, TCP/UDP, ICMP with the inner
/// packet of an error) is right after (RFC 1624 incremental updates).
pub fn address_rewrite(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else { return };
    let (pair, frame) = rest.split_at(rest.len().min(8));
    let mut map = AddressMap::default();
    map.insert(PRIMARY_IP, POST_IP);
    if let Ok(pair) = <[u8; 8]>::try_from(pair) {
        map.insert(Ipv4Addr::from(u32::from_be_bytes([pair[0], pair[1], pair[2], pair[3]])), Ipv4Addr::from(u32::from_be_bytes([pair[4], pair[5], pair[6], pair[7]])));
    }
    let direction = if control & 1 == 0 { Direction::ToVm } else { Direction::FromVm };
    let frame = &frame[..frame.len().min(MAX_FRAME)];
    let before = Checksums::of(frame);
    let mut rewritten = frame.to_vec();
    match rewrite_frame(&mut rewritten, direction, &map) {
        Ok(Rewritten::Address { .. }) => {
            let after = Checksums::of(&rewritten);
            assert!(!before.ipv4 || after.ipv4, "IPv4 header checksum broken by the rewrite");
            assert!(!before.l4 || after.l4, "TCP/UDP checksum broken by the rewrite");
            assert!(!before.icmp || after.icmp, "ICMP checksum broken by the rewrite");
            assert!(!before.inner_ipv4 || after.inner_ipv4, "inner IPv4 checksum of an ICMP error broken");
        }
        Ok(Rewritten::Unchanged) | Err(_) => assert_eq!(rewritten, frame, "unchanged or refused: untouched"),
    }
    // The stages on a VM port and into one (address reports from the VM are judged there as well).
    let mut data = data.to_vec();
    data[0] &= 0x1d; // from vm0 or vm1, Pass or Hold
    pipeline(&data);
}

/// Which checksums of a frame verify.
#[derive(Debug, Default)]
struct Checksums {
    ipv4: bool,
    l4: bool,
    icmp: bool,
    inner_ipv4: bool,
}

impl Checksums {
    fn of(frame: &[u8]) -> Checksums {
        let mut sums = Checksums::default();
        if frame.len() < ethernet::HEADER_LEN || frame[12..14] != ethernet::ethertype::IPV4.to_be_bytes() {
            return sums;
        }
        let Ok(ip) = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]) else { return sums };
        sums.ipv4 = ip.verify_checksum();
        if ip.is_fragment() {
            return sums;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        match ip.protocol() {
            ipv4::protocol::TCP => sums.l4 = TcpSegment::new_checked(ip.payload()).is_ok_and(|s| s.verify_checksum(src, dst)),
            // A zero UDP checksum is "none" (RFC 768): nothing to keep right.
            ipv4::protocol::UDP => {
                sums.l4 = UdpDatagram::new_checked(ip.payload()).is_ok_and(|d| d.checksum() != 0 && d.verify_checksum(src, dst))
            }
            ipv4::protocol::ICMP => {
                let Ok(message) = Icmpv4Packet::new_checked(ip.payload()) else { return sums };
                sums.icmp = message.verify_checksum();
                if icmp::is_error_type(message.msg_type()) {
                    // The quoted packet is cut short (RFC 792: its header and 8 bytes of data), so not
                    // `new_checked`; its header is checked when it is there whole.
                    let quoted = message.payload();
                    let header = Ipv4Packet::new_unchecked(quoted);
                    sums.inner_ipv4 = quoted.len() >= ipv4::MIN_HEADER_LEN
                        && (ipv4::MIN_HEADER_LEN..=quoted.len()).contains(&header.header_len())
                        && header.verify_checksum();
                }
            }
            _ => {}
        }
        sums
    }
}
