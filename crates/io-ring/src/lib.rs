//! io_uring for the block-I/O stage: requests are executed through io_uring polled
//! from the run loop, with no blocking call on a worker. One `IoRing` per worker, built once;
//! after that nothing per op allocates, locks, logs or blocks:
//! - an op (`read`, `write`, `write_then_fsync`, `fsync`, `fallocate`) only fills SQEs; a
//!   full queue is a named error and the caller keeps the request for its next turn;
//! - `submit` is at most one io_uring_enter, never waiting (once per burst);
//! - `poll_completions` reads the completion queue from shared memory, without a syscall.
//!
//! Soundness: the kernel writes into a buffer while its op is in flight. The op owns the
//! buffer's lease meanwhile, so no Rust code can reach those bytes, and the pool memory
//! outlives every op: dropping the ring cancels what is in flight and waits for the last
//! completion (at most `DROP_WAIT`); past that bound it leaks the pool rather than free
//! memory the kernel may still write.
//!
//! Submit and poll from the thread that owns the ring (the worker): completions that need
//! task work run on the submitting thread (IORING_SETUP_COOP_TASKRUN).
#![allow(unsafe_code)]

mod buffer_pool;
mod errors;

pub use buffer_pool::{BufferId, BufferLease, ReturnedBuffer};
pub use errors::{IoError, IoRingError, Refused};

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fixed, FsyncFlags, SubmitArgs, Timespec};
use io_uring::{opcode, squeue, IoUring};

use buffer_pool::BufferPool;

/// Sizes of a worker's ring, fixed at construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoRingConfig {
    /// Submission queue entries (the kernel rounds up to a power of two). The completion
    /// queue gets twice as many, and that bounds the ops in flight.
    pub queue_depth: u32,
    pub buffers: u32,
    /// Bytes per buffer: a multiple of 4096, at most 1 GiB.
    pub buffer_size: usize,
    /// Fixed-file slots, all empty at start.
    pub file_slots: u32,
}

impl Default for IoRingConfig {
    fn default() -> Self {
        IoRingConfig { queue_depth: 256, buffers: 256, buffer_size: 64 * 1024, file_slots: 64 }
    }
}

/// A fixed-file slot of the ring: ops name their image file by slot, not by fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileSlot(pub u32);

/// The `fallocate(2)` modes the block stage needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallocateMode {
    /// Deallocate the range: reads return zeros, the file size stays (TRIM).
    PunchHole,
    /// Zero the range, allocated; past the end it extends the file as a write of zeros
    /// would (WRITE_ZEROES).
    ZeroRange,
}

impl FallocateMode {
    fn flags(self) -> i32 {
        match self {
            // The kernel refuses PUNCH_HOLE without KEEP_SIZE (fallocate(2)).
            FallocateMode::PunchHole => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            FallocateMode::ZeroRange => libc::FALLOC_FL_ZERO_RANGE,
        }
    }
}

/// IORING_MAX_ENTRIES.
const MAX_QUEUE_DEPTH: u32 = 32768;
/// IORING_MAX_FIXED_FILES.
const MAX_FILE_SLOTS: u32 = 1 << 20;
/// user_data bit of the fsync half of a linked write+fsync; the low 32 bits are the
/// pending-table index.
const SYNC_HALF: u64 = 1 << 32;
/// user_data of the cancel request a drop queues; no pending entry has it.
const CANCEL_ALL: u64 = u64::MAX;
/// How long a drop waits for ops in flight before it leaks the buffer pool.
const DROP_WAIT: Duration = Duration::from_secs(10);

static NEXT_RING_ID: AtomicU64 = AtomicU64::new(1);

/// An op the kernel has not finished: the caller's tag, the buffer it holds, and the
/// results of its halves (a linked write+fsync has two CQEs under one entry).
#[derive(Debug, Clone, Copy)]
struct Pending {
    tag: u64,
    buffer: Option<u16>,
    len: u32,
    linked: bool,
    cqes_left: u8,
    /// The op's result (the write's, for a linked pair).
    result: i32,
    /// The fsync's result, for a linked pair.
    sync_result: i32,
}

impl Pending {
    const NONE: Pending =
        Pending { tag: 0, buffer: None, len: 0, linked: false, cqes_left: 0, result: 0, sync_result: 0 };

