//! A stand-in data plane for tests and for trying the API without DPDK: fixed
//! ports, canned JSON, a record of every snapshot applied, and upgrades that
//! walk the eight steps (pausing and resuming the config gate for real) without
//! loading anything.
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use super::runtime::{PortView, Runtime};
use super::migration::MigrationPlane;
use crate::config::PortRole;
use crate::model::{ConfigSnapshot, ImageUse, StorageCatalog};
use crate::upgrade::{
    unix_us, ConfigGate, UnitFile, Outcome, StepRecord, UnitDescription, UpgradeRecord, UpgradeRefused, UpgradeStatus, STEP_NAMES,
};
use crate::wire::MacAddr;

pub struct FakeRuntime {
    ports: Vec<PortView>,
    applied: Mutex<Vec<ConfigSnapshot>>,
    /// `[upgrade] library_dir` (`with_unit_directory`); the default one by default.
    unit_directory: PathBuf,
    /// The uplink's VTEP address (`with_local_vtep`); none by default.
    local_vtep: Option<std::net::Ipv4Addr>,
    /// Address-migration reports "workers judged", handed out by `address_reports`.
    reports: Mutex<Vec<crate::address_migration::AddressReport>>,
    upgrades: Mutex<FakeUpgrades>,
    /// Signalled whenever `upgrades` changes (a step done, held, released).
    upgrade_changed: Condvar,
    migration: Option<MigrationPlane>,
    /// Image uses as a block-I/O stage would record them (tests set them).
    image_use: Arc<ImageUse>,
    /// Every storage catalog handed over, oldest first.
    catalogs: Mutex<Vec<Arc<StorageCatalog>>>,
}

