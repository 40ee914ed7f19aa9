//! The client's datagrams (docs/storage-protocol.md): a request cut into fragments and MAC'd, and the checks
//! a received datagram passes before it is taken as a reply: framing, the MAC, the reply's fields, the user.
//! Matching it to an outstanding request is `matches`; the engine does the rest.

use switchyard_wire::block::{
    BlockError, BlockPacket, BlockRepr, FragmentSize, Status, UserKey, HEADER_LEN, MAX_FRAGMENT_PAYLOAD,
};

use super::storage_request::IoRequest;

/// The largest datagram the client sends or takes.
pub const MAX_DATAGRAM_LEN: usize = HEADER_LEN + MAX_FRAGMENT_PAYLOAD as usize;

/// Why a received datagram was dropped (each counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Framing or fields refused (`BlockPacket::new_checked`, `BlockRepr::parse_reply`).
    Malformed,
    /// The MAC is not the user's: forged, corrupted, or another user's.
    BadMac,
    /// A request, not a reply (under our MAC: ours reflected back).
    NotAReply,
    /// Another user id under our key.
    WrongUser,
    /// No request of its id is outstanding: answered already (a duplicate), given up, or never sent.
    NotOutstanding,
    /// Its id is outstanding but its op, image, range or FUA flag differ from the request's.
    Mismatched,
    /// A READ reply fragment every byte of which had arrived already.
    DuplicateFragment,
    /// A READ reply fragment with no reassembly slot free.
    ReassemblyFull,
    /// A READ reply fragment whose header differs from the first fragment's.
    InconsistentFragment,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::Malformed,
        DropReason::BadMac,
        DropReason::NotAReply,
        DropReason::WrongUser,
        DropReason::NotOutstanding,
        DropReason::Mismatched,
        DropReason::DuplicateFragment,
        DropReason::ReassemblyFull,
        DropReason::InconsistentFragment,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadMac => "bad_mac",
            DropReason::NotAReply => "not_a_reply",
            DropReason::WrongUser => "wrong_user",
            DropReason::NotOutstanding => "not_outstanding",
            DropReason::Mismatched => "mismatched",
            DropReason::DuplicateFragment => "duplicate_fragment",
            DropReason::ReassemblyFull => "reassembly_full",
            DropReason::InconsistentFragment => "inconsistent_fragment",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Who the client is to the server, and how it cuts its data.
#[derive(Debug, Clone)]
pub struct Sender {
    pub user_id: u32,
    pub key: UserKey,
    pub fragment_size: FragmentSize,
}

impl Sender {
    /// The datagrams `request` travels in: a WRITE's fragments, or one.
    pub fn datagram_count(&self, request: &IoRequest) -> u32 {
        if request.op.has_request_data() {
            self.fragment_size.count(request.length)
        } else {
            1
        }
    }

    /// Writes datagram `index` of `request`, sent as `request_id`, into `buf`, MAC'd; its length. `None` past
    /// the last datagram, for a request `IoRequest::validate` refuses, or when `buf` is too small.
    pub fn encode(&self, request: &IoRequest, request_id: u64, index: u32, buf: &mut [u8]) -> Option<usize> {
        let mut header = request.header(self.user_id, request_id);
        let payload = if request.op.has_request_data() {
            let range = self.fragment_size.range(request.length, index)?;
            header.fragment_offset = range.start;
            header.payload_len = (range.end - range.start) as u16;
            request.data.get(range.start as usize..range.end as usize)?
        } else if index == 0 {
            &[][..]
        } else {
            return None;
        };
        let len = HEADER_LEN + payload.len();
        let out = buf.get_mut(..len)?;
        header.emit(out).ok()?;
        let mut packet = BlockPacket::new_unchecked(out);
        packet.payload_mut().copy_from_slice(payload);
        packet.fill_mac(&self.key);
        Some(len)
    }