    fn new(tag: u64, buffer: Option<u16>, len: u32, linked: bool) -> Pending {
        Pending { tag, buffer, len, linked, ..Pending::NONE }
    }

    /// Bytes done or the errno. A short write ends the link (the fsync gets ECANCELED) and
    /// is reported as short, like any short transfer: the caller decides.
    fn outcome(&self) -> Result<u32, IoError> {
        let done = u32::try_from(self.result).map_err(|_| IoError::from_errno(-self.result))?;
        if self.linked && done == self.len && self.sync_result < 0 {
            return Err(IoError::from_errno(-self.sync_result));
        }
        Ok(done)
    }
}

#[derive(Debug, Clone, Copy)]
enum Transfer {
    Read,
    Write,
    WriteThenSync { datasync: bool },
}

/// A worker's io_uring with its registered buffer pool and file slots.
pub struct IoRing {
    ring: IoUring,
    id: u64,
    /// Indexed by the low 32 bits of user_data; as many entries as the CQ holds.
    pending: Vec<Pending>,
    free_pending: Vec<u32>,
    /// Which file slots hold a file.
    files: Vec<bool>,
    /// CQEs the kernel still owes: one per queued or submitted SQE.
    cqes_owed: u32,
    /// The CQ size: never more CQEs owed than it holds, so it cannot overflow.
    cqe_limit: u32,
    /// Declared after `ring`: dropped after the ring's fd is closed.
    pool: BufferPool,
}

impl IoRing {
    pub fn new(config: IoRingConfig) -> Result<IoRing, IoRingError> {
        if config.queue_depth == 0 || config.queue_depth > MAX_QUEUE_DEPTH {
            return Err(IoRingError::QueueDepthOutOfRange(config.queue_depth));
        }
        if config.file_slots == 0 || config.file_slots > MAX_FILE_SLOTS {
            return Err(IoRingError::FileSlotCountOutOfRange(config.file_slots));
        }
        let id = NEXT_RING_ID.fetch_add(1, Ordering::Relaxed);
        let pool = BufferPool::new(id, config.buffers, config.buffer_size)?;
        let ring = build_ring(config.queue_depth).map_err(|e| IoRingError::Setup(IoError::from_io(&e)))?;
        let submitter = ring.submitter();
        // SAFETY: the iovecs describe the pool's buffers, which stay allocated as long as the
        // kernel may use them: the pool is dropped after the ring (field order), only once no
        // op is in flight, or never (leaked, see Drop).
        unsafe { submitter.register_buffers(&pool.iovecs()) }
            .map_err(|e| IoRingError::RegisterBuffers(IoError::from_io(&e)))?;
        submitter.register_files_sparse(config.file_slots).map_err(|e| IoRingError::RegisterFiles(IoError::from_io(&e)))?;
        let cqe_limit = ring.params().cq_entries();
        Ok(IoRing {
            pending: vec![Pending::NONE; cqe_limit as usize],
            free_pending: (0..cqe_limit).rev().collect(),
            files: vec![false; config.file_slots as usize],
            cqes_owed: 0,
            cqe_limit,
            ring,
            id,
            pool,
        })
    }

    // ---- files ----

    /// Puts `file` in `slot`, replacing what was there. The kernel keeps its own reference,
    /// so the caller may close its handle. Ops submitted before keep the file they had;
    /// ops submitted after use this one. One syscall: for attach time, not per op.
    pub fn attach_file(&mut self, slot: FileSlot, file: &impl AsFd) -> Result<(), IoRingError> {
        let index = self.slot_index(slot)?;
        self.update_slot(slot, file.as_fd().as_raw_fd())?;
        self.files[index] = true;
        Ok(())
    }

    /// Empties `slot`. Ops already submitted on it finish normally; later ones are refused.
    pub fn detach_file(&mut self, slot: FileSlot) -> Result<(), IoRingError> {
        let index = self.slot_index(slot)?;
        if !self.files[index] {
            return Err(IoRingError::EmptySlot(slot.0));
        }
        self.update_slot(slot, -1)?;
        self.files[index] = false;
        Ok(())
    }

    /// The lowest empty slot, if any.
    pub fn free_slot(&self) -> Option<FileSlot> {
        self.files.iter().position(|used| !used).map(|index| FileSlot(index as u32))
    }

