//! The storage service's request handling (docs/storage-protocol.md), apart from how datagrams
//! arrive and how I/O runs: the block-I/O stage drives it with mbufs and io_uring, the tests with byte arrays.
//!
//! Per datagram, in this order (so nothing unauthenticated is ever answered, and nothing is served to another
//! user): framing, user, MAC, source IP (refused without a reply, counted), then the request's meaning, the
//! image, the anti-replay window, reassembly of a WRITE, the range (answered with an error status).
use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam::utils::CachePadded;
use rustc_hash::FxHashMap;

use switchyard_block_proto::{Insert, Reassembly, SlotHandle};
use switchyard_block_proto::{Check, ReplayWindow, MAX_READ_REPEATS};
use switchyard_pipeline::Counter;
use switchyard_wire::block::{BlockPacket, BlockRepr, Flags, ImageInfo, Op, Status, UserKey};

/// A user as the data path needs one.
#[derive(Clone, Debug)]
pub struct ServiceUser {
    pub id: u32,
    pub key: UserKey,
    /// Where the user's datagrams may come from.
    pub ips: Vec<Ipv4Addr>,
}

/// An image as the data path needs one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceImage {
    pub id: u32,
    pub owner: u32,
    pub size: u64,
    pub read_only: bool,
}

/// Users and images by id: an immutable version, replaced whole when the configuration changes.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub users: FxHashMap<u32, ServiceUser>,
    pub images: FxHashMap<u32, ServiceImage>,
}

impl Catalog {
    /// Every address a user is assigned: where replies go, so their MACs are kept resolved.
    pub fn peer_ips(&self) -> Vec<Ipv4Addr> {
        self.users.values().flat_map(|user| user.ips.iter().copied()).collect()
    }
}

/// A datagram dropped without a reply (it cannot be answered safely, or needs no answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a request datagram: too short, bad magic or version, a payload length that does not match.
    Malformed,
    UnknownUser,
    BadMac,
    /// Authenticated, but from an IP the user is not assigned (a replay from elsewhere).
    WrongSource,
    /// A retransmission of a request that is executing: its reply is coming.
    Executing,
    /// A WRITE fragment found no reassembly slot, or differs from its I/O's first fragment.
    Reassembly,
    /// The user's id asked for more re-executions of a done READ than `MAX_READ_REPEATS`.
    RepeatLimit,
    /// Authenticated, but the user's IP has no MAC resolved yet: there is nowhere safe to reply to (the
    /// block-I/O stage; the client retransmits).
    Unresolved,
    /// Authenticated, but from a source MAC that is not the one resolved for the user's IP (the block-I/O
    /// stage).
    WrongSourceMac,
}

/// Where a reply goes and what it answers; `P` is the caller's addressing (MACs, IP, port).
#[derive(Clone, Debug)]
pub struct Reply<P> {
    pub peer: P,
    pub key: UserKey,
    /// The request's header (fragment fields zeroed): the reply echoes it.
    pub request: BlockRepr,
    pub status: Status,
    /// An INFO's answer.
    pub info: Option<ImageInfo>,
}

impl<P> Reply<P> {
    /// The reply datagram's header for `status`, carrying `payload_len` bytes at `fragment_offset`.
    pub fn header(&self, fragment_offset: u32, payload_len: u16) -> BlockRepr {
        let mut header = self.request;
        header.flags = if self.request.flags.contains(Flags::FUA) { Flags::FUA | Flags::REPLY } else { Flags::REPLY };
        header.status = self.status;
        (header.fragment_offset, header.payload_len) = (fragment_offset, payload_len);
        header
    }

    /// Writes the reply datagram (header, `payload`, MAC) at the start of `out`; its length, or `None` if
    /// `out` is too short or the header is not valid for the payload.
    pub fn write(&self, fragment_offset: u32, payload: &[u8], out: &mut [u8]) -> Option<usize> {
        let header = self.header(fragment_offset, u16::try_from(payload.len()).ok()?);
        let len = header.header_len() + payload.len();
        let out = out.get_mut(..len)?;
        header.emit(out).ok()?;
        out[header.header_len()..].copy_from_slice(payload);
        BlockPacket::new_unchecked(out).fill_mac(&self.key);
        Some(len)
    }
}

