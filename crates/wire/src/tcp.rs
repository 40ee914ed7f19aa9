//! TCP segment headers (RFC 793, RFC 3168 for ECE/CWR).

use core::net::Ipv4Addr;

use super::checksum::Checksum;
use super::ipv4::protocol;
use super::{clamped, clamped_mut, read_u16, read_u32, write_u16, write_u32, Result, WireError};

/// Header length without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Byte offset of the checksum field (RFC 793 section 3.1).
pub const CHECKSUM_OFFSET: usize = 16;

/// Bits of the flags byte (byte 13).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

mod field {
    use core::ops::Range;
    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const SEQ: Range<usize> = 4..8;
    pub(super) const ACK: Range<usize> = 8..12;
    /// Data offset in the high nibble.
    pub(super) const DATA_OFF: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WINDOW: Range<usize> = 14..16;
    pub(super) const CHECKSUM: Range<usize> = 16..18;
    pub(super) const URGENT: Range<usize> = 18..20;
}

/// A view of a TCP segment: the buffer is exactly the IP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegment<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpSegment { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let s = Self::new_unchecked(buffer);
        s.check_len()?;
        Ok(s)
    }

    /// 20 bytes; data offset >= 5 and within the buffer.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(WireError::BadHeaderLength);
        }
        if header_len > data.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ)
    }

    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Data offset in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) as usize * 4
    }

    /// The raw flags byte (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }
    pub fn ece(&self) -> bool {
        self.flags() & flags::ECE != 0
    }
    pub fn cwr(&self) -> bool {
        self.flags() & flags::CWR != 0
    }

    pub fn window(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn urgent_ptr(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// Raw option bytes (kind/length TLVs, RFC 793 section 3.1).
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), MIN_HEADER_LEN, self.header_len())
    }

    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamped(data, self.header_len(), data.len())
    }

    fn compute(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let data = self.buffer.as_ref();
        let mut c = Checksum::new();
        // An IPv4 payload is < 64 KiB; a longer buffer simply won't verify.
        c.add_pseudo_header_ipv4(src, dst, protocol::TCP, data.len() as u16);
        c.add_bytes(data);
        c.finish()
    }

    /// Checks the checksum over the pseudo-header and the whole buffer.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.compute(src, dst) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    pub fn set_seq_number(&mut self, seq: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ, seq);
    }

    pub fn set_ack_number(&mut self, ack: u32) {
        write_u32(self.buffer.as_mut(), field::ACK, ack);
    }

    /// Sets the data offset from bytes (rounded down to 4-byte units).
    /// Keeps the low nibble (reserved bits / the RFC 3540 NS bit).
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (((len / 4) as u8) << 4);
    }

    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets or clears the bits of `mask` (a [`flags`] constant).
    pub fn set_flag(&mut self, mask: u8, on: bool) {
        let f = self.flags();
        self.set_flags(if on { f | mask } else { f & !mask });
    }

    pub fn set_window(&mut self, window: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW, window);
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    pub fn set_urgent_ptr(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = self.compute(src, dst);
        self.set_checksum(c);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        clamped_mut(self.buffer.as_mut(), MIN_HEADER_LEN, end)
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let data = self.buffer.as_mut();
        let end = data.len();
        clamped_mut(data, start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::fuzz;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    // 10.0.0.1:40000 -> 10.0.0.2:80 SYN, Linux-style options:
    // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    #[rustfmt::skip]
    const TCP_SYN: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0,
        0x18, 0x07, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x9c, 0x1b, 0x2d,
        0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn parse_syn_with_options() {
        let s = TcpSegment::new_checked(&TCP_SYN[..]).unwrap();
        assert_eq!((s.src_port(), s.dst_port()), (40000, 80));
        assert_eq!((s.seq_number(), s.ack_number()), (0x1234_5678, 0));
        assert_eq!(s.header_len(), 40);
        assert_eq!(s.flags(), flags::SYN);
        assert!(s.syn());
        assert!(!(s.fin() || s.rst() || s.psh() || s.ack() || s.urg() || s.ece() || s.cwr()));
        assert_eq!(s.window(), 64240);
        assert_eq!(s.checksum(), 0x1807);
        assert_eq!(s.urgent_ptr(), 0);
        let opts = s.options();
        assert_eq!(opts.len(), 20);
        assert_eq!(opts[..4], [2, 4, 0x05, 0xb4]); // MSS 1460
        assert_eq!(opts[4..6], [4, 2]); // SACK permitted
        assert_eq!(opts[6..8], [8, 10]); // timestamps
        assert_eq!(opts[16..], [1, 3, 3, 7]); // NOP, window scale 7
        assert!(s.payload().is_empty());
        assert!(s.verify_checksum(SRC, DST));
        assert!(!s.verify_checksum(DST, Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn flipped_byte_fails_checksum() {
        for i in 0..TCP_SYN.len() {
            let mut bad = TCP_SYN;
            bad[i] ^= 0x04;
            if let Ok(s) = TcpSegment::new_checked(&bad[..]) {
                assert!(!s.verify_checksum(SRC, DST), "byte {i}");
            }
        }
    }

    #[test]
    fn malformed() {
        for len in 0..TCP_SYN.len() {
            assert_eq!(TcpSegment::new_checked(&TCP_SYN[..len]), Err(WireError::Truncated), "len {len}");
        }
        for off in 0..5u8 {
            let mut bad = TCP_SYN;
            bad[12] = off << 4;
            assert_eq!(TcpSegment::new_checked(&bad[..]), Err(WireError::BadHeaderLength), "off {off}");
        }
        let mut bad = TCP_SYN;
        bad[12] = 0xb0; // 44 bytes > 40
        assert_eq!(TcpSegment::new_checked(&bad[..]), Err(WireError::Truncated));
    }

    #[test]
    fn setters_and_checksum() {
        let mut buf = TCP_SYN.to_vec();
        buf.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        let mut s = TcpSegment::new_checked(&mut buf[..]).unwrap();
        s.set_src_port(1);
        s.set_dst_port(2);
        s.set_seq_number(3);
        s.set_ack_number(4);
        s.set_flags(0);
        s.set_flag(flags::ACK, true);
        s.set_flag(flags::PSH, true);
        s.set_flag(flags::FIN | flags::CWR | flags::ECE | flags::URG, true);
        s.set_flag(flags::FIN, false);
        s.set_window(5);
        s.set_urgent_ptr(6);
        s.options_mut()[18] = 0;
        s.fill_checksum(SRC, DST);
        assert!(s.verify_checksum(SRC, DST));
        assert_eq!((s.src_port(), s.dst_port(), s.seq_number(), s.ack_number()), (1, 2, 3, 4));
        assert!(s.ack() && s.psh() && s.cwr() && s.ece() && s.urg() && !s.fin() && !s.syn() && !s.rst());
        assert_eq!((s.window(), s.urgent_ptr(), s.options()[18]), (5, 6, 0));
        assert_eq!(s.payload(), b"GET / HTTP/1.0\r\n\r\n");
        s.set_header_len(20);
        assert_eq!(s.payload().len(), 38);
        s.payload_mut()[0] = 0xff;
        assert!(!s.verify_checksum(SRC, DST));
        assert_eq!(s.into_inner()[20], 0xff);
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&TCP_SYN], |buf| {
            if let Ok(mut s) = TcpSegment::new_checked(&mut buf[..]) {
                touch_all(&s);
                s.set_header_len(60);
                touch_all(&s);
                s.options_mut().fill(1);
                s.payload_mut().fill(0);
                s.fill_checksum(SRC, DST);
                assert!(s.verify_checksum(SRC, DST));
                s.set_header_len(0);
                touch_all(&s);
                s.set_flag(0xff, true);
            }
        });
    }

    fn touch_all(s: &TcpSegment<&mut [u8]>) {
        let _ = (s.src_port(), s.dst_port(), s.seq_number(), s.ack_number(), s.header_len(), s.flags());
        let _ = (s.fin(), s.syn(), s.rst(), s.psh(), s.ack(), s.urg(), s.ece(), s.cwr());
        let _ = (s.window(), s.checksum(), s.urgent_ptr(), s.options(), s.payload());
        let _ = s.verify_checksum(SRC, DST);
    }
}
