//! The client's I/O scheduler (docs/vbd.md "Scheduling"): which queued request goes to the server next, and
//! under which request id. Pure logic: no I/O, no clock; the engine calls it.
//!
//! Rules, per image (INFO is under none of them: it reads no data):
//! - A request waits for every earlier one it conflicts with: an overlapping one unless both are READs (two
//!   READs cannot see each other), every earlier write for a FLUSH (WRITE, TRIM, WRITE_ZEROES), and every
//!   earlier FLUSH for anything. "Waits" means: is not sent until that one is complete. So overlapping
//!   requests keep their order, a FLUSH is a barrier, and everything else may pass (a READ passes the
//!   writes it does not overlap).
//! - Among the requests free to go, READs go first (a guest waits for its reads; writes wait and merge), but
//!   at most `Limits::writes_starved` times in a row past an earlier one that is not a READ (mq-deadline's
//!   writes_starved), so writes are not starved.
//! - A WRITE that arrives while a WRITE next to it (same image, same FUA, contiguous) waits is merged into it,
//!   up to `MAX_IO_LEN`, unless a request between them conflicts with it (the merged request takes the earlier
//!   one's place, so it must not pass anything it overlaps).
//! - At most `Limits::depth` requests are in flight; ids are handed out when a request is sent, and one is
//!   sent only while its id stays within `Limits::max_id_spread` of the oldest unanswered one
//!   (docs/storage-protocol.md "What the client does": retransmissions never fall below the server's window).
//! - At most `Limits::max_queued` submitted requests (merged ones counted each) are waiting or in flight.

use std::collections::BTreeMap;

use switchyard_block_proto::{RequestIds, REPLAY_WINDOW};
use switchyard_wire::block::{Op, MAX_IO_LEN};

use super::storage_request::IoRequest;

/// Requests in flight to the server.
pub const DEFAULT_DEPTH: usize = 64;
/// Submitted requests the client holds, waiting or in flight.
pub const DEFAULT_MAX_QUEUED: usize = 1024;
/// Half the server's anti-replay window (docs/storage-protocol.md).
pub const MAX_ID_SPREAD: u64 = REPLAY_WINDOW / 2;
/// READs sent in a row past an earlier request free to go that is not a READ.
pub const WRITES_STARVED: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub depth: usize,
    pub max_queued: usize,
    pub max_id_spread: u64,
    pub writes_starved: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: DEFAULT_DEPTH,
            max_queued: DEFAULT_MAX_QUEUED,
            max_id_spread: MAX_ID_SPREAD,
            writes_starved: WRITES_STARVED,
        }
    }
}

/// What became of a submitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Queued,
    /// Joined a waiting WRITE next to it; completes with it.
    Merged,
}

/// A request taken out of the scheduler (answered, or failed), with everyone waiting for it.
#[derive(Debug)]
pub struct Finished<W> {
    pub request: IoRequest,
    pub waiters: Vec<W>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    InFlight(u64),
}

#[derive(Debug)]
struct Entry<W> {
    request: IoRequest,
    waiters: Vec<W>,
    state: State,
    /// Earlier entries this one waits for that are not finished.
    blocked_by: usize,
    /// Later entries waiting for this one (arrival numbers).
    dependents: Vec<u64>,
    /// ESTALE replies so far (the request went back to waiting for a new id).
    requeued: u8,
}

impl<W> Entry<W> {
    fn is_ready(&self) -> bool {
        self.state == State::Waiting && self.blocked_by == 0
    }
}

pub struct Scheduler<W> {
    limits: Limits,
    ids: RequestIds,
    /// Waiting and in-flight entries by arrival number, oldest first.
    entries: BTreeMap<u64, Entry<W>>,
    next_arrival: u64,
    /// Request id -> arrival number; the first key is the oldest unanswered id.
    in_flight: BTreeMap<u64, u64>,
    /// Submitted requests held (each merged one counted).
    queued: usize,
    /// READs sent in a row past an earlier ready request that is not a READ.
    reads_in_a_row: u32,
}