/// The I/O a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    Read,
    /// The data is `Service::write_data(&io)`.
    Write,
    Flush,
    Trim,
    WriteZeroes,
}

/// An I/O to run, then hand to `Service::complete` with its `token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Io {
    pub token: u32,
    pub image: u32,
    pub kind: IoKind,
    pub offset: u64,
    pub len: u32,
    /// Durable before the reply.
    pub fua: bool,
}

/// What to do with a datagram.
#[derive(Clone, Debug)]
pub enum Action<P> {
    Refuse(Refusal),
    /// A WRITE fragment was kept; nothing to send yet.
    Kept,
    /// Send this one-datagram reply now (an error, a cached status, an INFO).
    Reply(Reply<P>),
    /// Run the I/O; the reply comes from `complete`.
    Execute(Io),
}

/// What the service counted (one writer: the worker that owns the service; the control plane reads).
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Authenticated request datagrams (each fragment of a WRITE counts).
    pub requests: Counter,
    /// Retransmissions answered from the anti-replay window without executing again.
    pub answered_from_window: Counter,
    /// Replies with a non-zero status, the refusals apart.
    pub error_replies: Counter,
    pub bytes_read: Counter,
    pub bytes_written: Counter,
}

struct Pending<P> {
    reply: Reply<P>,
    io: Io,
    write: Option<SlotHandle>,
}

/// One worker's storage service. Its tables are sized at construction: nothing is allocated per datagram.
pub struct Service<P> {
    catalog: Arc<Catalog>,
    windows: FxHashMap<u32, Box<ReplayWindow>>,
    writes: Reassembly<(u32, u64)>,
    pending: Vec<Option<Pending<P>>>,
    free: Vec<u32>,
    pub counts: Arc<CachePadded<ServiceCounters>>,
}

/// The preferred I/O size an INFO reply names.
const BLOCK_SIZE: u32 = 4096;

impl<P: Clone> Service<P> {
    /// `in_flight`: I/Os executing at once (more are answered ENOMEM); `writes`: WRITEs being reassembled;
    /// `reassembly_timeout` in the unit of the `now` passed to `handle`.
    pub fn new(catalog: Arc<Catalog>, in_flight: usize, writes: usize, reassembly_timeout: u64) -> Self {
        let mut service = Service {
            catalog: Arc::default(),
            windows: FxHashMap::default(),
            writes: Reassembly::new(writes, reassembly_timeout),
            pending: (0..in_flight).map(|_| None).collect(),
            free: (0..in_flight as u32).rev().collect(),
            counts: Arc::default(),
        };
        service.set_catalog(catalog);
        service
    }

