//! This host's side of the bulletin board (docs/board.md), with `[board]` in the
//! config. Two tasks of the control plane's runtime:
//!
//! - `report`: registers the VMs attached here (the endpoint records) as "at
//!   this VTEP", and removes them when they go (not when they leave by
//!   migration: the destination reports them); as a migration destination it
//!   locks the VM's record from `start` until `completed`/`aborted`, renewing
//!   the lease, so its own "VM at this host" report waits in the lock's queue
//!   and is published when the migration completes (after an abort it first
//!   reports the VM back at its source).
//! - `follow`: watches the board and keeps the `board`-source remote entries in
//!   line with it. It never overrides this host's own VMs, the operator's
//!   entries, or a migration's relay entries.
//!
//! The board being unreachable stops neither the switch nor a migration: the
//! data path works from the entries it has; the tasks log it and retry.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::core::Control;
use crate::board::{BoardClient, BoardError, Event, EventKind, Record, RecordKey, Update, VmState, WatchReply};
use crate::vm_migration::VmKey;
use crate::model::{Change, ConfigSnapshot, RemoteEndpoint, RemoteSource};

/// How long one watch waits on the board for a change.
const WATCH_TIMEOUT: Duration = Duration::from_secs(25);
/// How often the endpoint records are compared with what was registered.
const REPORT_TICK: Duration = Duration::from_millis(20);
/// After a failed call, the next try.
const RETRY: Duration = Duration::from_millis(250);

/// What the migration orchestrator asks of the `report` task, in event order.
#[derive(Debug)]
pub(super) enum BoardAction {
    /// `start` at the destination: lock the VM's record.
    Lock(VmKey),
    /// The migration is over: unlock. `back_at` (after an abort): first report
    /// the VM at its source again, behind this host's own queued report.
    Unlock { vm: VmKey, back_at: Option<(Ipv4Addr, Option<Ipv4Addr>)> },
}

/// The channel from the orchestrator to the `report` task.
pub(super) struct BoardActions {
    sender: UnboundedSender<BoardAction>,
    receiver: std::sync::Mutex<Option<UnboundedReceiver<BoardAction>>>,
}

impl BoardActions {
    pub(super) fn new() -> Self {
        let (sender, receiver) = unbounded_channel();
        BoardActions { sender, receiver: std::sync::Mutex::new(Some(receiver)) }
    }

    pub(super) fn take_receiver(&self) -> Option<UnboundedReceiver<BoardAction>> {
        self.receiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    pub(super) fn send(&self, action: BoardAction) {
        // The receiver lives as long as the control plane serves.
        let _ = self.sender.send(action);
    }
}

/// Who this host is on the board.
#[derive(Clone)]
struct Identity {
    /// Lock holder and sender of updates.
    host: String,
    vtep: Ipv4Addr,
    lease: Duration,
}

/// Starts both tasks on the current runtime, when the switch has a board and
/// a VTEP; `None` otherwise.
pub(super) fn spawn(control: &Arc<Control>) -> Option<[JoinHandle<()>; 2]> {
    let (config, vtep) = control.board_config()?;
    let actions = control.board_actions()?;
    let client = match config.auth.client().and_then(|auth| BoardClient::new(&config.url, auth).map_err(|e| e.to_string())) {
        Ok(client) => Arc::new(client),
        Err(e) => {
            // The config check accepted it; a second opinion is a bug to report, not to hide.
            log::error!("board: {e}; the bulletin board is not used");
            return None;
        }
    };
    let me = Identity {
        host: config.host.clone().unwrap_or_else(|| vtep.to_string()),
        vtep,
        lease: Duration::from_millis(config.lease_ms),
    };
    log::info!("board: following {} as {:?}", config.url, me.host);
    let follow = tokio::spawn(follow(control.clone(), client.clone(), me.vtep));
    let report = tokio::spawn(report(control.clone(), client, me, actions));
    Some([follow, report])
}

/// Logs a failed board call once per outage, and the recovery.
struct Outage {
    what: &'static str,
    down: bool,
}

impl Outage {
    fn failed(&mut self, e: &BoardError) {
        if !self.down {
            log::warn!("board: {} failed: {e}; retrying", self.what);
        }
        self.down = true;
    }