    pub fn file_slots(&self) -> u32 {
        self.files.len() as u32
    }

    fn slot_index(&self, slot: FileSlot) -> Result<usize, IoRingError> {
        let index = slot.0 as usize;
        if index < self.files.len() {
            Ok(index)
        } else {
            Err(IoRingError::SlotOutOfRange { slot: slot.0, slots: self.file_slots() })
        }
    }

    fn occupied_slot(&self, slot: FileSlot) -> Result<Fixed, IoRingError> {
        if self.files[self.slot_index(slot)?] {
            Ok(Fixed(slot.0))
        } else {
            Err(IoRingError::EmptySlot(slot.0))
        }
    }

    fn update_slot(&self, slot: FileSlot, fd: RawFd) -> Result<(), IoRingError> {
        self.ring.submitter().register_files_update(slot.0, &[fd]).map_err(|e| IoRingError::RegisterFiles(IoError::from_io(&e)))?;
        Ok(())
    }

    // ---- buffers ----

    /// A free buffer of the pool, or `None` when every buffer is leased or in flight.
    pub fn take_buffer(&mut self) -> Option<BufferLease> {
        self.pool.take()
    }

    pub fn release_buffer(&mut self, lease: BufferLease) -> Result<(), Refused> {
        match self.pool.check(&lease) {
            Ok(()) => {
                self.pool.put_back(lease.index());
                Ok(())
            }
            Err(error) => Err(Refused { error, buffer: lease }),
        }
    }

    /// The whole buffer (`buffer_size` bytes) of a lease of this ring.
    pub fn buffer(&self, lease: &BufferLease) -> Result<&[u8], IoRingError> {
        self.pool.lease_bytes(lease)
    }

    pub fn buffer_mut<'a>(&'a self, lease: &'a mut BufferLease) -> Result<&'a mut [u8], IoRingError> {
        self.pool.lease_bytes_mut(lease)
    }

    pub fn buffer_size(&self) -> usize {
        self.pool.buffer_size()
    }

    pub fn free_buffers(&self) -> usize {
        self.pool.free_count()
    }

    // ---- ops ----

    /// Reads `len` bytes at `offset` into the leased buffer; the completion gives the lease back.
    pub fn read(&mut self, slot: FileSlot, offset: u64, buffer: BufferLease, len: u32, tag: u64) -> Result<(), Refused> {
        self.transfer(Transfer::Read, slot, offset, buffer, len, tag)
    }

    /// Writes the first `len` bytes of the leased buffer at `offset`.
    pub fn write(&mut self, slot: FileSlot, offset: u64, buffer: BufferLease, len: u32, tag: u64) -> Result<(), Refused> {
        self.transfer(Transfer::Write, slot, offset, buffer, len, tag)
    }

    /// A write linked (IOSQE_IO_LINK) to an fsync of the file, for FUA writes: one
    /// completion, with the bytes written once both succeeded, else the first error.
    pub fn write_then_fsync(
        &mut self,
        slot: FileSlot,
        offset: u64,
        buffer: BufferLease,
        len: u32,
        datasync: bool,
        tag: u64,
    ) -> Result<(), Refused> {
        self.transfer(Transfer::WriteThenSync { datasync }, slot, offset, buffer, len, tag)
    }

    /// `fsync` (or `fdatasync` with `datasync`) of the whole file.
    pub fn fsync(&mut self, slot: FileSlot, datasync: bool, tag: u64) -> Result<(), IoRingError> {
        let file = self.occupied_slot(slot)?;
        let mut entries = [sync_entry(file, datasync)];
        self.enqueue(&mut entries, Pending::new(tag, None, 0, false))
    }

    /// `fallocate` of `len` bytes at `offset`: punch a hole (TRIM) or zero a range (WRITE_ZEROES).
    pub fn fallocate(&mut self, slot: FileSlot, offset: u64, len: u64, mode: FallocateMode, tag: u64) -> Result<(), IoRingError> {
        let file = self.occupied_slot(slot)?;
        check_offset(offset)?;
        let mut entries = [opcode::Fallocate::new(file, len).offset(offset).mode(mode.flags()).build()];
        self.enqueue(&mut entries, Pending::new(tag, None, 0, false))
    }