    /// A new version of users and images (called between bursts). Windows of users that stay are kept; a
    /// new user's window is made here, not on its first datagram.
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.windows.retain(|id, _| catalog.users.contains_key(id));
        for id in catalog.users.keys() {
            self.windows.entry(*id).or_insert_with(|| Box::new(ReplayWindow::new()));
        }
        self.catalog = catalog;
    }

    /// Handles one datagram from `source` (`peer` is where a reply goes), at time `now`.
    pub fn handle(&mut self, datagram: &[u8], source: Ipv4Addr, peer: P, now: u64) -> Action<P> {
        match self.authenticate(datagram, source) {
            Ok(()) => self.handle_authenticated(datagram, peer, now),
            Err(refusal) => Action::Refuse(refusal),
        }
    }

    /// The checks that come before anything is done for a datagram from `source`: framing, user, MAC,
    /// source IP. Nothing unauthenticated gets further (not even an ARP request for its address).
    pub fn authenticate(&self, datagram: &[u8], source: Ipv4Addr) -> Result<(), Refusal> {
        let packet = BlockPacket::new_checked(datagram).map_err(|_| Refusal::Malformed)?;
        let user = self.catalog.users.get(&packet.user_id()).ok_or(Refusal::UnknownUser)?;
        packet.verify_mac(&user.key).map_err(|_| Refusal::BadMac)?;
        if !user.ips.contains(&source) {
            return Err(Refusal::WrongSource);
        }
        Ok(())
    }

    /// Handles a datagram `authenticate` passed (in the same catalog version).
    pub fn handle_authenticated(&mut self, datagram: &[u8], peer: P, now: u64) -> Action<P> {
        let Ok(packet) = BlockPacket::new_checked(datagram) else { return Action::Refuse(Refusal::Malformed) };
        let Some(user) = self.catalog.users.get(&packet.user_id()) else { return Action::Refuse(Refusal::UnknownUser) };
        let (user_id, key) = (user.id, user.key.clone());
        // An unknown image and another user's are not told apart (docs: EACCES).
        let image = self.catalog.images.get(&packet.image_id()).filter(|image| image.owner == user_id).copied();
        self.counts.requests.add(1);
        let request = match BlockRepr::parse_request(&packet) {
            Ok(request) => request,
            Err(e) => return self.error_reply(Reply { peer, key, request: echo_of(&packet), status: e.reply_status(), info: None }),
        };
        let mut echoed = request;
        (echoed.fragment_offset, echoed.payload_len) = (0, 0);
        let reply = |status| Reply { peer: peer.clone(), key: key.clone(), request: echoed, status, info: None };
        let Some(image) = image else { return self.error_reply(reply(Status::AccessDenied)) };
        let Some(window) = self.windows.get_mut(&user_id) else { return Action::Refuse(Refusal::UnknownUser) };
        match window.check(request.request_id) {
            Check::New => {}
            Check::InFlight => return Action::Refuse(Refusal::Executing),
            Check::TooOld => {
                let mut stale = reply(Status::StaleRequestId);
                stale.request.offset = window.highest().unwrap_or(0);
                return self.error_reply(stale);
            }
            Check::Retransmit(status) => {
                let repeat_read = status == Status::Ok && matches!(request.op, Op::Read | Op::Info);
                if !repeat_read {
                    self.counts.answered_from_window.add(1);
                    return Action::Reply(reply(status));
                }
                if window.count_repeat(request.request_id).is_none_or(|n| n > MAX_READ_REPEATS) {
                    return Action::Refuse(Refusal::RepeatLimit);
                }
                // Idempotent: executed again below, without taking the id again.
                return self.start(reply(Status::Ok), image, None, false);
            }
        }
        let mut write = None;
        if request.op == Op::Write {
            match self.writes.insert((user_id, request.request_id), &request, packet.payload(), now) {
                Insert::Complete(handle) => write = Some(handle),
                Insert::Incomplete | Insert::Duplicate => return Action::Kept,
                Insert::TableFull | Insert::Inconsistent | Insert::NotAFragment => {
                    return Action::Refuse(Refusal::Reassembly)
                }
            }
        }
        let Some(window) = self.windows.get_mut(&user_id) else { return Action::Refuse(Refusal::UnknownUser) };
        window.begin(request.request_id);
        self.start(reply(Status::Ok), image, write, true)
    }

    /// Checks the range and the image's mode, then executes (or answers at once).
    fn start(&mut self, reply: Reply<P>, image: ServiceImage, write: Option<SlotHandle>, taken: bool) -> Action<P> {
        let request = reply.request;
        let end = request.offset + u64::from(request.length);
        let refused = match request.op {
            Op::Write | Op::Trim | Op::WriteZeroes if image.read_only => Some(Status::NotPermitted),
            Op::Read | Op::Trim if end > image.size => Some(Status::Invalid),
            Op::Write | Op::WriteZeroes if end > image.size => Some(Status::NoSpace),
            _ => None,
        };
        let kind = match request.op {
            Op::Read => IoKind::Read,
            Op::Write => IoKind::Write,
            Op::Flush => IoKind::Flush,
            Op::Trim => IoKind::Trim,
            Op::WriteZeroes => IoKind::WriteZeroes,
            Op::Info => {
                let flags = if image.read_only { ImageInfo::READ_ONLY } else { 0 };
                let info = ImageInfo { size: image.size, flags, block_size: BLOCK_SIZE };
                return self.finish_now(Reply { info: Some(info), ..reply }, write, taken);
            }
        };
        if let Some(status) = refused {
            return self.finish_now(Reply { status, ..reply }, write, taken);
        }
        let Some(token) = self.free.pop() else {
            return self.finish_now(Reply { status: Status::NoMemory, ..reply }, write, taken);
        };
        let fua = request.flags.contains(Flags::FUA);
        let io = Io { token, image: image.id, kind, offset: request.offset, len: request.length, fua };
        self.pending[token as usize] = Some(Pending { reply, io, write });
        Action::Execute(io)
    }

    /// A reply without I/O: recorded in the window when the id was taken, the WRITE's buffer freed.
    fn finish_now(&mut self, reply: Reply<P>, write: Option<SlotHandle>, taken: bool) -> Action<P> {
        if let Some(handle) = write {
            self.writes.release(handle);
        }
        if taken {
            self.record(&reply);
        }
        if reply.status != Status::Ok {
            self.counts.error_replies.add(1);
        }
        Action::Reply(reply)
    }

    fn error_reply(&mut self, reply: Reply<P>) -> Action<P> {
        self.counts.error_replies.add(1);
        Action::Reply(reply)
    }

    fn record(&mut self, reply: &Reply<P>) {
        if let Some(window) = self.windows.get_mut(&reply.request.user_id) {
            window.complete(reply.request.request_id, reply.status);
        }
    }

    /// The data of an executing WRITE (to copy into the I/O buffer).
    pub fn write_data(&self, io: &Io) -> Option<&[u8]> {
        let handle = self.pending.get(io.token as usize)?.as_ref()?.write?;
        self.writes.data(handle)
    }

    /// The I/O `token` ended: `Ok(bytes done)` or `Err(errno)`. Returns the reply (for a READ with status OK
    /// the caller sends the data it read, in fragments) and the I/O; `None` for an unknown token.
    pub fn complete(&mut self, token: u32, result: Result<u32, i32>) -> Option<(Reply<P>, Io)> {
        let Pending { mut reply, io, write } = self.pending.get_mut(token as usize)?.take()?;
        self.free.push(token);
        if let Some(handle) = write {
            self.writes.release(handle);
        }
        reply.status = match result {
            Ok(done) if matches!(io.kind, IoKind::Read | IoKind::Write) && done != io.len => Status::IoError,
            Ok(_) => Status::Ok,
            Err(errno) => status_of_errno(errno),
        };
        match (io.kind, reply.status) {
            (IoKind::Read, Status::Ok) => self.counts.bytes_read.add(u64::from(io.len)),
            (IoKind::Write, Status::Ok) => self.counts.bytes_written.add(u64::from(io.len)),
            (_, Status::Ok) => {}
            _ => self.counts.error_replies.add(1),
        }
        self.record(&reply);
        Some((reply, io))
    }

    /// Drops WRITEs whose fragments stopped coming (the client retransmits).
    pub fn evict_stale(&mut self, now: u64) -> usize {
        self.writes.evict_stale(now)
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len() - self.free.len()
    }
}

