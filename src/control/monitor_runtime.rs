//! The real `Runtime`: the running data plane seen through its `Monitor`, and
//! the upgrade orchestrator working on its units.
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use std::time::Duration;

use super::{MigrationPlane, PortView, Runtime, TunnelView};
use crate::block_server::version::StorageVersion;
use crate::dataplane::Monitor;
use crate::config::BoardConfig;
use crate::model::{Change, ConfigSnapshot, ImageUse, StorageCatalog};
use crate::telemetry;
use crate::upgrade::{ConfigGate, UnitFile, UpgradeRecord, UpgradeRefused, UpgradeStatus, Upgrader};

pub struct MonitorRuntime {
    monitor: Monitor,
    /// Where the block-I/O stages record each image's last use.
    image_use: Arc<ImageUse>,
    upgrader: Option<Upgrader>,
    migration: Option<MigrationPlane>,
    /// `[upgrade] library_dir`.
    unit_directory: PathBuf,
}

impl MonitorRuntime {
    /// `linger`: how long finished migrations stay (`migration.linger_ms`);
    /// `board`: the bulletin board this host reports to and follows.
    pub fn new(monitor: Monitor, linger: Duration, board: Option<BoardConfig>) -> Self {
        let upgrader = monitor.overlay().map(|host| Upgrader::new(host.clone()));
        let migration = monitor.overlay().and_then(|host| {
            let setup = host.template();
            Some(MigrationPlane {
                holding: monitor.holding().clone(),
                vm_ports: setup.vm_ports.clone(),
                local_vtep: setup.underlay.as_ref()?.vtep.address,
                linger,
                board,
            })
        });
        let unit_directory = crate::config::UpgradeConfig::default().library_dir;
        MonitorRuntime { monitor, image_use: Arc::default(), upgrader, migration, unit_directory }
    }

    /// Unit libraries load from `dir` (`[upgrade] library_dir`).
    pub fn with_unit_directory(mut self, dir: PathBuf) -> Self {
        self.unit_directory = dir;
        self
    }

    fn upgrader(&self) -> Result<&Upgrader, UpgradeRefused> {
        self.upgrader.as_ref().ok_or(UpgradeRefused::NoUnit)
    }
}

impl Runtime for MonitorRuntime {
    fn apply(&self, changes: &[Change], config: &ConfigSnapshot) {
        // The switching unit is the last feature: the address rewrite's tables come first, as before.
        for feature in self.monitor.features() {
            feature.apply(changes, config);
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
                    rx_relayed: counters.rx_relayed,
                }
            })
            .collect()
    }

    fn unit_info(&self) -> Value {
        match self.monitor.overlay() {
            Some(host) => {
                let mut info = host.info();
                if let Some(migrations) = self.monitor.address_migrations() {
                    info["address_migrations"] = migrations.info();
                }
                info
            }
            None => json!({ "vm": null, "uplink": null, "forwarding": "cross-connect" }),
        }
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
        let mut page = telemetry::prometheus(&self.monitor);
        if let Some(upgrader) = &self.upgrader {
            page.push_str(&telemetry::upgrades(upgrader.counts(), &upgrader.status()));
        }
        page
    }

    fn learned(&self) -> Value {
        let Some(host) = self.monitor.overlay() else {
            return json!({ "macs": [], "neighbors": [] });
        };
        match host.units().active(crate::pipeline::Side::Vm).export() {
            Ok(state) => {
                let macs: Vec<Value> = state
                    .macs
                    .iter()
                    .map(|m| json!({ "vni": m.vni, "mac": m.mac, "location": m.location.to_string() }))
                    .collect();
                let neighbors: Vec<Value> = state.neighbors.iter().map(|n| json!({ "ip": n.ip, "mac": n.mac })).collect();
                json!({ "macs": macs, "neighbors": neighbors })
            }
            Err(e) => json!({ "macs": [], "neighbors": [], "error": e }),
        }
    }

    fn upgrade(&self, library: &UnitFile, gate: &dyn ConfigGate) -> Result<UpgradeRecord, UpgradeRefused> {
        self.upgrader()?.upgrade(library, gate)
    }

    fn upgrade_status(&self) -> Result<UpgradeStatus, UpgradeRefused> {
        Ok(self.upgrader()?.status())
    }

    fn unit_directory(&self) -> PathBuf {
        self.unit_directory.clone()
    }

    fn local_vtep(&self) -> Option<std::net::Ipv4Addr> {
        self.monitor.overlay()?.template().underlay.as_ref().map(|u| u.vtep.address)
    }

    fn migration_plane(&self) -> Option<MigrationPlane> {
        self.migration.clone()
    }

    fn address_reports(&self) -> Vec<crate::address_migration::AddressReport> {
        self.monitor.address_migrations().map(|m| m.take_reports()).unwrap_or_default()
    }

    fn apply_storage(&self, catalog: Arc<StorageCatalog>) {
        if let Some(versions) = self.monitor.storage() {
            versions.publish_both(Arc::new(StorageVersion::from_catalog(&catalog)));
        }
    }

    fn image_use(&self) -> Option<Arc<ImageUse>> {
        self.monitor.storage().map(|_| self.image_use.clone())
    }

    fn tunnels(&self) -> Vec<TunnelView> {
        self.monitor.tunnels().into_iter().map(|(vtep, info)| TunnelView { vtep, info }).collect()
    }
}
