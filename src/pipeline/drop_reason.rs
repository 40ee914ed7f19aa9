//! Every packet the switch does not deliver ends under one of these names,
//! each with its own counter (grout-style named drop nodes).

/// Why a packet was dropped. The `name()` is the stable key used in stats output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum DropReason {
    /// The mbuf chains several segments; stages work on one contiguous buffer.
    MultiSegmentMbuf,
    /// Shorter than an Ethernet header (a runt).
    TruncatedEthernet,
    /// The receiving port has no forwarding rule (no `forward_to`, no unit decision).
    NoForwardingRule,
    /// A stage chose an output port that does not exist.
    UnknownOutputPort,
    /// No stage gave the packet a verdict.
    NoVerdict,
    /// The packet was meant for the control plane, which has no handler for it yet.
    NoControlPath,
    /// The transmit queue did not take the packet: its ring was full or the driver
    /// failed to send (the unsent tail of a partial tx burst).
    TxRefused,
}

impl DropReason {
    pub const COUNT: usize = 7;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::MultiSegmentMbuf,
        DropReason::TruncatedEthernet,
        DropReason::NoForwardingRule,
        DropReason::UnknownOutputPort,
        DropReason::NoVerdict,
        DropReason::NoControlPath,
        DropReason::TxRefused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::MultiSegmentMbuf => "multi_segment_mbuf",
            DropReason::TruncatedEthernet => "truncated_ethernet",
            DropReason::NoForwardingRule => "no_forwarding_rule",
            DropReason::UnknownOutputPort => "unknown_output_port",
            DropReason::NoVerdict => "no_verdict",
            DropReason::NoControlPath => "no_control_path",
            DropReason::TxRefused => "tx_refused",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_once_in_index_order() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
