//! The storage client as a state machine without I/O (docs/vbd.md): callers' requests go through the
//! scheduler, out as datagrams, and back as completions; replies are checked, READ replies reassembled;
//! unanswered requests are retransmitted and, after 30 s, fenced; ESTALE sends a request again above the
//! server's highest id; attached images get an INFO when idle for 5 s. The driver (`storage_client`) feeds it
//! datagrams, submissions and the time, sends what `poll_transmit` gives and sleeps until `poll_timeout`;
//! tests drive it on simulated time.
//!
//! Fence (docs/storage-protocol.md "Giving up"): while one is out, nothing else is sent or retransmitted.
//! Its reply fails every request still unanswered. If it stays unanswered for the give-up time too, those
//! requests fail anyway and new ones fail at once (the server is unreachable; the guest gets EIO instead of a
//! hang), while the fence goes on being retransmitted: nothing new is sent before it is answered, so no failed
//! request can land after a later one.

use std::collections::VecDeque;
use std::time::Duration;

use rustc_hash::FxHashMap;

use switchyard_block_proto::{Insert, Reassembly, RequestIds};
use switchyard_wire::block::{BlockRepr, ImageInfo, Op, Status};

use super::io_scheduler::{Limits, Scheduler, Submitted};
use super::retransmit::{Retransmission, Timing};
use super::storage_codec::{matches, DropReason, Sender};
use super::storage_counters::Counters;
use super::storage_error::{StorageError, MAX_STALE_REPLIES};
use super::storage_request::IoRequest;

/// What a request gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoOutput {
    /// A WRITE, FLUSH, TRIM or WRITE_ZEROES done.
    Done,
    /// A READ's data, `length` bytes.
    Data(Vec<u8>),
    Info(ImageInfo),
}

pub type IoResult = Result<IoOutput, StorageError>;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub sender: Sender,
    pub limits: Limits,
    pub timing: Timing,
}

