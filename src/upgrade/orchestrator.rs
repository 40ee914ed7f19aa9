//! The upgrade orchestrator: the eight upgrade steps (docs/upgrade.md), each timed, logged and
//! recorded. Traffic never stops: at every moment both sides are bound to a
//! unit (old, intermediate or new), and a side is switched by publishing a new
//! binding that workers pick up at their next quiescent point.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::library::UnitFile;
use super::record::{
    ConfigGate, Outcome, StepRecord, UnitDescription, UpgradeRecord, UpgradeRefused, UpgradeStatus, STEP_NAMES,
};
use crate::dpdk::Mbuf;
use crate::model::unix_us;
use crate::overlay::{IntermediateUnit, UnitHost, UnitSetup, VRouterUnit};
use crate::pipeline::{PacketBuf, Side};
use crate::unit::{LoadedUnit, SwitchingUnit, UnitState};

/// How long workers get to pass a quiescent state after a side is switched.
/// They pass one every run-loop iteration, so only a stuck worker takes long.
const QUIESCENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Finished upgrades kept for `GET /v1/upgrade`.
const HISTORY: usize = 100;

type Unit<P> = Arc<dyn SwitchingUnit<P>>;

/// Makes units from libraries. The daemon's loads shared objects; tests of
/// the orchestrator without EAL stand in for it.
pub trait UnitLoader<P: PacketBuf>: Send + Sync {
    fn load(&self, library: &UnitFile, setup: &UnitSetup) -> Result<Unit<P>, String>;
}

/// Loads unit libraries through the unit ABI.
pub struct LibraryLoader;

impl UnitLoader<Mbuf> for LibraryLoader {
    fn load(&self, library: &UnitFile, setup: &UnitSetup) -> Result<Unit<Mbuf>, String> {
        let setup = serde_json::to_vec(setup).map_err(|e| format!("cannot encode the unit setup: {e}"))?;
        let unit = LoadedUnit::load_as(&library.load_path(), library.path(), &setup).map_err(|e| e.to_string())?;
        Ok(Arc::new(unit))
    }
}

/// Finished upgrades by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpgradeCounts {
    pub upgraded: u64,
    pub rolled_back: u64,
}

pub struct Upgrader<P: PacketBuf = Mbuf> {
    host: Arc<UnitHost<P>>,
    loader: Box<dyn UnitLoader<P>>,
    /// Held for a whole upgrade: a second request is refused, not queued.
    turn: Mutex<()>,
    running: Mutex<Option<UpgradeRecord>>,
    history: Mutex<VecDeque<UpgradeRecord>>,
    counts: Mutex<UpgradeCounts>,
    next_id: AtomicU64,
}

impl Upgrader<Mbuf> {
    pub fn new(host: Arc<UnitHost<Mbuf>>) -> Self {
        Upgrader::with_loader(host, Box::new(LibraryLoader))
    }
}