    /// Checks a received datagram up to the user: framing, then the MAC, then the reply's fields. The
    /// header, and the payload (a READ or INFO reply's data).
    pub fn decode_reply<'a>(&self, datagram: &'a [u8]) -> Result<(BlockRepr, &'a [u8]), DropReason> {
        let packet = BlockPacket::new_checked(datagram).map_err(|_| DropReason::Malformed)?;
        packet.verify_mac(&self.key).map_err(|_| DropReason::BadMac)?;
        let reply = BlockRepr::parse_reply(&packet).map_err(|e| match e {
            BlockError::RequestWhereReplyExpected => DropReason::NotAReply,
            _ => DropReason::Malformed,
        })?;
        if reply.user_id != self.user_id {
            return Err(DropReason::WrongUser);
        }
        let payload = packet.into_inner().get(HEADER_LEN..).unwrap_or_default();
        Ok((reply, payload))
    }
}

/// `reply` answers `request` (docs/storage-protocol.md: same op, image, offset, length and FUA flag; an ESTALE
/// reply's offset field holds the server's highest id instead).
pub fn matches(request: &IoRequest, reply: &BlockRepr) -> bool {
    let offset_echoed = reply.status == Status::StaleRequestId || reply.offset == request.offset;
    reply.op == request.op
        && reply.image_id == request.image_id
        && reply.length == request.length
        && offset_echoed
        && reply.flags.contains(switchyard_wire::block::Flags::FUA) == request.fua
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_wire::block::{Flags, Op, MAX_IO_LEN};

    const KEY: UserKey = UserKey::new(*b"the secret of user 7, 32 bytes!!");

    fn sender(fragment: u16) -> Sender {
        Sender { user_id: 7, key: KEY, fragment_size: FragmentSize::new(fragment).unwrap() }
    }

    /// Every datagram of `request`, parsed back as the server would.
    fn encode_all(sender: &Sender, request: &IoRequest, id: u64) -> Vec<(BlockRepr, Vec<u8>, usize)> {
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        (0..sender.datagram_count(request))
            .map(|index| {
                let len = sender.encode(request, id, index, &mut buf).unwrap();
                let packet = BlockPacket::new_checked(&buf[..len]).unwrap();
                packet.verify_mac(&KEY).unwrap();
                let repr = BlockRepr::parse_request(&packet).unwrap();
                (repr, packet.payload().to_vec(), len)
            })
            .collect()
    }

    #[test]
    fn a_4_kib_write_is_three_datagrams() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let request = IoRequest::write(2, 1 << 20, data.clone(), true);
        let datagrams = encode_all(&sender(1408), &request, 99);
        let layout: Vec<(u32, u16, usize)> =
            datagrams.iter().map(|(r, _, len)| (r.fragment_offset, r.payload_len, *len)).collect();
        assert_eq!(layout, [(0, 1408, 1472), (1408, 1408, 1472), (2816, 1280, 1344)]);
        for (repr, _, _) in &datagrams {
            assert_eq!((repr.op, repr.flags, repr.user_id, repr.image_id), (Op::Write, Flags::FUA, 7, 2));
            assert_eq!((repr.request_id, repr.offset, repr.length), (99, 1 << 20, 4096));
        }
        let joined: Vec<u8> = datagrams.iter().flat_map(|(_, payload, _)| payload.clone()).collect();
        assert_eq!(joined, data);
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        assert_eq!(sender(1408).encode(&request, 99, 3, &mut buf), None, "past the last");
        assert_eq!(sender(1408).encode(&request, 99, 0, &mut buf[..100]), None, "buffer too small");
    }

    #[test]
    fn a_64_kib_write_is_47_datagrams_or_49_under_a_vxlan_mtu() {
        let data = vec![0xab; MAX_IO_LEN as usize];
        let request = IoRequest::write(2, 0, data, false);
        let standard = encode_all(&sender(1408), &request, 5);
        assert_eq!(standard.len(), 47);
        assert_eq!((standard[46].0.fragment_offset, standard[46].0.payload_len), (64768, 768));
        assert!(standard.iter().all(|(_, _, len)| len + 28 <= 1500));
        let vxlan = Sender { fragment_size: FragmentSize::for_mtu(1450).unwrap(), ..sender(64) };
        let overlay = encode_all(&vxlan, &request, 5);
        assert_eq!(overlay.len(), 49);
        assert!(overlay.iter().all(|(_, _, len)| len + 28 <= 1450));
    }

    #[test]
    fn requests_without_data_are_one_datagram() {
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        for request in [
            IoRequest::read(2, 4096, MAX_IO_LEN),
            IoRequest::flush(2),
            IoRequest::trim(2, 0, u32::MAX, true),
            IoRequest::write_zeroes(2, 0, 1 << 30, false),
            IoRequest::info(2),
        ] {
            let datagrams = encode_all(&sender(1408), &request, 1);
            assert_eq!(datagrams.len(), 1, "{request:?}");
            assert_eq!((datagrams[0].0.payload_len, datagrams[0].2), (0, HEADER_LEN));
            assert_eq!(sender(1408).encode(&request, 1, 1, &mut buf), None);
        }
        // A request the server would refuse is not encoded.
        assert_eq!(sender(1408).encode(&IoRequest::read(2, 0, MAX_IO_LEN + 1), 1, 0, &mut buf), None);
    }

    /// A reply datagram as the server builds it.
    fn reply(repr: &BlockRepr, payload: &[u8], key: &UserKey) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN + payload.len()];
        repr.emit(&mut buf).unwrap();
        let mut packet = BlockPacket::new_unchecked(&mut buf[..]);
        packet.payload_mut().copy_from_slice(payload);
        packet.fill_mac(key);
        buf
    }

    #[test]
    fn replies_are_checked_before_they_are_taken() {
        let request = IoRequest::read(2, 8192, 4096);
        let ok = BlockRepr { flags: Flags::REPLY, payload_len: 1408, ..request.header(7, 42) };
        let good = reply(&ok, &[1; 1408], &KEY);
        let s = sender(1408);
        let (header, payload) = s.decode_reply(&good).unwrap();
        assert_eq!((header, payload.len()), (ok, 1408));
        assert!(matches(&request, &header));
        // Framing, MAC, direction, fields, user.
        assert_eq!(s.decode_reply(&good[..100]), Err(DropReason::Malformed));
        let mut flipped = good.clone();
        flipped[200] ^= 1;
        assert_eq!(s.decode_reply(&flipped), Err(DropReason::BadMac));
        let other_key = UserKey::new(*b"the secret of user 8, 32 bytes!!");
        assert_eq!(s.decode_reply(&reply(&ok, &[1; 1408], &other_key)), Err(DropReason::BadMac));
        let as_request = reply(&request.header(7, 42), &[], &KEY);
        assert_eq!(s.decode_reply(&as_request), Err(DropReason::NotAReply));
        let mut bad_status = reply(&BlockRepr { status: Status::IoError, payload_len: 0, ..ok }, &[], &KEY);
        bad_status[43] = 2; // no such status
        BlockPacket::new_unchecked(&mut bad_status[..]).fill_mac(&KEY);
        assert_eq!(s.decode_reply(&bad_status), Err(DropReason::Malformed));
        let user_8 = reply(&BlockRepr { user_id: 8, ..ok }, &[1; 1408], &KEY);
        assert_eq!(s.decode_reply(&user_8), Err(DropReason::WrongUser));
        for reason in DropReason::ALL {
            assert_eq!(DropReason::ALL[reason.index()], reason);
            assert!(!reason.name().is_empty());
        }
    }

    #[test]
    fn a_reply_matches_only_its_request() {
        let request = IoRequest::write(2, 8192, vec![0; 4096], true);
        let ok = BlockRepr { flags: Flags::REPLY | Flags::FUA, ..request.header(7, 42) };
        assert!(matches(&request, &ok));
        assert!(!matches(&request, &BlockRepr { op: Op::Trim, ..ok }));
        assert!(!matches(&request, &BlockRepr { image_id: 3, ..ok }));
        assert!(!matches(&request, &BlockRepr { offset: 0, ..ok }));
        assert!(!matches(&request, &BlockRepr { length: 4095, ..ok }));
        assert!(!matches(&request, &BlockRepr { flags: Flags::REPLY, ..ok }));
        // ESTALE carries the server's highest id where the offset was.
        let stale = BlockRepr { status: Status::StaleRequestId, offset: 123_456, ..ok };
        assert!(matches(&request, &stale));
        assert!(!matches(&request, &BlockRepr { status: Status::IoError, ..stale }));
    }
}