/// The fake's unit and upgrade bookkeeping.
struct FakeUpgrades {
    /// `None`: the fake plays a cross-connect switch, which has no unit to upgrade.
    unit: Option<UnitDescription>,
    running: Option<UpgradeRecord>,
    history: Vec<UpgradeRecord>,
    next_id: u64,
    /// Upgrades stop after step 1 (config requests paused) until released.
    hold: bool,
    /// An upgrade is stopped there now.
    held: bool,
    /// The next upgrade's new unit is refused at step 5 with this reason.
    refuse_next: Option<String>,
    /// How long each of steps 2 to 7 takes.
    step_time: Duration,
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
            rx_relayed: 0,
        };
        FakeRuntime::with_ports(vec![
            port(0, "vm0", PortRole::Vm, "net_tap"),
            port(1, "vm1", PortRole::Vm, "net_tap"),
            port(2, "uplink0", PortRole::Uplink, "net_af_packet"),
        ])
    }

    pub fn with_ports(ports: Vec<PortView>) -> FakeRuntime {
        let unit = UnitDescription { id: "fake".into(), version: "0.0.0".into(), library: None };
        FakeRuntime {
            ports,
            applied: Mutex::new(Vec::new()),
            local_vtep: None,
            unit_directory: crate::config::UpgradeConfig::default().library_dir,
            reports: Mutex::new(Vec::new()),
            upgrades: Mutex::new(FakeUpgrades {
                unit: Some(unit),
                running: None,
                history: Vec::new(),
                next_id: 1,
                hold: false,
                held: false,
                refuse_next: None,
                step_time: Duration::from_millis(1),
            }),
            upgrade_changed: Condvar::new(),
            migration: None,
            image_use: Arc::default(),
            catalogs: Mutex::default(),
        }
    }

    /// Where image uses are recorded: `set_last_used` attaches an image.
    pub fn image_uses(&self) -> &Arc<ImageUse> {
        &self.image_use
    }

    /// The last storage catalog handed over (`Runtime::apply_storage`).
    pub fn last_catalog(&self) -> Option<Arc<StorageCatalog>> {
        self.catalogs.lock().unwrap_or_else(PoisonError::into_inner).last().cloned()
    }

    /// How many storage catalogs were handed over.
    pub fn catalogs_applied(&self) -> usize {
        self.catalogs.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// A switch whose VM migrations work on `plane`.
    pub fn with_migration_plane(mut self, plane: MigrationPlane) -> FakeRuntime {
        self.migration = Some(plane);
        self
    }

    /// A switch without a switching unit (the cross-connect): upgrades are refused.
    /// Checks unit libraries against `dir` (the fake loads none).
    pub fn with_unit_directory(mut self, dir: impl Into<PathBuf>) -> FakeRuntime {
        self.unit_directory = dir.into();
        self
    }

    /// Plays a switch whose uplink has the VTEP address `vtep`.
    pub fn with_local_vtep(mut self, vtep: std::net::Ipv4Addr) -> FakeRuntime {
        self.local_vtep = Some(vtep);
        self
    }

    pub fn without_unit(self) -> FakeRuntime {
        self.lock_upgrades().unit = None;
        self
    }

    /// Queues a VM report as if a worker had judged it.
    pub fn push_address_report(&self, report: crate::address_migration::AddressReport) {
        self.reports.lock().unwrap_or_else(PoisonError::into_inner).push(report);
    }

    /// Every snapshot passed to `apply`, oldest first.
    pub fn applied(&self) -> Vec<ConfigSnapshot> {
        self.applied.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn last_applied(&self) -> Option<ConfigSnapshot> {
        self.applied.lock().unwrap_or_else(PoisonError::into_inner).last().cloned()
    }

    /// From now on upgrades stop right after step 1, with config requests paused,
    /// until `release_upgrades`: the window in which tests send requests.
    pub fn hold_upgrades(&self) {
        self.lock_upgrades().hold = true;
    }

    /// Lets a held upgrade go on (and later ones run straight through).
    pub fn release_upgrades(&self) {
        self.lock_upgrades().hold = false;
        self.upgrade_changed.notify_all();
    }

    /// Waits until an upgrade is stopped at the hold; false after `timeout`.
    pub fn wait_until_held(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut upgrades = self.lock_upgrades();
        while !upgrades.held {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            upgrades = self.upgrade_changed.wait_timeout(upgrades, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }

    /// The next upgrade's new unit is refused at step 5, and the upgrade rolls back.
    pub fn refuse_next_upgrade(&self, reason: &str) {
        self.lock_upgrades().refuse_next = Some(reason.to_string());
    }

    /// How long each of steps 2 to 7 takes (1 ms unless set).
    pub fn set_upgrade_step_time(&self, step_time: Duration) {
        self.lock_upgrades().step_time = step_time;
    }

    fn lock_upgrades(&self) -> MutexGuard<'_, FakeUpgrades> {
        self.upgrades.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one step: `action` returns (detail, ok); the step shows in the running record.
    fn step(&self, step: u8, name: &str, action: impl FnOnce() -> (String, bool)) -> bool {
        let started = SystemTime::now();
        let clock = Instant::now();
        let (detail, ok) = action();
        let record = StepRecord {
            step,
            name: name.to_string(),
            started_unix_us: unix_us(started),
            duration_us: clock.elapsed().as_micros() as u64,
            detail,
            ok,
        };
        if let Some(running) = self.lock_upgrades().running.as_mut() {
            running.steps.push(record);
        }
        self.upgrade_changed.notify_all();
        ok
    }

    fn numbered(&self, step: u8, action: impl FnOnce() -> (String, bool)) -> bool {
        self.step(step, STEP_NAMES[usize::from(step) - 1], action)
    }
}

impl Runtime for FakeRuntime {
    fn apply(&self, _changes: &[crate::model::Change], config: &ConfigSnapshot) {
        self.applied.lock().unwrap_or_else(PoisonError::into_inner).push(config.clone());
    }

    fn local_vtep(&self) -> Option<std::net::Ipv4Addr> {
        self.local_vtep
    }

    fn unit_directory(&self) -> PathBuf {
        self.unit_directory.clone()
    }

    fn migration_plane(&self) -> Option<MigrationPlane> {
        self.migration.clone()
    }

    fn apply_storage(&self, catalog: Arc<StorageCatalog>) {
        self.catalogs.lock().unwrap_or_else(PoisonError::into_inner).push(catalog);
    }

    fn image_use(&self) -> Option<Arc<ImageUse>> {
        Some(self.image_use.clone())
    }

    fn ports(&self) -> Vec<PortView> {
        self.ports.clone()
    }

    fn unit_info(&self) -> serde_json::Value {
        let generation = self.last_applied().map_or(0, |s| s.generation);
        let Some(unit) = self.lock_upgrades().unit.clone() else {
            return json!({ "vm": null, "uplink": null, "forwarding": "cross-connect" });
        };
        json!({
            "vm": {"id": unit.id, "version": unit.version, "generation": generation},
            "uplink": {"id": unit.id, "version": unit.version, "generation": generation},
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

    /// The eight steps with nothing behind them but the gate: step 1 pauses it,
    /// step 8 resumes it. The new unit is "fake 0.0.0+<the library's file stem>".
    fn upgrade(&self, library: &UnitFile, gate: &dyn ConfigGate) -> Result<UpgradeRecord, UpgradeRefused> {
        let library = library.path();
        let started = SystemTime::now();
        let clock = Instant::now();
        let (mut record, refusal, step_time) = {
            let mut upgrades = self.lock_upgrades();
            let Some(from) = upgrades.unit.clone() else { return Err(UpgradeRefused::NoUnit) };
            // Checked before anything else, as the orchestrator does: a second
            // upgrade never touches the gate.
            if let Some(running) = &upgrades.running {
                return Err(UpgradeRefused::InProgress(running.id));
            }
            let id = upgrades.next_id;
            upgrades.next_id += 1;
            let record = UpgradeRecord {
                id,
                library: library.display().to_string(),
                from: from.clone(),
                to: None,
                outcome: Outcome::Running,
                error: None,
                started_unix_us: unix_us(started),
                duration_us: 0,
                steps: Vec::new(),
                queued_applied: 0,
                queued_failed: 0,
            };
            upgrades.running = Some(record.clone());
            (record, upgrades.refuse_next.take(), upgrades.step_time)
        };
        let from = record.from.clone();
        let stem = library.file_stem().map_or("new".into(), |s| s.to_string_lossy().into_owned());
        let new = UnitDescription {
            id: from.id.clone(),
            version: format!("{}+{stem}", from.version.split('+').next().unwrap_or_default()),
            library: Some(library.display().to_string()),
        };
        let work = |detail: String| {
            std::thread::sleep(step_time);
            (detail, true)
        };

        self.numbered(1, || {
            gate.pause();
            ("config requests are queued".into(), true)
        });
        {
            let mut upgrades = self.lock_upgrades();
            if upgrades.hold {
                upgrades.held = true;
                self.upgrade_changed.notify_all();
                while upgrades.hold {
                    upgrades = self.upgrade_changed.wait(upgrades).unwrap_or_else(PoisonError::into_inner);
                }
                upgrades.held = false;
            }
        }
        // Like the orchestrator, the units are configured from what the gate says is committed.
        let configured = |what: String| match gate.committed() {
            Ok(config) => work(format!("{what}, configured at generation {}", config.generation)),
            Err(e) => (e, false),
        };
        self.numbered(2, || configured("intermediate 0.0.0 ready".into()));
        self.numbered(3, || work("vm side, then uplink side".into()));
        self.numbered(4, || work(format!("{} {} unloaded", from.id, from.version)));
        let upgraded = self.numbered(5, || match &refusal {
            Some(reason) => (reason.clone(), false),
            None => configured(format!("{} {} loaded from {}", new.id, new.version, library.display())),
        });
        if upgraded {
            self.numbered(6, || work("vm side, then uplink side".into()));
            self.numbered(7, || work("intermediate 0.0.0 unloaded".into()));
        } else {
            self.step(0, "roll back: load the previous unit and write the configuration into it", || {
                configured(format!("{} {} loaded again", from.id, from.version))
            });
            self.step(0, "roll back: switch VM-side ports, then uplink ports, to the previous unit", || {
                work(format!("{} {} forwards again", from.id, from.version))
            });
            self.step(0, "roll back: clear and unload the intermediate unit", || {
                work("intermediate 0.0.0 unloaded".into())
            });
        }
        let mut resumed = Default::default();
        self.numbered(8, || {
            resumed = gate.resume();
            (format!("{} queued requests applied, {} refused", resumed.applied, resumed.failed), true)
        });

        let mut upgrades = self.lock_upgrades();
        record.steps = upgrades.running.take().map(|running| running.steps).unwrap_or_default();
        record.duration_us = clock.elapsed().as_micros() as u64;
        record.queued_applied = resumed.applied;
        record.queued_failed = resumed.failed;
        if upgraded {
            record.outcome = Outcome::Upgraded;
            record.to = Some(new.clone());
            upgrades.unit = Some(new);
        } else {
            record.outcome = Outcome::RolledBack;
            record.to = Some(from);
            record.error = refusal;
        }
        upgrades.history.push(record.clone());
        if upgrades.history.len() > 100 {
            upgrades.history.remove(0);
        }
        self.upgrade_changed.notify_all();
        Ok(record)
    }

    fn address_reports(&self) -> Vec<crate::address_migration::AddressReport> {
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn upgrade_status(&self) -> Result<UpgradeStatus, UpgradeRefused> {
        let upgrades = self.lock_upgrades();
        let unit = upgrades.unit.clone().ok_or(UpgradeRefused::NoUnit)?;
        Ok(UpgradeStatus {
            vm: unit.clone(),
            uplink: unit,
            running: upgrades.running.clone(),
            history: upgrades.history.clone(),
        })
    }
}