impl<P: PacketBuf + 'static> Upgrader<P> {
    pub fn with_loader(host: Arc<UnitHost<P>>, loader: Box<dyn UnitLoader<P>>) -> Self {
        Upgrader {
            host,
            loader,
            turn: Mutex::new(()),
            running: Mutex::new(None),
            history: Mutex::new(VecDeque::new()),
            counts: Mutex::new(UpgradeCounts::default()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Replaces the unit with the one in `library`; blocks until done. A
    /// refused unit is rolled back (`Outcome::RolledBack`, still `Ok`).
    pub fn upgrade(&self, library: &UnitFile, gate: &dyn ConfigGate) -> Result<UpgradeRecord, UpgradeRefused> {
        let Ok(_turn) = self.turn.try_lock() else {
            let id = lock(&self.running).as_ref().map_or(0, |r| r.id);
            return Err(UpgradeRefused::InProgress(id));
        };
        let old = self.host.units().active(Side::Vm);
        let mut run = Run {
            upgrader: self,
            record: UpgradeRecord {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                library: library.path().display().to_string(),
                from: describe(&*old),
                to: None,
                outcome: Outcome::Running,
                error: None,
                started_unix_us: unix_us(SystemTime::now()),
                duration_us: 0,
                steps: Vec::new(),
                queued_applied: 0,
                queued_failed: 0,
            },
            started: Instant::now(),
        };
        log::info!("upgrade {}: {} -> {}", run.record.id, display(&run.record.from), library.path().display());
        *lock(&self.running) = Some(run.record.clone());
        let result = run.steps(old, library, gate);
        let record = run.finish(result);
        *lock(&self.running) = None;
        let mut history = lock(&self.history);
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(record.clone());
        Ok(record)
    }

    pub fn status(&self) -> UpgradeStatus {
        UpgradeStatus {
            vm: describe(&*self.host.units().active(Side::Vm)),
            uplink: describe(&*self.host.units().active(Side::Uplink)),
            running: lock(&self.running).clone(),
            history: lock(&self.history).iter().cloned().collect(),
        }
    }

    pub fn counts(&self) -> UpgradeCounts {
        *lock(&self.counts)
    }
}

/// Why the new unit was refused, and at which step.
struct Refusal {
    step: u8,
    reason: String,
}

/// One upgrade in progress.
struct Run<'a, P: PacketBuf> {
    upgrader: &'a Upgrader<P>,
    record: UpgradeRecord,
    started: Instant,
}

impl<P: PacketBuf + 'static> Run<'_, P> {
    fn steps(&mut self, old: Unit<P>, library: &UnitFile, gate: &dyn ConfigGate) -> Result<(), Refusal> {
        let host = self.upgrader.host.clone();
        self.step(1, || {
            gate.pause();
            Ok("config requests are queued from now on".into())
        })?;

        // Step 2: the database's configuration, plus what the old unit learned.
        let mut intermediate: Option<Unit<P>> = None;
        let step2 = self.step(2, || {
            let config = gate.committed()?;
            let learned = old.export().unwrap_or_default();
            let state = UnitState { config, ..learned };
            let unit: Unit<P> = Arc::new(IntermediateUnit::new(host.setup(state)));
            let detail = format!("{} ready at generation {}", unit.id(), unit.generation());
            intermediate = Some(unit);
            Ok(detail)
        });
        let Some(intermediate) = intermediate.filter(|_| step2.is_ok()) else {
            // Nothing was switched: the old unit still forwards.
            self.resume(gate);
            return step2;
        };

        if let Err(refusal) = self.step(3, || switch_sides(&host, &intermediate)) {
            self.abandon(&host, &old, gate);
            return Err(refusal);
        }
        let previous = describe(&*old);
        self.step(4, || unload(old))?;

        let mut new: Option<Unit<P>> = None;
        let step5 = self.step(5, || {
            let config = gate.committed()?;
            let learned = intermediate.export().unwrap_or_default();
            let setup = host.setup(UnitState { config, ..learned });
            let unit = self.upgrader.loader.load(library, &setup)?;
            health_check(&*unit, &setup.state)?;
            let detail = format!("{} loaded, configured at generation {}, health check passed", display(&describe(&*unit)), unit.generation());
            new = Some(unit);
            Ok(detail)
        });
        let Some(new) = new.filter(|_| step5.is_ok()) else {
            self.roll_back(&previous, intermediate, gate);
            return step5;
        };

        self.step(6, || switch_sides(&host, &new))?;
        self.record.to = Some(describe(&*new));
        drop(new);
        self.step(7, || unload(intermediate))?;
        self.resume(gate);
        Ok(())
    }

    /// Runs step `number`, timing and recording it; an error refuses the upgrade.
    fn step(&mut self, number: u8, body: impl FnOnce() -> Result<String, String>) -> Result<(), Refusal> {
        let name = STEP_NAMES[usize::from(number) - 1];
        let outcome = self.timed(number, name, body);
        outcome.map_err(|reason| Refusal { step: number, reason })
    }

    fn timed(&mut self, number: u8, name: &str, body: impl FnOnce() -> Result<String, String>) -> Result<(), String> {
        let (wall, start) = (SystemTime::now(), Instant::now());
        let outcome = body();
        let duration_us = start.elapsed().as_micros() as u64;
        let (detail, ok) = match &outcome {
            Ok(detail) => (detail.clone(), true),
            Err(reason) => (reason.clone(), false),
        };
        let label = if number == 0 { "rollback".to_owned() } else { format!("step {number}/8") };
        if ok {
            log::info!("upgrade {}: {label} {name}: {detail} ({duration_us} us)", self.record.id);
        } else {
            log::error!("upgrade {}: {label} {name} failed: {detail} ({duration_us} us)", self.record.id);
        }
        self.record.steps.push(StepRecord {
            step: number,
            name: name.to_owned(),
            started_unix_us: unix_us(wall),
            duration_us,
            detail,
            ok,
        });
        *lock(&self.upgrader.running) = Some(self.record.clone());
        outcome.map(|_| ())
    }

    /// Step 8, on every way out.
    fn resume(&mut self, gate: &dyn ConfigGate) {
        let mut resumed = Default::default();
        let _ = self.step(8, || {
            resumed = gate.resume();
            Ok(format!("{} queued requests applied, {} refused", resumed.applied, resumed.failed))
        });
        (self.record.queued_applied, self.record.queued_failed) = (resumed.applied, resumed.failed);
    }

    /// Step 3 failed (a worker did not pass a quiescent state): bind the old
    /// unit back and let config requests through.
    fn abandon(&mut self, host: &UnitHost<P>, old: &Unit<P>, gate: &dyn ConfigGate) {
        let _ = self.timed(0, "roll back: bind the old unit again", || switch_sides(host, old));
        self.resume(gate);
    }

    /// Step 5 failed: traffic is on the intermediate unit. Load the previous
    /// unit again (its library, or the embedded vRouter), switch back to it,
    /// unload the intermediate unit.
    fn roll_back(&mut self, previous: &UnitDescription, intermediate: Unit<P>, gate: &dyn ConfigGate) {
        let host = self.upgrader.host.clone();
        let mut restored: Option<Unit<P>> = None;
        let _ = self.timed(0, "roll back: load the previous unit and write the configuration into it", || {
            let config = gate.committed()?;
            let learned = intermediate.export().unwrap_or_default();
            let setup = host.setup(UnitState { config, ..learned });
            // The previous library is loaded again only if it still passes the checks it passed then.
            let reloaded = match &previous.library {
                Some(path) => reopen(std::path::Path::new(path)).and_then(|file| self.upgrader.loader.load(&file, &setup)),
                None => Err("it was the embedded unit".into()),
            };
            let (unit, detail) = match reloaded {
                Ok(unit) => (unit, format!("{} loaded again", display(previous))),
                Err(e) if previous.library.is_some() => {
                    let unit: Unit<P> = Arc::new(VRouterUnit::new(setup));
                    (unit, format!("{} cannot be loaded again ({e}); the embedded vrouter takes its place", display(previous)))
                }
                Err(_) => (Arc::new(VRouterUnit::new(setup)) as Unit<P>, "the embedded vrouter created again".into()),
            };
            restored = Some(unit);
            Ok(detail)
        });
        let Some(restored) = restored else {
            // Only the database read can fail here: keep forwarding on the
            // intermediate unit rather than switch to a unit without configuration.
            self.resume(gate);
            return;
        };
        let _ = self.timed(0, "roll back: switch VM-side ports, then uplink ports, to the previous unit", || {
            switch_sides(&host, &restored)
        });
        self.record.to = Some(describe(&*restored));
        drop(restored);
        let _ = self.timed(0, "roll back: clear and unload the intermediate unit", || unload(intermediate));
        self.resume(gate);
    }

    fn finish(mut self, result: Result<(), Refusal>) -> UpgradeRecord {
        self.record.duration_us = self.started.elapsed().as_micros() as u64;
        let mut counts = lock(&self.upgrader.counts);
        match result {
            Ok(()) => {
                self.record.outcome = Outcome::Upgraded;
                counts.upgraded += 1;
                log::info!(
                    "upgrade {}: {} -> {} in {} us",
                    self.record.id,
                    display(&self.record.from),
                    self.record.to.as_ref().map_or("?".into(), display),
                    self.record.duration_us
                );
            }
            Err(refusal) => {
                self.record.outcome = Outcome::RolledBack;
                self.record.error = Some(format!("step {}: {}", refusal.step, refusal.reason));
                counts.rolled_back += 1;
                log::error!(
                    "upgrade {}: rolled back ({}); {} forwards",
                    self.record.id,
                    refusal.reason,
                    self.record.to.as_ref().map_or_else(|| display(&self.record.from), display)
                );
            }
        }
        self.record
    }
}

/// Binds the VM side to `unit`, waits until every worker moved to it, then
/// the uplink side (upgrade steps 3 and 6: VM vports first, then the uplink).
fn switch_sides<P: PacketBuf + 'static>(host: &UnitHost<P>, unit: &Unit<P>) -> Result<String, String> {
    let mut took = Vec::new();
    for side in [Side::Vm, Side::Uplink] {
        let start = Instant::now();
        host.units().publish(side, unit.clone());
        wait_until(|| host.units().reclaim() == 0)
            .map_err(|_| format!("a worker did not pass a quiescent state within {QUIESCENT_TIMEOUT:?}"))?;
        took.push(start.elapsed().as_micros());
    }
    Ok(format!("{} bound: VM side in {} us, uplink in {} us", unit.id(), took[0], took[1]))
}