/// Who waits for a request: a caller, or nobody (the engine's own keepalive for an image).
enum Waiter<W> {
    Caller(W),
    Keepalive(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FenceCause {
    /// A request went unanswered for the give-up time: the unanswered ones fail with `TimedOut`.
    GaveUp,
    /// The client stops: they fail with `ShuttingDown`.
    Stopping,
}

struct Fence {
    id: u64,
    /// An INFO: any image id does (the window is the user's), so the image of the request given up on.
    request: IoRequest,
    retransmission: Retransmission,
    started: Duration,
    cause: FenceCause,
}

struct Attached {
    image_id: u32,
    last_sent: Duration,
    /// Its keepalive is queued or in flight: one at a time, so the engine's own requests stay few.
    keepalive_pending: bool,
}

pub struct Engine<W> {
    sender: Sender,
    timing: Timing,
    scheduler: Scheduler<Waiter<W>>,
    /// In-flight request id -> its retransmission schedule.
    retransmissions: FxHashMap<u64, Retransmission>,
    /// READ replies by request id.
    reassembly: Reassembly<u64>,
    fence: Option<Fence>,
    /// The fence has been unanswered for the give-up time.
    unreachable: bool,
    stopping: bool,
    attached: Vec<Attached>,
    /// Ids whose datagrams are to be sent, all of them; `sending` is the one in progress and its next index.
    outbox: VecDeque<u64>,
    sending: Option<(u64, u32)>,
    completions: VecDeque<(W, IoResult)>,
    counters: Counters,
}

fn millis(time: Duration) -> u64 {
    u64::try_from(time.as_millis()).unwrap_or(u64::MAX)
}

impl<W> Engine<W> {
    pub fn new(config: EngineConfig, ids: RequestIds) -> Engine<W> {
        Engine {
            reassembly: Reassembly::new(config.limits.depth, millis(config.timing.give_up)),
            sender: config.sender,
            timing: config.timing,
            scheduler: Scheduler::new(config.limits, ids),
            retransmissions: FxHashMap::default(),
            fence: None,
            unreachable: false,
            stopping: false,
            attached: Vec::new(),
            outbox: VecDeque::new(),
            sending: None,
            completions: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The driver could not send a datagram (the retransmission timer covers it).
    pub fn count_send_error(&mut self) {
        self.counters.send_errors += 1;
    }

    /// Takes a caller's request; its result comes out of `poll_completion` with `waiter`.
    pub fn submit(&mut self, request: IoRequest, waiter: W, now: Duration) {
        self.counters.submitted += 1;
        let refused = match request.validate() {
            Err(e) => Some(StorageError::Invalid(e)),
            Ok(()) if self.stopping => Some(StorageError::ShuttingDown),
            Ok(()) if self.unreachable => Some(StorageError::Unreachable),
            Ok(()) => None,
        };
        if let Some(error) = refused {
            self.deliver(vec![Waiter::Caller(waiter)], Err(error));
            return;
        }
        match self.scheduler.submit(request, Waiter::Caller(waiter)) {
            Ok(Submitted::Merged) => self.counters.merged += 1,
            Ok(Submitted::Queued) => {}
            Err(waiter) => self.deliver(vec![waiter], Err(StorageError::QueueFull)),
        }
        self.dispatch(now);
    }

    /// Keeps `image_id` attached: an INFO whenever nothing was sent for it for `Timing::keepalive`.
    pub fn keep_attached(&mut self, image_id: u32, now: Duration) {
        if !self.attached.iter().any(|attached| attached.image_id == image_id) {
            self.attached.push(Attached { image_id, last_sent: now, keepalive_pending: false });
        }
    }

    /// Writes the next datagram to send into `buf` (at least `MAX_DATAGRAM_LEN` bytes); its length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let (id, index) = match self.sending.take() {
                Some(next) => next,
                None => (self.outbox.pop_front()?, 0),
            };
            let request = match &self.fence {
                Some(fence) if fence.id == id => Some(&fence.request),
                _ => self.scheduler.request(id),
            };
            // None: answered or failed since it was queued for sending.
            let Some(request) = request else { continue };
            let Some(len) = self.sender.encode(request, id, index, buf) else { continue };
            if index + 1 < self.sender.datagram_count(request) {
                self.sending = Some((id, index + 1));
            }
            self.counters.datagrams_sent += 1;
            return Some(len);
        }
    }

    pub fn poll_completion(&mut self) -> Option<(W, IoResult)> {
        self.completions.pop_front()
    }

    /// When `handle_timeout` is to be called next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let mut at = |time: Duration| next = Some(next.map_or(time, |earlier| earlier.min(time)));
        if let Some(fence) = &self.fence {
            at(fence.retransmission.next_due());
            if !self.unreachable {
                at(fence.started + self.timing.give_up);
            }
        } else {
            self.retransmissions.values().for_each(|r| at(r.next_event(&self.timing)));
            if !self.stopping {
                let idle = self.attached.iter().filter(|a| !a.keepalive_pending);
                idle.for_each(|a| at(a.last_sent + self.timing.keepalive));
            }
        }
        next
    }

    /// Retransmissions, giving up (the fence), keepalives.
    pub fn handle_timeout(&mut self, now: Duration) {
        let timing = self.timing;
        if let Some(fence) = &mut self.fence {
            if fence.retransmission.is_due(now) {
                fence.retransmission.sent_again(now, &timing);
                self.outbox.push_back(fence.id);
                self.counters.retransmissions += 1;
            }
            if !self.unreachable && now >= fence.started + timing.give_up {
                let cause = fence.cause;
                let waited = timing.give_up;
                log::warn!("storage: the fence is unanswered after {waited:?}; requests fail until the server answers");
                self.unreachable = true;
                self.fail_unanswered(cause);
                self.fail_waiting(StorageError::Unreachable);
            }
        } else {
            let mut given_up: Option<u64> = None;
            for (&id, retransmission) in &mut self.retransmissions {
                if retransmission.has_given_up(now, &timing) {
                    given_up = Some(given_up.map_or(id, |other| other.min(id)));
                } else if retransmission.is_due(now) {
                    retransmission.sent_again(now, &timing);
                    self.outbox.push_back(id);
                    self.counters.retransmissions += 1;
                }
            }
            if let Some(id) = given_up {
                let image_id = self.scheduler.request(id).map_or(0, |request| request.image_id);
                log::warn!("storage: no reply to request {id} after {:?}; fencing", timing.give_up);
                self.start_fence(FenceCause::GaveUp, image_id, now);
            }
        }
        if self.fence.is_none() && !self.stopping {
            self.send_keepalives(now);
        }
        self.reassembly.evict_stale(millis(now));
        self.dispatch(now);
    }

