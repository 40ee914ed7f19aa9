//! The engine on simulated time, against a hand-played server: what it sends (parsed as the server would),
//! which replies it takes, when it retransmits, fences and gives up.

use std::time::Duration;

use switchyard_block_proto::{Insert, Reassembly, RequestIds};
use switchyard_wire::block::{
    BlockPacket, BlockRepr, Flags, FragmentSize, ImageInfo, Op, Status, UserKey, HEADER_LEN, MAX_IO_LEN,
};
use switchyard_wire::test_util::{fuzz, XorShift};

use super::io_scheduler::Limits;
use super::nbd_wire::error;
use super::retransmit::Timing;
use super::storage_codec::{DropReason, Sender, MAX_DATAGRAM_LEN};
use super::storage_engine::{Engine, EngineConfig, IoOutput, IoResult};
use super::storage_error::StorageError;
use super::storage_request::IoRequest;

const KEY: UserKey = UserKey::new(*b"the secret of user 7, 32 bytes!!");
const USER: u32 = 7;
const IMAGE: u32 = 2;
const FIRST_ID: u64 = 1_700_000_000_000_000_000;
const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const INFO: ImageInfo = ImageInfo { size: 1 << 30, flags: 0, block_size: 4096 };

type TestEngine = Engine<&'static str>;

fn engine_with(limits: Limits) -> TestEngine {
    let sender = Sender { user_id: USER, key: KEY, fragment_size: FragmentSize::STANDARD };
    Engine::new(EngineConfig { sender, limits, timing: Timing::default() }, RequestIds::starting_at(FIRST_ID))
}

fn engine() -> TestEngine {
    engine_with(Limits::default())
}

/// Every datagram the engine has to send, parsed as the server parses requests.
fn transmit(engine: &mut TestEngine) -> Vec<(BlockRepr, Vec<u8>)> {
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let mut sent = Vec::new();
    while let Some(len) = engine.poll_transmit(&mut buf) {
        let packet = BlockPacket::new_checked(&buf[..len]).expect("framing");
        packet.verify_mac(&KEY).expect("MAC");
        sent.push((BlockRepr::parse_request(&packet).expect("fields"), packet.payload().to_vec()));
    }
    sent
}

/// The headers only.
fn sent_headers(engine: &mut TestEngine) -> Vec<BlockRepr> {
    transmit(engine).into_iter().map(|(header, _)| header).collect()
}

fn completions(engine: &mut TestEngine) -> Vec<(&'static str, IoResult)> {
    std::iter::from_fn(|| engine.poll_completion()).collect()
}

/// A reply datagram to `request` under `key`.
fn reply_with(request: &BlockRepr, status: Status, fragment: (u32, &[u8]), key: &UserKey) -> Vec<u8> {
    let header = BlockRepr {
        flags: request.flags | Flags::REPLY,
        status,
        fragment_offset: fragment.0,
        payload_len: fragment.1.len() as u16,
        ..*request
    };
    let mut buf = vec![0u8; HEADER_LEN + fragment.1.len()];
    header.emit(&mut buf).expect("a valid reply");
    let mut packet = BlockPacket::new_unchecked(&mut buf[..]);
    packet.payload_mut().copy_from_slice(fragment.1);
    packet.fill_mac(key);
    buf
}

fn reply(request: &BlockRepr, status: Status) -> Vec<u8> {
    reply_with(request, status, (0, &[]), &KEY)
}

/// ESTALE: the offset field holds the server's highest id.
fn stale_reply(request: &BlockRepr, highest: u64) -> Vec<u8> {
    reply(&BlockRepr { offset: highest, ..*request }, Status::StaleRequestId)
}

/// A READ's reply fragments carrying `data`.
fn read_reply(request: &BlockRepr, data: &[u8]) -> Vec<Vec<u8>> {
    FragmentSize::STANDARD
        .ranges(request.length)
        .map(|r| reply_with(request, Status::Ok, (r.start, &data[r.start as usize..r.end as usize]), &KEY))
        .collect()
}

fn info_reply(request: &BlockRepr, info: &ImageInfo) -> Vec<u8> {
    let mut payload = [0u8; ImageInfo::LEN];
    info.emit(&mut payload).unwrap();
    reply_with(request, Status::Ok, (0, &payload), &KEY)
}