/// Drops the last reference of a unit no worker uses and waits until it is
/// destroyed (its library, if any, unloaded with it).
fn unload<P: PacketBuf + 'static>(unit: Unit<P>) -> Result<String, String> {
    let description = describe(&*unit);
    let weak: Weak<dyn SwitchingUnit<P>> = Arc::downgrade(&unit);
    drop(unit);
    wait_until(|| weak.strong_count() == 0)
        .map_err(|_| format!("{} is still referenced after {QUIESCENT_TIMEOUT:?}", display(&description)))?;
    Ok(match &description.library {
        None => format!("{} destroyed", display(&description)),
        Some(path) if mapped(path) => format!(
            "{} destroyed; {path} is still mapped (the library left thread-local destructors behind, so a new build at the same path would not be loaded)",
            display(&description)
        ),
        Some(path) => format!("{} destroyed; {path} unloaded", display(&description)),
    })
}

/// The new unit must run exactly the configuration it was given.
fn health_check<P: PacketBuf>(unit: &dyn SwitchingUnit<P>, expected: &UnitState) -> Result<(), String> {
    let exported = unit.export().map_err(|e| format!("health check failed: {e}"))?;
    // A unit in a shared library gets its configuration as JSON, which never carries secrets.
    if exported.config.without_secrets() != expected.config.without_secrets() {
        return Err(format!(
            "health check failed: the unit runs generation {} with {} networks, {} endpoints, {} remotes, {} port bindings; the database has generation {} with {}, {}, {}, {}",
            exported.config.generation,
            exported.config.networks.len(),
            exported.config.endpoints.len(),
            exported.config.remotes.len(),
            exported.config.ports.len(),
            expected.config.generation,
            expected.config.networks.len(),
            expected.config.endpoints.len(),
            expected.config.remotes.len(),
            expected.config.ports.len(),
        ));
    }
    Ok(())
}

