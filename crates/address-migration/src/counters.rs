//! What the address rewrite counts: one set per worker (single writer, shared
//! by its two stages), summed for stats and metrics.
use std::collections::BTreeMap;

use serde::Serialize;

use switchyard_pipeline::Counter;
use switchyard_wire::ReportStatus;

#[derive(Debug, Default)]
pub struct RewriteCounters {
    /// Packets into a VM port whose destination (or ARP target) was rewritten.
    pub to_vm: Counter,
    /// Packets out of a VM port whose source (or ARP sender/target) was rewritten.
    pub from_vm: Counter,
    /// ICMP errors whose embedded packet was translated too (either direction).
    pub icmp_errors: Counter,
    /// VM reports by how they were judged (`ReportStatus` order).
    pub reports: [Counter; ReportStatus::COUNT],
    /// ARP requests for the report address the switch answered.
    pub report_arp_replies: Counter,
}

/// `RewriteCounters` summed over workers: `address_rewrite` in the stats JSON.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RewriteTotals {
    pub to_vm: u64,
    pub from_vm: u64,
    pub icmp_errors: u64,
    pub report_arp_replies: u64,
    /// Every report status by name, zero or not.
    pub reports: BTreeMap<&'static str, u64>,
}

impl RewriteTotals {
    pub fn new() -> Self {
        RewriteTotals { reports: ReportStatus::ALL.iter().map(|s| (s.name(), 0)).collect(), ..Default::default() }
    }

    pub fn add(&mut self, counters: &RewriteCounters) {
        self.to_vm += counters.to_vm.get();
        self.from_vm += counters.from_vm.get();
        self.icmp_errors += counters.icmp_errors.get();
        self.report_arp_replies += counters.report_arp_replies.get();
        for (status, counter) in ReportStatus::ALL.iter().zip(&counters.reports) {
            *self.reports.entry(status.name()).or_default() += counter.get();
        }
    }
}