    /// A datagram from the server's address.
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Duration) {
        let (reply, payload) = match self.sender.decode_reply(datagram) {
            Ok(decoded) => decoded,
            Err(reason) => return self.counters.count_dropped(reason),
        };
        let id = reply.request_id;
        if self.fence.as_ref().is_some_and(|fence| fence.id == id) {
            self.fence_answered(&reply, now);
            return;
        }
        let Some(request) = self.scheduler.request(id) else {
            return self.counters.count_dropped(DropReason::NotOutstanding);
        };
        if !matches(request, &reply) {
            return self.counters.count_dropped(DropReason::Mismatched);
        }
        let op = request.op;
        match reply.status {
            Status::Ok => match op {
                Op::Read => self.take_read_fragment(&reply, payload, now),
                Op::Info => {
                    let info = ImageInfo::parse(payload).map(IoOutput::Info).map_err(StorageError::BadReply);
                    self.complete(id, info);
                }
                _ => self.complete(id, Ok(IoOutput::Done)),
            },
            Status::StaleRequestId => self.stale(id, reply.offset),
            status => self.complete(id, Err(StorageError::Refused(status))),
        }
        self.dispatch(now);
    }

    /// The client stops: waiting requests fail now; unanswered ones are fenced and fail when the fence is
    /// answered (or at `abandon`). New requests are refused.
    pub fn begin_shutdown(&mut self, now: Duration) {
        self.stopping = true;
        self.fail_waiting(StorageError::ShuttingDown);
        if let Some(id) = self.scheduler.oldest_unanswered() {
            let image_id = self.scheduler.request(id).map_or(0, |request| request.image_id);
            self.start_fence(FenceCause::Stopping, image_id, now);
        }
    }

    /// Nothing in flight, waiting or fencing.
    pub fn is_idle(&self) -> bool {
        self.scheduler.in_flight_len() == 0 && self.scheduler.waiting_len() == 0 && self.fence.is_none()
    }

    /// Stops waiting for anything: every request still held fails with `ShuttingDown`.
    pub fn abandon(&mut self) {
        self.fence = None;
        self.fail_unanswered(FenceCause::Stopping);
        self.fail_waiting(StorageError::ShuttingDown);
    }

    /// Sends what the scheduler lets go (nothing while a fence is out or the client stops).
    fn dispatch(&mut self, now: Duration) {
        if self.fence.is_some() || self.stopping {
            return;
        }
        while let Some(id) = self.scheduler.next_dispatch() {
            let Some(request) = self.scheduler.request(id) else { continue };
            self.counters.count_sent(request.op);
            if let Some(attached) = self.attached.iter_mut().find(|a| a.image_id == request.image_id) {
                attached.last_sent = now;
            }
            self.retransmissions.insert(id, Retransmission::start(now, &self.timing));
            self.outbox.push_back(id);
        }
    }

    fn send_keepalives(&mut self, now: Duration) {
        let keepalive = self.timing.keepalive;
        let mut due = Vec::new();
        for attached in self.attached.iter_mut().filter(|a| !a.keepalive_pending && now >= a.last_sent + keepalive) {
            attached.last_sent = now;
            attached.keepalive_pending = true;
            due.push(attached.image_id);
        }
        for image_id in due {
            self.scheduler.submit_unbounded(IoRequest::info(image_id), Waiter::Keepalive(image_id));
            self.counters.keepalives += 1;
        }
    }

    fn take_read_fragment(&mut self, reply: &BlockRepr, payload: &[u8], now: Duration) {
        let id = reply.request_id;
        let dropped = match self.reassembly.insert(id, reply, payload, millis(now)) {
            Insert::Complete(handle) => {
                let data = self.reassembly.data(handle).map(<[u8]>::to_vec).unwrap_or_default();
                self.reassembly.release(handle);
                self.complete(id, Ok(IoOutput::Data(data)));
                return;
            }
            Insert::Incomplete => return,
            Insert::Duplicate => DropReason::DuplicateFragment,
            Insert::TableFull => DropReason::ReassemblyFull,
            Insert::Inconsistent => DropReason::InconsistentFragment,
            Insert::NotAFragment => DropReason::Malformed,
        };
        self.counters.count_dropped(dropped);
    }

    /// ESTALE: continue above the server's highest id and send the request again under a new one.
    fn stale(&mut self, id: u64, highest: u64) {
        self.counters.stale_replies += 1;
        self.scheduler.skip_ids_past(highest);
        if self.stopping {
            return self.complete(id, Err(StorageError::ShuttingDown));
        }
        if self.scheduler.times_requeued(id).unwrap_or(0) >= MAX_STALE_REPLIES {
            return self.complete(id, Err(StorageError::Stale));
        }
        self.forget(id);
        self.scheduler.requeue(id);
    }

    fn start_fence(&mut self, cause: FenceCause, image_id: u32, now: Duration) {
        if self.fence.is_some() {
            return;
        }
        let id = self.scheduler.fence_id();
        let retransmission = Retransmission::start(now, &self.timing);
        self.fence = Some(Fence { id, request: IoRequest::info(image_id), retransmission, started: now, cause });
        self.counters.fences += 1;
        self.outbox.push_back(id);
    }

    fn fence_answered(&mut self, reply: &BlockRepr, now: Duration) {
        let Some(fence) = &mut self.fence else { return };
        if !matches(&fence.request, reply) {
            return self.counters.count_dropped(DropReason::Mismatched);
        }
        if reply.status == Status::StaleRequestId {
            // Even the fence is below the window (a clock gone back): fence again above it.
            self.counters.stale_replies += 1;
            self.scheduler.skip_ids_past(reply.offset);
            fence.id = self.scheduler.fence_id();
            fence.retransmission = Retransmission::start(now, &self.timing);
            self.outbox.push_back(fence.id);
            return;
        }
        // Any other answer means the server took the fence's id: every earlier id is too old now.
        let cause = fence.cause;
        self.fence = None;
        self.unreachable = false;
        self.fail_unanswered(cause);
        self.dispatch(now);
    }

    fn fail_unanswered(&mut self, cause: FenceCause) {
        let error = match cause {
            FenceCause::GaveUp => StorageError::TimedOut,
            FenceCause::Stopping => StorageError::ShuttingDown,
        };
        let unanswered: Vec<u64> = self.scheduler.unanswered().collect();
        for id in unanswered {
            self.complete(id, Err(error));
        }
    }

    fn fail_waiting(&mut self, error: StorageError) {
        for finished in self.scheduler.drain_waiting() {
            self.deliver(finished.waiters, Err(error));
        }
    }

    /// Request `id` is answered (or failed): out of every table, its waiters told.
    fn complete(&mut self, id: u64, result: IoResult) {
        self.forget(id);
        if let Some(finished) = self.scheduler.complete(id) {
            self.deliver(finished.waiters, result);
        }
    }

    /// Stops retransmitting `id` and drops its partial READ reply.
    fn forget(&mut self, id: u64) {
        self.retransmissions.remove(&id);
        self.reassembly.discard(id);
    }

    fn deliver(&mut self, waiters: Vec<Waiter<W>>, mut result: IoResult) {
        let last = waiters.len().saturating_sub(1);
        for (index, waiter) in waiters.into_iter().enumerate() {
            // Only merged WRITEs have several waiters: the clones are of `Done` or an error.
            let outcome =
                if index == last { std::mem::replace(&mut result, Ok(IoOutput::Done)) } else { result.clone() };
            match waiter {
                Waiter::Caller(waiter) => {
                    if let Err(error) = &outcome {
                        self.counters.count_error(error.name());
                    }
                    self.completions.push_back((waiter, outcome));
                }
                Waiter::Keepalive(image_id) => {
                    if let Some(attached) = self.attached.iter_mut().find(|a| a.image_id == image_id) {
                        attached.keepalive_pending = false;
                    }
                    if let Err(error) = outcome {
                        log::warn!("storage: keepalive INFO for image {image_id} failed: {error}");
                    }
                }
            }
        }
    }
}