fn pattern(length: u32, seed: u8) -> Vec<u8> {
    (0..length).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

#[test]
fn a_read_reply_is_reassembled_out_of_order_and_duplicates_are_dropped() {
    let mut e = engine();
    e.submit(IoRequest::read(IMAGE, 1 << 20, 4096), "read", Duration::ZERO);
    let sent = sent_headers(&mut e);
    assert_eq!(sent.len(), 1);
    let request = sent[0];
    assert_eq!((request.op, request.request_id, request.offset, request.length), (Op::Read, FIRST_ID, 1 << 20, 4096));
    assert_eq!((request.user_id, request.image_id, request.payload_len), (USER, IMAGE, 0));
    let data = pattern(4096, 1);
    let fragments = read_reply(&request, &data);
    assert_eq!(fragments.len(), 3);
    for index in [2, 0, 2, 0] {
        e.handle_datagram(&fragments[index], MS);
    }
    assert!(completions(&mut e).is_empty());
    assert_eq!(e.counters().dropped(DropReason::DuplicateFragment), 2);
    e.handle_datagram(&fragments[1], MS);
    assert_eq!(completions(&mut e), [("read", Ok(IoOutput::Data(data)))]);
    // A copy after completion matches nothing.
    e.handle_datagram(&fragments[1], MS);
    assert_eq!(e.counters().dropped(DropReason::NotOutstanding), 1);
    assert!(e.is_idle());
}

#[test]
fn a_64_kib_read_reply_shuffled_with_duplicates() {
    let mut e = engine();
    e.submit(IoRequest::read(IMAGE, 0, MAX_IO_LEN), "read", Duration::ZERO);
    let request = sent_headers(&mut e)[0];
    let data = pattern(MAX_IO_LEN, 9);
    let mut fragments = read_reply(&request, &data);
    assert_eq!(fragments.len(), 47);
    fragments.extend(fragments.clone().into_iter().step_by(5));
    let mut rng = XorShift::new(64);
    for i in (1..fragments.len()).rev() {
        fragments.swap(i, rng.below(i + 1));
    }
    for fragment in &fragments {
        e.handle_datagram(fragment, MS);
    }
    assert_eq!(completions(&mut e), [("read", Ok(IoOutput::Data(data)))]);
    let counters = e.counters();
    let dropped = counters.dropped(DropReason::DuplicateFragment) + counters.dropped(DropReason::NotOutstanding);
    assert_eq!(dropped, 10);
}

#[test]
fn a_64_kib_write_goes_in_47_fragments_and_a_second_reply_is_ignored() {
    let mut e = engine();
    let data = pattern(MAX_IO_LEN, 3);
    e.submit(IoRequest::write(IMAGE, 4096, data.clone(), true), "write", Duration::ZERO);
    let datagrams = transmit(&mut e);
    assert_eq!(datagrams.len(), 47);
    // The server's reassembly gets the data back.
    let mut server = Reassembly::<u64>::new(1, 2000);
    let mut outcome = Insert::Incomplete;
    for (header, payload) in &datagrams {
        assert_eq!((header.flags, header.offset, header.length), (Flags::FUA, 4096, MAX_IO_LEN));
        outcome = server.insert(header.request_id, header, payload, 0);
    }
    let Insert::Complete(handle) = outcome else { panic!("{outcome:?}") };
    assert_eq!(server.data(handle), Some(&data[..]));
    let request = BlockRepr { fragment_offset: 0, payload_len: 0, ..datagrams[0].0 };
    e.handle_datagram(&reply(&request, Status::Ok), MS);
    e.handle_datagram(&reply(&request, Status::Ok), MS);
    assert_eq!(completions(&mut e), [("write", Ok(IoOutput::Done))]);
    assert_eq!(e.counters().dropped(DropReason::NotOutstanding), 1);
    assert_eq!((e.counters().sent(Op::Write), e.counters().datagrams_sent), (1, 47));
}

#[test]
fn forged_unknown_and_mismatched_replies_are_dropped() {
    let mut e = engine();
    e.submit(IoRequest::write(IMAGE, 0, vec![1; 100], false), "write", Duration::ZERO);
    let request = BlockRepr { payload_len: 0, ..sent_headers(&mut e)[0] };
    let other_key = UserKey::new(*b"the secret of user 8, 32 bytes!!");
    e.handle_datagram(&reply_with(&request, Status::Ok, (0, &[]), &other_key), MS);
    let mut corrupted = reply(&request, Status::Ok);
    corrupted[20] ^= 0x40;
    e.handle_datagram(&corrupted, MS);
    e.handle_datagram(&reply(&BlockRepr { request_id: FIRST_ID + 1, ..request }, Status::Ok), MS);
    e.handle_datagram(&reply(&BlockRepr { offset: 512, ..request }, Status::Ok), MS);
    e.handle_datagram(&reply(&BlockRepr { op: Op::Trim, ..request }, Status::Ok), MS);
    e.handle_datagram(&reply(&BlockRepr { image_id: 3, ..request }, Status::Ok), MS);
    e.handle_datagram(&reply(&BlockRepr { flags: Flags::FUA, ..request }, Status::Ok), MS);
    e.handle_datagram(&reply(&request, Status::Ok)[..63], MS);
    // Our own request reflected back.
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let mut reflected = engine();
    reflected.submit(IoRequest::read(IMAGE, 0, 512), "r", Duration::ZERO);
    let len = reflected.poll_transmit(&mut buf).unwrap();
    e.handle_datagram(&buf[..len], MS);
    assert!(completions(&mut e).is_empty());
    let c = e.counters();
    let dropped: Vec<u64> = [
        DropReason::BadMac,
        DropReason::NotOutstanding,
        DropReason::Mismatched,
        DropReason::Malformed,
        DropReason::NotAReply,
    ]
    .iter()
    .map(|reason| c.dropped(*reason))
    .collect();
    assert_eq!(dropped, [2, 1, 4, 1, 1]);
    e.handle_datagram(&reply(&request, Status::Ok), MS);
    assert_eq!(completions(&mut e), [("write", Ok(IoOutput::Done))]);
}

#[test]
fn error_statuses_fail_the_request_with_their_nbd_error() {
    let cases = [
        (Status::NotPermitted, error::EPERM),
        (Status::AccessDenied, error::EPERM),
        (Status::IoError, error::EIO),
        (Status::NoSpace, error::ENOSPC),
        (Status::Invalid, error::EINVAL),
        (Status::NoMemory, error::ENOMEM),
        (Status::Overflow, error::EOVERFLOW),
        (Status::NotSupported, error::ENOTSUP),
        (Status::ShuttingDown, error::ESHUTDOWN),
    ];
    let mut e = engine();
    for (status, errno) in cases {
        e.submit(IoRequest::write(IMAGE, 0, vec![0; 512], false), "write", Duration::ZERO);
        let request = BlockRepr { payload_len: 0, ..sent_headers(&mut e)[0] };
        e.handle_datagram(&reply(&request, status), MS);
        let done = completions(&mut e);
        assert_eq!(done, [("write", Err(StorageError::Refused(status)))]);
        assert_eq!(done[0].1.as_ref().unwrap_err().nbd_errno(), errno);
    }
    assert_eq!((e.counters().errors("eperm"), e.counters().errors("eacces"), e.counters().errors("eio")), (1, 1, 1));
    // An error reply to a READ is one datagram, no data.
    e.submit(IoRequest::read(IMAGE, 1 << 40, 4096), "read", Duration::ZERO);
    let request = sent_headers(&mut e)[0];
    e.handle_datagram(&reply(&request, Status::Invalid), MS);
    assert_eq!(completions(&mut e), [("read", Err(StorageError::Refused(Status::Invalid)))]);
}

#[test]
fn flush_trim_zeroes_and_info_round_trip() {
    let mut e = engine();
    e.submit(IoRequest::flush(IMAGE), "flush", Duration::ZERO);
    e.submit(IoRequest::trim(IMAGE, 1 << 30, u32::MAX, true), "trim", Duration::ZERO);
    e.submit(IoRequest::info(IMAGE), "info", Duration::ZERO);
    let sent = sent_headers(&mut e);
    // The flush goes first; the trim waits for it (a barrier); INFO is under no rule.
    assert_eq!(sent.iter().map(|h| h.op).collect::<Vec<_>>(), [Op::Flush, Op::Info]);
    let info = ImageInfo { size: 10 << 30, flags: ImageInfo::READ_ONLY, block_size: 4096 };
    e.handle_datagram(&info_reply(&sent[1], &info), MS);
    e.handle_datagram(&reply(&sent[0], Status::Ok), MS);
    let trim = sent_headers(&mut e);
    assert_eq!((trim[0].op, trim[0].flags, trim[0].length), (Op::Trim, Flags::FUA, u32::MAX));
    e.handle_datagram(&reply(&trim[0], Status::Ok), MS);
    assert_eq!(
        completions(&mut e),
        [("info", Ok(IoOutput::Info(info))), ("flush", Ok(IoOutput::Done)), ("trim", Ok(IoOutput::Done))]
    );
    // An INFO reply whose payload does not parse fails the request.
    e.submit(IoRequest::info(IMAGE), "info", Duration::ZERO);
    let request = sent_headers(&mut e)[0];
    let mut bad = [0u8; 16];
    bad[11] = 4; // an unknown image flag
    e.handle_datagram(&reply_with(&request, Status::Ok, (0, &bad), &KEY), MS);
    assert!(matches!(completions(&mut e)[..], [("info", Err(StorageError::BadReply(_)))]));
}

#[test]
fn retransmissions_back_off_from_250_ms_to_2_s() {
    let mut e = engine();
    e.submit(IoRequest::write(IMAGE, 0, vec![5; 4096], false), "write", Duration::ZERO);
    let first = transmit(&mut e);
    assert_eq!(first.len(), 3);
    let mut resent_at = Vec::new();
    let mut now = Duration::ZERO;
    while now < 10 * SECOND {
        let wake = e.poll_timeout().expect("a retransmission is pending");
        assert!(wake > now);
        now = wake;
        e.handle_timeout(now);
        let again = transmit(&mut e);
        assert_eq!(again, first, "every datagram again, same id");
        resent_at.push(now.as_millis());
    }
    assert_eq!(resent_at, [250, 750, 1750, 3750, 5750, 7750, 9750, 11750]);
    assert_eq!(e.counters().retransmissions, 8);
    // Early calls change nothing.
    e.handle_timeout(now + 100 * MS);
    assert!(transmit(&mut e).is_empty());
    let request = BlockRepr { payload_len: 0, ..first[0].0 };
    e.handle_datagram(&reply(&request, Status::Ok), now + 200 * MS);
    assert_eq!(completions(&mut e), [("write", Ok(IoOutput::Done))]);
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn after_30_s_a_fence_then_the_unanswered_fail() {
    let mut e = engine();
    e.submit(IoRequest::write(IMAGE, 0, vec![5; 512], false), "lost", Duration::ZERO);
    e.submit(IoRequest::read(IMAGE, 1 << 20, 512), "young", 29 * SECOND);
    let sent = sent_headers(&mut e);
    assert_eq!(sent.len(), 2);
    let mut now = Duration::ZERO;
    while now < 30 * SECOND {
        now = e.poll_timeout().unwrap();
        e.handle_timeout(now);
        transmit(&mut e);
    }
    assert_eq!(now, 30 * SECOND);
    // The fence is sent; nothing else is, and nothing more is retransmitted but the fence.
    let fence = sent_headers(&mut e);
    assert!(fence.is_empty(), "already drained by the loop");
    assert_eq!(e.counters().fences, 1);
    e.submit(IoRequest::read(IMAGE, 0, 512), "held", now);
    now += 250 * MS;
    e.handle_timeout(now);
    let fence = sent_headers(&mut e);
    assert_eq!(fence.len(), 1, "only the fence is retransmitted");
    let fence = fence[0];
    assert_eq!((fence.op, fence.request_id, fence.image_id), (Op::Info, FIRST_ID + 1 + 1024, IMAGE));
    assert!(completions(&mut e).is_empty(), "nothing fails before the fence is answered");
    // A late reply to the young read still counts.
    let young = sent.iter().find(|h| h.op == Op::Read).unwrap();
    e.handle_datagram(&read_reply(young, &[7; 512])[0], now);
    e.handle_datagram(&info_reply(&fence, &INFO), now);
    let done = completions(&mut e);
    assert_eq!(done[0], ("young", Ok(IoOutput::Data(vec![7; 512]))));
    assert_eq!(done[1], ("lost", Err(StorageError::TimedOut)));
    assert_eq!(done[1].1.as_ref().unwrap_err().nbd_errno(), error::EIO);
    // The held read goes now, above the fence.
    let held = sent_headers(&mut e);
    assert_eq!((held[0].op, held[0].request_id), (Op::Read, fence.request_id + 1));
    assert_eq!(e.counters().errors("timed_out"), 1);
}

#[test]
fn an_unanswered_fence_makes_the_server_unreachable_until_it_is_answered() {
    let mut e = engine();
    e.submit(IoRequest::read(IMAGE, 0, 512), "lost", Duration::ZERO);
    transmit(&mut e);
    let mut now = Duration::ZERO;
    let mut fence = None;
    while now < 60 * SECOND {
        now = e.poll_timeout().unwrap();
        e.handle_timeout(now);
        for header in sent_headers(&mut e) {
            if header.op == Op::Info {
                fence = Some(header);
            }
        }
        if now == 59 * SECOND + 750 * MS {
            assert!(completions(&mut e).is_empty(), "{now:?}");
        }
    }
    assert_eq!(now, 60 * SECOND);
    assert_eq!(completions(&mut e), [("lost", Err(StorageError::TimedOut))]);
    e.submit(IoRequest::read(IMAGE, 0, 512), "fast", now);
    assert_eq!(completions(&mut e), [("fast", Err(StorageError::Unreachable))]);
    // The fence goes on every 2 s.
    let next = e.poll_timeout().unwrap();
    assert!(next > now && next <= now + 2 * SECOND, "{next:?}");
    e.handle_timeout(next);
    assert_eq!(sent_headers(&mut e).len(), 1);
    e.handle_datagram(&info_reply(&fence.unwrap(), &INFO), next);
    e.submit(IoRequest::read(IMAGE, 0, 512), "back", next);
    assert_eq!(sent_headers(&mut e).len(), 1);
}

#[test]
fn estale_continues_above_the_servers_highest_id() {
    let mut e = engine();
    e.submit(IoRequest::write(IMAGE, 0, vec![9; 2000], false), "write", Duration::ZERO);
    let first = sent_headers(&mut e);
    assert_eq!(first.len(), 2);
    let request = BlockRepr { fragment_offset: 0, payload_len: 0, ..first[0] };
    let highest = FIRST_ID + 1_000_000;
    e.handle_datagram(&stale_reply(&request, highest), MS);
    let again = sent_headers(&mut e);
    assert_eq!(again.len(), 2, "all fragments again");
    assert!(again.iter().all(|h| h.request_id == highest + 1 && h.offset == 0 && h.length == 2000));
    // The old id is dead: its late reply matches nothing.
    e.handle_datagram(&reply(&request, Status::Ok), MS);
    assert_eq!(e.counters().dropped(DropReason::NotOutstanding), 1);
    let renewed = BlockRepr { request_id: highest + 1, ..request };
    e.handle_datagram(&reply(&renewed, Status::Ok), MS);
    assert_eq!(completions(&mut e), [("write", Ok(IoOutput::Done))]);
    assert_eq!(e.counters().stale_replies, 1);
}

#[test]
fn estale_again_and_again_fails_the_request() {
    let mut e = engine();
    e.submit(IoRequest::read(IMAGE, 0, 512), "read", Duration::ZERO);
    let mut highest = FIRST_ID + 5000;
    for _ in 0..3 {
        let request = sent_headers(&mut e)[0];
        e.handle_datagram(&stale_reply(&request, highest), MS);
        highest += 5000;
    }
    let request = sent_headers(&mut e)[0];
    e.handle_datagram(&stale_reply(&request, highest), MS);
    let done = completions(&mut e);
    assert_eq!(done, [("read", Err(StorageError::Stale))]);
    assert_eq!(done[0].1.as_ref().unwrap_err().nbd_errno(), error::EIO);
    assert!(sent_headers(&mut e).is_empty());
}

#[test]
fn an_estale_fence_is_sent_again_above_the_servers_highest_id() {
    let mut e = engine();
    e.submit(IoRequest::read(IMAGE, 0, 512), "read", Duration::ZERO);
    transmit(&mut e);
    e.begin_shutdown(SECOND);
    let fence = sent_headers(&mut e)[0];
    let highest = fence.request_id + 77;
    e.handle_datagram(&stale_reply(&fence, highest), SECOND);
    let again = sent_headers(&mut e)[0];
    assert_eq!(again.request_id, highest + 1024);
    assert!(completions(&mut e).is_empty());
    e.handle_datagram(&reply(&again, Status::AccessDenied), SECOND);
    assert_eq!(completions(&mut e), [("read", Err(StorageError::ShuttingDown))]);
    assert!(e.is_idle());
}

#[test]
fn idle_attached_images_get_an_info_every_5_s() {
    let mut e = engine();
    e.keep_attached(IMAGE, Duration::ZERO);
    e.keep_attached(IMAGE, Duration::ZERO);
    e.keep_attached(3, 2 * SECOND);
    assert_eq!(e.poll_timeout(), Some(5 * SECOND));
    // Traffic to IMAGE at 3 s puts its keepalive off to 8 s.
    e.submit(IoRequest::read(IMAGE, 0, 512), "read", 3 * SECOND);
    let read = sent_headers(&mut e)[0];
    e.handle_datagram(&read_reply(&read, &[0; 512])[0], 3 * SECOND);
    completions(&mut e);
    assert_eq!(e.poll_timeout(), Some(7 * SECOND));
    e.handle_timeout(7 * SECOND);
    let keepalive = sent_headers(&mut e);
    assert_eq!(keepalive.iter().map(|h| (h.op, h.image_id)).collect::<Vec<_>>(), [(Op::Info, 3)]);
    assert_eq!(e.poll_timeout(), Some(7 * SECOND + 250 * MS), "the keepalive's retransmission");
    let info = ImageInfo { size: 1 << 30, flags: 0, block_size: 512 };
    e.handle_datagram(&info_reply(&keepalive[0], &info), 7 * SECOND);
    assert!(completions(&mut e).is_empty(), "a keepalive has no caller");
    assert_eq!(e.poll_timeout(), Some(8 * SECOND));
    e.handle_timeout(8 * SECOND);
    assert_eq!(sent_headers(&mut e).iter().map(|h| h.image_id).collect::<Vec<_>>(), [IMAGE]);
    assert_eq!(e.counters().keepalives, 2);
    // A refused keepalive is logged, not delivered.
    e.handle_timeout(12 * SECOND);
    let keepalive = sent_headers(&mut e)[0];
    e.handle_datagram(&reply(&keepalive, Status::AccessDenied), 12 * SECOND);
    assert!(completions(&mut e).is_empty());
}

#[test]
fn a_keepalive_takes_no_callers_place_and_one_is_out_at_a_time() {
    let mut e = engine_with(Limits { depth: 4, max_queued: 1, ..Limits::default() });
    e.keep_attached(IMAGE, Duration::ZERO);
    e.submit(IoRequest::read(IMAGE, 0, 512), "read", Duration::ZERO);
    let read = sent_headers(&mut e)[0];
    // The caller's request fills the queue; the keepalive goes all the same.
    e.handle_timeout(5 * SECOND);
    let keepalive: Vec<BlockRepr> = sent_headers(&mut e).into_iter().filter(|h| h.op == Op::Info).collect();
    assert_eq!(keepalive.len(), 1);
    // Unanswered, it is retransmitted, never doubled by a second keepalive.
    let mut now = 5 * SECOND;
    while now < 16 * SECOND {
        now = e.poll_timeout().unwrap();
        e.handle_timeout(now);
        let ids = [keepalive[0].request_id, read.request_id];
        assert!(sent_headers(&mut e).iter().all(|h| ids.contains(&h.request_id)));
    }
    assert_eq!(e.counters().keepalives, 1);
    e.handle_datagram(&info_reply(&keepalive[0], &INFO), now);
    e.handle_datagram(&read_reply(&read, &[0; 512])[0], now);
    assert_eq!(completions(&mut e).len(), 1);
    // Nothing new was sent since 5 s: the next keepalive is due.
    assert_eq!(e.poll_timeout(), Some(10 * SECOND));
}

#[test]
fn shutdown_fails_waiting_requests_and_fences_the_unanswered() {
    let mut e = engine_with(Limits { depth: 1, ..Limits::default() });
    e.submit(IoRequest::read(IMAGE, 0, 512), "sent", Duration::ZERO);
    e.submit(IoRequest::read(IMAGE, 4096, 512), "waiting", Duration::ZERO);
    let sent = sent_headers(&mut e);
    assert_eq!(sent.len(), 1);
    e.begin_shutdown(SECOND);
    assert_eq!(completions(&mut e), [("waiting", Err(StorageError::ShuttingDown))]);
    let fence = sent_headers(&mut e);
    assert_eq!((fence[0].op, fence[0].request_id), (Op::Info, FIRST_ID + 1 + 1023));
    e.submit(IoRequest::read(IMAGE, 0, 512), "late", SECOND);
    assert_eq!(completions(&mut e), [("late", Err(StorageError::ShuttingDown))]);
    assert!(!e.is_idle());
    e.handle_datagram(&info_reply(&fence[0], &INFO), SECOND);
    assert_eq!(completions(&mut e), [("sent", Err(StorageError::ShuttingDown))]);
    assert!(e.is_idle());
    // With nothing unanswered there is no fence; `abandon` fails what is left.
    let mut quiet = engine();
    quiet.begin_shutdown(SECOND);
    assert!(quiet.is_idle() && sent_headers(&mut quiet).is_empty());
    let mut stuck = engine();
    stuck.submit(IoRequest::read(IMAGE, 0, 512), "stuck", Duration::ZERO);
    stuck.begin_shutdown(SECOND);
    stuck.abandon();
    assert_eq!(completions(&mut stuck), [("stuck", Err(StorageError::ShuttingDown))]);
    assert!(stuck.is_idle());
}

#[test]
fn bad_requests_and_a_full_queue_fail_at_once() {
    let mut e = engine_with(Limits { depth: 1, max_queued: 2, ..Limits::default() });
    e.submit(IoRequest::read(IMAGE, 0, MAX_IO_LEN + 1), "long", Duration::ZERO);
    e.submit(IoRequest::write(IMAGE, u64::MAX - 10, vec![0; 100], false), "overflow", Duration::ZERO);
    e.submit(IoRequest::read(IMAGE, 0, 512), "a", Duration::ZERO);
    e.submit(IoRequest::read(IMAGE, 0, 512), "b", Duration::ZERO);
    e.submit(IoRequest::read(IMAGE, 0, 512), "c", Duration::ZERO);
    let done = completions(&mut e);
    assert_eq!(done.len(), 3);
    assert!(matches!(done[0], ("long", Err(StorageError::Invalid(_)))));
    assert!(matches!(done[1], ("overflow", Err(StorageError::Invalid(_)))));
    assert_eq!(done[2], ("c", Err(StorageError::QueueFull)));
    assert_eq!(done[0].1.as_ref().unwrap_err().nbd_errno(), error::EINVAL);
}

#[test]
fn merged_writes_complete_together() {
    let mut e = engine_with(Limits { depth: 1, ..Limits::default() });
    e.submit(IoRequest::read(IMAGE, 1 << 20, 512), "busy", Duration::ZERO);
    e.submit(IoRequest::write(IMAGE, 0, vec![1; 4096], false), "w1", Duration::ZERO);
    e.submit(IoRequest::write(IMAGE, 4096, vec![2; 4096], false), "w2", Duration::ZERO);
    let busy = sent_headers(&mut e)[0];
    e.handle_datagram(&read_reply(&busy, &[0; 512])[0], MS);
    let write = transmit(&mut e);
    assert_eq!(write.len(), 6);
    assert_eq!((write[0].0.offset, write[0].0.length), (0, 8192));
    let payload: Vec<u8> = write.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(&payload[4095..4097], &[1, 2]);
    let request = BlockRepr { fragment_offset: 0, payload_len: 0, ..write[0].0 };
    e.handle_datagram(&reply(&request, Status::NoSpace), MS);
    let done = completions(&mut e);
    assert_eq!(done.len(), 3);
    let full = Err(StorageError::Refused(Status::NoSpace));
    assert_eq!(&done[1..], [("w1", full.clone()), ("w2", full)]);
    assert_eq!((e.counters().merged, e.counters().errors("enospc")), (1, 2));
}

#[test]
fn no_datagram_panics_the_engine() {
    let mut e = engine();
    e.submit(IoRequest::read(IMAGE, 0, 4096), "read", Duration::ZERO);
    e.submit(IoRequest::write(IMAGE, 8192, vec![1; 100], false), "write", Duration::ZERO);
    let sent = sent_headers(&mut e);
    let read_fragment = read_reply(&sent[0], &[3; 4096])[0].clone();
    let write_reply = reply(&BlockRepr { payload_len: 0, ..sent[1] }, Status::Ok);
    fuzz(&[&read_fragment, &write_reply], |buf| e.handle_datagram(buf, MS));
    e.handle_timeout(SECOND);
}
