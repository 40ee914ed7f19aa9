//! The vRouter as a switching unit: its configuration and learned state on the
//! control side, and one immutable table version per change, published to the
//! workers' bindings through a versioned pointer (copy-on-write; workers are
//! never paused). The same type is the daemon's embedded default unit and,
//! built into `units/basic`, the loadable one.
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::tables::{Learned, Underlay, VRouterTables, VmPort};
use super::vrouter::VRouter;
use switchyard_pipeline::{Burst, PacketBuf};
use switchyard_unit_abi::{
    LearnEvent, LearnQueue, LearnedMac, LearnedNeighbor, Reader, Side, SwitchingUnit, UnitCommand, UnitState, UnitWorker,
    Versioned, WorkerLocal,
};

/// Learn events the workers may queue between two housekeeping calls.
const LEARN_QUEUE_LEN: usize = 8192;

/// Everything a vRouter unit is created from: the ports it switches between
/// and the state to start with. JSON of this is the configuration blob of the
/// unit ABI (docs/unit-abi.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnitSetup {
    pub vm_ports: Vec<VmPort>,
    pub underlay: Option<Underlay>,
    /// How long a learned entry lives without being seen again.
    pub ageing_ms: u64,
    pub state: UnitState,
}

/// Why a unit refused its configuration blob.
#[derive(Debug, thiserror::Error)]
pub enum UnitSetupError {
    #[error("unreadable unit setup: {0}")]
    Unreadable(#[from] serde_json::Error),
    /// Checked here as the TOML configuration checks it (`address = "a.b.c.d/len"`).
    #[error("the underlay's VTEP prefix length {0} is over 32")]
    VtepPrefixTooLong(u8),
}

impl UnitSetup {
    /// Decodes the configuration blob a unit library's `create` is handed (docs/unit-abi.md).
    pub fn decode(blob: &[u8]) -> Result<UnitSetup, UnitSetupError> {
        let setup: UnitSetup = serde_json::from_slice(blob)?;
        match &setup.underlay {
            Some(underlay) if underlay.vtep.prefix_len > 32 => Err(UnitSetupError::VtepPrefixTooLong(underlay.vtep.prefix_len)),
            _ => Ok(setup),
        }
    }

    fn ageing(&self) -> Duration {
        Duration::from_millis(self.ageing_ms)
    }

    /// The learned entries of `state`, aged as exported.
    fn learned(&self, now: Instant) -> Learned {
        let seen = |age_ms: u64| now.checked_sub(Duration::from_millis(age_ms)).unwrap_or(now);
        Learned {
            macs: self.state.macs.iter().map(|m| ((m.vni, m.mac), (m.location, seen(m.age_ms)))).collect(),
            neighbors: self.state.neighbors.iter().map(|n| (n.ip, (n.mac, seen(n.age_ms)))).collect(),
        }
    }

    /// Tables for the setup's configuration and learned entries.
    pub fn tables(&self) -> VRouterTables {
        VRouterTables::build(&self.state.config, &self.learned(Instant::now()), &self.vm_ports, self.underlay.clone())
    }
}

struct State {
    config: switchyard_model::ConfigSnapshot,
    learned: Learned,
    current: Arc<VRouter>,
}

pub struct VRouterUnit {
    tables: Arc<Versioned<VRouter>>,
    queue: Arc<LearnQueue>,
    vm_ports: Vec<VmPort>,
    underlay: Option<Underlay>,
    ageing: Duration,
    state: Mutex<State>,
}

impl VRouterUnit {
    pub const ID: &'static str = "vrouter";
    pub const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    pub fn new(setup: UnitSetup) -> Self {
        let learned = setup.learned(Instant::now());
        let current = Arc::new(VRouter::new(VRouterTables::build(
            &setup.state.config,
            &learned,
            &setup.vm_ports,
            setup.underlay.clone(),
        )));
        VRouterUnit {
            tables: Arc::new(Versioned::new(current.clone())),
            queue: Arc::new(LearnQueue::new(LEARN_QUEUE_LEN)),
            ageing: setup.ageing(),
            vm_ports: setup.vm_ports,
            underlay: setup.underlay,
            state: Mutex::new(State { config: setup.state.config, learned, current }),
        }
    }

    /// The table version workers are being switched to (the newest).
    pub fn current(&self) -> Arc<VRouter> {
        self.lock().current.clone()
    }

    /// The queue workers report learned entries to.
    pub fn learn_queue(&self) -> &Arc<LearnQueue> {
        &self.queue
    }

    /// Folds in what workers reported, ages out what was not seen for the
    /// ageing time, publishes if anything changed, and frees table versions no
    /// worker uses any more.
    pub fn tick(&self, now: Instant) {
        let mut state = self.lock();
        let mut changed = false;
        while let Some(event) = self.queue.pop() {
            changed |= learn(&mut state.learned, event, now);
        }
        changed |= expire(&mut state.learned.macs, now, self.ageing);
        changed |= expire(&mut state.learned.neighbors, now, self.ageing);
        if changed {
            self.publish(&mut state);
        }
        drop(state);
        self.tables.reclaim();
    }

