//! The scheduler's rules one by one (module doc of `io_scheduler`), then a randomized run checked against
//! the rules as a model. Waiters are plain labels.

use switchyard_block_proto::RequestIds;
use switchyard_wire::block::{Op, MAX_IO_LEN};
use switchyard_wire::test_util::XorShift;

use super::io_scheduler::{Limits, Scheduler, Submitted, MAX_ID_SPREAD};
use super::storage_request::IoRequest;

const FIRST_ID: u64 = 1_700_000_000_000_000_000;
const KIB: u64 = 1024;

fn scheduler(depth: usize) -> Scheduler<&'static str> {
    Scheduler::new(Limits { depth, ..Limits::default() }, RequestIds::starting_at(FIRST_ID))
}

fn read(offset_kib: u64, length_kib: u32) -> IoRequest {
    IoRequest::read(1, offset_kib * KIB, length_kib * 1024)
}

fn write(offset_kib: u64, length_kib: u32) -> IoRequest {
    IoRequest::write(1, offset_kib * KIB, vec![0x11; length_kib as usize * 1024], false)
}

fn submit(s: &mut Scheduler<&'static str>, request: IoRequest, label: &'static str) -> Submitted {
    s.submit(request, label).unwrap_or_else(|label| panic!("{label} refused"))
}

/// Dispatches all it can; the labels sent, with their ids.
fn dispatch_all(s: &mut Scheduler<&'static str>) -> Vec<(&'static str, u64)> {
    let mut sent = Vec::new();
    while let Some(id) = s.next_dispatch() {
        sent.push((label_of(s, id), id));
    }
    sent
}

/// Labels only.
fn dispatch_labels(s: &mut Scheduler<&'static str>) -> Vec<&'static str> {
    dispatch_all(s).into_iter().map(|(label, _)| label).collect()
}

/// The label of in-flight `id` (the first waiter of a merged request).
fn label_of(s: &Scheduler<&'static str>, id: u64) -> &'static str {
    s.waiters(id).expect("in flight")[0]
}

fn complete(s: &mut Scheduler<&'static str>, sent: &[(&'static str, u64)], label: &str) -> Vec<&'static str> {
    let id = sent.iter().find(|(l, _)| *l == label).unwrap_or_else(|| panic!("{label} not sent")).1;
    s.complete(id).expect("in flight").waiters
}

#[test]
fn reads_pass_writes_they_do_not_overlap() {
    let mut s = scheduler(64);
    submit(&mut s, write(0, 4), "w1");
    submit(&mut s, write(0, 4), "w2");
    submit(&mut s, read(8, 4), "r3");
    submit(&mut s, read(2, 4), "r4");
    let first = dispatch_all(&mut s);
    // w2 waits for w1 (same blocks); r3 passes it; r4 overlaps both writes.
    assert_eq!(first.iter().map(|(l, _)| *l).collect::<Vec<_>>(), ["r3", "w1"], "reads first");
    assert_eq!((s.in_flight_len(), s.waiting_len(), s.queued()), (2, 2, 4));
    assert_eq!(complete(&mut s, &first, "r3"), ["r3"]);
    assert!(dispatch_all(&mut s).is_empty());
    assert_eq!(complete(&mut s, &first, "w1"), ["w1"]);
    let second = dispatch_all(&mut s);
    assert_eq!(second.iter().map(|(l, _)| *l).collect::<Vec<_>>(), ["w2"]);
    assert_eq!(complete(&mut s, &second, "w2"), ["w2"]);
    assert_eq!(dispatch_labels(&mut s), ["r4"]);
}

