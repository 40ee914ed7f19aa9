//! VM live migration on the control plane (docs/migration.md): the events of a VM
//! monitor hook (`POST /v1/migrations`) drive the migration information table;
//! each transition becomes, in this order, a committed configuration change
//! (the VM's endpoint and relay entry, so the switching unit delivers or relays
//! its frames), a new version of the buffer-or-forward stage's table (hold or
//! release), and the bulletin-board calls of the destination (lock, report,
//! unlock).
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use tokio::sync::mpsc::UnboundedReceiver;

use super::board_agent::{BoardAction, BoardActions};
use super::core::{body_ipv4, body_mac, body_vni, path_mac, path_vni, Control};
use super::error::ApiError;
use crate::config::BoardConfig;
use crate::vm_migration::{
    Handling, HoldEntry, HoldShared, Migration, MigrationEvent, Phase, Role, Transition, VmKey, MAX_HELD_VMS,
};
use crate::overlay::{port_networks, VmPort};
use crate::model::{unix_us, Change, ConfigSnapshot, RemoteEndpoint, RemoteSource, VmEndpoint};
use crate::model::rules::check_endpoint_port;

/// What the orchestrator works on: the stage's shared table, the VM ports,
/// this host's VTEP, and how long finished migrations stay.
#[derive(Clone)]
pub struct MigrationPlane {
    pub holding: Arc<HoldShared>,
    pub vm_ports: Vec<VmPort>,
    pub local_vtep: Ipv4Addr,
    pub linger: Duration,
    /// The bulletin board this host reports to and follows (`board_agent.rs`).
    pub board: Option<BoardConfig>,
}

impl MigrationPlane {
    /// What a relay entry becomes when its migration is forgotten: a `board`
    /// entry when the board keeps remote entries up to date, else the operator's.
    fn settled_source(&self) -> RemoteSource {
        if self.board.is_some() { RemoteSource::Board } else { RemoteSource::Operator }
    }
}

/// `POST /v1/migrations`: one event of a VM monitor hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationEventBody {
    /// start, paused, resumed, completed or aborted.
    pub event: String,
    pub vni: i64,
    pub mac: String,
    /// The VM's address (start; the source's endpoint has it otherwise).
    #[serde(default)]
    pub ip: Option<String>,
    /// VTEP addresses of the source and destination hosts (start).
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub destination: Option<String>,
    /// The VM port the VM arrives on at the destination (start or resumed).
    #[serde(default)]
    pub port: Option<String>,
}

/// The reply to an event: the migration after it, and what the event did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventReply {
    /// "moved", "duplicate" or "stale".
    pub outcome: &'static str,
    pub migration: Migration,
}

struct Tracked {
    migration: Migration,
    /// When the migration completed or was aborted.
    over_at: Option<Instant>,
    /// At the destination: the source's relayed stream has ended, so direct
    /// frames go through (`Handling::HoldDirect` ends).
    relay_ended: bool,
}

/// The source's relayed stream counts as ended when no relayed frame came for
/// this long after `completed` (senders switch to the direct path then)...
pub(super) const RELAY_QUIET: Duration = Duration::from_millis(50);
/// ...or at the latest this long after `completed`.
const RELAY_WAIT_MAX: Duration = Duration::from_secs(2);

/// The migration information table of this host.
pub(super) struct Migrations {
    plane: Option<MigrationPlane>,
    table: Mutex<BTreeMap<VmKey, Tracked>>,
    /// `HoldShared::relayed` when last read, and since when it has not moved.
    relayed_seen: Mutex<(u64, Instant)>,
    /// To the board agent, with a board.
    board: Option<BoardActions>,
}