impl<W> Scheduler<W> {
    pub fn new(limits: Limits, ids: RequestIds) -> Scheduler<W> {
        Scheduler {
            limits,
            ids,
            entries: BTreeMap::new(),
            next_arrival: 0,
            in_flight: BTreeMap::new(),
            queued: 0,
            reads_in_a_row: 0,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Queues `request`; `Err(waiter)` when `max_queued` requests are held already.
    pub fn submit(&mut self, request: IoRequest, waiter: W) -> Result<Submitted, W> {
        if self.queued >= self.limits.max_queued {
            return Err(waiter);
        }
        Ok(self.submit_unbounded(request, waiter))
    }

    /// Queues `request` past `max_queued`: for the client's own few requests (a keepalive per image), which
    /// must not take a place a caller holding a queue slot counts on.
    pub fn submit_unbounded(&mut self, request: IoRequest, waiter: W) -> Submitted {
        self.queued += 1;
        if request.op == Op::Write {
            if let Some(target) = self.merge_target(&request) {
                self.merge(target, request, waiter);
                return Submitted::Merged;
            }
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        let mut blocked_by = 0;
        for earlier in self.entries.values_mut() {
            if conflicts(&earlier.request, &request) {
                earlier.dependents.push(arrival);
                blocked_by += 1;
            }
        }
        let waiters = vec![waiter];
        let entry = Entry { request, waiters, state: State::Waiting, blocked_by, dependents: Vec::new(), requeued: 0 };
        self.entries.insert(arrival, entry);
        Submitted::Queued
    }

    /// The waiting WRITE `write` may join: the latest one next to it with the same FUA, not past a FLUSH or a
    /// request overlapping `write`.
    fn merge_target(&self, write: &IoRequest) -> Option<u64> {
        for (&arrival, entry) in self.entries.iter().rev() {
            let queued = &entry.request;
            if queued.image_id != write.image_id || queued.op == Op::Info {
                continue;
            }
            if queued.op == Op::Flush {
                return None;
            }
            let contiguous = queued.range().end == write.offset || write.range().end == queued.offset;
            if entry.state == State::Waiting
                && queued.op == Op::Write
                && queued.fua == write.fua
                && contiguous
                && u64::from(queued.length) + u64::from(write.length) <= u64::from(MAX_IO_LEN)
            {
                return Some(arrival);
            }
            if overlaps(queued, write) {
                return None;
            }
        }
        None
    }

    fn merge(&mut self, target: u64, write: IoRequest, waiter: W) {
        // The merged request also waits for what `write` would have waited for (all earlier than `target`).
        let mut new_blockers = 0;
        for earlier in self.entries.range_mut(..target).map(|(_, entry)| entry) {
            if conflicts(&earlier.request, &write) && !earlier.dependents.contains(&target) {
                earlier.dependents.push(target);
                new_blockers += 1;
            }
        }
        let Some(entry) = self.entries.get_mut(&target) else {
            return;
        };
        entry.blocked_by += new_blockers;
        let queued = &mut entry.request;
        if queued.range().end == write.offset {
            queued.data.extend_from_slice(&write.data);
        } else {
            let mut data = write.data;
            data.extend_from_slice(&queued.data);
            queued.data = data;
            queued.offset = write.offset;
        }
        queued.length += write.length;
        entry.waiters.push(waiter);
    }

    /// Sends the next request if the depth, the id spread and its dependencies allow: marks it in flight and
    /// returns its new request id.
    pub fn next_dispatch(&mut self) -> Option<u64> {
        if self.in_flight.len() >= self.limits.depth {
            return None;
        }
        if let Some(oldest) = self.oldest_unanswered() {
            if self.ids.peek_next().wrapping_sub(oldest) >= self.limits.max_id_spread {
                return None;
            }
        }
        let mut first = None;
        let mut first_read = None;
        for (&arrival, entry) in self.entries.iter().filter(|(_, entry)| entry.is_ready()) {
            first.get_or_insert(arrival);
            if entry.request.op == Op::Read {
                first_read = Some(arrival);
                break;
            }
        }
        let chosen = match (first?, first_read) {
            (first, Some(read)) if read != first && self.reads_in_a_row < self.limits.writes_starved => {
                self.reads_in_a_row += 1;
                read
            }
            (first, _) => {
                if Some(first) != first_read {
                    self.reads_in_a_row = 0;
                }
                first
            }
        };
        let id = self.ids.next_id();
        let entry = self.entries.get_mut(&chosen)?;
        entry.state = State::InFlight(id);
        self.in_flight.insert(id, chosen);
        Some(id)
    }

    /// The in-flight request of id `id`.
    pub fn request(&self, id: u64) -> Option<&IoRequest> {
        let arrival = self.in_flight.get(&id)?;
        self.entries.get(arrival).map(|entry| &entry.request)
    }

    /// Who waits for the in-flight request `id` (several for merged WRITEs).
    pub fn waiters(&self, id: u64) -> Option<&[W]> {
        let arrival = self.in_flight.get(&id)?;
        self.entries.get(arrival).map(|entry| &entry.waiters[..])
    }

    /// Takes the answered (or failed) request `id` out; whatever waited for it only may go now.
    pub fn complete(&mut self, id: u64) -> Option<Finished<W>> {
        let arrival = self.in_flight.remove(&id)?;
        self.remove(arrival)
    }

    fn remove(&mut self, arrival: u64) -> Option<Finished<W>> {
        let entry = self.entries.remove(&arrival)?;
        for dependent in &entry.dependents {
            if let Some(later) = self.entries.get_mut(dependent) {
                later.blocked_by = later.blocked_by.saturating_sub(1);
            }
        }
        self.queued -= entry.waiters.len();
        Some(Finished { request: entry.request, waiters: entry.waiters })
    }

    /// How often request `id` was requeued after ESTALE (`requeue`).
    pub fn times_requeued(&self, id: u64) -> Option<u8> {
        let arrival = self.in_flight.get(&id)?;
        self.entries.get(arrival).map(|entry| entry.requeued)
    }

    /// ESTALE: request `id` goes back to waiting, in its place, and is sent again under a new id (after
    /// `skip_ids_past`). Its dependencies stay met, and what waits for it keeps waiting.
    pub fn requeue(&mut self, id: u64) -> bool {
        let Some(arrival) = self.in_flight.remove(&id) else {
            return false;
        };
        let Some(entry) = self.entries.get_mut(&arrival) else {
            return false;
        };
        entry.state = State::Waiting;
        entry.requeued = entry.requeued.saturating_add(1);
        true
    }

    /// Takes every waiting request out (the client stops, or the server is unreachable).
    pub fn drain_waiting(&mut self) -> Vec<Finished<W>> {
        let waiting: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.state == State::Waiting)
            .map(|(&arrival, _)| arrival)
            .collect();
        waiting.into_iter().filter_map(|arrival| self.remove(arrival)).collect()
    }

    /// Ids in flight, oldest first.
    pub fn unanswered(&self) -> impl Iterator<Item = u64> + '_ {
        self.in_flight.keys().copied()
    }

    pub fn oldest_unanswered(&self) -> Option<u64> {
        self.in_flight.keys().next().copied()
    }

    /// The id of a fence (`RequestIds::fence`): once answered, every id handed out so far is below the
    /// server's window.
    pub fn fence_id(&mut self) -> u64 {
        self.ids.fence()
    }

    /// ESTALE: continue above the server's highest id.
    pub fn skip_ids_past(&mut self, highest: u64) {
        self.ids.skip_past(highest);
    }

    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// Entries waiting to be sent (a merged one counted once).
    pub fn waiting_len(&self) -> usize {
        self.entries.len() - self.in_flight.len()
    }

    /// Submitted requests held, waiting or in flight (merged ones counted each).
    pub fn queued(&self) -> usize {
        self.queued
    }
}

/// `later` must wait for `earlier` (module doc).
fn conflicts(earlier: &IoRequest, later: &IoRequest) -> bool {
    if earlier.image_id != later.image_id || earlier.op == Op::Info || later.op == Op::Info {
        return false;
    }
    if earlier.op == Op::Flush {
        return true;
    }
    if later.op == Op::Flush {
        return earlier.op.writes();
    }
    if earlier.op == Op::Read && later.op == Op::Read {
        return false;
    }
    overlaps(earlier, later)
}

fn overlaps(a: &IoRequest, b: &IoRequest) -> bool {
    let (a, b) = (a.range(), b.range());
    a.start < b.end && b.start < a.end
}
