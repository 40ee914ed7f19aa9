//! The orchestrator on byte-array packets, without EAL: a worker thread keeps
//! forwarding through a `UnitStage` while units are swapped under it.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::overlay::{UnitHost, UnitSetup, VRouterUnit, VmPort};
use crate::pipeline::{Burst, BytesPacket, PortId, Stage, Verdict};
use crate::model::{ConfigSnapshot, Network, PortNetwork, VmEndpoint};
use crate::unit::{SwitchingUnit, UnitStage, UnitState};
use crate::wire::MacAddr;

type Unit = Arc<dyn SwitchingUnit<BytesPacket>>;

fn config() -> ConfigSnapshot {
    ConfigSnapshot {
        generation: 7,
        networks: vec![Network { vni: 100, name: "blue".into(), flood_vteps: vec![] }],
        endpoints: vec![VmEndpoint { vni: 100, mac: MacAddr([2, 0, 0, 0, 0, 1]), ip: None, port: "vm1".into() }],
        ports: vec![PortNetwork { port: "vm0".into(), vni: 100 }],
        ..Default::default()
    }
}

fn host() -> Arc<UnitHost<BytesPacket>> {
    let vm_ports = vec![VmPort { name: "vm0".into(), id: PortId(0) }, VmPort { name: "vm1".into(), id: PortId(1) }];
    Arc::new(UnitHost::new(UnitSetup {
        vm_ports,
        underlay: None,
        ageing_ms: 300_000,
        state: UnitState { config: config(), ..Default::default() },
    }))
}

/// "good" makes a vRouter, "unhealthy" one that lost a network, anything
/// else is refused.
struct Loader;

impl UnitLoader<BytesPacket> for Loader {
    fn load(&self, library: &UnitFile, setup: &UnitSetup) -> Result<Unit, String> {
        let library = library.path();
        match library.to_str() {
            Some("good") => Ok(Arc::new(VRouterUnit::new(setup.clone()))),
            Some("unhealthy") => {
                let mut state = setup.state.clone();
                state.config.networks.clear();
                Ok(Arc::new(VRouterUnit::new(UnitSetup { state, ..setup.clone() })))
            }
            _ => Err(format!("cannot load {}", library.display())),
        }
    }
}

#[derive(Default)]
struct Gate {
    calls: Mutex<Vec<&'static str>>,
    /// While set, `pause` waits (to hold an upgrade in step 1).
    hold: AtomicBool,
}

impl ConfigGate for Gate {
    fn pause(&self) {
        self.calls.lock().unwrap().push("pause");
        while self.hold.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }
    fn committed(&self) -> Result<ConfigSnapshot, String> {
        Ok(config())
    }
    fn resume(&self) -> Resumed {
        self.calls.lock().unwrap().push("resume");
        Resumed { applied: 2, failed: 1 }
    }
}

/// A worker forwarding one frame per loop until `stop`; counts what was
/// forwarded to vm1 and anything else.
fn worker(host: &UnitHost<BytesPacket>, stop: &AtomicBool, forwarded: &AtomicU64, other: &AtomicU64) {
    let mut stage = UnitStage::new(host.units().clone(), vec![], 1_000_000);
    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9, 0x08, 0x00];
    frame.resize(60, 0);
    let mut now = 0;
    while !stop.load(Ordering::Relaxed) {
        now += 1;
        stage.quiescent(now);
        let mut burst = Burst::new(PortId(0));
        burst.push(BytesPacket::new(&frame)).unwrap();
        stage.process(&mut burst);
        match burst.verdicts()[0] {
            Verdict::Forward(PortId(1)) => forwarded.fetch_add(1, Ordering::Relaxed),
            _ => other.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Runs `body` with a worker forwarding on `host`; returns (forwarded, other).
fn with_worker(host: &Arc<UnitHost<BytesPacket>>, body: impl FnOnce()) -> (u64, u64) {
    let (stop, forwarded, other) = (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| worker(host, &stop, &forwarded, &other));
        while forwarded.load(Ordering::Relaxed) + other.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        body();
        stop.store(true, Ordering::Relaxed);
    });
    (forwarded.into_inner(), other.into_inner())
}

