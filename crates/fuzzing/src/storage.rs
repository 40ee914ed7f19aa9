//! The storage protocol (docs/storage-protocol.md): datagrams through the server's `Service`
//! (framing, users, MACs, the anti-replay window, WRITE reassembly, the range checks) as the block-I/O stage
//! drives it, and through the client's reply decoder (`vbd::storage_codec`).
use std::net::Ipv4Addr;
use std::sync::Arc;

use switchyard::block_server::service::{Action, Catalog, Io, IoKind, Reply, Service, ServiceImage, ServiceUser};
use switchyard::vbd::storage_codec::{Sender, MAX_DATAGRAM_LEN};
use switchyard::wire::block::{BlockPacket, BlockRepr, FragmentSize, ImageInfo, Status, UserKey, HEADER_LEN, MAX_FRAGMENT_PAYLOAD};

const ALICE: u32 = 1;
const BOB: u32 = 2;
const ALICE_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const BOB_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
/// Datagrams one input may hold: the service's state between them is what is fuzzed.
const MAX_DATAGRAMS: usize = 64;

fn key(user: u32) -> UserKey {
    UserKey::new([user as u8; 32])
}

fn catalog() -> Arc<Catalog> {
    let mut catalog = Catalog::default();
    for (id, ip) in [(ALICE, ALICE_IP), (BOB, BOB_IP)] {
        catalog.users.insert(id, ServiceUser { id, key: key(id), ips: vec![ip] });
    }
    for (id, owner, size, read_only) in [(11, ALICE, 1 << 20, false), (12, ALICE, 4096, true), (21, BOB, 1 << 16, false)] {
        catalog.images.insert(id, ServiceImage { id, owner, size, read_only });
    }
    Arc::new(catalog)
}

/// Fuzz body `storage_protocol`: a sequence of datagrams, each `[control, length (2 bytes), bytes]`.
/// Control bit 0: sign it with the key of the user it names (so it gets past the MAC check); bit 1: send it
/// from that user's address; bits 2-3: how the I/O it starts ends (done, short, an errno, left running).
pub fn storage_protocol(data: &[u8]) {
    let catalog = catalog();
    let mut service: Service<u8> = Service::new(catalog.clone(), 4, 2, 100);
    let mut stream = data;
    let mut running = Vec::new();
    for now in 0..MAX_DATAGRAMS as u64 {
        let [control, hi, lo, rest @ ..] = stream else { break };
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len()).min(MAX_DATAGRAM_LEN);
        let (bytes, next) = rest.split_at(len);
        stream = next;
        let mut datagram = bytes.to_vec();
        let claimed = BlockPacket::new_checked(&datagram[..]).map_or(0, |p| p.user_id());
        if control & 1 != 0 && datagram.len() >= HEADER_LEN {
            BlockPacket::new_unchecked(&mut datagram[..]).fill_mac(&key(claimed));
        }
        let source = match (control & 2 != 0, claimed) {
            (true, ALICE) => ALICE_IP,
            (true, BOB) => BOB_IP,
            _ => Ipv4Addr::new(10, 9, 0, 9),
        };
        repr_round_trip(&datagram);
        client_decode(&datagram, claimed);
        match service.handle(&datagram, source, 0, now) {
            Action::Execute(io) => {
                let image = catalog.images[&io.image];
                assert!(io.offset.checked_add(u64::from(io.len)).is_some_and(|end| end <= image.size), "an I/O past the image");
                if io.kind == IoKind::Write {
                    let data = service.write_data(&io).expect("an executing WRITE has its data");
                    assert_eq!(data.len(), io.len as usize, "a WRITE's data is its whole length");
                }
                running.push((io, (control >> 2) & 3));
            }
            Action::Reply(reply) => check_reply(&reply, None),
            Action::Refuse(_) | Action::Kept => {}
        }
        // I/Os end in the order they started, some at once, some a datagram later.
        while let Some(&(io, ending)) = running.first() {
            if ending == 3 && running.len() < 2 {
                break;
            }
            running.remove(0);
            let result = match ending {
                0 | 3 => Ok(io.len),
                1 => Ok(io.len / 2),
                _ => Err(-5),
            };
            let (reply, done) = service.complete(io.token, result).expect("a running I/O completes once");
            assert_eq!(done, io);
            check_reply(&reply, Some(io));
            assert!(service.complete(io.token, result).is_none(), "a token completes once");
        }
        service.evict_stale(now);
    }
}

/// A reply the service makes is a valid reply datagram under the user's key, written as the block-I/O stage
/// writes it: an INFO's answer, or a READ's first fragment of data, or nothing.
fn check_reply<P>(reply: &Reply<P>, io: Option<Io>) {
    let mut payload = vec![0u8; ImageInfo::LEN];
    match (reply.info, io) {
        (Some(info), _) => _ = info.emit(&mut payload).expect("an INFO answer emits"),
        (None, Some(io)) if io.kind == IoKind::Read && reply.status == Status::Ok => {
            payload = vec![0u8; fragment_size().range(io.len, 0).map_or(0, |r| (r.end - r.start) as usize)];
        }
        _ => payload.clear(),
    }
    let mut out = vec![0u8; HEADER_LEN + payload.len()];
    let len = reply.write(0, &payload, &mut out).expect("a reply datagram fits");
    let sender = Sender { user_id: reply.request.user_id, key: reply.key.clone(), fragment_size: fragment_size() };
    let decoded = sender.decode_reply(&out[..len]).map(|(repr, _)| repr);
    assert_eq!(decoded.map(|r| r.status), Ok(reply.status), "the client takes the service's reply");
}

fn fragment_size() -> FragmentSize {
    FragmentSize::new(MAX_FRAGMENT_PAYLOAD).expect("the largest fragment size is valid")
}

/// `BlockRepr::parse(emit(repr)) == repr` for any header that parsed.
fn repr_round_trip(datagram: &[u8]) {
    let Ok(packet) = BlockPacket::new_checked(datagram) else { return };
    let Ok(repr) = BlockRepr::parse(&packet) else { return };
    let mut buf = vec![0u8; HEADER_LEN + usize::from(repr.payload_len)];
    repr.emit(&mut buf).expect("a parsed header emits");
    let again = BlockPacket::new_checked(&buf[..]).expect("an emitted header parses");
    assert_eq!(BlockRepr::parse(&again), Ok(repr), "block parse(emit(repr))");
}

/// The client's decoder on the same bytes, as a reply to `user`.
fn client_decode(datagram: &[u8], user: u32) {
    let sender = Sender { user_id: user, key: key(user), fragment_size: fragment_size() };
    if let Ok((reply, payload)) = sender.decode_reply(datagram) {
        assert!(reply.is_reply() && reply.user_id == user);
        assert_eq!(payload.len(), usize::from(reply.payload_len));
    }
}
