//! The control side of the vRouter: builds a new table version when the
//! configuration changes or workers learn something, publishes it through the
//! unit table (VM side, then uplink), and ages learned entries out.
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;

use super::tables::{Learned, Underlay, VRouterTables, VmPort};
use super::vrouter::VRouter;
use crate::pipeline::PacketBuf;
use crate::store::{ConfigSnapshot, Vni};
use crate::unit::{LearnEvent, LearnQueue, Location, UnitTable};
use crate::wire::MacAddr;

/// Learn events the workers may queue between two ticks.
const LEARN_QUEUE_LEN: usize = 8192;

struct State {
    config: ConfigSnapshot,
    learned: Learned,
    mac_seen: HashMap<(Vni, MacAddr), Instant>,
    neighbor_seen: HashMap<Ipv4Addr, Instant>,
    current: Arc<VRouter>,
}

/// Owns the vRouter's configuration and learned state; every change publishes
/// a new immutable `VRouter` (copy-on-write), workers are never paused.
pub struct OverlayControl<P> {
    table: Arc<UnitTable<P>>,
    queue: LearnQueue,
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
            queue: Arc::new(ArrayQueue::new(LEARN_QUEUE_LEN)),
            vm_ports,
            underlay,
            ageing,
            state: Mutex::new(State {
                config,
                learned,
                mac_seen: HashMap::new(),
                neighbor_seen: HashMap::new(),
                current,
            }),
        }
    }

    pub fn table(&self) -> &Arc<UnitTable<P>> {
        &self.table
    }

    /// The queue workers report learned entries to.
    pub fn learn_queue(&self) -> LearnQueue {
        self.queue.clone()
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
        let ageing = self.ageing;
        let before = state.learned.macs.len() + state.learned.neighbors.len();
        let State { learned, mac_seen, neighbor_seen, .. } = &mut *state;
        mac_seen.retain(|key, seen| {
            let alive = now.duration_since(*seen) < ageing;
            if !alive {
                learned.macs.remove(key);
            }
            alive
        });
        neighbor_seen.retain(|ip, seen| {
            let alive = now.duration_since(*seen) < ageing;
            if !alive {
                learned.neighbors.remove(ip);
            }
            alive
        });
        changed |= learned.macs.len() + learned.neighbors.len() != before;
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
        LearnEvent::Mac { vni, mac, at } => {
            state.mac_seen.insert((vni, mac), now);
            state.learned.macs.insert((vni, mac), at) != Some(at)
        }
        LearnEvent::Neighbor { ip, mac } => {
            state.neighbor_seen.insert(ip, now);
            state.learned.neighbors.insert(ip, mac) != Some(mac)
        }
    }
}

/// Where a learned MAC lives, as the API shows it.
pub fn describe(location: Location) -> String {
    match location {
        Location::Port(port) => format!("port {}", port.0),
        Location::Vtep(ip) => format!("vtep {ip}"),
    }
}
