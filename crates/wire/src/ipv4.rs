//! IPv4 headers (RFC 791).

use core::net::Ipv4Addr;

use super::checksum;
use super::{clamped, clamped_mut, read_u16, read_u32, write_u16, write_u32, Result, WireError};

/// IP protocol numbers (IANA).
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// Header length without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Byte offsets of fields rewritten in place (RFC 791 section 3.1).
pub const CHECKSUM_OFFSET: usize = 10;
pub const SRC_ADDR_OFFSET: usize = 12;
pub const DST_ADDR_OFFSET: usize = 16;

mod field {
    use core::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const LENGTH: Range<usize> = 2..4;
    pub(super) const IDENT: Range<usize> = 4..6;
    pub(super) const FLG_OFF: Range<usize> = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Range<usize> = 10..12;
    pub(super) const SRC_ADDR: Range<usize> = 12..16;
    pub(super) const DST_ADDR: Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
///
/// The buffer may be longer than the total length (Ethernet pads frames to
/// 60 bytes): `payload()` stops at the total length, `padding_len()` is the
/// rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks in this order: 20 bytes, version 4, IHL >= 5, header within
    /// the buffer, total length >= header length, total length within the
    /// buffer. Does not verify the checksum.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(WireError::BadHeaderLength);
        }
        if header_len > data.len() {
            return Err(WireError::Truncated);
        }
        let total_len = self.total_len() as usize;
        if total_len < header_len {
            return Err(WireError::BadTotalLength);
        }
        if total_len > data.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// IHL in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) as usize * 4
    }

    /// Differentiated services code point (RFC 2474), 6 bits.
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification (RFC 3168), 2 bits.
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// The whole former TOS byte.
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    fn flags_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Any fragment: MF set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// The first of several fragments (MF set, offset 0). The L4 header is
    /// present whenever `frag_offset() == 0`.
    pub fn is_first_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) == FLAG_MF
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(read_u32(self.buffer.as_ref(), field::SRC_ADDR))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(read_u32(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// Option bytes (between byte 20 and the header length).
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), MIN_HEADER_LEN, self.header_len())
    }

    /// Bytes from the header length up to the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), self.header_len(), self.total_len() as usize)
    }

    /// Buffer bytes beyond the total length (Ethernet padding).
    pub fn padding_len(&self) -> usize {
        self.buffer.as_ref().len().saturating_sub(self.total_len() as usize)
    }

    /// True if the header checksum is correct (RFC 791, RFC 1071).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(clamped(self.buffer.as_ref(), 0, self.header_len())) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets IHL from a length in bytes (rounded down to 4-byte units).
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & !0x03) | (ecn & 0x03);
    }

    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    fn set_flags_offset(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::FLG_OFF, value);
    }

    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_DF;
        self.set_flags_offset(v | if value { FLAG_DF } else { 0 });
    }

    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_MF;
        self.set_flags_offset(v | if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset from bytes (must be a multiple of 8).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let v = self.flags_offset() & !OFFSET_MASK;
        self.set_flags_offset(v | (bytes >> 3));
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::SRC_ADDR, addr.to_bits());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::DST_ADDR, addr.to_bits());
    }

    /// Sets the source address and updates the header checksum incrementally
    /// (RFC 1624 eqn. 3), so a wrong checksum stays wrong; returns the old address.
    pub fn replace_src_addr(&mut self, addr: Ipv4Addr) -> Ipv4Addr {
        let old = self.src_addr();
        self.set_checksum(checksum::update_u32(self.checksum(), old.to_bits(), addr.to_bits()));
        self.set_src_addr(addr);
        old
    }

    /// Sets the destination address and updates the header checksum
    /// incrementally (RFC 1624 eqn. 3); returns the old address.
    pub fn replace_dst_addr(&mut self, addr: Ipv4Addr) -> Ipv4Addr {
        let old = self.dst_addr();
        self.set_checksum(checksum::update_u32(self.checksum(), old.to_bits(), addr.to_bits()));
        self.set_dst_addr(addr);
        old
    }

    /// Recomputes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(clamped(self.buffer.as_ref(), 0, self.header_len()));
        self.set_checksum(c);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        clamped_mut(self.buffer.as_mut(), MIN_HEADER_LEN, end)
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len() as usize);
        clamped_mut(self.buffer.as_mut(), start, end)
    }
}