    fn publish(&self, state: &mut State) {
        let tables = VRouterTables::build(&state.config, &state.learned, &self.vm_ports, self.underlay.clone());
        state.current = Arc::new(VRouter::new(tables));
        self.tables.publish_both(state.current.clone());
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<P: PacketBuf + 'static> SwitchingUnit<P> for VRouterUnit {
    fn id(&self) -> &str {
        Self::ID
    }
    fn version(&self) -> &str {
        Self::VERSION
    }
    fn generation(&self) -> u64 {
        self.lock().config.generation
    }

    fn attach(&self, tsc_hz: u64) -> Box<dyn UnitWorker<P>> {
        // Unchanged observations are re-reported a third of the ageing time apart.
        let refresh = (self.ageing.as_secs() / 3).max(1);
        Box::new(VRouterWorker::new(&self.tables, WorkerLocal::new(self.queue.clone(), tsc_hz, refresh)))
    }

    fn apply(&self, command: &UnitCommand) -> Result<(), String> {
        let mut state = self.lock();
        if let UnitCommand::Apply { generation, .. } = command {
            if *generation <= state.config.generation {
                return Err(format!(
                    "generation {generation} is not newer than the unit's generation {}",
                    state.config.generation
                ));
            }
        }
        state.config = command.applied_to(&state.config);
        self.publish(&mut state);
        Ok(())
    }

    fn export(&self) -> Result<UnitState, String> {
        let state = self.lock();
        Ok(export_state(&state.config, &state.learned, Instant::now()))
    }

    fn housekeeping(&self) {
        self.tick(Instant::now());
    }

    fn neighbors(&self) -> Vec<(std::net::Ipv4Addr, switchyard_wire::MacAddr)> {
        self.lock().learned.neighbors.iter().map(|(&ip, &(mac, _))| (ip, mac)).collect()
    }

    fn info(&self) -> serde_json::Value {
        json!({ "tables": sizes(&self.current()), "learn_reports_lost": self.queue.lost() })
    }
}

/// Table sizes by name, as the API and metrics show them.
pub(super) fn sizes(tables: &VRouter) -> serde_json::Value {
    tables.tables().sizes().into_iter().map(|(name, size)| (name.to_string(), json!(size))).collect()
}

/// Configuration and learned entries with their ages at `now`, sorted so the
/// same state always exports the same way.
fn export_state(config: &switchyard_model::ConfigSnapshot, learned: &Learned, now: Instant) -> UnitState {
    let age = |seen: &Instant| now.saturating_duration_since(*seen).as_millis() as u64;
    let mut macs: Vec<LearnedMac> = learned
        .macs
        .iter()
        .map(|(&(vni, mac), (location, seen))| LearnedMac { vni, mac, location: *location, age_ms: age(seen) })
        .collect();
    macs.sort_by_key(|m| (m.vni, m.mac.0));
    let mut neighbors: Vec<LearnedNeighbor> =
        learned.neighbors.iter().map(|(&ip, (mac, seen))| LearnedNeighbor { ip, mac: *mac, age_ms: age(seen) }).collect();
    neighbors.sort_by_key(|n| n.ip);
    UnitState { config: config.clone(), macs, neighbors }
}

/// A worker's binding: its own reference to the newest table version it has
/// seen, replaced at quiescent points.
pub(super) struct VRouterWorker {
    tables: Arc<Versioned<VRouter>>,
    reader: Reader,
    current: Arc<VRouter>,
    local: WorkerLocal,
}

impl VRouterWorker {
    pub(super) fn new(tables: &Arc<Versioned<VRouter>>, local: WorkerLocal) -> Self {
        VRouterWorker { reader: tables.reader(), current: tables.active(Side::Vm), tables: tables.clone(), local }
    }
}

impl<P: PacketBuf> UnitWorker<P> for VRouterWorker {
    #[inline]
    fn process(&mut self, side: Side, burst: &mut Burst<P>) {
        self.current.switch(side, burst, &mut self.local);
    }

    fn quiescent(&mut self, now: u64) {
        self.local.now = now;
        if let Some(generation) = self.reader.moved(&self.tables) {
            self.current = self.tables.active(Side::Vm);
            self.reader.announce(generation);
        }
    }
}

/// Records one report; true if the tables must change (new or moved entry).
fn learn(learned: &mut Learned, event: LearnEvent, now: Instant) -> bool {
    match event {
        LearnEvent::Mac { vni, mac, at } => refresh(&mut learned.macs, (vni, mac), at, now),
        LearnEvent::Neighbor { ip, mac } => refresh(&mut learned.neighbors, ip, mac, now),
    }
}

/// Records `value` as seen at `now`; true if it is new or changed.
fn refresh<K: Eq + Hash, V: PartialEq>(map: &mut HashMap<K, (V, Instant)>, key: K, value: V, now: Instant) -> bool {
    let changed = map.get(&key).is_none_or(|(old, _)| *old != value);
    map.insert(key, (value, now));
    changed
}

/// Forgets entries not seen for `ageing`; true if any went.
fn expire<K, V>(map: &mut HashMap<K, (V, Instant)>, now: Instant, ageing: Duration) -> bool {
    let before = map.len();
    map.retain(|_, (_, seen)| now.duration_since(*seen) < ageing);
    map.len() != before
}