/// The fields an error reply echoes when the request's fields did not parse (an unknown op, say).
fn echo_of(packet: &BlockPacket<&[u8]>) -> BlockRepr {
    BlockRepr {
        op: Op::from_code(packet.op_code()).unwrap_or(Op::Info),
        flags: Flags::default(),
        user_id: packet.user_id(),
        image_id: packet.image_id(),
        request_id: packet.request_id(),
        offset: packet.offset(),
        length: packet.length(),
        fragment_offset: 0,
        payload_len: 0,
        status: Status::Ok,
    }
}

/// The status a failed I/O answers with.
pub fn status_of_errno(errno: i32) -> Status {
    match errno {
        28 | 122 | 27 => Status::NoSpace, // ENOSPC, EDQUOT, EFBIG
        22 => Status::Invalid,
        12 => Status::NoMemory,
        _ => Status::IoError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_wire::block::{FragmentSize, MAX_FRAGMENT_PAYLOAD};

    const ALICE: u32 = 1;
    const BOB: u32 = 2;
    const ALICE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const BOB_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const ALICE_DISK: u32 = 11;
    const ALICE_RO: u32 = 12;
    const BOB_DISK: u32 = 21;
    const MIB: u64 = 1 << 20;

    fn key(user: u32) -> UserKey {
        UserKey::new([user as u8; 32])
    }

    fn catalog() -> Arc<Catalog> {
        let mut c = Catalog::default();
        for (id, ip) in [(ALICE, ALICE_IP), (BOB, BOB_IP)] {
            c.users.insert(id, ServiceUser { id, key: key(id), ips: vec![ip] });
        }
        for (id, owner, read_only) in [(ALICE_DISK, ALICE, false), (ALICE_RO, ALICE, true), (BOB_DISK, BOB, false)] {
            c.images.insert(id, ServiceImage { id, owner, size: MIB, read_only });
        }
        Arc::new(c)
    }

    fn service(in_flight: usize) -> Service<u8> {
        Service::new(catalog(), in_flight, 4, 1000)
    }

    /// A request datagram signed with `signer`'s key (the user id field may claim someone else).
    fn datagram(signer: u32, header: BlockRepr, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0; 64 + payload.len()];
        header.emit(&mut out).unwrap();
        out[64..].copy_from_slice(payload);
        BlockPacket::new_unchecked(&mut out[..]).fill_mac(&key(signer));
        out
    }

    fn request(user: u32, image: u32, id: u64, op: Op, offset: u64, length: u32) -> BlockRepr {
        BlockRepr {
            op,
            flags: Flags::NONE,
            user_id: user,
            image_id: image,
            request_id: id,
            offset,
            length,
            fragment_offset: 0,
            payload_len: 0,
            status: Status::Ok,
        }
    }

    /// Every fragment of a WRITE of `data`.
    fn write_fragments(user: u32, image: u32, id: u64, offset: u64, data: &[u8]) -> Vec<Vec<u8>> {
        let header = request(user, image, id, Op::Write, offset, data.len() as u32);
        let size = FragmentSize::new(MAX_FRAGMENT_PAYLOAD).unwrap();
        size.ranges(data.len() as u32)
            .map(|r| {
                let fragment = BlockRepr { fragment_offset: r.start, payload_len: (r.end - r.start) as u16, ..header };
                datagram(user, fragment, &data[r.start as usize..r.end as usize])
            })
            .collect()
    }

    fn status_of(action: Action<u8>) -> Status {
        match action {
            Action::Reply(reply) => reply.status,
            other => panic!("a reply, not {other:?}"),
        }
    }

    fn execute(action: Action<u8>) -> Io {
        match action {
            Action::Execute(io) => io,
            other => panic!("an I/O, not {other:?}"),
        }
    }

    #[test]
    fn info_answers_the_images_size_and_mode_and_the_reply_verifies_under_the_users_key() {
        let mut s = service(8);
        let info = datagram(ALICE, request(ALICE, ALICE_RO, 100, Op::Info, 0, 16), &[]);
        let Action::Reply(reply) = s.handle(&info, ALICE_IP, 7, 0) else { panic!("a reply") };
        assert_eq!(reply.peer, 7);
        let info = reply.info.unwrap();
        assert_eq!((info.size, info.is_read_only()), (MIB, true));
        let mut payload = [0; 16];
        info.emit(&mut payload).unwrap();
        let mut out = [0; 128];
        let len = reply.write(0, &payload, &mut out).unwrap();
        let packet = BlockPacket::new_checked(&out[..len]).unwrap();
        packet.verify_mac(&key(ALICE)).unwrap();
        assert!(packet.verify_mac(&key(BOB)).is_err());
        let parsed = BlockRepr::parse_reply(&packet).unwrap();
        assert_eq!((parsed.op, parsed.request_id, parsed.status), (Op::Info, 100, Status::Ok));
    }

    #[test]
    fn unauthenticated_or_misplaced_datagrams_are_refused_without_a_reply() {
        let mut s = service(8);
        let read = request(ALICE, ALICE_DISK, 1, Op::Read, 0, 4096);
        let cases = [
            (datagram(ALICE, read, &[])[..40].to_vec(), ALICE_IP, Refusal::Malformed),
            (datagram(ALICE, BlockRepr { user_id: 9, ..read }, &[]), ALICE_IP, Refusal::UnknownUser),
            // Bob claims to be Alice: he does not have her key.
            (datagram(BOB, read, &[]), BOB_IP, Refusal::BadMac),
            // Alice's own datagram, replayed from Bob's address.
            (datagram(ALICE, read, &[]), BOB_IP, Refusal::WrongSource),
        ];
        for (bytes, source, refusal) in cases {
            assert!(matches!(s.handle(&bytes, source, 0, 0), Action::Refuse(r) if r == refusal), "{refusal:?}");
        }
        let mut flipped = datagram(ALICE, read, &[]);
        flipped[30] ^= 1;
        assert!(matches!(s.handle(&flipped, ALICE_IP, 0, 0), Action::Refuse(Refusal::BadMac)));
        assert_eq!(s.counts.requests.get(), 0, "none of them counted as a request");
    }

    #[test]
    fn another_users_image_and_an_unknown_one_are_both_eacces() {
        let mut s = service(8);
        for (id, image) in [(1, BOB_DISK), (2, 999)] {
            let read = datagram(ALICE, request(ALICE, image, id, Op::Read, 0, 4096), &[]);
            assert_eq!(status_of(s.handle(&read, ALICE_IP, 0, 0)), Status::AccessDenied);
        }
    }

    #[test]
    fn a_write_in_fragments_executes_once_and_its_retransmission_is_answered_from_the_window() {
        let mut s = service(8);
        let data: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let fragments = write_fragments(ALICE, ALICE_DISK, 50, 8192, &data);
        assert_eq!(fragments.len(), 3);
        assert!(matches!(s.handle(&fragments[2], ALICE_IP, 0, 0), Action::Kept));
        assert!(matches!(s.handle(&fragments[0], ALICE_IP, 0, 0), Action::Kept));
        assert!(matches!(s.handle(&fragments[0], ALICE_IP, 0, 0), Action::Kept), "a duplicate fragment");
        let io = execute(s.handle(&fragments[1], ALICE_IP, 0, 0));
        assert_eq!((io.kind, io.offset, io.len, io.image, io.fua), (IoKind::Write, 8192, 4096, ALICE_DISK, false));
        assert_eq!(s.write_data(&io), Some(&data[..]));
        // A fragment retransmitted while the write runs: its reply is coming.
        assert!(matches!(s.handle(&fragments[1], ALICE_IP, 0, 0), Action::Refuse(Refusal::Executing)));
        let (reply, _) = s.complete(io.token, Ok(4096)).unwrap();
        assert_eq!(reply.status, Status::Ok);
        for fragment in &fragments {
            assert_eq!(status_of(s.handle(fragment, ALICE_IP, 0, 0)), Status::Ok, "answered, not executed again");
        }
        assert_eq!((s.counts.answered_from_window.get(), s.counts.bytes_written.get(), s.in_flight()), (3, 4096, 0));
    }

    #[test]
    fn ranges_and_modes_map_to_their_statuses() {
        let mut s = service(8);
        let cases = [
            (request(ALICE, ALICE_DISK, 1, Op::Read, MIB - 512, 1024), Status::Invalid),
            (request(ALICE, ALICE_DISK, 2, Op::Trim, MIB, 512), Status::Invalid),
            (request(ALICE, ALICE_DISK, 3, Op::WriteZeroes, MIB - 512, 1024), Status::NoSpace),
            (request(ALICE, ALICE_RO, 4, Op::Trim, 0, 512), Status::NotPermitted),
            (request(ALICE, ALICE_RO, 5, Op::WriteZeroes, 0, 512), Status::NotPermitted),
        ];
        for (header, status) in cases {
            assert_eq!(status_of(s.handle(&datagram(ALICE, header, &[]), ALICE_IP, 0, 0)), status, "{header:?}");
        }
        // A READ over 64 KiB (emit refuses to write one: patched, then signed).
        let mut long = datagram(ALICE, request(ALICE, ALICE_DISK, 6, Op::Read, 0, 4096), &[]);
        let mut packet = BlockPacket::new_unchecked(&mut long[..]);
        packet.set_length(128 * 1024);
        packet.fill_mac(&key(ALICE));
        assert_eq!(status_of(s.handle(&long, ALICE_IP, 0, 0)), Status::Overflow);
        for fragment in write_fragments(ALICE, ALICE_DISK, 7, MIB - 2048, &[1; 4096]) {
            if let Action::Reply(reply) = s.handle(&fragment, ALICE_IP, 0, 0) {
                assert_eq!(reply.status, Status::NoSpace);
            }
        }
        for fragment in write_fragments(ALICE, ALICE_RO, 8, 0, &[1; 4096]) {
            if let Action::Reply(reply) = s.handle(&fragment, ALICE_IP, 0, 0) {
                assert_eq!(reply.status, Status::NotPermitted);
            }
        }
        assert_eq!(s.counts.error_replies.get(), 8);
        // The refused ones are done: a retransmission gets the same status, nothing runs.
        let again = datagram(ALICE, request(ALICE, ALICE_DISK, 1, Op::Read, MIB - 512, 1024), &[]);
        assert_eq!(status_of(s.handle(&again, ALICE_IP, 0, 0)), Status::Invalid);
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn ids_below_the_window_are_estale_with_the_highest_id_and_done_reads_repeat_three_times() {
        let mut s = service(8);
        let read = |id| datagram(ALICE, request(ALICE, ALICE_DISK, id, Op::Read, 0, 4096), &[]);
        let io = execute(s.handle(&read(5000), ALICE_IP, 0, 0));
        s.complete(io.token, Ok(4096)).unwrap();
        let Action::Reply(stale) = s.handle(&read(5000 - 1024), ALICE_IP, 0, 0) else { panic!("a reply") };
        assert_eq!((stale.status, stale.header(0, 0).offset), (Status::StaleRequestId, 5000));
        for _ in 0..MAX_READ_REPEATS {
            let io = execute(s.handle(&read(5000), ALICE_IP, 0, 0));
            s.complete(io.token, Ok(4096)).unwrap();
        }
        assert!(matches!(s.handle(&read(5000), ALICE_IP, 0, 0), Action::Refuse(Refusal::RepeatLimit)));
    }

    #[test]
    fn a_full_in_flight_table_answers_enomem_and_failed_io_maps_its_errno() {
        let mut s = service(1);
        let read = |id| datagram(ALICE, request(ALICE, ALICE_DISK, id, Op::Read, 0, 4096), &[]);
        let first = execute(s.handle(&read(1), ALICE_IP, 0, 0));
        assert_eq!(status_of(s.handle(&read(2), ALICE_IP, 0, 0)), Status::NoMemory);
        assert_eq!(s.complete(first.token, Ok(100)).unwrap().0.status, Status::IoError, "a short read");
        let flush = execute(s.handle(&datagram(ALICE, request(ALICE, ALICE_DISK, 3, Op::Flush, 0, 0), &[]), ALICE_IP, 0, 0));
        assert_eq!(flush.kind, IoKind::Flush);
        assert_eq!(s.complete(flush.token, Err(28)).unwrap().0.status, Status::NoSpace);
        assert!(s.complete(flush.token, Ok(0)).is_none(), "a token completes once");
    }

    #[test]
    fn a_user_removed_from_the_catalog_is_refused_and_a_new_one_served() {
        let mut s = service(8);
        let mut next = (*catalog()).clone();
        next.users.remove(&BOB);
        next.users.insert(3, ServiceUser { id: 3, key: key(3), ips: vec![Ipv4Addr::new(10, 0, 0, 3)] });
        next.images.insert(31, ServiceImage { id: 31, owner: 3, size: MIB, read_only: false });
        s.set_catalog(Arc::new(next));
        let bob = datagram(BOB, request(BOB, BOB_DISK, 1, Op::Info, 0, 16), &[]);
        assert!(matches!(s.handle(&bob, BOB_IP, 0, 0), Action::Refuse(Refusal::UnknownUser)));
        let carol = datagram(3, request(3, 31, 1, Op::Info, 0, 16), &[]);
        assert_eq!(status_of(s.handle(&carol, Ipv4Addr::new(10, 0, 0, 3), 0, 0)), Status::Ok);
    }
}
