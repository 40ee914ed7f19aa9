//! The io_uring wrapper (`switchyard_io_ring`) on temp files, without EAL: round
//! trips, many ops in flight, queue limits, fsync, punch-hole and zero-range, short reads,
//! kernel errors, slot replacement, bad input, and dropping a ring with ops in flight.
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use switchyard_io_ring::{
    BufferLease, FallocateMode, FileSlot, IoError, IoRing, IoRingConfig, IoRingError, Refused,
};

const SLOT: FileSlot = FileSlot(0);

/// Temp files on the target directory's file system: /tmp may be tmpfs, which has no
/// FALLOC_FL_ZERO_RANGE.
fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

fn image(dir: &tempfile::TempDir, name: &str, contents: &[u8]) -> (PathBuf, File) {
    let path = dir.path().join(name);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).expect("open");
    file.write_all_at(contents, 0).expect("fill");
    (path, file)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn new_ring(queue_depth: u32, buffers: u32, buffer_size: usize) -> IoRing {
    IoRing::new(IoRingConfig { queue_depth, buffers, buffer_size, file_slots: 4 }).expect("ring")
}

/// One reported completion; `data` holds the first `bytes done` of the buffer, if any.
#[derive(Debug)]
struct Done {
    tag: u64,
    result: Result<u32, IoError>,
    data: Option<Vec<u8>>,
}

/// Submits and polls, as a run loop would, until `count` ops are reported (10 s at most).
fn complete(ring: &mut IoRing, count: usize) -> Vec<Done> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut done = Vec::new();
    while done.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count} completions arrived", done.len());
        match ring.submit() {
            Ok(_) | Err(IoRingError::SubmitBusy) => {}
            Err(e) => panic!("submit: {e}"),
        }
        ring.poll_completions(|tag, result, buffer| {
            let data = buffer.map(|bytes| bytes[..*result.as_ref().unwrap_or(&0) as usize].to_vec());
            done.push(Done { tag, result, data });
        });
        std::thread::yield_now();
    }
    done.sort_by_key(|d| d.tag);
    done
}

fn one(ring: &mut IoRing) -> Done {
    complete(ring, 1).pop().expect("one completion")
}

fn filled(ring: &mut IoRing, bytes: &[u8]) -> BufferLease {
    let mut lease = ring.take_buffer().expect("free buffer");
    ring.buffer_mut(&mut lease).expect("own lease")[..bytes.len()].copy_from_slice(bytes);
    lease
}

fn read_back(ring: &mut IoRing, offset: u64, len: u32) -> Done {
    let lease = ring.take_buffer().expect("free buffer");
    ring.read(SLOT, offset, lease, len, 0).expect("queue read");
    one(ring)
}

#[test]
fn write_read_round_trips_at_several_offsets_and_sizes() {
    let dir = temp_dir();
    let (path, file) = image(&dir, "round-trip.img", &[]);
    let mut ring = new_ring(16, 4, 64 * 1024);
    ring.attach_file(SLOT, &file).expect("attach");
    let cases: [(u64, usize); 6] = [(0, 1), (1, 511), (4096, 4096), (12_345, 5000), (1 << 20, 65_536), (3 << 30, 512)];
    for (seed, &(offset, len)) in cases.iter().enumerate() {
        let bytes = pattern(len, seed as u8);
        let lease = filled(&mut ring, &bytes);
        ring.write(SLOT, offset, lease, len as u32, seed as u64).expect("queue write");
        let written = one(&mut ring);
        assert_eq!((written.tag, written.result), (seed as u64, Ok(len as u32)));
        let read = read_back(&mut ring, offset, len as u32);
        assert_eq!(read.result, Ok(len as u32));
        assert_eq!(read.data.as_deref(), Some(&bytes[..]), "offset {offset} len {len}");
        // An independent reader sees the same bytes.
        let mut on_disk = vec![0; len];
        File::open(&path).unwrap().read_exact_at(&mut on_disk, offset).unwrap();
        assert_eq!(on_disk, bytes);
    }
    assert_eq!(ring.free_buffers(), 4, "every completion gave its buffer back");
    assert_eq!(ring.ops_in_flight(), 0);
}

