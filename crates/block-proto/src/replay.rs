//! Request ids and the server's anti-replay window (docs/storage-protocol.md, "Request ids and replays").
//!
//! A client numbers its requests upwards from the wall clock in nanoseconds. The server keeps, per user, a
//! sliding window of the last `REPLAY_WINDOW` ids below the highest it has taken (RFC 4303 section 3.4.3),
//! with each id's state: never taken, executing, or done with a status. A retransmitted or replayed request
//! inside the window is answered from that state, so a completed WRITE never runs twice; one below the
//! window is refused.

use switchyard_wire::block::Status;

/// How many ids the window spans. A client keeps its unanswered requests within half of it (docs).
pub const REPLAY_WINDOW: u64 = 1024;
const SLOTS: usize = REPLAY_WINDOW as usize;
/// How often the server executes a done READ again for retransmissions of it (`count_repeat`): a READ reply
/// is up to 1000 times its request, so a replayed request must not make the server send it without end.
pub const MAX_READ_REPEATS: u8 = 3;

/// What the window says of a request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Never taken: execute it (after `begin`).
    New,
    /// Done before: answer with this status (a READ or INFO may be executed again instead).
    Retransmit(Status),
    /// Executing: drop it, its reply is coming.
    InFlight,
    /// Below the window: refuse it (ESTALE, with `highest` in the reply).
    TooOld,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Unseen,
    InFlight,
    /// With how many retransmissions were answered (`count_repeat`).
    Done(Status, u8),
}

/// One user's window. 1024 slots of a few bytes, inline: allocate it where the user is added.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// The highest id taken (`begin`), the window's right edge; `None` before the first.
    highest: Option<u64>,
    /// Id `i` (within the window) is at `i % REPLAY_WINDOW`.
    slots: [Slot; SLOTS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    pub const fn new() -> Self {
        ReplayWindow { highest: None, slots: [Slot::Unseen; SLOTS] }
    }

    /// The highest id taken so far (the offset field of an ESTALE reply).
    pub const fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// What to do with a request of id `id`; changes nothing (the fragments of a WRITE are checked one by one,
    /// the WRITE is taken when complete).
    pub fn check(&self, id: u64) -> Check {
        let Some(highest) = self.highest else {
            return Check::New;
        };
        if id > highest {
            return Check::New;
        }
        if highest - id >= REPLAY_WINDOW {
            return Check::TooOld;
        }
        match self.slots[slot_of(id)] {
            Slot::Unseen => Check::New,
            Slot::InFlight => Check::InFlight,
            Slot::Done(status, _) => Check::Retransmit(status),
        }
    }

    /// Takes `id` for execution if it is new (and returns `New`), sliding the window when `id` is above it;
    /// otherwise returns what `check` says and changes nothing. Every request the server executes is taken
    /// first, whatever its outcome will be.
    pub fn begin(&mut self, id: u64) -> Check {
        let check = self.check(id);
        if check != Check::New {
            return check;
        }
        match self.highest {
            Some(highest) if id <= highest => {}
            Some(highest) if id - highest < REPLAY_WINDOW => {
                // The ids the window slides over were never taken.
                for skipped in highest + 1..id {
                    self.slots[slot_of(skipped)] = Slot::Unseen;
                }
                self.highest = Some(id);
            }
            _ => {
                self.slots = [Slot::Unseen; SLOTS];
                self.highest = Some(id);
            }
        }
        self.slots[slot_of(id)] = Slot::InFlight;
        Check::New
    }

    /// Records the outcome of `id`, answered from now on to its retransmissions. `false` if `id` was not
    /// executing or the window has slid past it (the reply is sent all the same).
    pub fn complete(&mut self, id: u64, status: Status) -> bool {
        if self.check(id) != Check::InFlight {
            return false;
        }
        self.slots[slot_of(id)] = Slot::Done(status, 0);
        true
    }

    /// Counts one more answer to a retransmission of the done request `id` and returns how many there were,
    /// this one included (saturating); `None` unless `id` is done and inside the window.
    pub fn count_repeat(&mut self, id: u64) -> Option<u8> {
        let Check::Retransmit(_) = self.check(id) else {
            return None;
        };
        let Slot::Done(_, repeats) = &mut self.slots[slot_of(id)] else {
            return None;
        };
        *repeats = repeats.saturating_add(1);
        Some(*repeats)
    }
}