    /// A `fallocate` linked to an fsync of the file, for TRIM and WRITE_ZEROES with FUA: one
    /// completion once both succeeded (0 bytes), else the first error.
    pub fn fallocate_then_fsync(
        &mut self,
        slot: FileSlot,
        offset: u64,
        len: u64,
        mode: FallocateMode,
        datasync: bool,
        tag: u64,
    ) -> Result<(), IoRingError> {
        let file = self.occupied_slot(slot)?;
        check_offset(offset)?;
        let fallocate = opcode::Fallocate::new(file, len).offset(offset).mode(mode.flags()).build();
        let mut entries = [fallocate.flags(squeue::Flags::IO_LINK), sync_entry(file, datasync)];
        self.enqueue(&mut entries, Pending::new(tag, None, 0, true))
    }

    fn transfer(
        &mut self,
        kind: Transfer,
        slot: FileSlot,
        offset: u64,
        buffer: BufferLease,
        len: u32,
        tag: u64,
    ) -> Result<(), Refused> {
        match self.queue_transfer(kind, slot, offset, &buffer, len, tag) {
            // The op owns the buffer now (its id is in the pending table); the token goes.
            Ok(()) => Ok(()),
            Err(error) => Err(Refused { error, buffer }),
        }
    }

    fn queue_transfer(
        &mut self,
        kind: Transfer,
        slot: FileSlot,
        offset: u64,
        buffer: &BufferLease,
        len: u32,
        tag: u64,
    ) -> Result<(), IoRingError> {
        self.pool.check(buffer)?;
        let file = self.occupied_slot(slot)?;
        check_offset(offset)?;
        if len as usize > self.pool.buffer_size() {
            return Err(IoRingError::LengthExceedsBuffer { len, capacity: self.pool.buffer_size() });
        }
        let id = buffer.index();
        let start = self.pool.start(id);
        let pending = Pending::new(tag, Some(id), len, matches!(kind, Transfer::WriteThenSync { .. }));
        match kind {
            Transfer::Read => {
                let mut entries = [opcode::ReadFixed::new(file, start, len, id).offset(offset).build()];
                self.enqueue(&mut entries, pending)
            }
            Transfer::Write => {
                let mut entries = [opcode::WriteFixed::new(file, start, len, id).offset(offset).build()];
                self.enqueue(&mut entries, pending)
            }
            Transfer::WriteThenSync { datasync } => {
                let write = opcode::WriteFixed::new(file, start, len, id).offset(offset).build();
                let mut entries = [write.flags(squeue::Flags::IO_LINK), sync_entry(file, datasync)];
                self.enqueue(&mut entries, pending)
            }
        }
    }

    /// Puts the SQEs of one op in the submission queue, all or none, and records the op.
    /// The entries may refer only to a fixed-file slot and to the memory of
    /// `pending.buffer`, whose lease the op has taken.
    fn enqueue(&mut self, entries: &mut [squeue::Entry], mut pending: Pending) -> Result<(), IoRingError> {
        let cqes = entries.len() as u32;
        if self.cqes_owed + cqes > self.cqe_limit {
            return Err(IoRingError::TooManyInFlight);
        }
        let Some(&index) = self.free_pending.last() else {
            return Err(IoRingError::TooManyInFlight);
        };
        for (half, entry) in entries.iter_mut().enumerate() {
            entry.set_user_data(u64::from(index) | if half == 0 { 0 } else { SYNC_HALF });
        }
        // SAFETY: the entries name a fixed-file slot (checked by the kernel) and at most one
        // registered buffer, whose lease the op has taken: nothing in Rust reaches those bytes
        // until the completion hands them back, and the pool memory lives until every CQE
        // owed is reaped (Drop waits for them, or leaks the pool).
        unsafe { self.ring.submission().push_multiple(entries) }.map_err(|_| IoRingError::SubmissionQueueFull)?;
        self.free_pending.pop();
        pending.cqes_left = cqes as u8;
        self.pending[index as usize] = pending;
        self.cqes_owed += cqes;
        Ok(())
    }

    /// Ops queued or in flight whose completion has not been reported yet.
    pub fn ops_in_flight(&self) -> usize {
        self.pending.len() - self.free_pending.len()
    }

