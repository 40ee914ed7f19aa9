//! The header views and reprs of `wire` on any bytes: every accessor after `new_checked` (which must not
//! panic, module convention), and `parse(emit(repr)) == repr` for every repr that parsed.
use std::net::Ipv4Addr;

use super::MAX_FRAME;
use switchyard::wire::{
    arp, ethernet, icmp, ipv4, tcp, udp, vxlan, AddressReport, ArpPacket, ArpRepr, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Ipv4Packet, Ipv4Repr, TcpSegment, UdpDatagram, UdpRepr, VxlanHeader, VxlanRepr,
};

/// Fuzz body `wire_parsers`: the same bytes as every header the data plane parses, and the Ethernet
/// payload again as the header its ethertype and IP protocol name (so a frame reaches UDP and VXLAN).
pub fn wire_parsers(data: &[u8]) {
    let data = &data[..data.len().min(MAX_FRAME)];
    ethernet_frame(data);
    arp_packet(data);
    ipv4_packet(data);
    udp_datagram(data, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
    tcp_segment(data, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
    icmp_message(data);
    vxlan_header(data);
    address_report(data);
}

fn ethernet_frame(data: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(data) else { return };
    let _ = (frame.tag_count(), frame.dst(), frame.src(), frame.outer_tpid(), frame.vlan_tags(), frame.tci(), frame.vid());
    assert!(frame.header_len() + frame.payload().len() == data.len(), "header and payload cover the frame");
    if let Ok(repr) = EthernetRepr::parse(&frame) {
        let mut buf = [0u8; ethernet::HEADER_LEN + 4];
        let len = repr.emit(&mut buf).expect("the buffer fits any Ethernet header");
        let again = EthernetFrame::new_checked(&buf[..len]).expect("an emitted header parses");
        assert_eq!(EthernetRepr::parse(&again), Ok(repr), "Ethernet parse(emit(repr))");
    }
    match frame.ethertype() {
        ethernet::ethertype::ARP => arp_packet(frame.payload()),
        ethernet::ethertype::IPV4 => ipv4_packet(frame.payload()),
        _ => {}
    }
}

fn arp_packet(data: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(data) else { return };
    let Ok(repr) = ArpRepr::parse(&packet) else { return };
    let mut buf = [0u8; arp::PACKET_LEN];
    repr.emit(&mut buf).expect("the buffer fits an ARP packet");
    let again = ArpPacket::new_checked(&buf[..]).expect("an emitted ARP packet parses");
    assert_eq!(ArpRepr::parse(&again), Ok(repr), "ARP parse(emit(repr))");
}

fn ipv4_packet(data: &[u8]) {
    let Ok(packet) = Ipv4Packet::new_checked(data) else { return };
    let _ = (packet.version(), packet.dscp(), packet.ecn(), packet.total_len(), packet.more_frags(), packet.frag_offset());
    let _ = (packet.is_first_fragment(), packet.checksum(), packet.options(), packet.padding_len(), packet.verify_checksum());
    assert!(packet.header_len() >= ipv4::MIN_HEADER_LEN && packet.payload().len() <= data.len() - packet.header_len());
    if let Ok(repr) = Ipv4Repr::parse(&packet) {
        let mut buf = vec![0u8; ipv4::MIN_HEADER_LEN + repr.payload_len];
        repr.emit(&mut buf).expect("the buffer fits the header and payload");
        let again = Ipv4Packet::new_checked(&buf[..]).expect("an emitted header parses");
        assert!(again.verify_checksum(), "emit fills the header checksum");
        assert_eq!(Ipv4Repr::parse(&again), Ok(repr), "IPv4 parse(emit(repr))");
    }
    if packet.is_first_fragment() {
        let (src, dst) = (packet.src_addr(), packet.dst_addr());
        match packet.protocol() {
            ipv4::protocol::UDP => udp_datagram(packet.payload(), src, dst),
            ipv4::protocol::TCP => tcp_segment(packet.payload(), src, dst),
            ipv4::protocol::ICMP => icmp_message(packet.payload()),
            _ => {}
        }
    }
}

fn udp_datagram(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let Ok(datagram) = UdpDatagram::new_checked(data) else { return };
    let _ = (datagram.checksum(), datagram.verify_checksum(src, dst));
    if let Ok(repr) = UdpRepr::parse(&datagram) {
        let mut buf = vec![0u8; udp::HEADER_LEN + repr.payload_len];
        repr.emit(&mut buf).expect("the buffer fits the header and payload");
        let again = UdpDatagram::new_checked(&buf[..]).expect("an emitted header parses");
        assert_eq!(UdpRepr::parse(&again), Ok(repr), "UDP parse(emit(repr))");
    }
    if datagram.dst_port() == vxlan::UDP_PORT {
        vxlan_header(datagram.payload());
    }
}

fn tcp_segment(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let Ok(segment) = TcpSegment::new_checked(data) else { return };
    let _ = (segment.src_port(), segment.dst_port(), segment.seq_number(), segment.ack_number(), segment.flags());
    let _ = (segment.window(), segment.checksum(), segment.urgent_ptr(), segment.options(), segment.payload());
    let _ = segment.verify_checksum(src, dst);
    assert!(segment.header_len() >= tcp::MIN_HEADER_LEN && segment.header_len() <= data.len());
}

fn icmp_message(data: &[u8]) {
    let Ok(message) = Icmpv4Packet::new_checked(data) else { return };
    let _ = (message.msg_type(), message.code(), message.rest_of_header(), message.echo_ident(), message.echo_seq());
    let _ = message.verify_checksum();
    if message.is_error() {
        assert!(icmp::is_error_type(message.msg_type()));
        // The packet an error quotes is parsed like any other (the address rewrite does).
        ipv4_packet(message.payload());
    }
}

fn vxlan_header(data: &[u8]) {
    let Ok(header) = VxlanHeader::new_checked(data) else { return };
    let _ = (header.flags(), header.reserved_bits_clear(), header.payload());
    if let Ok(repr) = VxlanRepr::parse(&header) {
        let mut buf = [0u8; vxlan::HEADER_LEN];
        repr.emit(&mut buf).expect("a parsed VNI fits 24 bits");
        let again = VxlanHeader::new_checked(&buf[..]).expect("an emitted header parses");
        assert!(again.reserved_bits_clear(), "emit clears the reserved bits");
        assert_eq!(VxlanRepr::parse(&again), Ok(repr), "VXLAN parse(emit(repr))");
    }
    ethernet_inner(header.payload());
}

/// The inner frame of a VXLAN packet, one level deep only (no unbounded recursion).
fn ethernet_inner(data: &[u8]) {
    if let Ok(frame) = EthernetFrame::new_checked(data) {
        let _ = EthernetRepr::parse(&frame);
    }
}

fn address_report(data: &[u8]) {
    let Ok(report) = AddressReport::new_checked(data) else { return };
    let _ = (report.kind(), report.status(), report.request_id(), report.primary_ip(), report.post_migration_ip(), report.text());
}