#[test]
fn an_upgrade_runs_the_eight_steps_in_order_while_a_worker_keeps_forwarding() {
    let host = host();
    let upgrader = Upgrader::with_loader(host.clone(), Box::new(Loader));
    let gate = Gate::default();
    let old: Unit = host.units().active(crate::pipeline::Side::Vm);
    let old_weak = Arc::downgrade(&old);
    drop(old);
    let mut record = None;
    let (forwarded, other) = with_worker(&host, || record = Some(upgrader.upgrade(&UnitFile::unchecked("good").unwrap(), &gate).unwrap()));
    let record = record.unwrap();
    assert_eq!(record.outcome, Outcome::Upgraded, "{record:?}");
    assert_eq!(record.steps.iter().map(|s| s.step).collect::<Vec<_>>(), (1..=8).collect::<Vec<u8>>());
    assert!(record.steps.iter().all(|s| s.ok && s.name == STEP_NAMES[usize::from(s.step) - 1]));
    assert!(record.steps[2].detail.starts_with("intermediate bound: VM side in "), "{:?}", record.steps[2]);
    assert_eq!((record.queued_applied, record.queued_failed), (2, 1));
    assert_eq!(*gate.calls.lock().unwrap(), ["pause", "resume"]);
    assert_eq!(record.from.library, None);
    assert_eq!(old_weak.strong_count(), 0, "the old unit was destroyed at step 4");
    assert_eq!(other, 0, "every frame was forwarded: there was never a moment without a unit");
    assert!(forwarded > 0);
    let status = upgrader.status();
    assert_eq!(status.history, vec![record]);
    assert!(status.running.is_none());
    assert!(crate::telemetry::upgrades(upgrader.counts(), &upgrader.status()).contains("switchyard_upgrades_total{outcome=\"upgraded\"} 1"));
}

#[test]
fn a_refused_unit_is_rolled_back_to_the_previous_one_with_the_reason() {
    for (library, reason) in [("missing", "step 5: cannot load missing"), ("unhealthy", "step 5: health check failed")] {
        let host = host();
        let upgrader = Upgrader::with_loader(host.clone(), Box::new(Loader));
        let gate = Gate::default();
        let mut record = None;
        let (_, other) = with_worker(&host, || record = Some(upgrader.upgrade(&UnitFile::unchecked(library).unwrap(), &gate).unwrap()));
        let record = record.unwrap();
        assert_eq!(record.outcome, Outcome::RolledBack);
        assert!(record.error.as_deref().unwrap_or_default().starts_with(reason), "{record:?}");
        let steps: Vec<u8> = record.steps.iter().map(|s| s.step).collect();
        assert_eq!(steps, [1, 2, 3, 4, 5, 0, 0, 0, 8], "{record:?}");
        assert!(!record.steps[4].ok);
        assert_eq!(record.to.as_ref().map(|u| (u.id.as_str(), u.library.is_none())), Some(("vrouter", true)));
        assert_eq!(host.units().active(crate::pipeline::Side::Uplink).id(), "vrouter");
        assert_eq!(*gate.calls.lock().unwrap(), ["pause", "resume"], "requests resume after a rollback too");
        assert_eq!(other, 0);
        assert!(crate::telemetry::upgrades(upgrader.counts(), &upgrader.status()).contains("switchyard_upgrades_total{outcome=\"rolled_back\"} 1"));
    }
}

#[test]
fn a_second_upgrade_while_one_runs_is_refused() {
    let host = host();
    let upgrader = Upgrader::with_loader(host, Box::new(Loader));
    let gate = Gate { hold: AtomicBool::new(true), ..Gate::default() };
    std::thread::scope(|scope| {
        let first = scope.spawn(|| upgrader.upgrade(&UnitFile::unchecked("good").unwrap(), &gate));
        while gate.calls.lock().unwrap().is_empty() {
            std::thread::yield_now();
        }
        assert_eq!(upgrader.upgrade(&UnitFile::unchecked("good").unwrap(), &Gate::default()), Err(UpgradeRefused::InProgress(1)));
        assert_eq!(upgrader.status().running.map(|r| r.id), Some(1));
        gate.hold.store(false, Ordering::SeqCst);
        assert_eq!(first.join().unwrap().unwrap().outcome, Outcome::Upgraded);
    });
}

/// A unit in a shared library gets its configuration as JSON, which never
/// carries a storage user's secret: the health check does not hold that against it.
#[test]
fn a_unit_configured_through_json_passes_the_health_check_with_storage_users() {
    struct JsonLoader;
    impl UnitLoader<BytesPacket> for JsonLoader {
        fn load(&self, _library: &UnitFile, setup: &UnitSetup) -> Result<Unit, String> {
            let json = serde_json::to_string(&setup.state).map_err(|e| e.to_string())?;
            let state: UnitState = serde_json::from_str(&json).map_err(|e| e.to_string())?;
            Ok(Arc::new(VRouterUnit::new(UnitSetup { state, ..setup.clone() })))
        }
    }
    struct Committed(ConfigSnapshot);
    impl ConfigGate for Committed {
        fn pause(&self) {}
        fn committed(&self) -> Result<ConfigSnapshot, String> {
            Ok(self.0.clone())
        }
        fn resume(&self) -> Resumed {
            Resumed::default()
        }
    }
    let mut committed = config();
    committed.storage.users.push(crate::model::StorageUser {
        name: "alice".into(),
        id: 1,
        ips: vec![std::net::Ipv4Addr::new(10, 0, 0, 5)],
        quota_bytes: 1 << 30,
        secret: crate::model::Secret([7; 32]),
    });
    let upgrader = Upgrader::with_loader(host(), Box::new(JsonLoader));
    let record = upgrader.upgrade(&UnitFile::unchecked("json").unwrap(), &Committed(committed)).unwrap();
    assert_eq!(record.outcome, Outcome::Upgraded, "{record:?}");
}