#[test]
fn many_ops_in_flight_complete_with_their_own_tags_and_data() {
    const OPS: u32 = 128;
    let dir = temp_dir();
    let contents = pattern(OPS as usize * 4096, 7);
    let (_, file) = image(&dir, "many.img", &contents);
    let mut ring = new_ring(OPS, OPS, 4096);
    ring.attach_file(SLOT, &file).expect("attach");
    // Reads in reverse block order, each tagged with its block number, in one submit.
    for block in (0..OPS).rev() {
        let lease = ring.take_buffer().expect("free buffer");
        ring.read(SLOT, u64::from(block) * 4096, lease, 4096, u64::from(block)).expect("queue read");
    }
    assert_eq!(ring.take_buffer(), None, "the pool is empty while all are in flight");
    assert_eq!(ring.ops_in_flight(), OPS as usize);
    assert_eq!(ring.submit(), Ok(OPS as usize));
    let done = complete(&mut ring, OPS as usize);
    for (block, d) in done.iter().enumerate() {
        assert_eq!((d.tag, d.result), (block as u64, Ok(4096)));
        assert_eq!(d.data.as_deref(), Some(&contents[block * 4096..][..4096]));
    }
    assert_eq!(ring.free_buffers(), OPS as usize);
}

#[test]
fn a_full_submission_queue_and_a_full_completion_budget_are_named_errors() {
    let dir = temp_dir();
    let (_, file) = image(&dir, "full.img", &pattern(4096, 1));
    let mut ring = new_ring(4, 2, 4096);
    ring.attach_file(SLOT, &file).expect("attach");
    for tag in 0..4 {
        ring.fsync(SLOT, false, tag).expect("room for four");
    }
    assert_eq!(ring.fsync(SLOT, false, 4), Err(IoRingError::SubmissionQueueFull));
    // A refused transfer hands its lease back, for the next turn.
    let lease = ring.take_buffer().expect("free buffer");
    let Refused { error, buffer } = ring.read(SLOT, 0, lease, 4096, 9).expect_err("full");
    assert_eq!(error, IoRingError::SubmissionQueueFull);
    assert_eq!(ring.submit(), Ok(4));
    // The CQ holds twice the depth: four more fit, then the ring refuses until it is polled.
    for tag in 4..8 {
        ring.fsync(SLOT, true, tag).expect("room in the completion budget");
    }
    assert_eq!(ring.fsync(SLOT, false, 8), Err(IoRingError::TooManyInFlight));
    let Refused { error, buffer } = ring.read(SLOT, 0, buffer, 4096, 9).expect_err("budget spent");
    assert_eq!(error, IoRingError::TooManyInFlight);
    let done = complete(&mut ring, 8);
    assert!(done.iter().enumerate().all(|(tag, d)| d.tag == tag as u64 && d.result == Ok(0)), "{done:?}");
    ring.read(SLOT, 0, buffer, 4096, 9).expect("room again");
    assert_eq!(one(&mut ring).result, Ok(4096));
    // A linked pair needs two entries: with one left it is refused whole.
    for tag in 0..3 {
        ring.fsync(SLOT, false, tag).expect("queue");
    }
    let lease = ring.take_buffer().expect("free buffer");
    let refused = ring.write_then_fsync(SLOT, 0, lease, 16, false, 3).expect_err("one entry left");
    assert_eq!(refused.error, IoRingError::SubmissionQueueFull);
    ring.release_buffer(refused.buffer).expect("own lease");
    assert_eq!(complete(&mut ring, 3).len(), 3);
}

#[test]
fn fsync_fdatasync_and_a_linked_write_then_fsync() {
    let dir = temp_dir();
    let (path, file) = image(&dir, "sync.img", &[]);
    let mut ring = new_ring(8, 2, 4096);
    ring.attach_file(SLOT, &file).expect("attach");
    ring.fsync(SLOT, false, 1).expect("fsync");
    ring.fsync(SLOT, true, 2).expect("fdatasync");
    let done = complete(&mut ring, 2);
    assert_eq!(done.iter().map(|d| (d.tag, d.result)).collect::<Vec<_>>(), [(1, Ok(0)), (2, Ok(0))]);
    assert!(done.iter().all(|d| d.data.is_none()), "no buffer with a sync");
    // A FUA write: one completion for the pair, with the bytes written.
    let bytes = pattern(3000, 5);
    let lease = filled(&mut ring, &bytes);
    ring.write_then_fsync(SLOT, 8192, lease, 3000, true, 3).expect("linked write");
    assert_eq!(ring.ops_in_flight(), 1);
    let fua = complete(&mut ring, 1);
    assert_eq!((fua[0].tag, fua[0].result), (3, Ok(3000)));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(ring.poll_completions(|_, _, _| {}), 0, "the fsync half is not reported on its own");
    assert_eq!(std::fs::read(&path).unwrap()[8192..], bytes[..]);
    assert_eq!(ring.free_buffers(), 2);
}