    // ---- submission and completion ----

    /// Hands the queued ops to the kernel: at most one io_uring_enter, never waiting, none
    /// when there is nothing to submit and no completion work pending. Call it once per loop
    /// turn even with nothing queued: it also runs completions the kernel deferred to this
    /// thread (IORING_SQ_TASKRUN), which `poll_completions` alone would not see. Returns the
    /// SQEs submitted. On `SubmitBusy` the ops stay queued for the next call.
    pub fn submit(&mut self) -> Result<usize, IoRingError> {
        let (queued, kernel_work) = {
            let submission = self.ring.submission();
            (submission.len(), submission.taskrun() || submission.cq_overflow())
        };
        if queued == 0 && !kernel_work {
            return Ok(0);
        }
        // With IORING_SQ_TASKRUN set this enter carries GETEVENTS, which runs the deferred
        // completions without waiting for any.
        self.ring.submitter().submit().map_err(|e| match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EBUSY | libc::EINTR) => IoRingError::SubmitBusy,
            _ => IoRingError::Submit(IoError::from_io(&e)),
        })
    }

    /// Reports every finished op in the completion queue, without a syscall or waiting:
    /// `on_completion(tag, bytes done or error, the op's buffer)`. A returned buffer goes
    /// back to the pool when the callback drops it, unless the callback `keep`s it.
    /// Returns the number of ops reported.
    pub fn poll_completions<F>(&mut self, mut on_completion: F) -> usize
    where
        F: FnMut(u64, Result<u32, IoError>, Option<ReturnedBuffer<'_>>),
    {
        let IoRing { ring, pending, free_pending, cqes_owed, pool, .. } = self;
        let mut reported = 0;
        for cqe in ring.completion() {
            let user_data = cqe.user_data();
            if user_data == CANCEL_ALL {
                continue;
            }
            *cqes_owed = cqes_owed.saturating_sub(1);
            let index = user_data as u32;
            let Some(op) = pending.get_mut(index as usize).filter(|op| op.cqes_left > 0) else {
                continue; // not ours: every CQE we are owed names a live entry
            };
            if user_data & SYNC_HALF == 0 {
                op.result = cqe.result();
            } else {
                op.sync_result = cqe.result();
            }
            op.cqes_left -= 1;
            if op.cqes_left > 0 {
                continue;
            }
            let done = *op;
            free_pending.push(index);
            reported += 1;
            on_completion(done.tag, done.outcome(), done.buffer.map(|id| ReturnedBuffer::new(pool, id)));
        }
        reported
    }

    // ---- teardown ----

    /// Submits what is still queued, then asks the kernel to cancel every op it has not
    /// finished (IORING_ASYNC_CANCEL_ANY): a read that could wait forever (a socket, a pipe)
    /// ends with ECANCELED; file I/O already running just completes.
    fn cancel_in_flight(&mut self) {
        let _ = self.submit();
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(CANCEL_ALL);
        // SAFETY: a cancel request refers to no memory of ours.
        if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
            let _ = self.ring.submitter().submit();
        }
    }

    /// Reaps completions until the kernel owes none (true), or `limit` passes (false).
    fn wait_for_in_flight(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            for cqe in self.ring.completion() {
                if cqe.user_data() != CANCEL_ALL {
                    self.cqes_owed = self.cqes_owed.saturating_sub(1);
                }
            }
            if self.cqes_owed == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let timeout = Timespec::new().nsec((deadline - now).min(Duration::from_millis(10)).subsec_nanos());
            let args = SubmitArgs::new().timespec(&timeout);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// Waits for the ops in flight (cancelling what can be cancelled) so the buffer pool is
/// freed only when the kernel is done with it. If they are not all done within `DROP_WAIT`
/// the pool is leaked on purpose: a lost allocation, never a kernel write into freed memory.
impl Drop for IoRing {
    fn drop(&mut self) {
        if self.cqes_owed == 0 {
            return;
        }
        self.cancel_in_flight();
        if !self.wait_for_in_flight(DROP_WAIT) {
            self.pool.leak();
            log::warn!(
                "io_uring ring {}: {} completions still owed after {:?}; its buffer pool is leaked, not freed",
                self.id,
                self.cqes_owed,
                DROP_WAIT
            );
        }
    }
}

impl std::fmt::Debug for IoRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoRing")
            .field("id", &self.id)
            .field("ops_in_flight", &self.ops_in_flight())
            .field("free_buffers", &self.free_buffers())
            .field("file_slots", &self.files.len())
            .finish()
    }
}

