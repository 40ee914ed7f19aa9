//! VXLAN headers (RFC 7348 section 5).
//!
//! ```text
//! |R|R|R|R|I|R|R|R|            Reserved (24)                       |
//! |                VNI (24)                       | Reserved (8)   |
//! ```

use super::{clamped, clamped_mut, read_u32, Result, WireError};

/// IANA-assigned destination UDP port.
pub const UDP_PORT: u16 = 4789;
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI is valid (must be set, RFC 7348).
pub const FLAG_I: u8 = 0x08;
/// Largest 24-bit VNI.
pub const MAX_VNI: u32 = 0x00ff_ffff;

mod field {
    use core::ops::Range;
    pub(super) const FLAGS: usize = 0;
    pub(super) const RESERVED1: Range<usize> = 1..4;
    /// FLAGS and RESERVED1 together.
    pub(super) const FLAGS_RESERVED1: Range<usize> = 0..4;
    pub(super) const VNI: Range<usize> = 4..7;
    pub(super) const RESERVED2: usize = 7;
}

/// A view of a VXLAN header followed by the inner Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        VxlanHeader { buffer }
    }

    /// Only checks the length: flags are the receiver's policy (RFC 7348
    /// says reserved bits are ignored on receipt; see `has_vni`).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// I flag set: the VNI is valid.
    #[inline]
    pub fn has_vni(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The 7 other flag bits and the 24 + 8 reserved bits are all zero.
    pub fn reserved_bits_clear(&self) -> bool {
        let d = self.buffer.as_ref();
        // Flags and the 24 reserved bits as one word: no byte-slice memcmp.
        read_u32(d, field::FLAGS_RESERVED1) & !((FLAG_I as u32) << 24) == 0 && d[field::RESERVED2] == 0
    }

    /// The 24-bit VXLAN Network Identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let v = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, v[0], v[1], v[2]])
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamped(data, HEADER_LEN, data.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanHeader<T> {
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Writes the low 24 bits of `vni`; the reserved byte is kept.
    pub fn set_vni(&mut self, vni: u32) {
        let b = vni.to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&b[1..]);
    }

    /// Zeroes the reserved fields (flags other than I included).
    pub fn clear_reserved(&mut self) {
        let d = self.buffer.as_mut();
        d[field::FLAGS] &= FLAG_I;
        d[field::RESERVED1].fill(0);
        d[field::RESERVED2] = 0;
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let end = data.len();
        clamped_mut(data, HEADER_LEN, end)
    }
}

/// Owned VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanRepr {
    /// 24-bit VNI (`<= MAX_VNI`).
    pub vni: u32,
}