#[test]
fn punch_hole_reads_back_zeros_and_keeps_the_size() {
    let dir = temp_dir();
    let (path, file) = image(&dir, "trim.img", &[0xab; 65_536]);
    let mut ring = new_ring(8, 2, 65_536);
    ring.attach_file(SLOT, &file).expect("attach");
    ring.fallocate(SLOT, 4096, 8192, FallocateMode::PunchHole, 1).expect("punch");
    assert_eq!(one(&mut ring).result, Ok(0));
    let read = read_back(&mut ring, 0, 65_536);
    let data = read.data.expect("buffer");
    assert!(data[..4096].iter().all(|&b| b == 0xab));
    assert!(data[4096..12_288].iter().all(|&b| b == 0), "the hole reads as zeros");
    assert!(data[12_288..].iter().all(|&b| b == 0xab));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 65_536);
    // TRIM with FUA: the punch linked to an fdatasync, one completion for the pair.
    ring.fallocate_then_fsync(SLOT, 0, 4096, FallocateMode::PunchHole, true, 2).expect("punch + sync");
    assert_eq!(one(&mut ring).result, Ok(0));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(ring.poll_completions(|_, _, _| {}), 0, "the fsync half is not reported on its own");
    assert!(read_back(&mut ring, 0, 4096).data.expect("buffer").iter().all(|&b| b == 0));
}

#[test]
fn zero_range_zeroes_inside_and_extends_past_the_end() {
    let dir = temp_dir();
    let (path, file) = image(&dir, "zeroes.img", &[0xcd; 16_384]);
    let mut ring = new_ring(8, 2, 65_536);
    ring.attach_file(SLOT, &file).expect("attach");
    ring.fallocate(SLOT, 1000, 3000, FallocateMode::ZeroRange, 1).expect("zero inside");
    assert_eq!(one(&mut ring).result, Ok(0));
    let data = read_back(&mut ring, 0, 16_384).data.expect("buffer");
    assert!(data[..1000].iter().all(|&b| b == 0xcd));
    assert!(data[1000..4000].iter().all(|&b| b == 0));
    assert!(data[4000..].iter().all(|&b| b == 0xcd));
    ring.fallocate(SLOT, 16_384, 16_384, FallocateMode::ZeroRange, 2).expect("zero past the end");
    assert_eq!(one(&mut ring).result, Ok(0));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 32_768);
    assert!(read_back(&mut ring, 16_384, 16_384).data.expect("buffer").iter().all(|&b| b == 0));
}

#[test]
fn a_read_past_the_end_is_short_not_an_error() {
    let dir = temp_dir();
    let (_, file) = image(&dir, "short.img", &pattern(1000, 3));
    let mut ring = new_ring(8, 2, 4096);
    ring.attach_file(SLOT, &file).expect("attach");
    let straddling = read_back(&mut ring, 0, 4096);
    assert_eq!(straddling.result, Ok(1000));
    assert_eq!(straddling.data.as_deref(), Some(&pattern(1000, 3)[..]));
    assert_eq!(read_back(&mut ring, 5000, 4096).result, Ok(0), "wholly past the end: nothing read");
}

#[test]
fn kernel_errors_keep_their_errno() {
    let dir = temp_dir();
    let (path, _) = image(&dir, "readonly.img", &pattern(4096, 1));
    let read_only = File::open(&path).expect("open read-only");
    let mut ring = new_ring(8, 2, 4096);
    ring.attach_file(SLOT, &read_only).expect("attach");
    let lease = filled(&mut ring, b"nope");
    ring.write(SLOT, 0, lease, 4, 1).expect("queue write");
    let done = one(&mut ring);
    assert_eq!(done.result, Err(IoError::BadFile));
    assert_eq!(done.result.unwrap_err().errno(), libc::EBADF);
    assert!(done.data.is_some(), "a failed op still gives its buffer back");
    // The failed write ends the link: one completion for the pair, with the write's error.
    let lease = filled(&mut ring, b"fua");
    ring.write_then_fsync(SLOT, 0, lease, 3, false, 2).expect("queue linked write");
    assert_eq!(one(&mut ring).result, Err(IoError::BadFile));
    ring.fallocate(SLOT, 0, 4096, FallocateMode::PunchHole, 3).expect("queue punch");
    assert_eq!(one(&mut ring).result, Err(IoError::BadFile));
    ring.fallocate_then_fsync(SLOT, 0, 4096, FallocateMode::ZeroRange, true, 4).expect("queue linked zeroing");
    assert_eq!(one(&mut ring).result, Err(IoError::BadFile), "the failed fallocate ends the link");
    assert_eq!(ring.free_buffers(), 2);
    assert_eq!(std::fs::read(&path).unwrap(), pattern(4096, 1), "the file is untouched");
    assert_eq!(IoError::from_errno(libc::EAGAIN), IoError::Other(libc::EAGAIN));
    assert_eq!(IoError::Other(libc::EAGAIN).errno(), libc::EAGAIN);
}

