//! The control side of the vRouter: builds a new table version when the
//! configuration changes or workers learn something, publishes it through the
//! unit table (VM side, then uplink), and ages learned entries out.
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};


use super::tables::{Learned, Underlay, VRouterTables, VmPort};
use super::vrouter::VRouter;
use crate::pipeline::PacketBuf;
use crate::store::ConfigSnapshot;
use crate::unit::{LearnEvent, LearnQueue, UnitTable};

/// Learn events the workers may queue between two ticks.
const LEARN_QUEUE_LEN: usize = 8192;

struct State {
    config: ConfigSnapshot,
    learned: Learned,
    current: Arc<VRouter>,
}

/// Owns the vRouter's configuration and learned state; every change publishes
/// a new immutable `VRouter` (copy-on-write), workers are never paused.
pub struct OverlayControl<P> {
    table: Arc<UnitTable<P>>,
    queue: Arc<LearnQueue>,
    vm_ports: Vec<VmPort>,
    underlay: Option<Underlay>,
    ageing: Duration,
    state: Mutex<State>,
}

impl<P: PacketBuf + 'static> OverlayControl<P> {
    pub fn new(config: ConfigSnapshot, vm_ports: Vec<VmPort>, underlay: Option<Underlay>, ageing: Duration) -> Self {
        let learned = Learned::default();
        let current = Arc::new(VRouter::new(VRouterTables::build(&config, &learned, &vm_ports, underlay.clone())));
        OverlayControl {
            table: Arc::new(UnitTable::new(current.clone())),
            queue: Arc::new(LearnQueue::new(LEARN_QUEUE_LEN)),
            vm_ports,
            underlay,
            ageing,
            state: Mutex::new(State {
                config,
                learned,
                current,
            }),
        }
    }

    pub fn table(&self) -> &Arc<UnitTable<P>> {
        &self.table
    }

    /// The queue workers report learned entries to.
    pub fn learn_queue(&self) -> Arc<LearnQueue> {
        self.queue.clone()
    }

    /// Learn reports workers could not queue (the control side fell behind).
    pub fn lost_reports(&self) -> u64 {
        self.queue.lost()
    }

    /// How long a learned entry lives without being seen again.
    pub fn ageing(&self) -> Duration {
        self.ageing
    }

    /// The vRouter version workers are being switched to (the newest).
    pub fn current(&self) -> Arc<VRouter> {
        self.lock().current.clone()
    }

    /// Learned entries now: MAC locations and underlay neighbours.
    pub fn learned(&self) -> Learned {
        self.lock().learned.clone()
    }

    /// Publishes tables built from a newly committed configuration.
    pub fn apply(&self, config: &ConfigSnapshot) {
        let mut state = self.lock();
        state.config = config.clone();
        self.publish(&mut state);
    }

    /// Folds in what workers reported, ages out what was not seen for the
    /// ageing time, publishes if anything changed, and frees unit versions no
    /// worker uses any more. Called every few milliseconds off the fast path.
    pub fn tick(&self, now: Instant) {
        let mut state = self.lock();
        let mut changed = false;
        while let Some(event) = self.queue.pop() {
            changed |= learn(&mut state, event, now);
        }
        changed |= expire(&mut state.learned.macs, now, self.ageing);
        changed |= expire(&mut state.learned.neighbors, now, self.ageing);
        if changed {
            self.publish(&mut state);
        }
        drop(state);
        self.table.reclaim();
    }

    fn publish(&self, state: &mut State) {
        let tables = VRouterTables::build(&state.config, &state.learned, &self.vm_ports, self.underlay.clone());
        state.current = Arc::new(VRouter::new(tables));
        self.table.publish_both(state.current.clone());
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Records one report; true if the tables must change (new or moved entry).
fn learn(state: &mut State, event: LearnEvent, now: Instant) -> bool {
    match event {
        LearnEvent::Mac { vni, mac, at } => refresh(&mut state.learned.macs, (vni, mac), at, now),
        LearnEvent::Neighbor { ip, mac } => refresh(&mut state.learned.neighbors, ip, mac, now),
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