impl Migrations {
    pub(super) fn new(plane: Option<MigrationPlane>) -> Self {
        let board = plane.as_ref().and_then(|p| p.board.as_ref()).map(|_| BoardActions::new());
        Migrations { plane, table: Mutex::new(BTreeMap::new()), relayed_seen: Mutex::new((0, Instant::now())), board }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<VmKey, Tracked>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checked event fields.
struct Event {
    event: MigrationEvent,
    vm: VmKey,
    ip: Option<Ipv4Addr>,
    source: Option<Ipv4Addr>,
    destination: Option<Ipv4Addr>,
    port: Option<String>,
}

impl Control {
    fn migration_plane(&self) -> Result<&MigrationPlane, ApiError> {
        self.migrations.plane.as_ref().ok_or_else(|| {
            ApiError::conflict("event", "this switch has no vRouter with an uplink VTEP, so no VM can migrate through it")
        })
    }

    /// `POST /v1/migrations`.
    pub fn migration_event(&self, body: MigrationEventBody) -> Result<EventReply, ApiError> {
        let event = check_event(&body)?;
        let plane = self.migration_plane()?;
        if let Some(port) = &event.port {
            if !plane.vm_ports.iter().any(|p| &p.name == port) {
                return Err(ApiError::bad_request("port", format!("there is no VM port named {port:?}")));
            }
        }
        let mut table = self.migrations.lock();
        let tracked = table.get(&event.vm).filter(|t| !(event.event == MigrationEvent::Start && t.over_at.is_some()));
        let Some(tracked) = tracked else {
            if event.event != MigrationEvent::Start {
                let problem = format!("no migration of {} is known here; send start first", event.vm);
                return Err(ApiError::not_found("mac", problem));
            }
            return self.start(plane, &mut table, event);
        };
        let mut migration = tracked.migration.clone();
        if event.event == MigrationEvent::Start {
            let same = event.source.is_none_or(|s| s == migration.source)
                && event.destination.is_none_or(|d| d == migration.destination);
            if !same {
                let problem = format!(
                    "{} is already migrating from {} to {}; abort that migration first",
                    event.vm, migration.source, migration.destination
                );
                return Err(ApiError::conflict("event", problem));
            }
        }
        if let (Some(port), Role::Destination) = (&event.port, migration.role) {
            migration.port = Some(port.clone());
        }
        let transition = migration
            .on(event.event, unix_us(SystemTime::now()))
            .map_err(|e| ApiError::conflict("event", e.to_string()))?;
        let outcome = match transition {
            Transition::Unchanged(kind) => kind.name(),
            Transition::Moved { from, to } => {
                self.commit_unqueued(|current| transition_changes(&migration, from, to, current))?;
                if migration.role == Role::Destination && to.is_over() && !from.is_over() {
                    let back_at = (to == Phase::Aborted).then_some((migration.source, migration.ip));
                    self.tell_board(BoardAction::Unlock { vm: migration.vm, back_at });
                }
                "moved"
            }
        };
        // Lingering counts from the first event that ended it.
        let over_at = tracked.over_at.or_else(|| migration.phase.is_over().then(Instant::now));
        let relay_ended = tracked.relay_ended;
        table.insert(event.vm, Tracked { migration: migration.clone(), over_at, relay_ended });
        self.publish_holds(plane, &table);
        if outcome == "moved" {
            log::info!("migration: {} is {:?} (this host is its {:?})", event.vm, migration.phase, migration.role);
        }
        Ok(EventReply { outcome, migration })
    }

    fn start(
        &self,
        plane: &MigrationPlane,
        table: &mut BTreeMap<VmKey, Tracked>,
        event: Event,
    ) -> Result<EventReply, ApiError> {
        let missing = |field| ApiError::bad_request(field, format!("start needs the {field} host's VTEP address"));
        let source = event.source.ok_or_else(|| missing("source"))?;
        let destination = event.destination.ok_or_else(|| missing("destination"))?;
        if source == destination {
            return Err(ApiError::bad_request("destination", format!("{destination} is also the source")));
        }
        let role = if plane.local_vtep == source {
            Role::Source
        } else if plane.local_vtep == destination {
            Role::Destination
        } else {
            let problem =
                format!("this host's VTEP {} is neither the source {source} nor the destination {destination}", plane.local_vtep);
            return Err(ApiError::bad_request("source", problem));
        };
        let active = table.values().filter(|t| t.over_at.is_none()).count();
        if active >= MAX_HELD_VMS {
            let problem = format!("{active} migrations are in progress here, the most a worker can buffer for");
            return Err(ApiError::conflict("event", problem));
        }
        let current = self.snapshot();
        let endpoint = current.endpoints.iter().find(|e| e.vni == event.vm.vni && e.mac == event.vm.mac);
        let mut migration = Migration {
            vm: event.vm,
            ip: event.ip,
            source,
            destination,
            role,
            phase: Phase::Started,
            port: event.port.clone(),
            history: vec![(Phase::Started, unix_us(SystemTime::now()))],
        };
        match (role, endpoint) {
            (Role::Source, None) => {
                let problem = format!("{} is not attached to this host (no such endpoint), so it cannot leave it", event.vm);
                return Err(ApiError::conflict("mac", problem));
            }
            (Role::Source, Some(endpoint)) => {
                migration.port = Some(endpoint.port.clone());
                migration.ip = migration.ip.or(endpoint.ip);
            }
            (Role::Destination, Some(endpoint)) => {
                let problem = format!("{} is already attached to port {} of this host", event.vm, endpoint.port);
                return Err(ApiError::conflict("mac", problem));
            }
            (Role::Destination, None) => {
                if !current.networks.iter().any(|n| n.vni == event.vm.vni) {
                    let problem = format!("network {} does not exist here", event.vm.vni);
                    return Err(ApiError::conflict("vni", problem));
                }
                migration.ip = migration.ip.or_else(|| {
                    current.remotes.iter().find(|r| r.vni == event.vm.vni && r.mac == event.vm.mac).and_then(|r| r.ip)
                });
                // Until the VM runs here, frames that reach this host for it go
                // back to the source once released (after an abort).
                self.commit_unqueued(|_| Ok(vec![Change::PutRemote(relay(&migration, source))]))?;
                self.tell_board(BoardAction::Lock(migration.vm));
            }
        }
        table.insert(event.vm, Tracked { migration: migration.clone(), over_at: None, relay_ended: false });
        self.publish_holds(plane, table);
        log::info!("migration: {} starts moving from {source} to {destination} (this host is its {role:?})", event.vm);
        Ok(EventReply { outcome: "moved", migration })
    }

    /// `GET /v1/migrations`: every migration this host takes part in, or did
    /// recently (for `migration.linger_ms`).
    pub fn migration_list(&self) -> Vec<Migration> {
        self.migrations.lock().values().map(|t| t.migration.clone()).collect()
    }

    /// `GET /v1/migrations/{vni}/{mac}`.
    pub fn migration(&self, vni: &str, mac: &str) -> Result<Migration, ApiError> {
        let vm = VmKey { vni: path_vni(vni)?, mac: path_mac(mac)? };
        let table = self.migrations.lock();
        let tracked = table.get(&vm).ok_or_else(|| ApiError::not_found("mac", format!("no migration of {vm} is known here")))?;
        Ok(tracked.migration.clone())
    }

    /// Periodic work: a VM that announced itself at its destination is running
    /// there (as if `resumed` came); migrations over for `linger` are forgotten
    /// and their relay entries become ordinary remote entries.
    pub fn migration_tick(&self) {
        let Some(plane) = &self.migrations.plane else { return };
        while let Some(arrival) = plane.holding.arrivals.pop() {
            let port = plane.vm_ports.iter().find(|p| p.id == arrival.port).map(|p| p.name.clone());
            log::info!("migration: {} announced itself on {:?}; it runs here", arrival.vm, port);
            let body = MigrationEventBody {
                event: MigrationEvent::Resumed.name().into(),
                vni: i64::from(arrival.vm.vni),
                mac: arrival.vm.mac.to_string(),
                ip: None,
                source: None,
                destination: None,
                port,
            };
            if let Err(e) = self.migration_event(body) {
                log::warn!("migration: {} announced itself, but cannot be resumed: {}", arrival.vm, e.message());
            }
        }
        let mut table = self.migrations.lock();
        let relay_ended = self.end_relay_windows(plane, &mut table);
        let expired: Vec<VmKey> = table
            .iter()
            .filter(|(_, t)| t.over_at.is_some_and(|at| at.elapsed() >= plane.linger))
            .map(|(vm, _)| *vm)
            .collect();
        if expired.is_empty() {
            if relay_ended {
                self.publish_holds(plane, &table);
            }
            return;
        }
        for vm in &expired {
            let Some(tracked) = table.remove(vm) else { continue };
            let settled = |current: &ConfigSnapshot| {
                Ok(current
                    .remotes
                    .iter()
                    .filter(|r| r.vni == vm.vni && r.mac == vm.mac && r.source == RemoteSource::Migration)
                    .map(|r| Change::PutRemote(RemoteEndpoint { source: plane.settled_source(), ..r.clone() }))
                    .collect())
            };
            if let Err(e) = self.commit_unqueued(settled) {
                log::error!("migration: cannot settle the relay entry of {vm}: {}", e.message());
                table.insert(*vm, tracked);
            }
        }
        self.publish_holds(plane, &table);
    }

    /// Ends the `HoldDirect` window of completed migrations at this destination
    /// whose source's relayed stream stopped; returns whether one ended.
    fn end_relay_windows(&self, plane: &MigrationPlane, table: &mut BTreeMap<VmKey, Tracked>) -> bool {
        let relayed = plane.holding.relayed.load(std::sync::atomic::Ordering::Relaxed);
        let quiet_for = {
            let mut seen = self.migrations.relayed_seen.lock().unwrap_or_else(PoisonError::into_inner);
            if seen.0 != relayed {
                *seen = (relayed, Instant::now());
            }
            seen.1.elapsed()
        };
        let mut ended = false;
        for (vm, t) in table.iter_mut().filter(|(_, t)| t.migration.role == Role::Destination && !t.relay_ended) {
            let Some(completed_for) = t.over_at.filter(|_| t.migration.phase == Phase::Completed).map(|at| at.elapsed()) else {
                continue;
            };
            if quiet_for >= RELAY_QUIET || completed_for >= RELAY_WAIT_MAX {
                log::info!("migration: {vm}: the relayed stream from {} ended; direct frames go through", t.migration.source);
                t.relay_ended = true;
                ended = true;
            }
        }
        ended
    }

    /// Whether `vm` migrates to or from this host, or did recently.
    pub(super) fn is_migrating(&self, vm: VmKey) -> bool {
        self.migrations.lock().contains_key(&vm)
    }

    /// The board and this host's VTEP, with `[board]` and a VTEP.
    pub(super) fn board_config(&self) -> Option<(BoardConfig, Ipv4Addr)> {
        let plane = self.migrations.plane.as_ref()?;
        Some((plane.board.clone()?, plane.local_vtep))
    }

    /// The board agent's end of the channel, once.
    pub(super) fn board_actions(&self) -> Option<UnboundedReceiver<BoardAction>> {
        self.migrations.board.as_ref()?.take_receiver()
    }

    fn tell_board(&self, action: BoardAction) {
        if let Some(board) = &self.migrations.board {
            board.send(action);
        }
    }

    /// The stage's table for `table` and the current VM port networks.
    fn publish_holds(&self, plane: &MigrationPlane, table: &BTreeMap<VmKey, Tracked>) {
        let current = self.snapshot();
        let networks = port_networks(&current, &plane.vm_ports);
        let slots = plane.vm_ports.iter().map(|p| p.id.index() + 1).max().unwrap_or(0);
        let mut port_vni = vec![None; slots];
        for (port, vni) in networks {
            port_vni[port.index()] = Some(vni);
        }
        let entries = table.iter().map(|(vm, t)| {
            let handling = match t.migration.handling() {
                Handling::HoldDirect { .. } if t.relay_ended => Handling::Pass,
                handling => handling,
            };
            (*vm, HoldEntry { handling, role: t.migration.role })
        });
        plane.holding.publish(entries, port_vni);
    }
}

fn check_event(body: &MigrationEventBody) -> Result<Event, ApiError> {
    let event = MigrationEvent::named(&body.event).ok_or_else(|| {
        let known: Vec<&str> = MigrationEvent::ALL.iter().map(|e| e.name()).collect();
        ApiError::bad_request("event", format!("{:?} is not a migration event (one of {})", body.event, known.join(", ")))
    })?;
    let address = |field: &str, text: &Option<String>| text.as_deref().map(|t| body_ipv4(field, t)).transpose();
    Ok(Event {
        event,
        vm: VmKey { vni: body_vni(body.vni)?, mac: body_mac(&body.mac)? },
        ip: address("ip", &body.ip)?,
        source: address("source", &body.source)?,
        destination: address("destination", &body.destination)?,
        port: body.port.clone(),
    })
}

/// A relay entry: frames for the VM that reach this host go on to `vtep`.
fn relay(migration: &Migration, vtep: Ipv4Addr) -> RemoteEndpoint {
    RemoteEndpoint {
        vni: migration.vm.vni,
        mac: migration.vm.mac,
        ip: migration.ip,
        vtep,
        source: RemoteSource::Migration,
    }
}

/// The configuration a transition needs: where the switching unit sends the
/// VM's frames from now on.
fn transition_changes(
    migration: &Migration,
    from: Phase,
    to: Phase,
    current: &ConfigSnapshot,
) -> Result<Vec<Change>, ApiError> {
    let vm = migration.vm;
    let runs_at_destination = |phase: Phase| matches!(phase, Phase::Resumed | Phase::Completed);
    // The VM's port here must be in its network (tenant isolation).
    let endpoint = |port: &str| {
        let endpoint = VmEndpoint { vni: vm.vni, mac: vm.mac, ip: migration.ip, port: port.to_string() };
        check_endpoint_port(current, &endpoint).map_err(|problem| ApiError::conflict("port", problem))?;
        Ok::<_, ApiError>(Change::PutEndpoint(endpoint))
    };
    let has_remote = current.remotes.iter().any(|r| r.vni == vm.vni && r.mac == vm.mac);
    let delete_remote = has_remote.then_some(Change::DeleteRemote { vni: vm.vni, mac: vm.mac });
    let delete_endpoint = Change::DeleteEndpoint { vni: vm.vni, mac: vm.mac };
    let arriving = runs_at_destination(to) && !runs_at_destination(from);
    let returning = to == Phase::Aborted && runs_at_destination(from);
    let port = || {
        migration.port.clone().ok_or_else(|| {
            ApiError::conflict(
                "port",
                format!("which VM port {vm} uses here is not known: give port, or let the VM announce itself (RARP or gratuitous ARP)"),
            )
        })
    };
    Ok(match migration.role {
        // The VM left: its frames go on to the destination.
        Role::Source if arriving => vec![delete_endpoint, Change::PutRemote(relay(migration, migration.destination))],
        Role::Source if returning => {
            delete_remote.into_iter().chain([endpoint(&port()?)?]).collect()
        }
        // The VM runs here now.
        Role::Destination if arriving => delete_remote.into_iter().chain([endpoint(&port()?)?]).collect(),
        Role::Destination if returning => vec![delete_endpoint, Change::PutRemote(relay(migration, migration.source))],
        _ => Vec::new(),
    })
}