#[test]
fn overlapping_requests_keep_their_order_reads_among_themselves_do_not() {
    let mut s = scheduler(64);
    submit(&mut s, write(0, 8), "w1");
    submit(&mut s, read(4, 8), "r2");
    submit(&mut s, write(10, 2), "w3");
    submit(&mut s, read(6, 8), "r4");
    // r2 waits for w1; w3 waits for r2 (a write after an overlapping read); r4 waits for w1 and w3, not r2.
    let sent = dispatch_all(&mut s);
    assert_eq!(sent.iter().map(|(l, _)| *l).collect::<Vec<_>>(), ["w1"]);
    complete(&mut s, &sent, "w1");
    let sent = dispatch_all(&mut s);
    assert_eq!(sent.iter().map(|(l, _)| *l).collect::<Vec<_>>(), ["r2"]);
    complete(&mut s, &sent, "r2");
    let sent = dispatch_all(&mut s);
    assert_eq!(sent.iter().map(|(l, _)| *l).collect::<Vec<_>>(), ["w3"]);
    complete(&mut s, &sent, "w3");
    assert_eq!(dispatch_labels(&mut s), ["r4"]);

    // Overlapping reads go together.
    let mut s = scheduler(64);
    submit(&mut s, read(0, 8), "ra");
    submit(&mut s, read(4, 8), "rb");
    assert_eq!(dispatch_labels(&mut s), ["ra", "rb"]);
}

#[test]
fn trims_and_zeroes_order_like_writes() {
    let mut s = scheduler(64);
    submit(&mut s, IoRequest::trim(1, 0, 1 << 20, false), "trim");
    submit(&mut s, read(512, 4), "r-in");
    submit(&mut s, IoRequest::read(1, 1 << 20, 4096), "r-after");
    submit(&mut s, IoRequest::write_zeroes(1, 4096, 4096, true), "zero");
    let sent = dispatch_all(&mut s);
    assert_eq!(sent.iter().map(|(l, _)| *l).collect::<Vec<_>>(), ["r-after", "trim"]);
    complete(&mut s, &sent, "trim");
    // The zeroing does not overlap r-in (4..8 KiB vs 512 KiB): both go.
    assert_eq!(dispatch_labels(&mut s), ["r-in", "zero"]);
}

#[test]
fn a_flush_waits_for_earlier_writes_and_holds_later_requests() {
    let mut s = scheduler(64);
    submit(&mut s, write(0, 4), "w1");
    submit(&mut s, read(100, 4), "r2");
    submit(&mut s, IoRequest::write_zeroes(1, 200 * KIB, 4096, false), "z3");
    submit(&mut s, IoRequest::flush(1), "f4");
    submit(&mut s, read(300, 4), "r5");
    submit(&mut s, write(400, 4), "w6");
    submit(&mut s, IoRequest::flush(2), "other-image-flush");
    submit(&mut s, IoRequest::info(1), "info");
    let sent = dispatch_all(&mut s);
    assert_eq!(sent.iter().map(|(l, _)| *l).collect::<Vec<_>>(), ["r2", "w1", "z3", "other-image-flush", "info"]);
    // The flush does not wait for the read.
    complete(&mut s, &sent, "w1");
    assert!(dispatch_all(&mut s).is_empty());
    complete(&mut s, &sent, "z3");
    let flush = dispatch_all(&mut s);
    assert_eq!(flush.iter().map(|(l, _)| *l).collect::<Vec<_>>(), ["f4"]);
    // Later requests wait for the flush to complete, reads too.
    complete(&mut s, &sent, "r2");
    assert!(dispatch_all(&mut s).is_empty());
    complete(&mut s, &flush, "f4");
    assert_eq!(dispatch_labels(&mut s), ["r5", "w6"]);
}

