//! Prometheus text exposition (format 0.0.4) of a running switch: per port,
//! per worker, per drop reason, the active switching units and table sizes.
use std::fmt::Write;

use crate::dataplane::Monitor;
use crate::unit::Side;
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
    let rewrite = &summary.address_rewrite;
    out.family("switchyard_address_rewrites_total", "counter", "Packets whose address an address migration rewrote: to_vm (destination primary -> post-migration IP), from_vm (source post-migration -> primary IP).");
    out.sample("switchyard_address_rewrites_total", &[("direction", "to_vm")], rewrite.to_vm);
    out.sample("switchyard_address_rewrites_total", &[("direction", "from_vm")], rewrite.from_vm);
    out.family("switchyard_address_rewrite_icmp_errors_total", "counter", "ICMP errors whose embedded packet was translated too.");
    out.sample("switchyard_address_rewrite_icmp_errors_total", &[], rewrite.icmp_errors);
    out.family("switchyard_address_reports_total", "counter", "VM reports of address migrations, by the status the VM was answered with.");
    for (status, count) in &rewrite.reports {
        out.sample("switchyard_address_reports_total", &[("status", status)], *count);
    }
    out.family("switchyard_address_report_arp_replies_total", "counter", "ARP requests for the report address the switch answered.");
    out.sample("switchyard_address_report_arp_replies_total", &[], rewrite.report_arp_replies);
    if let Some(migrations) = monitor.address_migrations() {
        let info = migrations.info();
        out.family("switchyard_address_migrations", "gauge", "Address migrations: active (rewriting) and pending (no post-migration IP yet, or the port is outside their network).");
        out.sample("switchyard_address_migrations", &[("state", "active")], info["active"].as_u64().unwrap_or(0));
        out.sample("switchyard_address_migrations", &[("state", "pending")], info["pending"].as_u64().unwrap_or(0));
        out.family("switchyard_address_reports_lost_total", "counter", "Judged VM reports the control plane never saw because its queue was full (accepted ones were answered busy).");
        out.sample("switchyard_address_reports_lost_total", &[], info["reports_lost"].as_u64().unwrap_or(0));
    }
    out.family("switchyard_packets_made_total", "counter", "Packets stages made: flood copies, head-end replicas, ARP requests.");
    out.sample("switchyard_packets_made_total", &[], summary.made);
    out.family("switchyard_packets_absorbed_total", "counter", "Packets addressed to the switch and handled there.");
    out.sample("switchyard_packets_absorbed_total", &[], summary.absorbed);
    let storage = &summary.storage;
    out.family("switchyard_storage_requests_total", "counter", "Authenticated storage request datagrams (each WRITE fragment counts).");
    out.sample("switchyard_storage_requests_total", &[], storage.requests);
    out.family("switchyard_storage_answered_from_window_total", "counter", "Storage retransmissions answered from the anti-replay window, not executed again.");
    out.sample("switchyard_storage_answered_from_window_total", &[], storage.answered_from_window);
    out.family("switchyard_storage_error_replies_total", "counter", "Storage replies with an error status.");
    out.sample("switchyard_storage_error_replies_total", &[], storage.error_replies);
    out.family("switchyard_storage_bytes_total", "counter", "Image bytes read and written by the block-I/O stage.");
    out.sample("switchyard_storage_bytes_total", &[("direction", "read")], storage.bytes_read);
    out.sample("switchyard_storage_bytes_total", &[("direction", "written")], storage.bytes_written);
    out.family("switchyard_mempool_in_use", "gauge", "Mbufs out of the pool.");
    out.sample("switchyard_mempool_in_use", &[], u64::from(summary.mempool_in_use));

    out.family("switchyard_worker_packets_total", "counter", "Packets by worker lcore and direction.");
    for (lcore, totals) in monitor.per_worker() {
        let lcore = lcore.to_string();
        out.sample("switchyard_worker_packets_total", &[("lcore", &lcore), ("direction", "rx")], totals.rx_packets());
        out.sample("switchyard_worker_packets_total", &[("lcore", &lcore), ("direction", "tx")], totals.tx_packets());
        out.sample("switchyard_worker_packets_total", &[("lcore", &lcore), ("direction", "dropped")], totals.dropped());
    }

    if let Some(host) = monitor.overlay() {
        out.family("switchyard_unit_info", "gauge", "The switching unit bound to each side (VM ports, uplink ports).");
        out.family("switchyard_unit_generation", "gauge", "The configuration generation of the unit bound to each side.");
        for (side, name) in [(Side::Vm, "vm"), (Side::Uplink, "uplink")] {
            let unit = host.units().active(side);
            out.sample("switchyard_unit_info", &[("side", name), ("id", unit.id()), ("version", unit.version())], 1);
            out.sample("switchyard_unit_generation", &[("side", name)], unit.generation());
        }
        let info = host.units().active(Side::Vm).info();
        out.family("switchyard_table_entries", "gauge", "Entries in the vRouter's tables.");
        for (table, size) in info["tables"].as_object().into_iter().flatten() {
            out.sample("switchyard_table_entries", &[("table", table)], size.as_u64().unwrap_or(0));
        }
        out.family("switchyard_learn_reports_lost_total", "counter", "Learn reports dropped because the control side was behind (no packet is lost).");
        out.sample("switchyard_learn_reports_lost_total", &[], info["learn_reports_lost"].as_u64().unwrap_or(0));
    }
    out.0
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
    out.0
}

#[derive(Default)]
struct Page(String);

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(self.0, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_text_format() {
        let mut page = Page::default();
        page.family("x_total", "counter", "Things.");
        page.sample("x_total", &[("port", "a\"b"), ("role", "vm")], 3);
        page.sample("x_total", &[], 4);
        assert_eq!(page.0, "# HELP x_total Things.\n# TYPE x_total counter\nx_total{port=\"a\\\"b\",role=\"vm\"} 3\nx_total 4\n");
    }
}