fn wait_until(mut done: impl FnMut() -> bool) -> Result<(), ()> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > QUIESCENT_TIMEOUT {
            return Err(());
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    Ok(())
}

/// The library at `path` under the rules of its own directory (`open_unit_library`).
fn reopen(path: &std::path::Path) -> Result<UnitFile, String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(format!("{} names no file", path.display()));
    };
    super::library::open_unit_library(dir, name).map_err(|e| e.to_string())
}

/// Whether `path` is still mapped into this process.
fn mapped(path: &str) -> bool {
    let canonical = std::fs::canonicalize(path).map(|p| p.display().to_string()).unwrap_or_else(|_| path.to_owned());
    std::fs::read_to_string("/proc/self/maps").is_ok_and(|maps| maps.lines().any(|l| l.ends_with(&canonical)))
}

fn describe<P: PacketBuf>(unit: &dyn SwitchingUnit<P>) -> UnitDescription {
    UnitDescription {
        id: unit.id().to_owned(),
        version: unit.version().to_owned(),
        library: unit.library().map(|p| p.display().to_string()),
    }
}

fn display(unit: &UnitDescription) -> String {
    match &unit.library {
        Some(path) => format!("{} {} ({path})", unit.id, unit.version),
        None => format!("{} {} (embedded)", unit.id, unit.version),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