fn slot_of(id: u64) -> usize {
    (id % REPLAY_WINDOW) as usize
}

/// A client's request ids: unique and increasing, across restarts too (they start from the wall clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    next: u64,
}

impl RequestIds {
    /// Starts at `wall_clock_ns` (nanoseconds since the Unix epoch): above every id an earlier run used, unless
    /// it sent more than one request per nanosecond or the clock went back (then an ESTALE reply tells).
    pub const fn starting_at(wall_clock_ns: u64) -> Self {
        RequestIds { next: wall_clock_ns }
    }

    /// The id `next_id` will hand out, without taking it (the client's spread rule compares it with its oldest
    /// unanswered id before it sends).
    pub const fn peek_next(&self) -> u64 {
        self.next
    }

    /// The id for the next request.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        id
    }

    /// The id of a fence: a request that, once answered, leaves every id handed out before it below the
    /// server's window. A client sends one (an INFO) before it reports its unanswered requests as failed, so
    /// none of them can be executed later (a late copy, or a replay by whoever captured it).
    pub fn fence(&mut self) -> u64 {
        self.next = self.next.wrapping_add(REPLAY_WINDOW - 1);
        self.next_id()
    }

    /// Continues above `highest`, the server's highest id in an ESTALE reply.
    pub fn skip_past(&mut self, highest: u64) {
        self.next = self.next.max(highest.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_ids_are_new_and_executed_once() {
        let mut window = ReplayWindow::new();
        assert_eq!((window.check(0), window.check(u64::MAX), window.highest()), (Check::New, Check::New, None));
        assert_eq!(window.begin(1000), Check::New);
        assert_eq!(window.highest(), Some(1000));
        assert_eq!(window.begin(1000), Check::InFlight);
        assert_eq!(window.check(1000), Check::InFlight);
        assert!(window.complete(1000, Status::Ok));
        assert!(!window.complete(1000, Status::IoError));
        assert_eq!(window.begin(1000), Check::Retransmit(Status::Ok));
    }

    #[test]
    fn retransmits_are_answered_from_the_cache() {
        let mut window = ReplayWindow::default();
        for id in 5000..5010 {
            assert_eq!(window.begin(id), Check::New);
        }
        assert!(window.complete(5003, Status::NoSpace));
        assert!(window.complete(5009, Status::Ok));
        assert_eq!(window.check(5003), Check::Retransmit(Status::NoSpace));
        assert_eq!(window.check(5009), Check::Retransmit(Status::Ok));
        assert_eq!(window.check(5004), Check::InFlight);
        // Out of order: ids below the highest never taken are still new, once.
        assert_eq!(window.begin(4990), Check::New);
        assert_eq!(window.begin(4990), Check::InFlight);
        assert_eq!(window.highest(), Some(5009));
        assert!(!window.complete(4991, Status::Ok));
    }

    #[test]
    fn repeats_are_counted_per_done_id() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.count_repeat(1), None);
        window.begin(1);
        assert_eq!(window.count_repeat(1), None);
        window.complete(1, Status::Ok);
        for n in 1..=MAX_READ_REPEATS {
            assert_eq!(window.count_repeat(1), Some(n));
        }
        for _ in 0..300 {
            window.count_repeat(1);
        }
        assert_eq!(window.count_repeat(1), Some(u8::MAX));
        assert_eq!(window.check(1), Check::Retransmit(Status::Ok));
        window.begin(1 + REPLAY_WINDOW);
        assert_eq!(window.count_repeat(1), None);
    }

    #[test]
    fn the_window_slides() {
        let mut window = ReplayWindow::new();
        let base = 1_700_000_000_000_000_000u64;
        assert_eq!(window.begin(base), Check::New);
        assert!(window.complete(base, Status::Ok));
        // base stays inside while the edge is less than REPLAY_WINDOW above it.
        assert_eq!(window.begin(base + REPLAY_WINDOW - 1), Check::New);
        assert_eq!(window.check(base), Check::Retransmit(Status::Ok));
        assert_eq!(window.check(base + 1), Check::New);
        assert_eq!(window.begin(base + REPLAY_WINDOW), Check::New);
        assert_eq!(window.check(base), Check::TooOld);
        assert_eq!(window.begin(base), Check::TooOld);
        assert_eq!(window.check(base + 1), Check::New);
        // The slot base used now belongs to base + REPLAY_WINDOW, in flight; base's late completion is refused.
        assert!(!window.complete(base, Status::Ok));
        assert_eq!(window.check(base + REPLAY_WINDOW), Check::InFlight);
        // One step at a time, the skipped ids are cleared of what their slots held.
        assert!(window.complete(base + REPLAY_WINDOW, Status::Ok));
        assert_eq!(window.begin(base + 2 * REPLAY_WINDOW + 5), Check::New);
        assert_eq!(window.check(base + REPLAY_WINDOW), Check::TooOld);
        assert_eq!(window.check(base + 2 * REPLAY_WINDOW), Check::New);
        assert_eq!(window.check(base + REPLAY_WINDOW + 6), Check::New);
        assert_eq!(window.check(base + REPLAY_WINDOW + 5), Check::TooOld);
    }

    #[test]
    fn a_short_slide_keeps_what_stays_inside() {
        let mut window = ReplayWindow::new();
        for id in 0..REPLAY_WINDOW {
            window.begin(id);
            window.complete(id, Status::Ok);
        }
        assert_eq!(window.begin(REPLAY_WINDOW + 9), Check::New);
        assert_eq!(window.check(9), Check::TooOld);
        assert_eq!(window.check(10), Check::Retransmit(Status::Ok));
        assert_eq!(window.check(REPLAY_WINDOW - 1), Check::Retransmit(Status::Ok));
        for id in REPLAY_WINDOW..REPLAY_WINDOW + 9 {
            assert_eq!(window.check(id), Check::New, "id {id}");
        }
    }

    #[test]
    fn edges_of_the_id_space() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.begin(0), Check::New);
        assert_eq!(window.begin(u64::MAX), Check::New);
        assert_eq!(window.check(0), Check::TooOld);
        assert_eq!(window.check(u64::MAX - REPLAY_WINDOW + 1), Check::New);
        assert_eq!(window.check(u64::MAX - REPLAY_WINDOW), Check::TooOld);
        assert_eq!(window.begin(u64::MAX), Check::InFlight);
    }

    #[test]
    fn client_ids_increase_and_a_fence_leaves_earlier_ones_too_old() {
        let mut ids = RequestIds::starting_at(1_700_000_000_000_000_000);
        let mut window = ReplayWindow::new();
        let first = ids.next_id();
        let mut sent = vec![first];
        for _ in 0..100 {
            sent.push(ids.next_id());
        }
        assert!(sent.windows(2).all(|pair| pair[1] == pair[0] + 1));
        // The server took some; the rest were lost.
        for &id in &sent[..50] {
            assert_eq!(window.begin(id), Check::New);
        }
        let fence = ids.fence();
        assert_eq!(fence, sent[100] + REPLAY_WINDOW);
        assert_eq!(window.begin(fence), Check::New);
        for &id in &sent {
            assert_eq!(window.check(id), Check::TooOld, "id {id}");
        }
        assert_eq!(ids.peek_next(), fence + 1);
        assert_eq!(ids.next_id(), fence + 1);
        // A restart with the clock gone back: ESTALE carries the server's highest id.
        let mut restarted = RequestIds::starting_at(first - 10);
        assert_eq!(window.check(restarted.next_id()), Check::TooOld);
        restarted.skip_past(window.highest().unwrap());
        assert_eq!(window.begin(restarted.next_id()), Check::New);
        restarted.skip_past(0);
        assert_eq!(restarted.next_id(), fence + 2);
    }
}