impl VxlanRepr {
    /// `Err(Unsupported)` without the I flag; reserved bits are ignored as
    /// RFC 7348 asks of receivers.
    pub fn parse<T: AsRef<[u8]>>(header: &VxlanHeader<T>) -> Result<Self> {
        header.check_len()?;
        if !header.has_vni() {
            return Err(WireError::Unsupported);
        }
        Ok(VxlanRepr { vni: header.vni() })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the I flag, the VNI, and zero reserved bits (module
    /// convention). `Err(Unsupported)` if the VNI does not fit 24 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if self.vni > MAX_VNI {
            return Err(WireError::Unsupported);
        }
        let Some(hdr) = buf.get_mut(..HEADER_LEN) else {
            return Err(WireError::Truncated);
        };
        hdr.fill(0);
        let mut h = VxlanHeader::new_unchecked(hdr);
        h.set_flags(FLAG_I);
        h.set_vni(self.vni);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::{ethertype, EthernetFrame};
    use crate::icmp::{msg_type, Icmpv4Packet};
    use crate::ipv4::{protocol, Ipv4Packet};
    use crate::test_util::fuzz;
    use crate::udp::UdpDatagram;
    use crate::MacAddr;
    use core::net::Ipv4Addr;

    // Outer 172.16.0.1:49152 -> 172.16.0.2:4789 (UDP checksum 0), VNI 5001,
    // inner 192.168.0.1 -> 192.168.0.2 ICMP echo "ping".
    #[rustfmt::skip]
    const VXLAN_FRAME: [u8; 96] = [
        0x0c, 0xc4, 0x7a, 0x00, 0x00, 0x02, 0x0c, 0xc4, 0x7a, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
        0x00, 0x52, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0xd0, 0x43, 0xac, 0x10, 0x00, 0x01, 0xac, 0x10,
        0x00, 0x02, 0xc0, 0x00, 0x12, 0xb5, 0x00, 0x3e, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x13,
        0x89, 0x00, 0x02, 0xaa, 0x00, 0x00, 0x00, 0x02, 0x02, 0xaa, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        0x45, 0x00, 0x00, 0x20, 0x00, 0x07, 0x40, 0x00, 0x40, 0x01, 0xb9, 0x82, 0xc0, 0xa8, 0x00, 0x01,
        0xc0, 0xa8, 0x00, 0x02, 0x08, 0x00, 0x18, 0xec, 0x00, 0x42, 0x00, 0x01, 0x70, 0x69, 0x6e, 0x67,
    ];
    const VXLAN_AT: usize = 14 + 20 + 8;

    #[test]
    fn decapsulate_full_frame() {
        let eth = EthernetFrame::new_checked(&VXLAN_FRAME[..]).unwrap();
        assert_eq!(eth.ethertype(), ethertype::IPV4);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.protocol(), ip.total_len()), (protocol::UDP, 82));
        assert_eq!(ip.src_addr(), Ipv4Addr::new(172, 16, 0, 1));
        let udp = UdpDatagram::new_checked(ip.payload()).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port(), udp.checksum()), (49152, UDP_PORT, 0));
        assert!(udp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        let vx = VxlanHeader::new_checked(udp.payload()).unwrap();
        assert_eq!(vx.flags(), FLAG_I);
        assert!(vx.has_vni() && vx.reserved_bits_clear());
        assert_eq!(vx.vni(), 5001);
        assert_eq!(VxlanRepr::parse(&vx), Ok(VxlanRepr { vni: 5001 }));
        let inner = EthernetFrame::new_checked(vx.payload()).unwrap();
        assert_eq!(inner.dst(), MacAddr([0x02, 0xaa, 0, 0, 0, 2]));
        assert_eq!(inner.src(), MacAddr([0x02, 0xaa, 0, 0, 0, 1]));
        let inner_ip = Ipv4Packet::new_checked(inner.payload()).unwrap();
        assert!(inner_ip.verify_checksum());
        assert_eq!(inner_ip.dst_addr(), Ipv4Addr::new(192, 168, 0, 2));
        let icmp = Icmpv4Packet::new_checked(inner_ip.payload()).unwrap();
        assert_eq!((icmp.msg_type(), icmp.echo_ident(), icmp.echo_seq()), (msg_type::ECHO_REQUEST, 0x42, 1));
        assert_eq!(icmp.payload(), b"ping");
        assert!(icmp.verify_checksum());
    }

    #[test]
    fn flags_and_reserved_bits() {
        let good = &VXLAN_FRAME[VXLAN_AT..];
        // No I flag.
        let mut b = good.to_vec();
        b[0] = 0x00;
        let h = VxlanHeader::new_checked(&b[..]).unwrap();
        assert!(!h.has_vni() && h.reserved_bits_clear());
        assert_eq!(VxlanRepr::parse(&h), Err(WireError::Unsupported));
        // Each reserved bit alone is reported, and ignored by parse.
        for byte in [0, 1, 2, 3, 7] {
            for bit in 0..8 {
                if byte == 0 && 1 << bit == FLAG_I {
                    continue;
                }
                let mut b = good.to_vec();
                b[byte] |= 1 << bit;
                let h = VxlanHeader::new_checked(&b[..]).unwrap();
                assert!(h.has_vni() && !h.reserved_bits_clear(), "byte {byte} bit {bit}");
                assert_eq!(VxlanRepr::parse(&h), Ok(VxlanRepr { vni: 5001 }));
            }
        }
        // VNI bytes are not reserved.
        let mut b = good.to_vec();
        b[4..7].fill(0xff);
        let mut h = VxlanHeader::new_checked(&mut b[..]).unwrap();
        assert!(h.reserved_bits_clear());
        assert_eq!(h.vni(), MAX_VNI);
        h.set_flags(0xff);
        h.set_vni(0x0100_0002); // high byte dropped
        assert_eq!((h.vni(), h.reserved_bits_clear()), (2, false));
        h.clear_reserved();
        assert_eq!((h.flags(), h.reserved_bits_clear()), (FLAG_I, true));
        h.payload_mut()[0] = 0xee;
        assert_eq!(h.into_inner()[8], 0xee);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            let b = &VXLAN_FRAME[VXLAN_AT..VXLAN_AT + len];
            assert_eq!(VxlanHeader::new_checked(b), Err(WireError::Truncated), "len {len}");
        }
        assert!(VxlanHeader::new_checked(&VXLAN_FRAME[VXLAN_AT..VXLAN_AT + 8]).unwrap().payload().is_empty());
    }

    #[test]
    fn repr_round_trip() {
        for vni in [0, 1, 5001, MAX_VNI] {
            let repr = VxlanRepr { vni };
            let mut buf = [0xffu8; 9];
            assert_eq!(repr.emit(&mut buf[..7]), Err(WireError::Truncated));
            assert_eq!(repr.emit(&mut buf), Ok(8));
            assert_eq!(buf[8], 0xff);
            let h = VxlanHeader::new_checked(&buf[..]).unwrap();
            assert!(h.has_vni() && h.reserved_bits_clear());
            assert_eq!(VxlanRepr::parse(&h), Ok(repr));
        }
        let mut buf = [0u8; 8];
        VxlanRepr { vni: 5001 }.emit(&mut buf).unwrap();
        assert_eq!(buf, VXLAN_FRAME[VXLAN_AT..VXLAN_AT + 8]);
        assert_eq!(VxlanRepr { vni: MAX_VNI + 1 }.emit(&mut buf), Err(WireError::Unsupported));
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&VXLAN_FRAME[VXLAN_AT..]], |buf| {
            if let Ok(mut h) = VxlanHeader::new_checked(&mut buf[..]) {
                let _ = (h.flags(), h.has_vni(), h.reserved_bits_clear(), h.vni(), h.payload());
                let _ = VxlanRepr::parse(&h);
                h.set_vni(u32::MAX);
                h.clear_reserved();
                h.payload_mut().fill(0);
            }
        });
    }
}
