//! What a storage client did, for the line `switchyard vbd` logs at exit.

use std::collections::BTreeMap;
use std::fmt;

use switchyard_wire::block::Op;

use super::storage_codec::DropReason;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests taken from callers (NBD commands, or their 64 KiB pieces), keepalives not included.
    pub submitted: u64,
    /// Of those, WRITEs merged into a waiting WRITE.
    pub merged: u64,
    /// Requests sent to the server (first sends), by op: index `Op::code() - 1`.
    pub sent: [u64; Op::ALL.len()],
    /// Requests (and fences) sent again for want of a reply.
    pub retransmissions: u64,
    pub datagrams_sent: u64,
    pub send_errors: u64,
    /// ESTALE replies: the request went again above the server's highest id.
    pub stale_replies: u64,
    pub fences: u64,
    pub keepalives: u64,
    /// Callers' requests that failed, by `StorageError::name` (the server's statuses and the client's causes).
    pub errors: BTreeMap<&'static str, u64>,
    /// Received datagrams dropped, by `DropReason::index`.
    pub dropped: [u64; DropReason::ALL.len()],
}

impl Counters {
    pub fn sent(&self, op: Op) -> u64 {
        self.sent[usize::from(op.code() - 1)]
    }

    pub(super) fn count_sent(&mut self, op: Op) {
        self.sent[usize::from(op.code() - 1)] += 1;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    pub(super) fn count_dropped(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }

    pub fn errors(&self, name: &str) -> u64 {
        self.errors.get(name).copied().unwrap_or(0)
    }

    pub(super) fn count_error(&mut self, name: &'static str) {
        *self.errors.entry(name).or_default() += 1;
    }
}

/// Writes `label a 1, b 2` for the non-zero pairs, or nothing.
fn list(f: &mut fmt::Formatter<'_>, label: &str, pairs: impl Iterator<Item = (&'static str, u64)>) -> fmt::Result {
    let mut first = true;
    for (name, count) in pairs.filter(|(_, count)| *count != 0) {
        if first {
            write!(f, "; {label} ")?;
        } else {
            f.write_str(", ")?;
        }
        write!(f, "{name} {count}")?;
        first = false;
    }
    Ok(())
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sent: u64 = self.sent.iter().sum();
        write!(f, "requests {} (merged {}), sent {sent}", self.submitted, self.merged)?;
        list(f, "by op:", Op::ALL.iter().map(|op| (op.name(), self.sent(*op))))?;
        write!(
            f,
            "; retransmissions {}, datagrams {}, send errors {}, estale {}, fences {}, keepalives {}",
            self.retransmissions,
            self.datagrams_sent,
            self.send_errors,
            self.stale_replies,
            self.fences,
            self.keepalives
        )?;
        list(f, "errors:", self.errors.iter().map(|(name, count)| (*name, *count)))?;
        list(f, "dropped replies:", DropReason::ALL.iter().map(|reason| (reason.name(), self.dropped(*reason))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_line_names_what_is_not_zero() {
        let mut counters = Counters { submitted: 5, merged: 1, retransmissions: 2, ..Counters::default() };
        counters.count_sent(Op::Read);
        counters.count_sent(Op::Read);
        counters.count_sent(Op::Flush);
        counters.count_error("eio");
        counters.count_error("timed_out");
        counters.count_error("eio");
        counters.count_dropped(DropReason::BadMac);
        assert_eq!((counters.sent(Op::Read), counters.errors("eio"), counters.errors("eperm")), (2, 2, 0));
        assert_eq!(counters.dropped(DropReason::BadMac), 1);
        assert_eq!(
            counters.to_string(),
            "requests 5 (merged 1), sent 3; by op: read 2, flush 1; retransmissions 2, datagrams 0, send errors 0, \
             estale 0, fences 0, keepalives 0; errors: eio 2, timed_out 1; dropped replies: bad_mac 1"
        );
        assert_eq!(
            Counters::default().to_string(),
            "requests 0 (merged 0), sent 0; retransmissions 0, datagrams 0, send errors 0, estale 0, fences 0, \
             keepalives 0"
        );
    }
}
