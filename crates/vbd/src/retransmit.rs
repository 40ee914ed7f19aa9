//! When a request is sent again, and when the client gives up on it (docs/storage-protocol.md "What the
//! client does"): every datagram again after 250 ms without a complete reply, the wait doubling up to 2 s;
//! after 30 s, the fence. Times are the engine's clock: a `Duration` since the client started.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The wait before the first retransmission.
    pub first_retransmit: Duration,
    /// The longest wait between two retransmissions.
    pub max_retransmit: Duration,
    /// How long a request (or a fence) is retransmitted before the client gives up on it.
    pub give_up: Duration,
    /// An attached image with nothing sent for this long gets an INFO: the server treats an image as
    /// attached while it sees use.
    pub keepalive: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            first_retransmit: Duration::from_millis(250),
            max_retransmit: Duration::from_secs(2),
            give_up: Duration::from_secs(30),
            keepalive: Duration::from_secs(5),
        }
    }
}

/// One request's retransmission schedule, from its first send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmission {
    first_sent: Duration,
    wait: Duration,
    next_due: Duration,
    count: u32,
}

impl Retransmission {
    /// Sent for the first time at `now`.
    pub fn start(now: Duration, timing: &Timing) -> Retransmission {
        let wait = timing.first_retransmit;
        Retransmission { first_sent: now, wait, next_due: now + wait, count: 0 }
    }

    pub fn is_due(&self, now: Duration) -> bool {
        now >= self.next_due
    }

    /// Sent again at `now`: the next wait is twice this one, at most `max_retransmit`.
    pub fn sent_again(&mut self, now: Duration, timing: &Timing) {
        self.count += 1;
        self.wait = (self.wait * 2).min(timing.max_retransmit);
        self.next_due = now + self.wait;
    }

    /// When it is to be sent again.
    pub fn next_due(&self) -> Duration {
        self.next_due
    }

    /// Retransmitted for `give_up` without a reply.
    pub fn has_given_up(&self, now: Duration, timing: &Timing) -> bool {
        now >= self.give_up_at(timing)
    }

    pub fn give_up_at(&self, timing: &Timing) -> Duration {
        self.first_sent + timing.give_up
    }

    /// The next moment something is to be done: a retransmission or giving up.
    pub fn next_event(&self, timing: &Timing) -> Duration {
        self.next_due.min(self.give_up_at(timing))
    }

    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// When a request sent at `start` is retransmitted, if the caller retransmits whenever one is due, checking
    /// every millisecond up to `until`.
    fn schedule(start: Duration, until: Duration) -> (Vec<Duration>, Option<Duration>) {
        let timing = Timing::default();
        let mut retransmission = Retransmission::start(start, &timing);
        let (mut sent, mut gave_up) = (Vec::new(), None);
        let mut now = start;
        while now <= until {
            if retransmission.has_given_up(now, &timing) {
                gave_up = Some(now);
                break;
            }
            if retransmission.is_due(now) {
                sent.push(now - start);
                retransmission.sent_again(now, &timing);
            }
            assert!(retransmission.next_event(&timing) > now);
            now += MS;
        }
        assert_eq!(retransmission.count() as usize, sent.len());
        (sent, gave_up)
    }

    #[test]
    fn waits_double_from_250_ms_to_2_s() {
        let (sent, gave_up) = schedule(Duration::from_secs(7), Duration::from_secs(20));
        let ms: Vec<u128> = sent.iter().take(7).map(Duration::as_millis).collect();
        assert_eq!(ms, [250, 750, 1750, 3750, 5750, 7750, 9750]);
        assert_eq!(gave_up, None);
    }

    #[test]
    fn gives_up_after_30_s() {
        let start = Duration::from_secs(1);
        let (sent, gave_up) = schedule(start, Duration::from_secs(60));
        assert_eq!(gave_up, Some(start + Duration::from_secs(30)));
        // 250, 750, 1750, then every 2 s: 3750 .. 29750.
        assert_eq!(sent.len(), 3 + 14);
        assert_eq!(sent.last().map(Duration::as_millis), Some(29_750));
        let timing = Timing::default();
        let fresh = Retransmission::start(start, &timing);
        assert_eq!(fresh.next_event(&timing), start + 250 * MS);
        assert_eq!(fresh.give_up_at(&timing), start + Duration::from_secs(30));
    }

    #[test]
    fn a_short_give_up_comes_before_the_next_retransmission() {
        let timing = Timing { give_up: 100 * MS, ..Timing::default() };
        let retransmission = Retransmission::start(Duration::ZERO, &timing);
        assert_eq!(retransmission.next_event(&timing), 100 * MS);
        assert!(!retransmission.is_due(100 * MS));
        assert!(retransmission.has_given_up(100 * MS, &timing));
    }
}
