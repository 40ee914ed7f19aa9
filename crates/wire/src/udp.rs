//! UDP datagrams (RFC 768).

use core::net::Ipv4Addr;

use super::checksum::Checksum;
use super::ipv4::protocol;
use super::{clamped, clamped_mut, read_u16, write_u16, Result, WireError};

pub const HEADER_LEN: usize = 8;
/// Byte offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 6;

/// The UDP checksum after a 32-bit word it covers (an IPv4 address of the
/// pseudo-header) changed `old` -> `new` (RFC 1624 eqn. 3). RFC 768: a zero
/// checksum means the sender computed none and stays zero; a new value of zero
/// is sent as 0xFFFF.
#[inline]
pub fn update_checksum_u32(checksum: u16, old: u32, new: u32) -> u16 {
    if checksum == 0 {
        return 0;
    }
    match super::checksum::update_u32(checksum, old, new) {
        0 => 0xffff,
        updated => updated,
    }
}

mod field {
    use core::ops::Range;
    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const LENGTH: Range<usize> = 4..6;
    pub(super) const CHECKSUM: Range<usize> = 6..8;
}

/// A view of a UDP datagram. The buffer may extend past the length field
/// (IP/Ethernet padding); `payload()` stops at the length field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpDatagram { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let d = Self::new_unchecked(buffer);
        d.check_len()?;
        Ok(d)
    }

    /// 8 bytes; length field >= 8 (`BadLength`) and within the buffer.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = self.len() as usize;
        if len < HEADER_LEN {
            return Err(WireError::BadLength);
        }
        if len > data.len() {
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

    /// The length field: header plus payload, in bytes.
    // Named after the RFC 768 field; an `is_empty` would be meaningless
    // (a valid datagram is never shorter than its header).
    #[allow(clippy::len_without_is_empty)]
    #[inline]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Header and payload, up to the length field.
    fn datagram(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, self.len() as usize)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.len() as usize)
    }

    fn compute(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let mut c = Checksum::new();
        c.add_pseudo_header_ipv4(src, dst, protocol::UDP, self.len());
        c.add_bytes(self.datagram());
        c.finish()
    }

    /// True if the checksum is absent (0, RFC 768) or correct over the
    /// pseudo-header and the datagram up to the length field.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || self.compute(src, dst) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes and stores the checksum; a computed 0 is sent as 0xFFFF
    /// since 0 means "no checksum" (RFC 768).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = self.compute(src, dst);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len() as usize;
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// Owned UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl UdpRepr {
    /// Does not verify the checksum (it needs the IP addresses).
    pub fn parse<T: AsRef<[u8]>>(datagram: &UdpDatagram<T>) -> Result<Self> {
        datagram.check_len()?;
        Ok(UdpRepr {
            src_port: datagram.src_port(),
            dst_port: datagram.dst_port(),
            payload_len: datagram.len() as usize - HEADER_LEN,
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 8-byte header with checksum 0 (module convention); write
    /// the payload, then call `UdpDatagram::fill_checksum` if wanted.
    /// `Err(BadLength)` if 8 + payload_len exceeds 65535.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| WireError::BadLength)?;
        let Some(hdr) = buf.get_mut(..HEADER_LEN) else {
            return Err(WireError::Truncated);
        };
        let mut d = UdpDatagram::new_unchecked(hdr);
        d.set_src_port(self.src_port);
        d.set_dst_port(self.dst_port);
        d.set_len(len);
        d.set_checksum(0);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{fuzz, XorShift};

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const DST: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

    // 192.168.1.10:53000 -> 8.8.8.8:53, DNS query for example.com A.
    #[rustfmt::skip]
    const UDP_DNS: [u8; 37] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0xe3, 0x68, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d,
        0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    #[test]
    fn parse_dns_query() {
        let d = UdpDatagram::new_checked(&UDP_DNS[..]).unwrap();
        assert_eq!((d.src_port(), d.dst_port()), (53000, 53));
        assert_eq!(d.len(), 37);
        assert_eq!(d.checksum(), 0xe368);
        assert_eq!(d.payload(), &UDP_DNS[8..]);
        assert_eq!(&d.payload()[12..20], b"\x07example");
        assert!(d.verify_checksum(SRC, DST));
        assert!(!d.verify_checksum(DST, SRC.octets().map(|b| b ^ 1).into()));
        assert_eq!(UdpRepr::parse(&d), Ok(UdpRepr { src_port: 53000, dst_port: 53, payload_len: 29 }));
    }

    #[test]
    fn flipped_byte_fails_checksum() {
        for i in 0..UDP_DNS.len() {
            let mut bad = UDP_DNS;
            bad[i] ^= 0x10;
            if let Ok(d) = UdpDatagram::new_checked(&bad[..]) {
                assert!(!d.verify_checksum(SRC, DST), "byte {i}");
            }
        }
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut buf = UDP_DNS;
        buf[6..8].fill(0);
        assert!(UdpDatagram::new_checked(&buf[..]).unwrap().verify_checksum(SRC, DST));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Pick the last two payload bytes so the checksum computes to 0.
        let mut buf = [0u8; 10];
        let mut d = UdpDatagram::new_unchecked(&mut buf[..]);
        d.set_src_port(1);
        d.set_dst_port(2);
        d.set_len(10);
        d.fill_checksum(SRC, DST);
        // Putting the checksum value into the payload word makes the sum
        // 0xFFFF with the checksum field zeroed: computed checksum 0.
        let c = d.checksum();
        d.payload_mut().copy_from_slice(&c.to_be_bytes());
        d.fill_checksum(SRC, DST);
        assert_eq!(d.checksum(), 0xffff);
        assert!(d.verify_checksum(SRC, DST));
    }

    #[test]
    fn malformed() {
        for len in 0..UDP_DNS.len() {
            assert_eq!(UdpDatagram::new_checked(&UDP_DNS[..len]), Err(WireError::Truncated), "len {len}");
        }
        for l in 0..8u16 {
            let mut bad = UDP_DNS;
            bad[4..6].copy_from_slice(&l.to_be_bytes());
            assert_eq!(UdpDatagram::new_checked(&bad[..]), Err(WireError::BadLength));
        }
        // Length 8: empty payload. Longer buffer: padding excluded.
        let mut ok = UDP_DNS.to_vec();
        ok[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(UdpDatagram::new_checked(&ok[..]).unwrap().payload().is_empty());
        let mut padded = UDP_DNS.to_vec();
        padded.extend_from_slice(&[0xee; 9]);
        let d = UdpDatagram::new_checked(&padded[..]).unwrap();
        assert_eq!(d.payload(), &UDP_DNS[8..]);
        assert!(d.verify_checksum(SRC, DST));
    }

    #[test]
    fn repr_round_trip() {
        let mut rng = XorShift::new(17);
        for _ in 0..500 {
            let repr = UdpRepr { src_port: rng.u16(), dst_port: rng.u16(), payload_len: rng.below(64) };
            let mut buf = vec![0xffu8; 8 + repr.payload_len];
            assert_eq!(repr.emit(&mut buf[..7]), Err(WireError::Truncated));
            assert_eq!(repr.emit(&mut buf), Ok(8));
            let mut d = UdpDatagram::new_checked(&mut buf[..]).unwrap();
            assert_eq!(d.checksum(), 0);
            assert_eq!(UdpRepr::parse(&d), Ok(repr));
            rng.fill(d.payload_mut());
            d.fill_checksum(SRC, DST);
            assert!(d.verify_checksum(SRC, DST));
            assert_ne!(d.checksum(), 0);
        }
        let huge = UdpRepr { src_port: 1, dst_port: 2, payload_len: 65528 };
        assert_eq!(huge.emit(&mut [0; 8]), Err(WireError::BadLength));
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&UDP_DNS], |buf| {
            if let Ok(mut d) = UdpDatagram::new_checked(&mut buf[..]) {
                touch_all(&d);
                UdpRepr::parse(&d).unwrap();
                d.set_len(0xffff);
                touch_all(&d);
                d.fill_checksum(SRC, DST);
                d.payload_mut().fill(0);
                d.set_len(1);
                touch_all(&d);
                d.fill_checksum(DST, SRC);
                d.set_src_port(1);
                d.set_dst_port(2);
            }
        });
    }

    fn touch_all(d: &UdpDatagram<&mut [u8]>) {
        let _ = (d.src_port(), d.dst_port(), d.len(), d.checksum(), d.payload());
        let _ = d.verify_checksum(SRC, DST);
        let _ = UdpRepr::parse(d);
    }
}
