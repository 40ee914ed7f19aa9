//! Prometheus text exposition (format 0.0.4) of a running switch: per port,
//! per worker, per drop reason, the active switching units and table sizes,
//! then each feature's own families.
use crate::dataplane::{MetricsPage as Page, Monitor};
use crate::upgrade::{UpgradeCounts, UpgradeStatus};

/// The whole `/metrics` page.
pub fn prometheus(monitor: &Monitor) -> String {
    let summary = monitor.summary();
    let mut out = Page::default();

    out.family("switchyard_port_packets_total", "counter", "Packets by port and direction (rx received, tx sent).");
    for p in &summary.ports {
        out.sample("switchyard_port_packets_total", &[("port", &p.name), ("role", &p.role), ("direction", "rx")], p.counters.rx_packets);
        out.sample("switchyard_port_packets_total", &[("port", &p.name), ("role", &p.role), ("direction", "tx")], p.counters.tx_packets);
    }
    out.family("switchyard_port_bytes_total", "counter", "Bytes by port and direction.");
    for p in &summary.ports {
        out.sample("switchyard_port_bytes_total", &[("port", &p.name), ("direction", "rx")], p.counters.rx_bytes);
        out.sample("switchyard_port_bytes_total", &[("port", &p.name), ("direction", "tx")], p.counters.tx_bytes);
    }
    out.family("switchyard_port_dropped_total", "counter", "Packets dropped: rx = received here and dropped by a stage, tx = refused by this port's queue.");
    for p in &summary.ports {
        out.sample("switchyard_port_dropped_total", &[("port", &p.name), ("direction", "rx")], p.counters.rx_dropped);
        out.sample("switchyard_port_dropped_total", &[("port", &p.name), ("direction", "tx")], p.counters.tx_dropped);
    }
    out.family("switchyard_port_relayed_total", "counter", "Packets received on a port and sent back out of it: an inter-cloud gateway's second hop, a migration source's relay.");
    for p in &summary.ports {
        out.sample("switchyard_port_relayed_total", &[("port", &p.name)], p.counters.rx_relayed);
    }
    out.family("switchyard_port_nic_missed_total", "counter", "Packets the NIC dropped before a worker saw them (imissed + rx_nombuf).");
    for p in &summary.ports {
        out.sample("switchyard_port_nic_missed_total", &[("port", &p.name)], p.nic.imissed + p.nic.rx_nombuf);
    }
    out.family("switchyard_port_link_up", "gauge", "1 if the port's link is up.");
    for p in &summary.ports {
        out.sample("switchyard_port_link_up", &[("port", &p.name)], u64::from(p.link.up));
    }

    out.family("switchyard_drops_total", "counter", "Packets dropped, by named reason (see docs/drop-reasons.md).");
    for (reason, count) in &summary.drops {
        out.sample("switchyard_drops_total", &[("reason", reason)], *count);
    }
    out.family("switchyard_packets_made_total", "counter", "Packets stages made: flood copies, head-end replicas, ARP requests.");
    out.sample("switchyard_packets_made_total", &[], summary.made);
    out.family("switchyard_packets_absorbed_total", "counter", "Packets addressed to the switch and handled there.");
    out.sample("switchyard_packets_absorbed_total", &[], summary.absorbed);
    out.family("switchyard_mempool_in_use", "gauge", "Mbufs out of the pool.");
    out.sample("switchyard_mempool_in_use", &[], u64::from(summary.mempool_in_use));

    out.family("switchyard_worker_packets_total", "counter", "Packets by worker lcore and direction.");
    for (lcore, totals) in monitor.per_worker() {
        let lcore = lcore.to_string();
        out.sample("switchyard_worker_packets_total", &[("lcore", &lcore), ("direction", "rx")], totals.rx_packets());
        out.sample("switchyard_worker_packets_total", &[("lcore", &lcore), ("direction", "tx")], totals.tx_packets());
        out.sample("switchyard_worker_packets_total", &[("lcore", &lcore), ("direction", "dropped")], totals.dropped());
    }

    for feature in monitor.features() {
        feature.metrics(&summary, &mut out);
    }
    out.into_text()
}

/// The upgrade families: upgrades by outcome, whether one runs, and the steps
/// of the last one (numbered as in docs/upgrade.md; 0 = a rollback action).
pub fn upgrades(counts: UpgradeCounts, status: &UpgradeStatus) -> String {
    let mut out = Page::default();
    out.family("switchyard_upgrades_total", "counter", "Finished unit upgrades by outcome.");
    out.sample("switchyard_upgrades_total", &[("outcome", "upgraded")], counts.upgraded);
    out.sample("switchyard_upgrades_total", &[("outcome", "rolled_back")], counts.rolled_back);
    out.family("switchyard_upgrade_in_progress", "gauge", "1 while a unit upgrade runs.");
    out.sample("switchyard_upgrade_in_progress", &[], u8::from(status.running.is_some()));
    if let Some(last) = status.history.last() {
        out.family("switchyard_upgrade_last_step_seconds", "gauge", "Duration of each step of the last upgrade (numbered as in docs/upgrade.md; 0 = rollback).");
        for step in &last.steps {
            let number = step.step.to_string();
            let labels = [("step", number.as_str()), ("name", step.name.as_str())];
            out.sample("switchyard_upgrade_last_step_seconds", &labels, step.duration_us as f64 / 1e6);
        }
        out.family("switchyard_upgrade_last_seconds", "gauge", "Duration of the last upgrade.");
        out.sample("switchyard_upgrade_last_seconds", &[], last.duration_us as f64 / 1e6);
    }
    out.into_text()
}