#[test]
fn flushes_keep_their_order() {
    let mut s = scheduler(64);
    submit(&mut s, IoRequest::flush(1), "f1");
    submit(&mut s, IoRequest::flush(1), "f2");
    let sent = dispatch_all(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(s.complete(sent[0].1).unwrap().waiters, ["f1"]);
    assert_eq!(s.next_dispatch().map(|id| s.complete(id).unwrap().waiters), Some(vec!["f2"]));
}

#[test]
fn reads_go_first_but_writes_are_not_starved() {
    let limits = Limits { depth: 1, writes_starved: 2, ..Limits::default() };
    let mut s = Scheduler::new(limits, RequestIds::starting_at(FIRST_ID));
    s.submit(write(0, 4), "w").unwrap();
    for (i, label) in ["r1", "r2", "r3", "r4"].into_iter().enumerate() {
        s.submit(read(100 + 8 * i as u64, 4), label).unwrap();
    }
    let mut order = Vec::new();
    while let Some(id) = s.next_dispatch() {
        assert_eq!(s.in_flight_len(), 1);
        assert_eq!(s.next_dispatch(), None, "depth 1");
        order.extend(s.complete(id).unwrap().waiters);
    }
    assert_eq!(order, ["r1", "r2", "w", "r3", "r4"]);
    assert_eq!(s.queued(), 0);
}

#[test]
fn the_depth_bounds_what_is_in_flight() {
    let mut s = Scheduler::new(Limits { depth: 3, ..Limits::default() }, RequestIds::starting_at(FIRST_ID));
    for i in 0..10u64 {
        s.submit(read(i * 64, 64), "r").unwrap();
    }
    let ids: Vec<u64> = std::iter::from_fn(|| s.next_dispatch()).collect();
    assert_eq!(ids, [FIRST_ID, FIRST_ID + 1, FIRST_ID + 2]);
    assert_eq!((s.in_flight_len(), s.waiting_len()), (3, 7));
    s.complete(FIRST_ID + 1).unwrap();
    assert_eq!(s.next_dispatch(), Some(FIRST_ID + 3));
    assert_eq!(s.next_dispatch(), None);
    assert!(s.complete(FIRST_ID + 1).is_none(), "completed once");
    assert!(s.complete(FIRST_ID + 99).is_none(), "never sent");
}

#[test]
fn the_queue_is_bounded_merged_writes_counted_each() {
    let limits = Limits { depth: 1, max_queued: 3, ..Limits::default() };
    let mut s = Scheduler::new(limits, RequestIds::starting_at(FIRST_ID));
    s.submit(read(1000, 4), "r").unwrap();
    let busy = s.next_dispatch().unwrap();
    assert_eq!(s.submit(write(0, 4), "w1"), Ok(Submitted::Queued));
    assert_eq!(s.submit(write(4, 4), "w2"), Ok(Submitted::Merged));
    assert_eq!(s.submit(write(8, 4), "w3"), Err("w3"));
    assert_eq!((s.queued(), s.waiting_len()), (3, 1));
    s.complete(busy).unwrap();
    assert_eq!(s.submit(write(8, 4), "w3"), Ok(Submitted::Merged));
}

#[test]
fn contiguous_waiting_writes_merge_in_order() {
    let mut s = scheduler(1);
    s.submit(read(1000, 4), "busy").unwrap();
    let busy = s.next_dispatch().unwrap();
    let bytes = |fill: u8, kib: usize| vec![fill; kib * 1024];
    assert_eq!(s.submit(IoRequest::write(1, 64 * KIB, bytes(1, 4), false), "w1"), Ok(Submitted::Queued));
    assert_eq!(s.submit(IoRequest::write(1, 68 * KIB, bytes(2, 4), false), "w2"), Ok(Submitted::Merged));
    assert_eq!(s.submit(IoRequest::write(1, 60 * KIB, bytes(3, 4), false), "w3"), Ok(Submitted::Merged));
    // Not merged: FUA differs, another image, a gap, an overlap.
    assert_eq!(s.submit(IoRequest::write(1, 72 * KIB, bytes(4, 4), true), "fua"), Ok(Submitted::Queued));
    assert_eq!(s.submit(IoRequest::write(2, 72 * KIB, bytes(5, 4), false), "img2"), Ok(Submitted::Queued));
    assert_eq!(s.submit(IoRequest::write(1, 200 * KIB, bytes(6, 4), false), "gap"), Ok(Submitted::Queued));
    assert_eq!(s.submit(IoRequest::write(1, 62 * KIB, bytes(7, 4), false), "overlap"), Ok(Submitted::Queued));
    assert_eq!((s.queued(), s.waiting_len()), (8, 5));
    s.complete(busy).unwrap();
    let merged = s.next_dispatch().unwrap();
    let request = s.request(merged).unwrap();
    assert_eq!((request.op, request.offset, request.length), (Op::Write, 60 * KIB, 12 * 1024));
    let mut expected = bytes(3, 4);
    expected.extend(bytes(1, 4));
    expected.extend(bytes(2, 4));
    assert_eq!(request.data, expected);
    assert_eq!(s.complete(merged).unwrap().waiters, ["w1", "w2", "w3"]);
}

#[test]
fn merging_stops_at_64_kib() {
    let mut s = scheduler(1);
    s.submit(read(1000, 4), "busy").unwrap();
    s.next_dispatch().unwrap();
    assert_eq!(s.submit(write(0, 60), "a"), Ok(Submitted::Queued));
    assert_eq!(s.submit(write(60, 4), "b"), Ok(Submitted::Merged));
    assert_eq!(s.submit(write(64, 4), "c"), Ok(Submitted::Queued));
    assert_eq!(s.submit(write(68, 60), "d"), Ok(Submitted::Merged));
    assert_eq!(s.submit(write(128, 1), "e"), Ok(Submitted::Queued), "c+d are 64 KiB");
    let sizes: Vec<u32> = {
        let mut sizes = Vec::new();
        let busy = s.oldest_unanswered().unwrap();
        s.complete(busy).unwrap();
        while let Some(id) = s.next_dispatch() {
            sizes.push(s.request(id).unwrap().length);
            s.complete(id).unwrap();
        }
        sizes
    };
    assert_eq!(sizes, [MAX_IO_LEN, MAX_IO_LEN, 1024]);
}

#[test]
fn no_merge_past_a_conflict_a_flush_or_into_a_sent_write() {
    let mut s = scheduler(1);
    s.submit(read(1000, 4), "busy").unwrap();
    let busy = s.next_dispatch().unwrap();
    s.submit(write(0, 4), "w1").unwrap();
    // r2 lies after w1 and overlaps w3: w3 may not take w1's place ahead of r2.
    s.submit(read(4, 4), "r2").unwrap();
    assert_eq!(s.submit(write(4, 4), "w3"), Ok(Submitted::Queued));
    // A flush between: no merge across it.
    s.submit(write(100, 4), "w4").unwrap();
    s.submit(IoRequest::flush(1), "f5").unwrap();
    assert_eq!(s.submit(write(104, 4), "w6"), Ok(Submitted::Queued));
    // Into a write already sent: no.
    s.complete(busy).unwrap();
    let mut s = scheduler(4);
    s.submit(write(0, 4), "sent").unwrap();
    s.next_dispatch().unwrap();
    assert_eq!(s.submit(write(4, 4), "next"), Ok(Submitted::Queued));
    assert_eq!((s.waiting_len(), s.in_flight_len()), (1, 1));
    assert_eq!(s.next_dispatch().map(|id| s.request(id).unwrap().offset), Some(4 * KIB));
}

#[test]
fn a_merged_write_waits_for_what_either_part_waits_for() {
    let mut s = scheduler(8);
    submit(&mut s, write(0, 4), "v");
    submit(&mut s, IoRequest::write(1, 4 * KIB, vec![0; 4096], true), "w0");
    let sent = dispatch_all(&mut s);
    assert_eq!(sent.len(), 2);
    submit(&mut s, write(0, 4), "w1");
    // w2 joins w1, and overlaps w0: the merged write waits for v (w1's) and w0 (w2's).
    assert_eq!(submit(&mut s, write(4, 4), "w2"), Submitted::Merged);
    complete(&mut s, &sent, "v");
    assert_eq!(s.next_dispatch(), None);
    complete(&mut s, &sent, "w0");
    let merged = s.next_dispatch().unwrap();
    assert_eq!(s.complete(merged).unwrap().waiters, ["w1", "w2"]);
}

#[test]
fn ids_of_unanswered_requests_stay_within_the_spread() {
    let mut s = scheduler(64);
    for i in 0..1000u64 {
        s.submit(read(i * 4, 4), "r").unwrap();
    }
    let stuck = s.next_dispatch().unwrap();
    assert_eq!(stuck, FIRST_ID);
    // Everything after it is answered at once; the stuck one is not.
    let mut last = stuck;
    while let Some(id) = s.next_dispatch() {
        last = id;
        s.complete(id).unwrap();
    }
    assert_eq!(last, FIRST_ID + MAX_ID_SPREAD - 1, "the last id within 512 of the stuck one");
    assert_eq!(s.oldest_unanswered(), Some(stuck));
    s.complete(stuck).unwrap();
    assert_eq!(s.next_dispatch(), Some(FIRST_ID + MAX_ID_SPREAD));
}

#[test]
fn estale_requeues_in_place_with_a_new_id() {
    let mut s = scheduler(64);
    submit(&mut s, write(0, 4), "w1");
    submit(&mut s, write(8, 4), "w2");
    submit(&mut s, read(0, 4), "r3");
    let sent = dispatch_all(&mut s);
    assert_eq!(sent, [("w1", FIRST_ID), ("w2", FIRST_ID + 1)]);
    let highest = FIRST_ID + 5000;
    assert_eq!(s.times_requeued(FIRST_ID), Some(0));
    assert!(s.requeue(FIRST_ID));
    assert!(!s.requeue(FIRST_ID));
    s.skip_ids_past(highest);
    // w2 is still unanswered far below: w1 waits until w2 is answered or requeued too.
    assert_eq!(s.next_dispatch(), None);
    assert!(s.requeue(FIRST_ID + 1));
    let again = dispatch_all(&mut s);
    assert_eq!(again, [("w1", highest + 1), ("w2", highest + 2)]);
    assert_eq!(s.times_requeued(highest + 1), Some(1));
    // r3 still waits for w1.
    complete(&mut s, &again, "w2");
    assert_eq!(s.next_dispatch(), None);
    complete(&mut s, &again, "w1");
    assert_eq!(dispatch_labels(&mut s), ["r3"]);
}

#[test]
fn fence_ids_and_draining() {
    let mut s = scheduler(1);
    s.submit(read(0, 4), "sent").unwrap();
    s.submit(read(8, 4), "waiting1").unwrap();
    s.submit(write(8, 4), "waiting2").unwrap();
    let sent = s.next_dispatch().unwrap();
    let fence = s.fence_id();
    assert_eq!(fence, sent + 1 + 1023);
    let drained: Vec<_> = s.drain_waiting().into_iter().flat_map(|f| f.waiters).collect();
    assert_eq!(drained, ["waiting1", "waiting2"]);
    assert_eq!(s.unanswered().collect::<Vec<_>>(), [sent]);
    assert_eq!((s.queued(), s.waiting_len()), (1, 0));
    // After the fence, new ids continue above it.
    s.complete(sent).unwrap();
    s.submit(read(0, 4), "later").unwrap();
    assert_eq!(s.next_dispatch(), Some(fence + 1));
}

/// Random requests on two images, random completions: every request is sent only once every earlier one it
/// conflicts with is complete, the depth and spread hold, and each request completes exactly once.
#[test]
fn random_runs_keep_every_rule() {
    let mut rng = XorShift::new(0x5c4e_d01e);
    for round in 0..40 {
        let depth = 1 + rng.below(8);
        let limits = Limits { depth, max_queued: 64, max_id_spread: 16 + rng.below(32) as u64, writes_starved: 3 };
        let mut s: Scheduler<usize> = Scheduler::new(limits, RequestIds::starting_at(1 << 40));
        let mut submitted: Vec<IoRequest> = Vec::new();
        let mut state: Vec<&str> = Vec::new(); // "queued", "sent", "done"
        let mut sent_ids: Vec<u64> = Vec::new();
        for _ in 0..400 {
            match rng.below(3) {
                0 if s.queued() < 64 => {
                    let image = 1 + rng.below(2) as u32;
                    let offset = rng.below(16) as u64 * 4096;
                    let length = (1 + rng.below(3) as u32) * 4096;
                    let fua = rng.below(4) == 0;
                    let request = match rng.below(6) {
                        0 | 1 => IoRequest::read(image, offset, length),
                        2 | 3 => IoRequest::write(image, offset, vec![submitted.len() as u8; length as usize], fua),
                        4 => IoRequest::flush(image),
                        _ => IoRequest::trim(image, offset, length, fua),
                    };
                    submitted.push(request.clone());
                    state.push("queued");
                    s.submit(request, submitted.len() - 1).unwrap();
                }
                1 => {
                    while let Some(id) = s.next_dispatch() {
                        assert!(s.in_flight_len() <= depth, "round {round}");
                        let oldest = s.oldest_unanswered().unwrap();
                        assert!(id - oldest < limits.max_id_spread, "round {round}");
                        sent_ids.push(id);
                        for &i in s.waiters(id).unwrap() {
                            assert_eq!(state[i], "queued");
                            state[i] = "sent";
                            let original = &submitted[i];
                            if original.op == Op::Write {
                                assert!(carries(s.request(id).unwrap(), original), "round {round}: merged data");
                            }
                            for (j, earlier) in submitted[..i].iter().enumerate() {
                                if state[j] != "done" && model_conflicts(earlier, original) {
                                    panic!("round {round}: {original:?} sent before {earlier:?} completed");
                                }
                            }
                        }
                    }
                }
                _ => {
                    let unanswered: Vec<u64> = s.unanswered().collect();
                    if unanswered.is_empty() {
                        continue;
                    }
                    let id = unanswered[rng.below(unanswered.len())];
                    for i in s.complete(id).unwrap().waiters {
                        assert_ne!(state[i], "done");
                        state[i] = "done";
                    }
                }
            }
        }
        // Drain: everything completes.
        loop {
            while s.next_dispatch().is_some() {}
            let Some(id) = s.oldest_unanswered() else { break };
            for i in s.complete(id).unwrap().waiters {
                state[i] = "done";
            }
        }
        assert!(state.iter().all(|st| *st == "done"), "round {round}");
        assert_eq!(s.queued(), 0);
        let mut sorted = sent_ids.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), sent_ids.len(), "ids unique and increasing");
    }
}

/// Whether a sent (merged) write carries `original`'s bytes where `original` sits.
fn carries(sent: &IoRequest, original: &IoRequest) -> bool {
    let start = (original.offset - sent.offset) as usize;
    sent.data.get(start..start + original.data.len()) == Some(&original.data[..])
}

/// The rules, written again from the module doc.
fn model_conflicts(earlier: &IoRequest, later: &IoRequest) -> bool {
    if earlier.image_id != later.image_id {
        return false;
    }
    let writes = |r: &IoRequest| matches!(r.op, Op::Write | Op::Trim | Op::WriteZeroes);
    let overlap = earlier.range().start < later.range().end && later.range().start < earlier.range().end;
    match (earlier.op, later.op) {
        (Op::Flush, _) => true,
        (_, Op::Flush) => writes(earlier),
        (Op::Read, Op::Read) => false,
        _ => overlap,
    }
}
