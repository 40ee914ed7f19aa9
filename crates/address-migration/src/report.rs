//! The report service on VM ports (docs/address-migration.md): reading a VM's
//! report, writing the switch's reply and the ARP answer for the report
//! address, and the queue that carries judged reports to the control plane.
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam::queue::ArrayQueue;

use switchyard_pipeline::{DropReason, PortId};
use switchyard_wire::address_report::{self, kind, REPORT_ADDRESS, REPORT_PORT};
use switchyard_wire::ethernet::{self, ethertype};
use switchyard_wire::{ipv4, udp, AddressReport, ArpOperation, ArpPacket, Ipv4Packet, Ipv4Repr, MacAddr, ReportStatus};
use switchyard_wire::{UdpDatagram, UdpRepr};

/// A report as a worker judged it, on its way to the control plane (which
/// applies the accepted ones and keeps a log of the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportEvent {
    pub port: PortId,
    pub source_mac: MacAddr,
    pub source_ip: Ipv4Addr,
    pub request_id: u32,
    pub primary: Ipv4Addr,
    pub post: Ipv4Addr,
    pub status: ReportStatus,
}

/// Workers push, the control plane drains; a push that finds it full fails
/// (the VM is told `busy`) and the worker never waits.
pub struct ReportQueue {
    events: ArrayQueue<ReportEvent>,
    lost: AtomicU64,
}

impl ReportQueue {
    pub fn new(capacity: usize) -> Self {
        ReportQueue { events: ArrayQueue::new(capacity), lost: AtomicU64::new(0) }
    }

    /// False (and counted) when full.
    pub fn push(&self, event: ReportEvent) -> bool {
        let pushed = self.events.push(event).is_ok();
        if !pushed {
            // Only when the control side is behind, never per ordinary packet.
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        pushed
    }

    pub fn pop(&self) -> Option<ReportEvent> {
        self.events.pop()
    }

    /// Reports that found the queue full.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// A report read from a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Report {
    pub source_mac: MacAddr,
    pub source_ip: Ipv4Addr,
    pub source_port: u16,
    pub request_id: u32,
    pub primary: Ipv4Addr,
    pub post: Ipv4Addr,
}

/// Whether the untagged IPv4 frame `frame` is UDP to the report address: the
/// only traffic the report service takes (anything else to the address passes).
#[inline]
pub(super) fn is_for_report_address(frame: &[u8]) -> bool {
    frame.len() >= ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN
        && frame[12..14] == ethertype::IPV4.to_be_bytes()
        && frame[14 + ipv4::DST_ADDR_OFFSET..14 + ipv4::DST_ADDR_OFFSET + 4] == REPORT_ADDRESS.octets()
        && frame[14 + 9] == ipv4::protocol::UDP
}

/// Reads the report in a frame `is_for_report_address` took: `Ok(None)` for
/// UDP to another port of the address (not ours: it passes), `Err` for
/// anything malformed (a fragment, a bad IPv4 or UDP header or checksum, not a
/// version 1 report).
pub(super) fn parse(frame: &[u8]) -> Result<Option<Report>, DropReason> {
    let malformed = DropReason::MalformedAddressReport;
    let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).map_err(|_| malformed)?;
    if ip.is_fragment() || !ip.verify_checksum() {
        return Err(malformed);
    }
    let datagram = UdpDatagram::new_checked(ip.payload()).map_err(|_| malformed)?;
    if datagram.dst_port() != REPORT_PORT {
        return Ok(None);
    }
    if !datagram.verify_checksum(ip.src_addr(), ip.dst_addr()) {
        return Err(malformed);
    }
    let report = AddressReport::new_checked(datagram.payload()).map_err(|_| malformed)?;
    if report.kind() != kind::REPORT {
        return Err(malformed);
    }
    Ok(Some(Report {
        source_mac: MacAddr::from_bytes(&frame[6..12]),
        source_ip: ip.src_addr(),
        source_port: datagram.src_port(),
        request_id: report.request_id(),
        primary: report.primary_ip(),
        post: report.post_migration_ip(),
    }))
}

/// The length of the reply frame with `status`.
pub(super) fn reply_len(status: ReportStatus) -> usize {
    ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + udp::HEADER_LEN + address_report::HEADER_LEN + status.text().len()
}

/// Writes the reply to `report` into `frame` (`reply_len(status)` bytes): from
/// the report address and port to where the report came from, from the VM
/// port's own MAC; the report's fields echoed, `status` and its text.
pub(super) fn write_reply(frame: &mut [u8], port_mac: MacAddr, report: &Report, status: ReportStatus) {
    let text = status.text().as_bytes();
    let (eth, ip) = frame.split_at_mut(ethernet::HEADER_LEN);
    eth[0..6].copy_from_slice(&report.source_mac.0);
    eth[6..12].copy_from_slice(&port_mac.0);
    eth[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    let datagram_len = udp::HEADER_LEN + address_report::HEADER_LEN + text.len();
    let header = Ipv4Repr {
        src_addr: REPORT_ADDRESS,
        dst_addr: report.source_ip,
        protocol: ipv4::protocol::UDP,
        payload_len: datagram_len,
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
    };
    // Cannot fail: the frame has room for both headers and the lengths are small.
    let _ = header.emit(ip);
    let datagram = &mut ip[ipv4::MIN_HEADER_LEN..];
    let _ = UdpRepr { src_port: REPORT_PORT, dst_port: report.source_port, payload_len: datagram_len - udp::HEADER_LEN }
        .emit(datagram);
    let message = &mut datagram[udp::HEADER_LEN..];
    AddressReport::new_unchecked(&mut message[..address_report::HEADER_LEN]).emit(
        kind::REPLY,
        status.code(),
        report.request_id,
        report.primary,
        report.post,
    );
    message[address_report::HEADER_LEN..].copy_from_slice(text);
    UdpDatagram::new_unchecked(datagram).fill_checksum(REPORT_ADDRESS, report.source_ip);
}

/// Whether `frame` is an ARP request for the report address (answered by the
/// switch on every VM port, so a VM's stack can send its report there).
#[inline]
pub(super) fn is_report_arp_request(frame: &[u8]) -> bool {
    frame.len() >= ethernet::HEADER_LEN
        && frame[12..14] == ethertype::ARP.to_be_bytes()
        && ArpPacket::new_checked(&frame[ethernet::HEADER_LEN..])
            .is_ok_and(|arp| arp.operation() == ArpOperation::Request && arp.target_ip() == REPORT_ADDRESS)
}

/// Turns a copy of such a request into the reply "the report address is at
/// `port_mac`", addressed back to the requester (RFC 826).
pub(super) fn write_arp_reply(frame: &mut [u8], port_mac: MacAddr) {
    let (eth, payload) = frame.split_at_mut(ethernet::HEADER_LEN);
    let Ok(mut arp) = ArpPacket::new_checked(payload) else { return };
    let (requester_mac, requester_ip) = (arp.sender_mac(), arp.sender_ip());
    arp.set_operation(ArpOperation::Reply);
    arp.set_sender_mac(port_mac);
    arp.set_sender_ip(REPORT_ADDRESS);
    arp.set_target_mac(requester_mac);
    arp.set_target_ip(requester_ip);
    eth[0..6].copy_from_slice(&requester_mac.0);
    eth[6..12].copy_from_slice(&port_mac.0);
}
