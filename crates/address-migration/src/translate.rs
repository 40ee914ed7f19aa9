//! The rewrite of one frame's addresses, in place, with every checksum that
//! covers them updated incrementally (RFC 1624 eqn. 3), so a checksum that was
//! wrong stays wrong and the receiver still notices.
//!
//! - network -> VM: IPv4 destination primary -> post-migration; in an ICMP error
//!   the embedded packet (which the VM sent) gets its source translated the same
//!   way; ARP target addresses too.
//! - VM -> network: IPv4 source post-migration -> primary; in an ICMP error the
//!   embedded packet's destination; ARP sender and target addresses.
//!
//! Which checksums: the IPv4 header checksum (RFC 791); the TCP and UDP
//! checksums, whose pseudo-header holds the addresses (RFC 793, RFC 768: a UDP
//! checksum of zero means none and stays zero); for an ICMP error, the embedded
//! header's checksum and embedded TCP/UDP checksum as far as they are present,
//! and the ICMP checksum over all of it (RFC 792). Non-first fragments carry no
//! L4 header: only their IPv4 header changes (RFC 791). Untagged Ethernet only.
use switchyard_pipeline::DropReason;
use switchyard_wire::checksum::{update_u16, update_u32};
use switchyard_wire::ethernet::{self, ethertype};
use switchyard_wire::{icmp, ipv4, tcp, udp};

use super::table::AddressMap;

/// Which way a frame goes, and so which address is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Out of a VM port (towards the network): the source is rewritten.
    FromVm,
    /// Into a VM port (from the network or another VM): the destination is rewritten.
    ToVm,
}

/// What the rewrite did to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewritten {
    /// No address of the map in the place this direction looks.
    Unchanged,
    /// An IPv4 packet or ARP packet got its address rewritten; `icmp_error`:
    /// the packet embedded in an ICMP error was translated too.
    Address { icmp_error: bool },
}

#[inline(always)]
fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

#[inline(always)]
fn write_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline(always)]
fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

#[inline(always)]
fn write_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// Rewrites the Ethernet frame `frame` going `direction` by `map`. A frame that
/// is not IPv4 or ARP, or whose address is not in the map, is left alone.
/// `Err` (nothing changed) for a packet that should be rewritten but cannot be
/// with correct checksums.
#[inline]
pub fn rewrite_frame(frame: &mut [u8], direction: Direction, map: &AddressMap) -> Result<Rewritten, DropReason> {
    if frame.len() < ethernet::HEADER_LEN {
        return Ok(Rewritten::Unchanged);
    }
    let (header, payload) = frame.split_at_mut(ethernet::HEADER_LEN);
    match read_u16(header, 12) {
        ethertype::IPV4 => rewrite_ipv4(payload, direction, map),
        ethertype::ARP => Ok(rewrite_arp(payload, direction, map)),
        _ => Ok(Rewritten::Unchanged),
    }
}

/// The L4 work an IPv4 packet needs, decided before anything is written.
enum L4 {
    None,
    Tcp,
    Udp,
    IcmpError,
}

/// Rewrites the IPv4 packet `ip` (which may be followed by Ethernet padding).
pub(super) fn rewrite_ipv4(ip: &mut [u8], direction: Direction, map: &AddressMap) -> Result<Rewritten, DropReason> {
    if ip.len() < ipv4::MIN_HEADER_LEN || ip[0] >> 4 != 4 {
        return Ok(Rewritten::Unchanged);
    }
    let at = match direction {
        Direction::ToVm => ipv4::DST_ADDR_OFFSET,
        Direction::FromVm => ipv4::SRC_ADDR_OFFSET,
    };
    let old = read_u32(ip, at);
    let Some(new) = map.get(old) else { return Ok(Rewritten::Unchanged) };
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(read_u16(ip, 2));
    if header_len < ipv4::MIN_HEADER_LEN || header_len > total_len || total_len > ip.len() {
        return Err(DropReason::RewriteMalformedIpv4);
    }
    let (header, payload) = ip[..total_len].split_at_mut(header_len);
    let fragment_offset = read_u16(header, 6) & 0x1fff;
    let l4 = if fragment_offset != 0 {
        // RFC 791: only the first fragment carries the L4 header.
        L4::None
    } else {
        match header[9] {
            // A first fragment too short to hold the checksum is refused too (RFC 1858's tiny fragments).
            ipv4::protocol::TCP if payload.len() >= tcp::CHECKSUM_OFFSET + 2 => L4::Tcp,
            ipv4::protocol::UDP if payload.len() >= udp::HEADER_LEN => L4::Udp,
            ipv4::protocol::TCP | ipv4::protocol::UDP => return Err(DropReason::RewriteTruncatedL4),
            ipv4::protocol::ICMP if payload.first().is_some_and(|&t| icmp::is_error_type(t)) => {
                if !embedded_header_is_readable(payload) {
                    // Shorter than 8 + 20 bytes, cut by fragmentation, or not IPv4.
                    return Err(DropReason::RewriteMalformedIcmpError);
                }
                L4::IcmpError
            }
            _ => L4::None,
        }
    };
    write_u32(header, at, new);
    let sum = update_u32(read_u16(header, ipv4::CHECKSUM_OFFSET), old, new);
    write_u16(header, ipv4::CHECKSUM_OFFSET, sum);
    let mut icmp_error = false;
    match l4 {
        L4::None => {}
        L4::Tcp => {
            let sum = update_u32(read_u16(payload, tcp::CHECKSUM_OFFSET), old, new);
            write_u16(payload, tcp::CHECKSUM_OFFSET, sum);
        }
        L4::Udp => {
            let sum = udp::update_checksum_u32(read_u16(payload, udp::CHECKSUM_OFFSET), old, new);
            write_u16(payload, udp::CHECKSUM_OFFSET, sum);
        }
        L4::IcmpError => icmp_error = translate_icmp_error(payload, direction, old, new),
    }
    Ok(Rewritten::Address { icmp_error })
}

