//! Ethernet II frames with up to two 802.1Q / 802.1ad VLAN tags
//! (IEEE 802.3, IEEE 802.1Q).

use super::{clamped, clamped_mut, read_u16, write_u16, MacAddr, Result, WireError};

/// EtherType values (IEEE 802 numbers).
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer VLAN tag (C-tag) TPID.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (S-tag, "QinQ") TPID.
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
}

/// Untagged header length.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;

mod field {
    use core::ops::Range;
    pub(super) const DST: Range<usize> = 0..6;
    pub(super) const SRC: Range<usize> = 6..12;
    /// EtherType, or TPID of the outer tag.
    pub(super) const TYPE: Range<usize> = 12..14;
    pub(super) const OUTER_TCI: Range<usize> = 14..16;
    /// EtherType after the outer tag, or TPID of the inner tag.
    pub(super) const TYPE1: Range<usize> = 16..18;
    pub(super) const INNER_TCI: Range<usize> = 18..20;
}

/// A decoded 802.1Q Tag Control Information field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    /// Priority code point (802.1p), 3 bits.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier, 12 bits.
    pub vid: u16,
}

impl VlanTag {
    pub const fn from_tci(tci: u16) -> Self {
        VlanTag { pcp: (tci >> 13) as u8, dei: tci & 0x1000 != 0, vid: tci & 0x0fff }
    }

    /// Out-of-range `pcp`/`vid` bits are masked off.
    pub const fn to_tci(self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }
}

/// A view of an Ethernet II frame, possibly VLAN tagged.
///
/// Tag layout: an outer tag with TPID 0x88a8 or 0x8100, then optionally an
/// inner tag with TPID 0x8100. A third tag is not parsed: `ethertype()`
/// then reads 0x8100 and the caller should treat the frame as unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline(always)]
fn is_outer_tpid(t: u16) -> bool {
    t == ethertype::VLAN || t == ethertype::QINQ
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Needs 14 bytes, plus 4 per VLAN tag announced by a TPID.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if is_outer_tpid(read_u16(data, field::TYPE)) {
            if data.len() < HEADER_LEN + VLAN_TAG_LEN {
                return Err(WireError::Truncated);
            }
            if read_u16(data, field::TYPE1) == ethertype::VLAN && data.len() < HEADER_LEN + 2 * VLAN_TAG_LEN {
                return Err(WireError::Truncated);
            }
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Number of VLAN tags (0..=2). A tag counts only if the buffer holds it,
    /// which `new_checked` guarantees; the length test keeps accessors
    /// panic-free even after `set_ethertype` wrote a TPID.
    #[inline]
    pub fn tag_count(&self) -> usize {
        let data = self.buffer.as_ref();
        if data.len() >= HEADER_LEN + VLAN_TAG_LEN && is_outer_tpid(read_u16(data, field::TYPE)) {
            if data.len() >= HEADER_LEN + 2 * VLAN_TAG_LEN && read_u16(data, field::TYPE1) == ethertype::VLAN {
                2
            } else {
                1
            }
        } else {
            0
        }
    }

    /// 14, 18 or 22.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + VLAN_TAG_LEN * self.tag_count()
    }

    pub fn dst(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DST])
    }

    pub fn src(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SRC])
    }

    /// The EtherType after all tags.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let at = field::TYPE.start + VLAN_TAG_LEN * self.tag_count();
        read_u16(self.buffer.as_ref(), at..at + 2)
    }

    /// TPID of the outer tag, if tagged.
    pub fn outer_tpid(&self) -> Option<u16> {
        (self.tag_count() > 0).then(|| read_u16(self.buffer.as_ref(), field::TYPE))
    }

    /// Raw TCIs `(outer, inner)`. A single tag is reported as outer.
    pub fn vlan_tags(&self) -> (Option<u16>, Option<u16>) {
        let data = self.buffer.as_ref();
        match self.tag_count() {
            0 => (None, None),
            1 => (Some(read_u16(data, field::OUTER_TCI)), None),
            _ => (Some(read_u16(data, field::OUTER_TCI)), Some(read_u16(data, field::INNER_TCI))),
        }
    }

    /// TCI of the innermost tag.
    pub fn tci(&self) -> Option<u16> {
        match self.vlan_tags() {
            (_, Some(inner)) => Some(inner),
            (outer, None) => outer,
        }
    }

    /// VLAN ID of the innermost tag.
    pub fn vid(&self) -> Option<u16> {
        self.tci().map(|tci| tci & 0x0fff)
    }

    /// Everything after the header (including any trailing padding/FCS the
    /// buffer holds).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamped(data, self.header_len(), data.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    /// Sets the innermost EtherType (the one after all tags).
    pub fn set_ethertype(&mut self, value: u16) {
        let at = field::TYPE.start + VLAN_TAG_LEN * self.tag_count();
        write_u16(self.buffer.as_mut(), at..at + 2, value);
    }

    /// Rewrites the innermost tag's TCI; `Err(Unsupported)` if untagged
    /// (pushing a tag changes the length, which a view cannot do).
    pub fn set_tci(&mut self, tci: u16) -> Result<()> {
        let r = match self.tag_count() {
            0 => return Err(WireError::Unsupported),
            1 => field::OUTER_TCI,
            _ => field::INNER_TCI,
        };
        write_u16(self.buffer.as_mut(), r, tci);
        Ok(())
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let data = self.buffer.as_mut();
        let end = data.len();
        clamped_mut(data, start, end)
    }
}