#[test]
fn a_slot_can_be_replaced_and_emptied_at_run_time() {
    let dir = temp_dir();
    let (_, first) = image(&dir, "first.img", &[1; 512]);
    let (_, second) = image(&dir, "second.img", &[2; 512]);
    let mut ring = new_ring(8, 2, 4096);
    assert_eq!(ring.free_slot(), Some(FileSlot(0)));
    ring.attach_file(SLOT, &first).expect("attach");
    assert_eq!(ring.free_slot(), Some(FileSlot(1)));
    assert_eq!(read_back(&mut ring, 0, 512).data, Some(vec![1; 512]));
    // Replace while a read of the first file is in flight: that read keeps its file.
    let lease = ring.take_buffer().expect("free buffer");
    ring.read(SLOT, 0, lease, 512, 7).expect("queue read");
    ring.submit().expect("submit");
    ring.attach_file(SLOT, &second).expect("replace");
    drop(first); // the ring's registration holds its own reference
    assert_eq!(one(&mut ring).data, Some(vec![1; 512]));
    assert_eq!(read_back(&mut ring, 0, 512).data, Some(vec![2; 512]));
    ring.detach_file(SLOT).expect("detach");
    assert_eq!(ring.fsync(SLOT, false, 1), Err(IoRingError::EmptySlot(0)));
    assert_eq!(ring.detach_file(SLOT), Err(IoRingError::EmptySlot(0)));
    assert_eq!(ring.free_slot(), Some(FileSlot(0)));
}

#[test]
fn bad_input_gets_named_errors() {
    let dir = temp_dir();
    let (_, file) = image(&dir, "bad.img", &pattern(4096, 1));
    let mut ring = new_ring(8, 2, 4096);
    let mut other = new_ring(8, 2, 4096);
    ring.attach_file(SLOT, &file).expect("attach");
    let out_of_range = IoRingError::SlotOutOfRange { slot: 4, slots: 4 };
    assert_eq!(ring.attach_file(FileSlot(4), &file), Err(out_of_range));
    assert_eq!(ring.detach_file(FileSlot(4)), Err(out_of_range));
    assert_eq!(ring.fsync(FileSlot(4), false, 0), Err(out_of_range));
    assert_eq!(ring.fsync(FileSlot(1), false, 0), Err(IoRingError::EmptySlot(1)));
    assert_eq!(ring.fallocate(SLOT, 1 << 63, 1, FallocateMode::ZeroRange, 0), Err(IoRingError::OffsetTooLarge(1 << 63)));

    let lease = ring.take_buffer().expect("free buffer");
    let refused = ring.read(SLOT, 0, lease, 4097, 0).expect_err("longer than the buffer");
    assert_eq!(refused.error, IoRingError::LengthExceedsBuffer { len: 4097, capacity: 4096 });
    let refused = ring.write(SLOT, u64::MAX, refused.buffer, 1, 0).expect_err("offset past loff_t");
    assert_eq!(refused.error, IoRingError::OffsetTooLarge(u64::MAX));
    let refused = ring.read(FileSlot(2), 0, refused.buffer, 1, 0).expect_err("empty slot");
    assert_eq!(refused.error, IoRingError::EmptySlot(2));

    // A lease of another ring reaches none of this ring's buffers.
    let mut foreign = other.take_buffer().expect("free buffer");
    assert_eq!(ring.buffer(&foreign).err(), Some(IoRingError::ForeignBuffer));
    assert_eq!(ring.buffer_mut(&mut foreign).err(), Some(IoRingError::ForeignBuffer));
    let refused = ring.read(SLOT, 0, foreign, 16, 0).expect_err("foreign lease");
    assert_eq!(refused.error, IoRingError::ForeignBuffer);
    let refused = ring.release_buffer(refused.buffer).expect_err("foreign release");
    assert_eq!(refused.error, IoRingError::ForeignBuffer);
    other.release_buffer(refused.buffer).expect("home again");
    assert_eq!(ring.ops_in_flight(), 0, "nothing refused was queued");

    let config = IoRingConfig { queue_depth: 8, buffers: 2, buffer_size: 4096, file_slots: 2 };
    let bad = |change: fn(&mut IoRingConfig)| {
        let mut c = config;
        change(&mut c);
        IoRing::new(c).expect_err("bad config")
    };
    assert_eq!(bad(|c| c.queue_depth = 0), IoRingError::QueueDepthOutOfRange(0));
    assert_eq!(bad(|c| c.queue_depth = 65_536), IoRingError::QueueDepthOutOfRange(65_536));
    assert_eq!(bad(|c| c.buffers = 0), IoRingError::BufferCountOutOfRange(0));
    assert_eq!(bad(|c| c.buffers = 20_000), IoRingError::BufferCountOutOfRange(20_000));
    assert_eq!(bad(|c| c.buffer_size = 0), IoRingError::BadBufferSize(0));
    assert_eq!(bad(|c| c.buffer_size = 1000), IoRingError::BadBufferSize(1000));
    assert_eq!(bad(|c| c.buffer_size = 2 << 30), IoRingError::BadBufferSize(2 << 30));
    assert_eq!(bad(|c| c.file_slots = 0), IoRingError::FileSlotCountOutOfRange(0));
}