/// COOP_TASKRUN + TASKRUN_FLAG: completions that need task work do not interrupt the polling
/// worker with an IPI; the kernel raises IORING_SQ_TASKRUN and `submit` enters to run them.
/// SUBMIT_ALL: an SQE that fails at submission does not stop the rest of the batch
/// (io_uring_setup(2)). Kernels without these flags (before 5.19) get a plain ring.
fn build_ring(queue_depth: u32) -> std::io::Result<IoUring> {
    let cq_entries = queue_depth * 2;
    let tuned = IoUring::builder()
        .dontfork()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all()
        .setup_cqsize(cq_entries)
        .build(queue_depth);
    match tuned {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder().dontfork().setup_cqsize(cq_entries).build(queue_depth),
        other => other,
    }
}

fn sync_entry(file: Fixed, datasync: bool) -> squeue::Entry {
    let flags = if datasync { FsyncFlags::DATASYNC } else { FsyncFlags::empty() };
    opcode::Fsync::new(file).flags(flags).build()
}

/// File offsets are `loff_t`: the kernel would answer EINVAL past i64::MAX.
fn check_offset(offset: u64) -> Result<(), IoRingError> {
    if offset > i64::MAX as u64 {
        Err(IoRingError::OffsetTooLarge(offset))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn small_ring() -> IoRing {
        IoRing::new(IoRingConfig { queue_depth: 8, buffers: 4, buffer_size: 4096, file_slots: 2 }).expect("ring")
    }

    /// An op that never finishes by itself (a read on a silent socket) makes the bounded wait
    /// give up, which is the case where Drop leaks the pool; the drop's cancel then ends it.
    #[test]
    fn wait_gives_up_on_an_op_that_never_finishes() {
        let (quiet, _peer) = UnixStream::pair().expect("socket pair");
        let mut ring = small_ring();
        ring.attach_file(FileSlot(0), &quiet).expect("attach");
        let lease = ring.take_buffer().expect("buffer");
        ring.read(FileSlot(0), 0, lease, 16, 1).expect("queue");
        ring.submit().expect("submit");
        assert!(!ring.wait_for_in_flight(Duration::from_millis(50)));
        assert_eq!(ring.cqes_owed, 1);
        ring.cancel_in_flight();
        assert!(ring.wait_for_in_flight(Duration::from_secs(5)));
        assert_eq!(ring.cqes_owed, 0);
    }

    /// What Drop does with 128 reads in flight: cancel what it can, reap every CQE owed,
    /// so the pool is freed, not leaked.
    #[test]
    fn teardown_reaps_every_completion_owed() {
        let file = tempfile::tempfile().expect("temp file");
        file.set_len(128 * 4096).expect("size");
        let mut ring = IoRing::new(IoRingConfig { queue_depth: 128, buffers: 128, buffer_size: 4096, file_slots: 1 })
            .expect("ring");
        ring.attach_file(FileSlot(0), &file).expect("attach");
        for block in 0..128u64 {
            let lease = ring.take_buffer().expect("buffer");
            ring.read(FileSlot(0), block * 4096, lease, 4096, block).expect("queue");
        }
        ring.cancel_in_flight();
        assert!(ring.wait_for_in_flight(Duration::from_secs(5)));
        assert_eq!(ring.cqes_owed, 0);
        assert!(!ring.pool.leaked());
    }

    #[test]
    fn linked_outcome_reports_short_write_and_sync_error() {
        let mut pair = Pending::new(7, Some(0), 4096, true);
        pair.result = 4096;
        assert_eq!(pair.outcome(), Ok(4096));
        pair.sync_result = -libc::EIO;
        assert_eq!(pair.outcome(), Err(IoError::Io));
        pair.result = 100;
        pair.sync_result = -libc::ECANCELED;
        assert_eq!(pair.outcome(), Ok(100));
        pair.result = -libc::ENOSPC;
        assert_eq!(pair.outcome(), Err(IoError::NoSpace));
    }
}