/// An ICMP error with at least the 20-byte IPv4 header of the packet it is about.
fn embedded_header_is_readable(icmp: &[u8]) -> bool {
    let Some(inner) = icmp.get(icmp::HEADER_LEN..) else { return false };
    inner.len() >= ipv4::MIN_HEADER_LEN && inner[0] >> 4 == 4 && usize::from(inner[0] & 0x0f) * 4 >= ipv4::MIN_HEADER_LEN
}

/// Translates the packet embedded in the ICMP error `icmp` (checked readable):
/// network -> VM it is a packet the VM sent, so its source `old` becomes `new`;
/// VM -> network one the VM received, so its destination. The embedded header
/// checksum, the embedded TCP/UDP checksum if present (the embedded packet may be
/// cut anywhere after its IPv4 header), and the ICMP checksum follow. Every
/// changed word is at an even offset of the ICMP message (the embedded header
/// starts at 8, its length is a multiple of 4). Returns whether anything changed.
fn translate_icmp_error(icmp: &mut [u8], direction: Direction, old: u32, new: u32) -> bool {
    let (head, inner) = icmp.split_at_mut(icmp::HEADER_LEN);
    let at = match direction {
        Direction::ToVm => ipv4::SRC_ADDR_OFFSET,
        Direction::FromVm => ipv4::DST_ADDR_OFFSET,
    };
    if read_u32(inner, at) != old {
        return false;
    }
    let mut icmp_sum = update_u32(read_u16(head, icmp::CHECKSUM_OFFSET), old, new);
    write_u32(inner, at, new);
    let old_sum = read_u16(inner, ipv4::CHECKSUM_OFFSET);
    let new_sum = update_u32(old_sum, old, new);
    write_u16(inner, ipv4::CHECKSUM_OFFSET, new_sum);
    icmp_sum = update_u16(icmp_sum, old_sum, new_sum);
    let header_len = usize::from(inner[0] & 0x0f) * 4;
    let first_fragment = read_u16(inner, 6) & 0x1fff == 0;
    let l4_checksum = match inner[9] {
        ipv4::protocol::TCP => Some(tcp::CHECKSUM_OFFSET),
        ipv4::protocol::UDP => Some(udp::CHECKSUM_OFFSET),
        _ => None,
    };
    if let (true, Some(offset)) = (first_fragment, l4_checksum) {
        let field = header_len + offset;
        if inner.len() >= field + 2 {
            let old_sum = read_u16(inner, field);
            let new_sum = if inner[9] == ipv4::protocol::UDP {
                udp::update_checksum_u32(old_sum, old, new)
            } else {
                update_u32(old_sum, old, new)
            };
            write_u16(inner, field, new_sum);
            icmp_sum = update_u16(icmp_sum, old_sum, new_sum);
        }
    }
    write_u16(head, icmp::CHECKSUM_OFFSET, icmp_sum);
    true
}

/// Ethernet/IPv4 ARP (RFC 826): network -> VM the target address (a request
/// for the primary IP reaches the VM as one for its own address, a reply to the
/// primary IP as one to it); VM -> network the sender and target addresses (the
/// VM's requests, replies and announcements speak for the primary IP).
pub(super) fn rewrite_arp(arp: &mut [u8], direction: Direction, map: &AddressMap) -> Rewritten {
    const SENDER_IP: usize = 14;
    const TARGET_IP: usize = 24;
    let ethernet_ipv4 = arp.len() >= 28 && arp[0..6] == [0, 1, 0x08, 0x00, 6, 4];
    if !ethernet_ipv4 {
        return Rewritten::Unchanged;
    }
    let fields: &[usize] = match direction {
        Direction::ToVm => &[TARGET_IP],
        Direction::FromVm => &[SENDER_IP, TARGET_IP],
    };
    let mut changed = false;
    for &at in fields {
        if let Some(new) = map.get(read_u32(arp, at)) {
            write_u32(arp, at, new);
            changed = true;
        }
    }
    if changed {
        Rewritten::Address { icmp_error: false }
    } else {
        Rewritten::Unchanged
    }
}