#[test]
fn leases_come_back_through_completions_or_release() {
    let dir = temp_dir();
    let (_, file) = image(&dir, "leases.img", &pattern(8192, 2));
    let mut ring = new_ring(8, 2, 4096);
    ring.attach_file(SLOT, &file).expect("attach");
    let first = ring.take_buffer().expect("first");
    let second = ring.take_buffer().expect("second");
    assert_ne!(first.id(), second.id());
    assert_eq!(ring.take_buffer(), None);
    ring.release_buffer(second).expect("release");
    assert_eq!(ring.free_buffers(), 1);
    // A completion callback may keep the buffer as a lease, to reuse it at once.
    ring.read(SLOT, 0, first, 4096, 1).expect("queue read");
    let mut kept = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while kept.is_none() && Instant::now() < deadline {
        ring.submit().expect("submit");
        ring.poll_completions(|_, result, buffer| {
            assert_eq!(result, Ok(4096));
            kept = buffer.map(|b| b.keep());
        });
    }
    let kept = kept.expect("completion");
    assert_eq!(ring.free_buffers(), 1, "a kept buffer does not go back to the pool");
    assert_eq!(ring.buffer(&kept).expect("own lease"), &pattern(8192, 2)[..4096]);
    ring.write(SLOT, 4096, kept, 4096, 2).expect("reuse");
    assert_eq!(one(&mut ring).result, Ok(4096));
    assert_eq!(ring.free_buffers(), 2);
}

#[test]
fn dropping_a_ring_with_ops_in_flight_waits_for_them() {
    let dir = temp_dir();
    let contents = pattern(128 * 4096, 9);
    let (path, file) = image(&dir, "drop.img", &contents);
    for round in 0..4 {
        let mut ring = new_ring(128, 128, 4096);
        ring.attach_file(SLOT, &file).expect("attach");
        for block in 0..128u64 {
            if block % 2 == 0 {
                let lease = ring.take_buffer().expect("free buffer");
                ring.read(SLOT, block * 4096, lease, 4096, block).expect("queue read");
            } else {
                let lease = filled(&mut ring, &contents[block as usize * 4096..][..4096]);
                ring.write(SLOT, block * 4096, lease, 4096, block).expect("queue write");
            }
        }
        // Half the rounds submit, half leave the ops queued: drop handles both.
        if round % 2 == 0 {
            ring.submit().expect("submit");
        }
        drop(ring);
    }
    assert_eq!(std::fs::read(&path).unwrap(), contents);

    // An op that would never finish (a read on a silent socket) is cancelled, not waited out.
    let (quiet, _peer) = UnixStream::pair().expect("socket pair");
    let mut ring = new_ring(8, 2, 4096);
    ring.attach_file(SLOT, &quiet).expect("attach");
    let lease = ring.take_buffer().expect("free buffer");
    ring.read(SLOT, 0, lease, 16, 1).expect("queue read");
    ring.submit().expect("submit");
    let started = Instant::now();
    drop(ring);
    assert!(started.elapsed() < Duration::from_secs(2), "drop took {:?}", started.elapsed());
}