/// Owned Ethernet header with at most one 802.1Q (0x8100) tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ethertype: u16,
    /// TCI of a single 802.1Q tag.
    pub vlan: Option<u16>,
}

impl EthernetRepr {
    /// `Err(Unsupported)` for double-tagged frames or a single 0x88a8 tag,
    /// which this repr cannot re-emit faithfully.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        let vlan = match (frame.vlan_tags(), frame.outer_tpid()) {
            ((None, _), _) => None,
            ((Some(tci), None), Some(ethertype::VLAN)) => Some(tci),
            _ => return Err(WireError::Unsupported),
        };
        Ok(EthernetRepr { dst: frame.dst(), src: frame.src(), ethertype: frame.ethertype(), vlan })
    }

    pub const fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header at the start of `buf` (see the module convention).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.header_len();
        let Some(hdr) = buf.get_mut(..len) else {
            return Err(WireError::Truncated);
        };
        hdr[field::DST].copy_from_slice(&self.dst.0);
        hdr[field::SRC].copy_from_slice(&self.src.0);
        match self.vlan {
            Some(tci) => {
                write_u16(hdr, field::TYPE, ethertype::VLAN);
                write_u16(hdr, field::OUTER_TCI, tci);
                write_u16(hdr, field::TYPE1, self.ethertype);
            }
            None => write_u16(hdr, field::TYPE, self.ethertype),
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::fuzz;

    // ARP request, broadcast, padded to the 60-byte minimum.
    #[rustfmt::skip]
    const ARP_FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x0c, 0x29, 0x3a, 0x5b, 0x7c, 0x08, 0x06, 0x00, 0x01,
        0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x00, 0x0c, 0x29, 0x3a, 0x5b, 0x7c, 0xc0, 0xa8, 0x01, 0x0a,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    // 802.1Q PCP 5 VID 100, IPv4/UDP 10.1.0.1:1234 -> 10.1.0.2:5678 "hi!!".
    #[rustfmt::skip]
    const VLAN_FRAME: [u8; 50] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0xa0, 0x64,
        0x08, 0x00, 0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x26, 0xc8, 0x0a, 0x01,
        0x00, 0x01, 0x0a, 0x01, 0x00, 0x02, 0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0c, 0x47, 0x47, 0x68, 0x69,
        0x21, 0x21,
    ];

    // Same IPv4 packet, S-tag 0x88a8 PCP 3 DEI VID 200, C-tag VID 100.
    #[rustfmt::skip]
    const QINQ_FRAME: [u8; 54] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0xa8, 0x70, 0xc8,
        0x81, 0x00, 0x00, 0x64, 0x08, 0x00, 0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11,
        0x26, 0xc8, 0x0a, 0x01, 0x00, 0x01, 0x0a, 0x01, 0x00, 0x02, 0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0c,
        0x47, 0x47, 0x68, 0x69, 0x21, 0x21,
    ];

    const MAC1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const MAC2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn parse_untagged() {
        let f = EthernetFrame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!(f.dst(), MacAddr::BROADCAST);
        assert_eq!(f.src(), MacAddr([0x00, 0x0c, 0x29, 0x3a, 0x5b, 0x7c]));
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.tag_count(), 0);
        assert_eq!(f.outer_tpid(), None);
        assert_eq!(f.vlan_tags(), (None, None));
        assert_eq!((f.tci(), f.vid()), (None, None));
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload(), &ARP_FRAME[14..]);
        let r = EthernetRepr::parse(&f).unwrap();
        assert_eq!(r, EthernetRepr { dst: MacAddr::BROADCAST, src: f.src(), ethertype: 0x0806, vlan: None });
    }

    #[test]
    fn parse_8021q() {
        let f = EthernetFrame::new_checked(&VLAN_FRAME[..]).unwrap();
        assert_eq!((f.dst(), f.src()), (MAC2, MAC1));
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.tag_count(), 1);
        assert_eq!(f.outer_tpid(), Some(ethertype::VLAN));
        assert_eq!(f.vlan_tags(), (Some(0xa064), None));
        assert_eq!(VlanTag::from_tci(0xa064), VlanTag { pcp: 5, dei: false, vid: 100 });
        assert_eq!(f.vid(), Some(100));
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), &VLAN_FRAME[18..]);
        assert_eq!(f.payload()[0], 0x45);
        let r = EthernetRepr::parse(&f).unwrap();
        assert_eq!(r, EthernetRepr { dst: MAC2, src: MAC1, ethertype: ethertype::IPV4, vlan: Some(0xa064) });
    }

    #[test]
    fn parse_qinq() {
        let f = EthernetFrame::new_checked(&QINQ_FRAME[..]).unwrap();
        assert_eq!((f.dst(), f.src()), (MAC2, MAC1));
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.tag_count(), 2);
        assert_eq!(f.outer_tpid(), Some(ethertype::QINQ));
        assert_eq!(f.vlan_tags(), (Some(0x70c8), Some(0x0064)));
        assert_eq!(VlanTag::from_tci(0x70c8), VlanTag { pcp: 3, dei: true, vid: 200 });
        assert_eq!(VlanTag { pcp: 3, dei: true, vid: 200 }.to_tci(), 0x70c8);
        assert_eq!(f.vid(), Some(100));
        assert_eq!(f.header_len(), 22);
        assert_eq!(f.payload(), &QINQ_FRAME[22..]);
        assert_eq!(f.payload(), &VLAN_FRAME[18..]);
        assert_eq!(EthernetRepr::parse(&f), Err(WireError::Unsupported));
        // 0x8100 + 0x8100 is also two tags.
        let mut old_style = QINQ_FRAME;
        old_style[12..14].copy_from_slice(&[0x81, 0x00]);
        let f = EthernetFrame::new_checked(&old_style[..]).unwrap();
        assert_eq!((f.tag_count(), f.ethertype()), (2, ethertype::IPV4));
    }

    #[test]
    fn setters() {
        let mut buf = QINQ_FRAME;
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.set_dst(MAC1);
        f.set_src(MacAddr::BROADCAST);
        f.set_ethertype(ethertype::IPV6);
        f.set_tci(0x0fff).unwrap();
        f.payload_mut()[0] = 0x60;
        assert_eq!((f.dst(), f.src(), f.ethertype()), (MAC1, MacAddr::BROADCAST, ethertype::IPV6));
        assert_eq!(f.vlan_tags(), (Some(0x70c8), Some(0x0fff)));
        assert_eq!(buf[20..23], [0x86, 0xdd, 0x60]);
        let mut buf = ARP_FRAME;
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        assert_eq!(f.set_tci(1), Err(WireError::Unsupported));
        f.set_ethertype(ethertype::IPV4);
        assert_eq!(f.into_inner()[12..14], [0x08, 0x00]);
    }

    #[test]
    fn truncated_at_every_length() {
        for frame in [&ARP_FRAME[..14], &VLAN_FRAME[..18], &QINQ_FRAME[..22]] {
            for len in 0..frame.len() {
                assert_eq!(EthernetFrame::new_checked(&frame[..len]), Err(WireError::Truncated), "len {len}");
            }
            let f = EthernetFrame::new_checked(frame).unwrap();
            assert_eq!(f.header_len(), frame.len());
            assert!(f.payload().is_empty());
        }
    }

    #[test]
    fn repr_round_trip() {
        for vlan in [None, Some(0xa064)] {
            let repr = EthernetRepr { dst: MAC2, src: MAC1, ethertype: ethertype::IPV4, vlan };
            let mut buf = [0xeeu8; 64];
            assert_eq!(repr.emit(&mut buf[..repr.header_len() - 1]), Err(WireError::Truncated));
            assert_eq!(repr.emit(&mut buf), Ok(repr.header_len()));
            let f = EthernetFrame::new_checked(&buf[..]).unwrap();
            assert_eq!(f.header_len(), repr.header_len());
            assert_eq!(EthernetRepr::parse(&f), Ok(repr));
            if vlan.is_some() {
                assert_eq!(buf[..18], VLAN_FRAME[..18]);
            }
        }
    }

    fn touch_all(f: &EthernetFrame<&mut [u8]>) {
        let _ = (f.dst(), f.src(), f.ethertype(), f.vlan_tags(), f.tci(), f.vid(), f.outer_tpid());
        assert!(f.header_len() + f.payload().len() <= f.buffer.len());
        let _ = EthernetRepr::parse(f);
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&ARP_FRAME, &VLAN_FRAME, &QINQ_FRAME], |buf| {
            let mut buf2 = buf.to_vec();
            if let Ok(mut f) = EthernetFrame::new_checked(&mut buf[..]) {
                touch_all(&f);
                // Layout-changing setters must not make accessors panic.
                f.set_ethertype(ethertype::VLAN);
                touch_all(&f);
                let _ = f.set_tci(0xffff);
                f.set_ethertype(ethertype::QINQ);
                f.payload_mut().fill(0x81);
                touch_all(&f);
                f.set_dst(MAC1);
                f.set_src(MAC2);
                touch_all(&f);
            } else {
                assert!(buf2.len() < 22);
            }
            let f = EthernetFrame::new_unchecked(&mut buf2[..]);
            let _ = f.tag_count();
        });
    }
}