    fn worked(&mut self) {
        if self.down {
            log::info!("board: {} works again", self.what);
        }
        self.down = false;
    }
}

async fn follow(control: Arc<Control>, client: Arc<BoardClient>, vtep: Ipv4Addr) {
    let mut outage = Outage { what: "following the board", down: false };
    // First the whole table: entries kept from an earlier run may be stale.
    let mut revision = loop {
        match client.records().await {
            Ok(snapshot) => {
                outage.worked();
                commit(&control, move |current| reset_changes(current, vtep, &snapshot.records)).await;
                break snapshot.revision;
            }
            Err(e) => outage.failed(&e),
        }
        tokio::time::sleep(RETRY).await;
    };
    loop {
        match client.watch(revision, WATCH_TIMEOUT).await {
            Ok(WatchReply::Events { revision: last, events }) => {
                outage.worked();
                revision = last;
                if !events.is_empty() {
                    commit(&control, move |current| event_changes(current, vtep, &events)).await;
                }
            }
            Ok(WatchReply::Reset { revision: last, records }) => {
                outage.worked();
                revision = last;
                commit(&control, move |current| reset_changes(current, vtep, &records)).await;
            }
            Err(e) => {
                outage.failed(&e);
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Commits the changes `plan` makes of the configuration, off the reactor
/// thread. A batch the configuration refuses is committed change by change,
/// so one bad record (say, a network this host does not have) costs only itself.
async fn commit(control: &Arc<Control>, plan: impl Fn(&ConfigSnapshot) -> Vec<Change> + Send + 'static) {
    let control = control.clone();
    let done = tokio::task::spawn_blocking(move || {
        let Err(e) = control.commit_unqueued(|current| Ok(plan(current))) else { return };
        let changes = plan(&control.snapshot());
        if changes.len() < 2 {
            log::warn!("board: cannot follow the board: {}", e.message());
            return;
        }
        for change in changes {
            if let Err(e) = control.commit_unqueued(|_| Ok(vec![change.clone()])) {
                log::warn!("board: cannot follow the board for {change:?}: {}", e.message());
            }
        }
    });
    if done.await.is_err() {
        log::error!("board: applying the board's records failed");
    }
}

/// The remote entry `record` asks for here, if any: a record of a VM at
/// another VTEP becomes a `board` entry, unless this host has its own say on
/// that VM (attached here, the operator's entry, a migration's relay).
fn follow_record(current: &ConfigSnapshot, vtep: Ipv4Addr, record: &Record) -> Option<Change> {
    let (vni, mac) = (record.vni, record.mac);
    let existing = current.remotes.iter().find(|r| r.vni == vni && r.mac == mac);
    if record.vtep == vtep {
        return remove_followed(existing);
    }
    let attached = current.endpoints.iter().any(|e| e.vni == vni && e.mac == mac);
    let known_network = current.networks.iter().any(|n| n.vni == vni);
    if attached || !known_network || existing.is_some_and(|r| r.source != RemoteSource::Board) {
        return None;
    }
    let wanted = RemoteEndpoint { vni, mac, ip: record.ip, vtep: record.vtep, source: RemoteSource::Board };
    (existing != Some(&wanted)).then_some(Change::PutRemote(wanted))
}

/// Deletes a followed entry; leaves every other kind alone.
fn remove_followed(existing: Option<&RemoteEndpoint>) -> Option<Change> {
    let existing = existing.filter(|r| r.source == RemoteSource::Board)?;
    Some(Change::DeleteRemote { vni: existing.vni, mac: existing.mac })
}

/// The changes a batch of events makes (the last event of a VM counts).
fn event_changes(current: &ConfigSnapshot, vtep: Ipv4Addr, events: &[Event]) -> Vec<Change> {
    let last: BTreeMap<RecordKey, &Event> = events.iter().map(|e| (e.record.key(), e)).collect();
    last.values()
        .filter_map(|event| match event.kind {
            EventKind::Put => follow_record(current, vtep, &event.record),
            EventKind::Delete => {
                let (vni, mac) = (event.record.vni, event.record.mac);
                remove_followed(current.remotes.iter().find(|r| r.vni == vni && r.mac == mac))
            }
        })
        .collect()
}

/// The changes that make the followed entries exactly `records`.
fn reset_changes(current: &ConfigSnapshot, vtep: Ipv4Addr, records: &[Record]) -> Vec<Change> {
    let wanted: BTreeMap<RecordKey, &Record> = records.iter().map(|r| (r.key(), r)).collect();
    let stale = current
        .remotes
        .iter()
        .filter(|r| r.source == RemoteSource::Board && !wanted.contains_key(&RecordKey::new(r.vni, r.mac)))
        .map(|r| Change::DeleteRemote { vni: r.vni, mac: r.mac });
    let followed = wanted.values().filter_map(|record| follow_record(current, vtep, record));
    stale.chain(followed).collect()
}

/// A lock this host holds or is taking, and when to (re)new it.
struct HeldLock {
    due: Instant,
    /// Whether "held by another" was logged (once per migration).
    contended: bool,
}

async fn report(control: Arc<Control>, client: Arc<BoardClient>, me: Identity, mut actions: UnboundedReceiver<BoardAction>) {
    let mut registered: BTreeMap<RecordKey, Update> = BTreeMap::new();
    let mut locks: BTreeMap<VmKey, HeldLock> = BTreeMap::new();
    let mut outage = Outage { what: "reporting to the board", down: false };
    let mut tick = tokio::time::interval(REPORT_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The generation last registered in full; `None` after a failure, to retry.
    let mut synced: Option<u64> = None;
    loop {
        let action = tokio::select! {
            action = actions.recv() => match action {
                Some(action) => Some(action),
                None => return,
            },
            _ = tick.tick() => None,
        };
        // Registrations first: a report the lock must queue is sent before the unlock.
        let generation = control.snapshot().generation;
        if action.is_some() || synced != Some(generation) {
            synced = match register(&control, &client, &me, &mut registered).await {
                Ok(()) => {
                    outage.worked();
                    Some(generation)
                }
                Err(e) => {
                    outage.failed(&e);
                    None
                }
            };
        }
        match action {
            Some(BoardAction::Lock(vm)) => {
                locks.insert(vm, HeldLock { due: Instant::now(), contended: false });
            }
            Some(BoardAction::Unlock { vm, back_at }) => {
                locks.remove(&vm);
                if let Err(e) = unlock(&client, &me, vm, back_at).await {
                    // The lease ends it; the queue is applied then.
                    log::warn!("board: cannot unlock {vm}: {e}; its lease of {:?} will end it", me.lease);
                }
            }
            None => {}
        }
        let now = Instant::now();
        for (vm, lock) in locks.iter_mut().filter(|(_, lock)| lock.due <= now) {
            let key = RecordKey::new(vm.vni, vm.mac);
            lock.due = match client.lock(key, &me.host, me.lease).await {
                Ok(_) => {
                    outage.worked();
                    now + me.lease / 3
                }
                Err(e) => {
                    match e.held_by() {
                        Some((holder, _)) if !lock.contended => {
                            log::warn!("board: the record of {vm} is locked by {holder:?}; retrying until it is free");
                            lock.contended = true;
                        }
                        Some(_) => {}
                        None => outage.failed(&e),
                    }
                    now + RETRY
                }
            };
        }
    }
}

/// Makes the board say "at this VTEP" for every VM attached here, and removes
/// the records of VMs detached here (those that left by migration excepted).
async fn register(
    control: &Control,
    client: &BoardClient,
    me: &Identity,
    registered: &mut BTreeMap<RecordKey, Update>,
) -> Result<(), BoardError> {
    let current = control.snapshot();
    let attached: BTreeMap<RecordKey, Update> = current
        .endpoints
        .iter()
        .map(|e| {
            let update = Update { ip: e.ip, vtep: me.vtep, state: VmState::Running, from: me.host.clone() };
            (RecordKey::new(e.vni, e.mac), update)
        })
        .collect();
    for (key, update) in &attached {
        if registered.get(key) != Some(update) {
            client.put(*key, update).await?;
            registered.insert(*key, update.clone());
        }
    }
    let detached: Vec<RecordKey> = registered.keys().filter(|k| !attached.contains_key(k)).copied().collect();
    for key in detached {
        if !control.is_migrating(VmKey { vni: key.vni, mac: key.mac }) {
            client.delete(key, &me.host).await?;
        }
        registered.remove(&key);
    }
    Ok(())
}

async fn unlock(
    client: &BoardClient,
    me: &Identity,
    vm: VmKey,
    back_at: Option<(Ipv4Addr, Option<Ipv4Addr>)>,
) -> Result<(), BoardError> {
    let key = RecordKey::new(vm.vni, vm.mac);
    if let Some((vtep, ip)) = back_at {
        client.put(key, &Update { ip, vtep, state: VmState::Running, from: me.host.clone() }).await?;
    }
    client.unlock(key, &me.host).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Network, VmEndpoint};

    const HERE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const THERE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn record(mac: &str, vtep: Ipv4Addr) -> Record {
        Record { vni: 100, mac: mac.parse().unwrap(), ip: None, vtep, state: VmState::Running, revision: 1, updated_by: "h".into() }
    }

    fn remote(mac: &str, vtep: Ipv4Addr, source: RemoteSource) -> RemoteEndpoint {
        RemoteEndpoint { vni: 100, mac: mac.parse().unwrap(), ip: None, vtep, source }
    }

    /// Network 100; VM 02::1 attached here; 02::2 the operator's, 02::3 a
    /// migration's relay, 02::4 followed from the board.
    fn current() -> ConfigSnapshot {
        ConfigSnapshot {
            networks: vec![Network { vni: 100, name: "blue".into(), flood_vteps: vec![] }],
            endpoints: vec![VmEndpoint { vni: 100, mac: "02:00:00:00:00:01".parse().unwrap(), ip: None, port: "vm0".into() }],
            remotes: vec![
                remote("02:00:00:00:00:02", THERE, RemoteSource::Operator),
                remote("02:00:00:00:00:03", THERE, RemoteSource::Migration),
                remote("02:00:00:00:00:04", THERE, RemoteSource::Board),
            ],
            ..ConfigSnapshot::default()
        }
    }

    #[test]
    fn a_record_elsewhere_is_followed_unless_this_host_has_its_own_say() {
        let now = current();
        let moved = Ipv4Addr::new(192, 0, 2, 3);
        for mac in ["02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"] {
            assert_eq!(follow_record(&now, HERE, &record(mac, moved)), None, "{mac} is not the board's to set here");
        }
        let followed = follow_record(&now, HERE, &record("02:00:00:00:00:04", moved));
        assert_eq!(followed, Some(Change::PutRemote(remote("02:00:00:00:00:04", moved, RemoteSource::Board))));
        assert_eq!(follow_record(&now, HERE, &record("02:00:00:00:00:04", THERE)), None, "already so");
        let new = follow_record(&now, HERE, &record("02:00:00:00:00:05", THERE));
        assert_eq!(new, Some(Change::PutRemote(remote("02:00:00:00:00:05", THERE, RemoteSource::Board))));
        let other_network = Record { vni: 200, ..record("02:00:00:00:00:05", THERE) };
        assert_eq!(follow_record(&now, HERE, &other_network), None, "no network 200 here");
        // At this host's VTEP: the followed entry goes (the VM came here).
        let here = follow_record(&now, HERE, &record("02:00:00:00:00:04", HERE));
        assert_eq!(here, Some(Change::DeleteRemote { vni: 100, mac: "02:00:00:00:00:04".parse().unwrap() }));
        assert_eq!(follow_record(&now, HERE, &record("02:00:00:00:00:02", HERE)), None);
    }

    #[test]
    fn events_and_resets_touch_only_followed_entries() {
        let now = current();
        let event = |kind, mac| Event { revision: 2, kind, record: record(mac, THERE) };
        let deletes = [event(EventKind::Delete, "02:00:00:00:00:02"), event(EventKind::Delete, "02:00:00:00:00:04")];
        let gone = Change::DeleteRemote { vni: 100, mac: "02:00:00:00:00:04".parse().unwrap() };
        assert_eq!(event_changes(&now, HERE, &deletes), vec![gone.clone()]);
        // The last event of a VM counts.
        let put_then_delete = [event(EventKind::Put, "02:00:00:00:00:06"), event(EventKind::Delete, "02:00:00:00:00:06")];
        assert_eq!(event_changes(&now, HERE, &put_then_delete), vec![]);
        // A reset without 02::4 removes it and keeps everything else.
        let reset = reset_changes(&now, HERE, &[record("02:00:00:00:00:02", HERE), record("02:00:00:00:00:06", THERE)]);
        let added = Change::PutRemote(remote("02:00:00:00:00:06", THERE, RemoteSource::Board));
        assert_eq!(reset, vec![gone, added]);
    }
}
