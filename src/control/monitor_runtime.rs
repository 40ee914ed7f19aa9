//! The real `Runtime`: the running data plane seen through its `Monitor`.
use serde_json::{json, Value};

use super::{PortView, Runtime};
use crate::dataplane::Monitor;
use crate::store::ConfigSnapshot;
use crate::telemetry;
use crate::unit::{Side, SwitchingUnit};

pub struct MonitorRuntime {
    monitor: Monitor,
}

impl MonitorRuntime {
    pub fn new(monitor: Monitor) -> Self {
        MonitorRuntime { monitor }
    }
}

fn unit_json(unit: &dyn SwitchingUnit<crate::dpdk::Mbuf>) -> Value {
    json!({ "id": unit.id(), "version": unit.version(), "generation": unit.generation() })
}

impl Runtime for MonitorRuntime {
    fn apply(&self, config: &ConfigSnapshot) {
        if let Some(overlay) = self.monitor.overlay() {
            overlay.apply(config);
        }
    }

    fn ports(&self) -> Vec<PortView> {
        let totals = self.monitor.totals();
        self.monitor
            .ports()
            .map(|(binding, driver)| {
                let counters = totals.ports.get(binding.id.index()).copied().unwrap_or_default();
                PortView {
                    name: binding.config.name.clone(),
                    role: binding.config.role,
                    driver: driver.to_string(),
                    mac: binding.mac,
                    rx_packets: counters.rx_packets,
                    rx_bytes: counters.rx_bytes,
                    tx_packets: counters.tx_packets,
                    tx_bytes: counters.tx_bytes,
                    rx_dropped: counters.rx_dropped,
                    tx_dropped: counters.tx_dropped,
                }
            })
            .collect()
    }

    fn unit_info(&self) -> Value {
        let Some(overlay) = self.monitor.overlay() else {
            return json!({ "vm": null, "uplink": null, "forwarding": "cross-connect" });
        };
        let tables: serde_json::Map<String, Value> =
            overlay.current().tables().sizes().into_iter().map(|(name, size)| (name.to_string(), json!(size))).collect();
        json!({
            "vm": unit_json(&*overlay.table().active(Side::Vm)),
            "uplink": unit_json(&*overlay.table().active(Side::Uplink)),
            "tables": tables,
            "learn_reports_lost": overlay.lost_reports(),
        })
    }

    fn stats(&self) -> Value {
        let workers: Vec<Value> = self
            .monitor
            .per_worker()
            .into_iter()
            .map(|(lcore, t)| json!({ "lcore": lcore, "rx_packets": t.rx_packets(), "tx_packets": t.tx_packets(), "dropped": t.dropped(), "drops": t.drops }))
            .collect();
        let mut stats = serde_json::to_value(self.monitor.summary()).unwrap_or(Value::Null);
        stats["workers"] = Value::Array(workers);
        stats
    }

    fn metrics(&self) -> String {
        telemetry::prometheus(&self.monitor)
    }

    fn learned(&self) -> Value {
        let Some(overlay) = self.monitor.overlay() else {
            return json!({ "macs": [], "neighbors": [] });
        };
        let learned = overlay.learned();
        let mut macs: Vec<Value> = learned
            .macs
            .iter()
            .map(|((vni, mac), (at, _))| json!({ "vni": vni, "mac": mac, "location": at.to_string() }))
            .collect();
        macs.sort_by_key(|m| (m["vni"].as_u64(), m["mac"].as_str().map(str::to_owned)));
        let mut neighbors: Vec<Value> =
            learned.neighbors.iter().map(|(ip, (mac, _))| json!({ "ip": ip, "mac": mac })).collect();
        neighbors.sort_by_key(|n| n["ip"].as_str().map(str::to_owned));
        json!({ "macs": macs, "neighbors": neighbors })
    }

    fn upgrade(&self, _library: &std::path::Path, _gate: &dyn crate::upgrade::ConfigGate) -> Result<crate::upgrade::UpgradeRecord, crate::upgrade::UpgradeRefused> {
        Err(crate::upgrade::UpgradeRefused::NoUnit)
    }

    fn upgrade_status(&self) -> Result<crate::upgrade::UpgradeStatus, crate::upgrade::UpgradeRefused> {
        Err(crate::upgrade::UpgradeRefused::NoUnit)
    }
}
