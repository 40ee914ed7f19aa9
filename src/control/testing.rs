//! A stand-in data plane for tests and for trying the API without DPDK: fixed
//! ports, canned JSON, and a record of every snapshot applied.
use std::sync::{Mutex, PoisonError};

use serde_json::json;

use super::runtime::{PortView, Runtime};
use crate::config::PortRole;
use crate::store::ConfigSnapshot;
use crate::wire::MacAddr;

pub struct FakeRuntime {
    ports: Vec<PortView>,
    applied: Mutex<Vec<ConfigSnapshot>>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        FakeRuntime::new()
    }
}

impl FakeRuntime {
    /// Ports vm0 and vm1 (role vm, net_tap) and uplink0 (role uplink, net_af_packet).
    pub fn new() -> FakeRuntime {
        let port = |index: u8, name: &str, role: PortRole, driver: &str| PortView {
            name: name.into(),
            role,
            driver: driver.into(),
            mac: MacAddr([0x02, 0x53, 0x59, 0, 0, index]),
            rx_packets: 10 * u64::from(index) + 1,
            rx_bytes: 640 * u64::from(index) + 64,
            tx_packets: 10 * u64::from(index) + 2,
            tx_bytes: 640 * u64::from(index) + 128,
            rx_dropped: u64::from(index),
            tx_dropped: 0,
        };
        FakeRuntime::with_ports(vec![
            port(0, "vm0", PortRole::Vm, "net_tap"),
            port(1, "vm1", PortRole::Vm, "net_tap"),
            port(2, "uplink0", PortRole::Uplink, "net_af_packet"),
        ])
    }

    pub fn with_ports(ports: Vec<PortView>) -> FakeRuntime {
        FakeRuntime { ports, applied: Mutex::new(Vec::new()) }
    }

    /// Every snapshot passed to `apply`, oldest first.
    pub fn applied(&self) -> Vec<ConfigSnapshot> {
        self.applied.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn last_applied(&self) -> Option<ConfigSnapshot> {
        self.applied.lock().unwrap_or_else(PoisonError::into_inner).last().cloned()
    }
}

impl Runtime for FakeRuntime {
    fn apply(&self, _changes: &[crate::store::Change], config: &ConfigSnapshot) {
        self.applied.lock().unwrap_or_else(PoisonError::into_inner).push(config.clone());
    }

    fn ports(&self) -> Vec<PortView> {
        self.ports.clone()
    }

    fn unit_info(&self) -> serde_json::Value {
        let generation = self.last_applied().map_or(0, |s| s.generation);
        json!({
            "vm": {"id": "fake", "version": "0.0.0", "generation": generation},
            "uplink": {"id": "fake", "version": "0.0.0", "generation": generation},
        })
    }

    fn stats(&self) -> serde_json::Value {
        json!({
            "ports": self.ports.iter().map(|p| json!({"name": p.name, "rx_packets": p.rx_packets, "tx_packets": p.tx_packets})).collect::<Vec<_>>(),
            "workers": [{"lcore": 1, "polls": 1000, "busy_polls": 12}],
            "drops": {"truncated_ethernet": 1, "no_forwarding_rule": 2},
        })
    }

    fn metrics(&self) -> String {
        let mut text = String::from(
            "# HELP switchyard_port_rx_packets Frames received.\n# TYPE switchyard_port_rx_packets counter\n",
        );
        for p in &self.ports {
            text.push_str(&format!("switchyard_port_rx_packets{{port=\"{}\"}} {}\n", p.name, p.rx_packets));
        }
        text
    }

    fn learned(&self) -> serde_json::Value {
        json!({
            "macs": [{"vni": 100, "mac": "02:00:00:00:00:aa", "port": "vm0", "age_s": 3}],
            "neighbours": [{"vni": 100, "ip": "10.1.0.9", "mac": "02:00:00:00:00:bb", "vtep": "192.0.2.2"}],
        })
    }

    fn upgrade(&self, _library: &std::path::Path, _gate: &dyn crate::upgrade::ConfigGate) -> Result<crate::upgrade::UpgradeRecord, crate::upgrade::UpgradeRefused> {
        Err(crate::upgrade::UpgradeRefused::NoUnit)
    }

    fn upgrade_status(&self) -> Result<crate::upgrade::UpgradeStatus, crate::upgrade::UpgradeRefused> {
        Err(crate::upgrade::UpgradeRefused::NoUnit)
    }
}
