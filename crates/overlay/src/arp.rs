//! ARP as the vRouter speaks it (RFC 826): answering requests in place and
//! asking for underlay next hops.
use std::net::Ipv4Addr;

use super::tables::Underlay;
use switchyard_pipeline::PacketBuf;
use switchyard_wire::arp::{ArpOperation, ArpPacket, PACKET_LEN};
use switchyard_wire::{ethernet, MacAddr};

/// An Ethernet frame holding ARP, untagged, plus the ARP packet.
pub(crate) const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;

/// The fields of an Ethernet/IPv4 ARP packet the vRouter acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Arp {
    pub operation: ArpOperation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

/// Reads the ARP packet of an untagged ARP frame; `None` if it is too short or
/// not Ethernet/IPv4 ARP.
pub(crate) fn parse(frame: &[u8]) -> Option<Arp> {
    let packet = ArpPacket::new_checked(frame.get(ethernet::HEADER_LEN..)?).ok()?;
    Some(Arp {
        operation: packet.operation(),
        sender_mac: packet.sender_mac(),
        sender_ip: packet.sender_ip(),
        target_ip: packet.target_ip(),
    })
}

/// Turns the request in `frame` (already `parse`d) into the reply saying
/// `request.target_ip` is at `answer`, addressed back to the requester.
pub(crate) fn reply_in_place(frame: &mut [u8], request: &Arp, answer: MacAddr) {
    let mut eth = ethernet::EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst(request.sender_mac);
    eth.set_src(answer);
    let mut packet = ArpPacket::new_unchecked(&mut frame[ethernet::HEADER_LEN..]);
    packet.set_operation(ArpOperation::Reply);
    packet.set_sender_mac(answer);
    packet.set_sender_ip(request.target_ip);
    packet.set_target_mac(request.sender_mac);
    packet.set_target_ip(request.sender_ip);
}

/// Writes a broadcast request "who has `target`, tell `sender_ip`" into `frame`
/// (`FRAME_LEN` bytes).
pub(crate) fn write_request(frame: &mut [u8], sender_mac: MacAddr, sender_ip: Ipv4Addr, target: Ipv4Addr) {
    let mut eth = ethernet::EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst(MacAddr::BROADCAST);
    eth.set_src(sender_mac);
    eth.set_ethertype(ethernet::ethertype::ARP);
    let mut packet = ArpPacket::new_unchecked(&mut frame[ethernet::HEADER_LEN..FRAME_LEN]);
    packet.set_ethernet_ipv4();
    packet.set_operation(ArpOperation::Request);
    packet.set_sender_mac(sender_mac);
    packet.set_sender_ip(sender_ip);
    packet.set_target_mac(MacAddr::ZERO);
    packet.set_target_ip(target);
}

/// An ARP request for `target` from the VTEP, in a buffer from `like`'s pool.
pub(crate) fn request_from_vtep<P: PacketBuf>(like: &P, underlay: &Underlay, target: Ipv4Addr) -> Option<P> {
    let mut request = like.duplicate()?;
    let len = request.len();
    request.trim(len);
    write_request(request.append(FRAME_LEN)?, underlay.mac, underlay.vtep.address, target);
    Some(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_written_parses_and_replies_in_place() {
        let mut frame = [0u8; FRAME_LEN];
        let (me, them) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        write_request(&mut frame, me, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let request = parse(&frame).unwrap();
        assert_eq!(request.operation, ArpOperation::Request);
        assert_eq!((request.sender_mac, request.target_ip), (me, Ipv4Addr::new(10, 0, 0, 2)));
        reply_in_place(&mut frame, &request, them);
        let reply = parse(&frame).unwrap();
        assert_eq!(reply.operation, ArpOperation::Reply);
        assert_eq!((reply.sender_mac, reply.sender_ip, reply.target_ip), (them, request.target_ip, request.sender_ip));
        assert_eq!(&frame[0..6], &me.0, "back to the requester");
        assert!(parse(&frame[..FRAME_LEN - 1]).is_none());
    }
}
