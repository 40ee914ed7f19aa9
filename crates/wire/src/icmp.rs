//! ICMP for IPv4 (RFC 792).

use super::checksum;
use super::{clamped, clamped_mut, read_u16, read_u32, write_u16, write_u32, Result, WireError};

/// Type, code, checksum and the 4-byte rest-of-header.
pub const HEADER_LEN: usize = 8;
/// Byte offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 2;

/// Message types (RFC 792).
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
    pub const TIMESTAMP: u8 = 13;
    pub const TIMESTAMP_REPLY: u8 = 14;
}

/// Whether ICMP type `msg_type` is an error message, which carries the
/// offending packet's IPv4 header and at least 64 bits of its data (RFC 792).
pub fn is_error_type(msg_type: u8) -> bool {
    use msg_type::*;
    matches!(msg_type, DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAMETER_PROBLEM)
}

mod field {
    use core::ops::Range;
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Range<usize> = 2..4;
    pub(super) const REST: Range<usize> = 4..8;
    pub(super) const ECHO_IDENT: Range<usize> = 4..6;
    pub(super) const ECHO_SEQ: Range<usize> = 6..8;
}

/// A view of an ICMPv4 message: the buffer is exactly the IP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// 8 bytes. Error messages are not required to carry a complete
    /// original header (routers may truncate it).
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Bytes 4..8, whose meaning depends on the type.
    pub fn rest_of_header(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REST)
    }

    /// Identifier of echo/echo reply (meaningless for other types).
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Sequence number of echo/echo reply.
    pub fn echo_seq(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Error messages, which embed the offending IPv4 header + 8 bytes.
    pub fn is_error(&self) -> bool {
        is_error_type(self.msg_type())
    }

    /// After the 8-byte header: echo data, or for errors the original IPv4
    /// header + 8 bytes (possibly truncated; parse it with `Ipv4Packet`).
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamped(data, HEADER_LEN, data.len())
    }

    /// Checksum over the whole message (no pseudo-header for ICMPv4).
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    pub fn set_rest_of_header(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::REST, value);
    }

    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    pub fn set_echo_seq(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ, value);
    }

    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let end = data.len();
        clamped_mut(data, HEADER_LEN, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv4::{protocol, Ipv4Packet};
    use crate::test_util::fuzz;
    use core::net::Ipv4Addr;

    // Echo request id 1 seq 7, 32 bytes of Windows-style ping data.
    #[rustfmt::skip]
    const ICMP_ECHO: [u8; 40] = [
        0x08, 0x00, 0x4d, 0x54, 0x00, 0x01, 0x00, 0x07, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
        0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x61,
        0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    ];

    // Time exceeded in transit, quoting an IPv4/UDP header (+8 bytes).
    #[rustfmt::skip]
    const TIME_EXCEEDED: [u8; 36] = [
        0x0b, 0x00, 0xf4, 0xff, 0x00, 0x00, 0x00, 0x00, // type 11 code 0, unused
        0x45, 0x00, 0x00, 0x3c, 0x00, 0x01, 0x00, 0x00, 0x01, 0x11, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01,
        0x08, 0x08, 0x08, 0x08, 0x82, 0x9b, 0x82, 0x9a, 0x00, 0x28, 0x00, 0x00,
    ];

    #[test]
    fn parse_echo_request() {
        let p = Icmpv4Packet::new_checked(&ICMP_ECHO[..]).unwrap();
        assert_eq!((p.msg_type(), p.code()), (msg_type::ECHO_REQUEST, 0));
        assert_eq!(p.checksum(), 0x4d54);
        assert_eq!((p.echo_ident(), p.echo_seq()), (1, 7));
        assert_eq!(p.rest_of_header(), 0x0001_0007);
        assert!(!p.is_error());
        assert_eq!(p.payload(), b"abcdefghijklmnopqrstuvwabcdefghi");
        assert!(p.verify_checksum());
        for i in 0..ICMP_ECHO.len() {
            let mut bad = ICMP_ECHO;
            bad[i] ^= 0x80;
            assert!(!Icmpv4Packet::new_checked(&bad[..]).unwrap().verify_checksum(), "byte {i}");
        }
    }

    #[test]
    fn echo_reply_in_place() {
        let mut buf = ICMP_ECHO;
        let mut p = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        let c = checksum::update_u16(p.checksum(), (msg_type::ECHO_REQUEST as u16) << 8, 0);
        p.set_msg_type(msg_type::ECHO_REPLY);
        p.set_checksum(c);
        assert!(p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.checksum(), c);
        p.set_echo_ident(0x1234);
        p.set_echo_seq(0x5678);
        assert_eq!(p.rest_of_header(), 0x1234_5678);
        p.set_rest_of_header(0);
        p.set_code(1);
        p.payload_mut()[0] = b'A';
        p.fill_checksum();
        assert!(p.verify_checksum());
        let bytes = p.into_inner();
        assert_eq!(bytes[..2], [0, 1]);
        assert_eq!(bytes[4..9], [0, 0, 0, 0, b'A']);
    }

    #[test]
    fn error_message_embeds_truncated_ipv4() {
        let mut buf = TIME_EXCEEDED;
        let mut p = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert!(p.is_error());
        assert_eq!((p.msg_type(), p.code()), (msg_type::TIME_EXCEEDED, 0));
        // The quoted header says 60 bytes total, only 28 are present:
        // a full check refuses it, but the fixed fields are readable.
        let quoted = p.payload();
        assert_eq!(quoted.len(), 28);
        assert_eq!(Ipv4Packet::new_checked(quoted), Err(WireError::Truncated));
        let ip = Ipv4Packet::new_unchecked(quoted);
        assert_eq!((ip.ttl(), ip.protocol()), (1, protocol::UDP));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(8, 8, 8, 8));
        assert_eq!(&quoted[20..24], &[0x82, 0x9b, 0x82, 0x9a]); // ports 33435 -> 33434
                                                                // A header-only (8-byte) error is accepted too.
        let short = Icmpv4Packet::new_checked(&TIME_EXCEEDED[..8]).unwrap();
        assert!(short.is_error() && short.payload().is_empty());
        for t in [3, 4, 5, 11, 12] {
            let mut b = [0u8; 8];
            b[0] = t;
            assert!(Icmpv4Packet::new_checked(&b[..]).unwrap().is_error());
        }
        for t in [0, 8, 13, 14, 9, 255] {
            let mut b = [0u8; 8];
            b[0] = t;
            assert!(!Icmpv4Packet::new_checked(&b[..]).unwrap().is_error());
        }
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Icmpv4Packet::new_checked(&ICMP_ECHO[..len]), Err(WireError::Truncated), "len {len}");
        }
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&ICMP_ECHO, &TIME_EXCEEDED], |buf| {
            if let Ok(mut p) = Icmpv4Packet::new_checked(&mut buf[..]) {
                let _ = (p.msg_type(), p.code(), p.checksum(), p.rest_of_header(), p.echo_ident());
                let _ = (p.echo_seq(), p.is_error(), p.payload(), p.verify_checksum());
                p.payload_mut().fill(0);
                p.fill_checksum();
                assert!(p.verify_checksum());
            }
        });
    }
}