/// Owned IPv4 header without options, for unfragmented packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    /// Bytes after the header (total length - header length).
    pub payload_len: usize,
    pub ttl: u8,
    /// DSCP (upper 6 bits) and ECN (lower 2 bits).
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Options are dropped; fragments give `Err(Unsupported)` (the repr has
    /// no MF/offset). The checksum is not verified: call `verify_checksum`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        packet.check_len()?;
        if packet.is_fragment() {
            return Err(WireError::Unsupported);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    pub const fn header_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes a 20-byte header with its checksum (module convention).
    /// `Err(BadLength)` if 20 + payload_len exceeds 65535.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let total_len = u16::try_from(MIN_HEADER_LEN + self.payload_len).map_err(|_| WireError::BadLength)?;
        let Some(hdr) = buf.get_mut(..MIN_HEADER_LEN) else {
            return Err(WireError::Truncated);
        };
        let mut p = Ipv4Packet::new_unchecked(hdr);
        p.buffer[field::VER_IHL] = 0x45;
        p.set_dscp_ecn(self.dscp_ecn);
        p.set_total_len(total_len);
        p.set_ident(self.ident);
        p.set_flags_offset(if self.dont_frag { FLAG_DF } else { 0 });
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
        Ok(MIN_HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{fuzz, XorShift};

    // 192.168.1.10 -> 8.8.8.8 UDP (DNS query), DF, TTL 64, ident 0xbeef.
    #[rustfmt::skip]
    const IPV4_UDP: [u8; 57] = [
        0x45, 0x00, 0x00, 0x39, 0xbe, 0xef, 0x40, 0x00, 0x40, 0x11, 0xaa, 0x02, 0xc0, 0xa8, 0x01, 0x0a,
        0x08, 0x08, 0x08, 0x08, 0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0xe3, 0x68, 0xab, 0xcd, 0x01, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65,
        0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    // 10.0.0.1 -> 10.0.0.2 ICMP echo request, 32 bytes of data.
    #[rustfmt::skip]
    const IPV4_ICMP: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x0a, 0x79, 0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0x02, 0x08, 0x00, 0x4d, 0x54, 0x00, 0x01, 0x00, 0x07, 0x61, 0x62, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0x73, 0x74,
        0x75, 0x76, 0x77, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    ];

    #[test]
    fn parse_udp_packet() {
        let p = Ipv4Packet::new_checked(&IPV4_UDP[..]).unwrap();
        assert_eq!((p.version(), p.header_len()), (4, 20));
        assert_eq!((p.dscp(), p.ecn(), p.dscp_ecn()), (0, 0, 0));
        assert_eq!(p.total_len(), 57);
        assert_eq!(p.ident(), 0xbeef);
        assert!(p.dont_frag() && !p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment() && !p.is_first_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::UDP);
        assert_eq!(p.checksum(), 0xaa02);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(8, 8, 8, 8));
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &IPV4_UDP[20..]);
        assert_eq!(p.padding_len(), 0);
        assert!(p.verify_checksum());
    }

    #[test]
    fn parse_icmp_packet() {
        let p = Ipv4Packet::new_checked(&IPV4_ICMP[..]).unwrap();
        assert_eq!(p.protocol(), protocol::ICMP);
        assert_eq!((p.ident(), p.checksum()), (0x1c46, 0x0a79));
        assert_eq!((p.src_addr(), p.dst_addr()), (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(p.payload().len(), 40);
        assert!(p.verify_checksum());
    }

    #[test]
    fn checksum_detects_any_flipped_header_byte() {
        for i in 0..20 {
            let mut bad = IPV4_UDP;
            bad[i] ^= 0x01;
            if let Ok(p) = Ipv4Packet::new_checked(&bad[..]) {
                assert!(!p.verify_checksum(), "byte {i}");
            }
        }
        // Payload is not covered by the header checksum.
        let mut ok = IPV4_UDP;
        ok[30] ^= 0xff;
        assert!(Ipv4Packet::new_checked(&ok[..]).unwrap().verify_checksum());
    }

    #[test]
    fn malformed() {
        for len in 0..IPV4_UDP.len() {
            assert_eq!(Ipv4Packet::new_checked(&IPV4_UDP[..len]), Err(WireError::Truncated), "len {len}");
        }
        for ihl in 0..5 {
            let mut bad = IPV4_UDP;
            bad[0] = 0x40 | ihl;
            assert_eq!(Ipv4Packet::new_checked(&bad[..]), Err(WireError::BadHeaderLength), "ihl {ihl}");
        }
        let mut bad = IPV4_UDP;
        bad[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&bad[..]), Err(WireError::BadVersion));
        // Version is checked before IHL.
        bad[0] = 0x60;
        assert_eq!(Ipv4Packet::new_checked(&bad[..]), Err(WireError::BadVersion));
        // IHL 15 (60 bytes) beyond a 57-byte buffer.
        let mut bad = IPV4_UDP;
        bad[0] = 0x4f;
        assert_eq!(Ipv4Packet::new_checked(&bad[..]), Err(WireError::Truncated));
        for total in [0u16, 19] {
            let mut bad = IPV4_UDP;
            bad[2..4].copy_from_slice(&total.to_be_bytes());
            assert_eq!(Ipv4Packet::new_checked(&bad[..]), Err(WireError::BadTotalLength));
        }
        let mut bad = IPV4_UDP;
        bad[2..4].copy_from_slice(&58u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&bad[..]), Err(WireError::Truncated));
        // Total length == header length: empty payload.
        let mut ok = IPV4_UDP;
        ok[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert!(Ipv4Packet::new_checked(&ok[..]).unwrap().payload().is_empty());
    }

    #[test]
    fn ethernet_padding_excluded() {
        // A 46-byte minimum Ethernet payload carrying a 28-byte packet.
        let mut buf = [0u8; 46];
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: protocol::UDP,
            payload_len: 8,
            ttl: 64,
            dscp_ecn: 0,
            ident: 1,
            dont_frag: true,
        };
        repr.emit(&mut buf).unwrap();
        buf[20..28].fill(0xaa);
        buf[28..].fill(0x55);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload(), &[0xaa; 8]);
        assert_eq!(p.padding_len(), 18);
        assert_eq!(Ipv4Repr::parse(&p).unwrap().payload_len, 8);
    }

    #[test]
    fn options_and_fragments() {
        // IHL 6 with a 4-byte Router Alert option (RFC 2113), MF set.
        let mut buf = [0u8; 32];
        buf[..12].copy_from_slice(&[0x46, 0xb8, 0x00, 0x20, 0x12, 0x34, 0x20, 0x00, 0x01, 0x11, 0, 0]);
        buf[12..20].copy_from_slice(&[10, 0, 0, 1, 224, 0, 0, 1]);
        buf[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload().len(), 8);
        assert_eq!((p.dscp(), p.ecn()), (46, 0));
        assert!(p.is_fragment() && p.is_first_fragment() && p.more_frags());
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Unsupported));
        p.set_frag_offset(1480);
        p.set_more_frags(false);
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment() && !p.is_first_fragment() && !p.more_frags());
        p.options_mut()[0] = 0x01;
        assert_eq!(p.options()[0], 0x01);
        assert!(!p.verify_checksum());
    }

    #[test]
    fn setters() {
        let mut buf = IPV4_UDP;
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_dscp(46);
        p.set_ecn(3);
        p.set_ident(7);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.set_frag_offset(8);
        p.set_ttl(1);
        p.set_protocol(protocol::TCP);
        p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        p.set_total_len(40);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!((p.dscp(), p.ecn(), p.ident(), p.dont_frag(), p.more_frags()), (46, 3, 7, false, true));
        assert_eq!((p.frag_offset(), p.ttl(), p.protocol(), p.total_len()), (8, 1, 6, 40));
        assert_eq!((p.src_addr(), p.dst_addr()), (Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8)));
        assert_eq!(p.padding_len(), 17);
        p.payload_mut().fill(0);
        p.set_version(4);
        p.set_header_len(20);
        assert_eq!(p.payload(), &[0; 20]);
        assert_eq!(p.into_inner()[40..], IPV4_UDP[40..]);
    }

    #[test]
    fn incremental_nat_rewrite_matches_fill() {
        let mut buf = IPV4_UDP;
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        let new = Ipv4Addr::new(203, 0, 113, 7);
        let c = checksum::update_u32(p.checksum(), p.src_addr().to_bits(), new.to_bits());
        p.set_src_addr(new);
        p.set_checksum(c);
        assert!(p.verify_checksum());
        let c = checksum::update_u16(p.checksum(), u16::from_be_bytes([p.ttl(), p.protocol()]), 0x3f11);
        p.set_ttl(63);
        p.set_checksum(c);
        assert!(p.verify_checksum());
        let incremental = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), incremental);
    }

    #[test]
    fn repr_round_trip() {
        let p = Ipv4Packet::new_checked(&IPV4_UDP[..]).unwrap();
        let repr = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(repr.payload_len, 37);
        let mut buf = [0xffu8; 57];
        assert_eq!(repr.emit(&mut buf[..19]), Err(WireError::Truncated));
        assert_eq!(buf, [0xff; 57]);
        assert_eq!(repr.emit(&mut buf), Ok(20));
        assert_eq!(buf[..20], IPV4_UDP[..20]);
        let mut rng = XorShift::new(3);
        for _ in 0..1000 {
            let repr = Ipv4Repr {
                src_addr: Ipv4Addr::from_bits(rng.u32()),
                dst_addr: Ipv4Addr::from_bits(rng.u32()),
                protocol: rng.u8(),
                payload_len: rng.below(100),
                ttl: rng.u8(),
                dscp_ecn: rng.u8(),
                ident: rng.u16(),
                dont_frag: rng.below(2) == 1,
            };
            let mut buf = [0u8; 120];
            rng.fill(&mut buf);
            assert_eq!(repr.emit(&mut buf), Ok(20));
            let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
            assert!(p.verify_checksum());
            assert_eq!(Ipv4Repr::parse(&p), Ok(repr));
        }
        let huge = Ipv4Repr { payload_len: 65516, ..repr };
        assert_eq!(huge.emit(&mut [0; 20]), Err(WireError::BadLength));
        assert_eq!(Ipv4Repr { payload_len: 65515, ..repr }.emit(&mut [0; 20]), Ok(20));
    }

    #[test]
    fn no_panic_on_any_input() {
        let mut checked = 0;
        fuzz(&[&IPV4_UDP, &IPV4_ICMP], |buf| {
            if let Ok(mut p) = Ipv4Packet::new_checked(&mut buf[..]) {
                checked += 1;
                touch_all(&p);
                // Layout-changing setters must not make accessors panic.
                p.set_header_len(60);
                touch_all(&p);
                p.set_total_len(0xffff);
                touch_all(&p);
                p.options_mut().fill(1);
                p.payload_mut().fill(2);
                p.fill_checksum();
                assert!(p.verify_checksum());
                p.set_header_len(0);
                p.set_total_len(3);
                touch_all(&p);
                p.options_mut().fill(1);
                p.payload_mut().fill(2);
                p.fill_checksum();
            }
        });
        assert!(checked > 1000);
    }

    fn touch_all(p: &Ipv4Packet<&mut [u8]>) {
        let _ = (p.version(), p.header_len(), p.dscp(), p.ecn(), p.dscp_ecn(), p.total_len());
        let _ = (p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset(), p.is_fragment());
        let _ = (p.is_first_fragment(), p.ttl(), p.protocol(), p.checksum(), p.src_addr(), p.dst_addr());
        let _ = (p.options(), p.payload(), p.padding_len(), p.verify_checksum());
        let _ = Ipv4Repr::parse(p);
    }
}
