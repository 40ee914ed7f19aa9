//! ARP for IPv4 over Ethernet (RFC 826). Other hardware/protocol pairs are
//! refused as `Unsupported`.

use core::net::Ipv4Addr;

use super::{read_u16, read_u32, write_u16, write_u32, MacAddr, Result, WireError};

/// Packet length for Ethernet/IPv4 ARP.
pub const PACKET_LEN: usize = 28;
/// Hardware type Ethernet (RFC 826 ar$hrd).
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    use core::ops::Range;
    pub(super) const HTYPE: Range<usize> = 0..2;
    pub(super) const PTYPE: Range<usize> = 2..4;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: Range<usize> = 6..8;
    pub(super) const SHA: Range<usize> = 8..14;
    pub(super) const SPA: Range<usize> = 14..18;
    pub(super) const THA: Range<usize> = 18..24;
    pub(super) const TPA: Range<usize> = 24..28;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(op: ArpOperation) -> u16 {
        match op {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// A view of an Ethernet/IPv4 ARP packet (the Ethernet payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// 28 bytes, htype 1, ptype 0x0800, hlen 6, plen 4. Trailing Ethernet
    /// padding is allowed.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if read_u16(data, field::HTYPE) != HTYPE_ETHERNET
            || read_u16(data, field::PTYPE) != super::ethernet::ethertype::IPV4
            || data[field::HLEN] != 6
            || data[field::PLEN] != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    pub fn protocol_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PTYPE)
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    pub fn operation(&self) -> ArpOperation {
        read_u16(self.buffer.as_ref(), field::OPER).into()
    }

    pub fn sender_mac(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(read_u32(self.buffer.as_ref(), field::SPA))
    }

    pub fn target_mac(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(read_u32(self.buffer.as_ref(), field::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes htype/ptype/hlen/plen for Ethernet/IPv4.
    pub fn set_ethernet_ipv4(&mut self) {
        let data = self.buffer.as_mut();
        write_u16(data, field::HTYPE, HTYPE_ETHERNET);
        write_u16(data, field::PTYPE, super::ethernet::ethertype::IPV4);
        data[field::HLEN] = 6;
        data[field::PLEN] = 4;
    }

    pub fn set_operation(&mut self, op: ArpOperation) {
        write_u16(self.buffer.as_mut(), field::OPER, op.into());
    }

    pub fn set_sender_mac(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&mac.0);
    }

    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::SPA, ip.to_bits());
    }

    pub fn set_target_mac(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&mac.0);
    }

    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::TPA, ip.to_bits());
    }
}

/// Owned Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<Self> {
        packet.check_len()?;
        Ok(ArpRepr {
            operation: packet.operation(),
            sender_mac: packet.sender_mac(),
            sender_ip: packet.sender_ip(),
            target_mac: packet.target_mac(),
            target_ip: packet.target_ip(),
        })
    }

    pub const fn header_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the 28-byte packet at the start of `buf` (module convention).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let Some(hdr) = buf.get_mut(..PACKET_LEN) else {
            return Err(WireError::Truncated);
        };
        let mut p = ArpPacket::new_unchecked(hdr);
        p.set_ethernet_ipv4();
        p.set_operation(self.operation);
        p.set_sender_mac(self.sender_mac);
        p.set_sender_ip(self.sender_ip);
        p.set_target_mac(self.target_mac);
        p.set_target_ip(self.target_ip);
        Ok(PACKET_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::fuzz;

    // Who has 192.168.1.1? Tell 192.168.1.10 (00:0c:29:3a:5b:7c).
    #[rustfmt::skip]
    const ARP_REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x00, 0x0c, 0x29, 0x3a, 0x5b, 0x7c, 0xc0, 0xa8,
        0x01, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01,
    ];
    const SENDER: MacAddr = MacAddr([0x00, 0x0c, 0x29, 0x3a, 0x5b, 0x7c]);

    #[test]
    fn parse_request() {
        let p = ArpPacket::new_checked(&ARP_REQUEST[..]).unwrap();
        assert_eq!((p.hardware_type(), p.protocol_type()), (1, 0x0800));
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), ArpOperation::Request);
        assert_eq!(p.sender_mac(), SENDER);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(p.target_mac(), MacAddr::ZERO);
        assert_eq!(p.target_ip(), Ipv4Addr::new(192, 168, 1, 1));
        // With Ethernet padding.
        let mut padded = ARP_REQUEST.to_vec();
        padded.resize(46, 0);
        assert!(ArpPacket::new_checked(&padded[..]).is_ok());
    }

    #[test]
    fn operation_conversions() {
        assert_eq!(ArpOperation::from(2), ArpOperation::Reply);
        assert_eq!(ArpOperation::from(9), ArpOperation::Unknown(9));
        assert_eq!(u16::from(ArpOperation::Unknown(9)), 9);
        assert_eq!(u16::from(ArpOperation::Request), 1);
    }

    #[test]
    fn malformed() {
        for len in 0..PACKET_LEN {
            assert_eq!(ArpPacket::new_checked(&ARP_REQUEST[..len]), Err(WireError::Truncated), "len {len}");
        }
        for (at, value) in [(1, 6), (0, 1), (2, 0x86), (4, 8), (5, 16), (5, 6)] {
            let mut bad = ARP_REQUEST;
            bad[at] = value;
            assert_eq!(ArpPacket::new_checked(&bad[..]), Err(WireError::Unsupported), "byte {at}");
            assert_eq!(ArpRepr::parse(&ArpPacket::new_unchecked(&bad[..])), Err(WireError::Unsupported));
        }
    }

    #[test]
    fn build_reply_in_place() {
        let mut buf = ARP_REQUEST;
        let mut p = ArpPacket::new_checked(&mut buf[..]).unwrap();
        let me = MacAddr([2, 0, 0, 0, 0, 1]);
        let (sha, spa, tpa) = (p.sender_mac(), p.sender_ip(), p.target_ip());
        p.set_operation(ArpOperation::Reply);
        p.set_target_mac(sha);
        p.set_target_ip(spa);
        p.set_sender_mac(me);
        p.set_sender_ip(tpa);
        let r = ArpRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            ArpRepr {
                operation: ArpOperation::Reply,
                sender_mac: me,
                sender_ip: Ipv4Addr::new(192, 168, 1, 1),
                target_mac: SENDER,
                target_ip: Ipv4Addr::new(192, 168, 1, 10),
            }
        );
    }

    #[test]
    fn repr_round_trip() {
        let p = ArpPacket::new_checked(&ARP_REQUEST[..]).unwrap();
        let repr = ArpRepr::parse(&p).unwrap();
        let mut buf = [0xffu8; 40];
        assert_eq!(repr.emit(&mut buf[..27]), Err(WireError::Truncated));
        assert_eq!(repr.emit(&mut buf), Ok(28));
        assert_eq!(buf[..28], ARP_REQUEST);
        assert_eq!(buf[28], 0xff);
        assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()), Ok(repr));
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&ARP_REQUEST], |buf| {
            if let Ok(mut p) = ArpPacket::new_checked(&mut buf[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len());
                let _ = (p.operation(), p.sender_mac(), p.sender_ip(), p.target_mac(), p.target_ip());
                ArpRepr::parse(&p).unwrap();
                p.set_operation(ArpOperation::Unknown(7));
                p.set_sender_ip(Ipv4Addr::BROADCAST);
                p.set_target_mac(MacAddr::BROADCAST);
                p.set_ethernet_ipv4();
            }
        });
    }
}
