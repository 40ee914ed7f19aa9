//! The stats summary printed when a run ends (and written as JSON on request).
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::counters::{MigrationTotals, PortTotals, StorageTotals, Totals, TunnelTotals};
use crate::address_migration::RewriteTotals;
use super::PortBinding;
use crate::dpdk::{Link, PortStats};

/// One port at the end of a run: our counters and the driver's.
#[derive(Debug, Clone, Serialize)]
pub struct PortSummary {
    pub index: usize,
    pub name: String,
    pub role: String,
    pub device: String,
    pub driver: String,
    pub port_id: u16,
    pub mac: String,
    pub link: Link,
    #[serde(flatten)]
    pub counters: PortTotals,
    /// The driver's own counters (imissed and rx_nombuf are drops before we see a packet).
    pub nic: PortStats,
}

impl PortSummary {
    pub fn new(binding: &PortBinding, driver: &str, nic: PortStats, link: Link, totals: &Totals) -> Self {
        PortSummary {
            index: binding.index,
            name: binding.config.name.clone(),
            role: binding.config.role.to_string(),
            device: binding.config.device_name().to_string(),
            driver: driver.to_string(),
            port_id: binding.id.0,
            mac: binding.mac.to_string(),
            link,
            counters: totals.ports.get(binding.id.index()).copied().unwrap_or_default(),
            nic,
        }
    }
}

/// Totals of a run. `rx_packets + made == tx_packets + dropped + absorbed + held`
/// holds at the end of every run: a packet received or made by a stage is sent,
/// counted under a drop reason, absorbed by the switch itself, or still held
/// for a migrating VM.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub elapsed_seconds: f64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub dropped: u64,
    /// Packets stages made (flood copies, head-end replicas, ARP requests).
    pub made: u64,
    /// Packets addressed to the switch and handled there (ARP replies to the VTEP).
    pub absorbed: u64,
    /// The buffer-or-forward stage; `holding` is packets held for migrating VMs
    /// now (freed when the switch stops).
    pub migration: MigrationTotals,
    /// Packets neither sent, dropped nor absorbed; 0 unless something is wrong.
    pub unaccounted: i128,
    pub ports: Vec<PortSummary>,
    pub drops: BTreeMap<&'static str, u64>,
    /// What the address rewrite did (zero without address migrations).
    pub address_rewrite: RewriteTotals,
    /// Frames that waited for a tunnel coming up on demand.
    pub tunnels: TunnelTotals,
    /// What the block-I/O service served (zero without `[storage]`).
    pub storage: StorageTotals,
    pub mempool_in_use: u32,
    /// Each feature's own section (`Feature::stats`), by feature name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<&'static str, serde_json::Value>,
}

impl Summary {
    /// `features`: each feature's stats section, by name (`Feature::stats`).
    pub fn new(
        elapsed: Duration,
        ports: Vec<PortSummary>,
        totals: Totals,
        mempool_in_use: u32,
        features: BTreeMap<&'static str, serde_json::Value>,
    ) -> Self {
        let (rx, tx, dropped) = (totals.rx_packets(), totals.tx_packets(), totals.dropped());
        Summary {
            elapsed_seconds: elapsed.as_secs_f64(),
            rx_packets: rx,
            tx_packets: tx,
            dropped,
            made: totals.made,
            absorbed: totals.absorbed,
            migration: totals.migration,
            unaccounted: i128::from(rx) + i128::from(totals.made)
                - i128::from(tx)
                - i128::from(dropped)
                - i128::from(totals.absorbed)
                - i128::from(totals.migration.holding)
                - i128::from(totals.tunnels.waiting),
            ports,
            drops: totals.drops,
            address_rewrite: totals.address_rewrite,
            tunnels: totals.tunnels,
            storage: totals.storage,
            mempool_in_use,
            features,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "switchyard: ran {:.3} s", self.elapsed_seconds)?;
        writeln!(
            f,
            "{:<4} {:<12} {:<7} {:>12} {:>12} {:>10} {:>10} {:>9} {:>10}",
            "port", "name", "role", "rx_packets", "tx_packets", "rx_drop", "tx_drop", "imissed", "rx_nombuf"
        )?;
        for p in &self.ports {
            writeln!(
                f,
                "{:<4} {:<12} {:<7} {:>12} {:>12} {:>10} {:>10} {:>9} {:>10}",
                p.index,
                p.name,
                p.role,
                p.counters.rx_packets,
                p.counters.tx_packets,
                p.counters.rx_dropped,
                p.counters.tx_dropped,
                p.nic.imissed,
                p.nic.rx_nombuf
            )?;
        }
        for (reason, count) in self.drops.iter().filter(|(_, &n)| n > 0) {
            writeln!(f, "drop {reason:<24} {count:>12}")?;
        }
        let rewrite = &self.address_rewrite;
        if rewrite.to_vm + rewrite.from_vm > 0 {
            writeln!(
                f,
                "address rewrite: to VM {}, from VM {}, ICMP errors translated {}",
                rewrite.to_vm, rewrite.from_vm, rewrite.icmp_errors
            )?;
        }
        for (status, count) in rewrite.reports.iter().filter(|(_, &n)| n > 0) {
            writeln!(f, "address report {status:<32} {count:>6}")?;
        }
        write!(f, "total rx {}", self.rx_packets)?;
        if self.made > 0 {
            write!(f, " + made {}", self.made)?;
        }
        write!(f, " = tx {} + dropped {}", self.tx_packets, self.dropped)?;
        if self.absorbed > 0 {
            write!(f, " + absorbed {}", self.absorbed)?;
        }
        if self.migration.holding > 0 {
            write!(f, " + held {}", self.migration.holding)?;
        }
        if self.unaccounted != 0 {
            write!(f, " (UNACCOUNTED {})", self.unaccounted)?;
        }
        Ok(())
    }
}
