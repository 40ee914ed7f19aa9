//! The board's logic without HTTP: locks, queues, leases, revisions, events and
//! restarts. Time is passed in, so no test sleeps.
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::model::{Accepted, EventKind, QueuedUpdate, Record, RecordKey, Update, VmState, WatchReply};
use super::service::{Board, LockError, ServiceError, QUEUE_MAX, REPLY_EVENTS_MAX};
use super::store::{Batch, BoardStore, BoardStoreError, RedbBoardStore, Stored, Write};
use switchyard_wire::MacAddr;

/// Some time (us since the epoch) the tests start at.
const T0: u64 = 1_700_000_000_000_000;
const LEASE: Duration = Duration::from_secs(5);
const LEASE_US: u64 = 5_000_000;

fn key(n: u8) -> RecordKey {
    RecordKey::new(100, MacAddr([2, 0, 0, 0, 0, n]))
}

/// An update placing the VM on VTEP 192.0.2.`host`.
fn on_host(host: u8, from: &str) -> Update {
    Update {
        ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
        vtep: Ipv4Addr::new(192, 0, 2, host),
        state: VmState::Running,
        from: from.into(),
    }
}

fn applied(accepted: Accepted) -> super::model::Event {
    match accepted {
        Accepted::Applied(event) => event,
        queued => panic!("expected the change to apply, got {queued:?}"),
    }
}

fn events(reply: WatchReply) -> (u64, Vec<super::model::Event>) {
    match reply {
        WatchReply::Events { revision, events } => (revision, events),
        reset => panic!("expected events, got {reset:?}"),
    }
}

/// A store in memory that survives a "restart" (clones share it) and can be
/// told to fail its next commit.
#[derive(Clone, Default)]
struct MemoryStore {
    stored: Arc<Mutex<Stored>>,
    fail_next: Arc<AtomicBool>,
}

impl BoardStore for MemoryStore {
    fn load(&self) -> Result<Stored, BoardStoreError> {
        Ok(self.stored.lock().unwrap().clone())
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), BoardStoreError> {
        if self.fail_next.swap(false, Ordering::Relaxed) {
            return Err(BoardStoreError::Database { path: "memory".into(), message: "injected commit failure".into() });
        }
        let mut stored = self.stored.lock().unwrap();
        for write in &batch.writes {
            match write {
                Write::PutRecord(record) => {
                    stored.records.retain(|r| r.key() != record.key());
                    stored.records.push(record.clone());
                }
                Write::DeleteRecord(key) => stored.records.retain(|r| r.key() != *key),
                Write::PutLock(entry) => {
                    stored.locks.retain(|l| l.key != entry.key);
                    stored.locks.push(entry.clone());
                }
                Write::DeleteLock(key) => stored.locks.retain(|l| l.key != *key),
            }
        }
        stored.revision = batch.revision;
        Ok(())
    }
}

fn memory_board() -> (Board, MemoryStore) {
    let store = MemoryStore::default();
    (Board::open(store.clone()).unwrap(), store)
}

fn redb_board(path: &Path) -> Board {
    Board::open(RedbBoardStore::open(path).unwrap()).unwrap()
}

#[test]
fn a_put_applies_with_the_next_revision() {
    let (mut board, store) = memory_board();
    let first = applied(board.put(key(1), on_host(1, "host-a")).unwrap());
    assert_eq!((first.revision, first.kind), (1, EventKind::Put));
    assert_eq!(first.record.vtep, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(first.record.updated_by, "host-a");
    let second = applied(board.put(key(2), on_host(2, "host-b")).unwrap());
    assert_eq!(second.revision, 2);
    assert_eq!(board.revision(), 2);
    assert_eq!(store.load().unwrap().revision, 2, "committed before it returned");
    assert_eq!(store.load().unwrap().records.len(), 2);
}

#[test]
fn updates_queued_behind_a_lock_apply_in_order_at_unlock() {
    let (mut board, _) = memory_board();
    board.put(key(1), on_host(1, "host-a")).unwrap();
    // Seed 001: the destination host locks the VM's record when migration starts.
    board.lock(key(1), "host-b", LEASE, T0).unwrap();
    let q1 = board.put(key(1), Update { state: VmState::Paused, ..on_host(1, "host-a") }).unwrap();
    let q2 = board.put(key(1), on_host(2, "host-b")).unwrap();
    assert_eq!(q1, Accepted::Queued { position: 1, holder: "host-b".into() });
    assert_eq!(q2, Accepted::Queued { position: 2, holder: "host-b".into() });
    // Nothing changed yet: the record and the revision are the old ones.
    assert_eq!(board.revision(), 1);
    assert_eq!(board.record(&key(1)).unwrap().vtep, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(board.lock_on(&key(1)).unwrap().queued.len(), 2);

    let applied = board.unlock(key(1), "host-b").unwrap();
    let summary: Vec<_> =
        applied.iter().map(|e| (e.revision, e.kind, e.record.state, e.record.vtep.octets()[3])).collect();
    assert_eq!(summary, [(2, EventKind::Put, VmState::Paused, 1), (3, EventKind::Put, VmState::Running, 2)]);
    let record = board.record(&key(1)).unwrap();
    assert_eq!((record.vtep, record.revision, record.updated_by.as_str()), (Ipv4Addr::new(192, 0, 2, 2), 3, "host-b"));
    assert!(board.lock_on(&key(1)).is_none());
    assert_eq!(board.revision(), 3);
}

#[test]
fn a_delete_queued_behind_a_put_removes_what_the_put_made() {
    let (mut board, store) = memory_board();
    // Locking a key with no record is allowed: the VM arrives during the lock.
    board.lock(key(1), "host-b", LEASE, T0).unwrap();
    assert_eq!(
        board.put(key(1), on_host(2, "host-b")).unwrap(),
        Accepted::Queued { position: 1, holder: "host-b".into() }
    );
    assert_eq!(board.delete(key(1), "host-a").unwrap(), Accepted::Queued { position: 2, holder: "host-b".into() });
    let applied = board.unlock(key(1), "host-b").unwrap();
    let summary: Vec<_> = applied.iter().map(|e| (e.revision, e.kind, e.record.updated_by.as_str())).collect();
    assert_eq!(summary, [(1, EventKind::Put, "host-b"), (2, EventKind::Delete, "host-a")]);
    assert!(board.record(&key(1)).is_none());
    assert_eq!(store.load().unwrap().records, Vec::<Record>::new());
}

#[test]
fn a_queued_delete_that_finds_no_record_changes_nothing() {
    let (mut board, _) = memory_board();
    board.lock(key(1), "host-b", LEASE, T0).unwrap();
    board.delete(key(1), "host-a").unwrap();
    assert_eq!(board.unlock(key(1), "host-b").unwrap(), []);
    assert_eq!(board.revision(), 0);
}

#[test]
fn a_delete_of_an_unknown_unlocked_record_is_refused() {
    let (mut board, _) = memory_board();
    assert!(matches!(board.delete(key(1), "host-a"), Err(ServiceError::NoRecord(k)) if k == key(1)));
    board.put(key(1), on_host(1, "host-a")).unwrap();
    let deleted = applied(board.delete(key(1), "host-c").unwrap());
    assert_eq!((deleted.revision, deleted.kind, deleted.record.updated_by.as_str()), (2, EventKind::Delete, "host-c"));
}

#[test]
fn a_lock_held_by_another_is_refused_naming_it() {
    let (mut board, _) = memory_board();
    board.lock(key(1), "host-b", LEASE, T0).unwrap();
    let refused = board.lock(key(1), "host-c", LEASE, T0 + 1000).unwrap_err();
    assert!(
        matches!(&refused, ServiceError::Lock(LockError::HeldBy { holder, expires_at_us, .. })
            if holder == "host-b" && *expires_at_us == T0 + LEASE_US),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        "02:00:00:00:00:01 in VNI 100 is locked by host-b until 1700000005.000000 (unix time)"
    );
    assert_eq!(board.lock_on(&key(1)).unwrap().holder, "host-b");
}

#[test]
fn the_same_holder_renews_and_keeps_its_queue() {
    let (mut board, _) = memory_board();
    let first = board.lock(key(1), "host-b", LEASE, T0).unwrap();
    board.put(key(1), on_host(2, "host-b")).unwrap();
    let renewed = board.lock(key(1), "host-b", LEASE, T0 + 4_000_000).unwrap();
    assert_eq!(first.expires_at_us, T0 + LEASE_US);
    assert_eq!(renewed.expires_at_us, T0 + 4_000_000 + LEASE_US);
    assert_eq!(board.lock_on(&key(1)).unwrap().queued.len(), 1);
    // Past the first lease, within the renewed one: still held.
    assert!(board.expire(T0 + LEASE_US + 1).unwrap().is_empty());
    assert_eq!(board.lock_on(&key(1)).unwrap().expires_at_us, T0 + 9_000_000);
}

#[test]
fn unlock_by_a_non_holder_or_of_an_unlocked_record_is_refused() {
    let (mut board, _) = memory_board();
    assert!(matches!(board.unlock(key(1), "host-b"), Err(ServiceError::Lock(LockError::NotLocked { .. }))));
    board.lock(key(1), "host-b", LEASE, T0).unwrap();
    board.put(key(1), on_host(2, "host-b")).unwrap();
    let refused = board.unlock(key(1), "host-c").unwrap_err();
    assert!(
        matches!(&refused, ServiceError::Lock(LockError::HeldBy { holder, .. }) if holder == "host-b"),
        "{refused:?}"
    );
    assert_eq!(board.lock_on(&key(1)).unwrap().queued.len(), 1, "the queue is untouched");
    assert_eq!(board.revision(), 0);
}

#[test]
fn an_expired_lease_applies_the_queue_at_expire_and_not_before() {
    let (mut board, _) = memory_board();
    board.put(key(1), on_host(1, "host-a")).unwrap();
    board.lock(key(1), "host-b", LEASE, T0).unwrap();
    board.put(key(1), on_host(2, "host-a")).unwrap();
    board.delete(key(2), "host-a").unwrap_err(); // another key: not affected
    assert!(board.expire(T0 + LEASE_US - 1).unwrap().is_empty());
    assert!(board.lock_on(&key(1)).is_some());
    assert_eq!(board.record(&key(1)).unwrap().vtep, Ipv4Addr::new(192, 0, 2, 1));

    let events = board.expire(T0 + LEASE_US).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].revision, events[0].record.vtep), (2, Ipv4Addr::new(192, 0, 2, 2)));
    assert!(board.lock_on(&key(1)).is_none());
    // Exactly like an unlock: the holder's own unlock now finds nothing, and
    // another host may lock.
    assert!(matches!(board.unlock(key(1), "host-b"), Err(ServiceError::Lock(LockError::NotLocked { .. }))));
    assert!(board.expire(T0 + 2 * LEASE_US).unwrap().is_empty(), "released once");
    board.lock(key(1), "host-c", LEASE, T0 + 2 * LEASE_US).unwrap();
}

#[test]
fn locking_over_an_expired_lease_releases_it_first() {
    let (mut board, _) = memory_board();
    board.lock(key(1), "host-b", LEASE, T0).unwrap();
    board.put(key(1), on_host(2, "host-b")).unwrap();
    // No sweep ran yet; host-c's lock ends host-b's as the sweep would.
    let grant = board.lock(key(1), "host-c", LEASE, T0 + LEASE_US).unwrap();
    assert_eq!(grant.holder, "host-c");
    assert_eq!(board.record(&key(1)).unwrap().vtep, Ipv4Addr::new(192, 0, 2, 2));
    assert!(board.lock_on(&key(1)).unwrap().queued.is_empty());
}

#[test]
fn a_full_queue_refuses_more() {
    let (mut board, _) = memory_board();
    board.lock(key(1), "host-b", LEASE, T0).unwrap();
    for _ in 0..QUEUE_MAX {
        board.put(key(1), on_host(2, "host-a")).unwrap();
    }
    let refused = board.put(key(1), on_host(2, "host-a")).unwrap_err();
    assert!(matches!(refused, ServiceError::Lock(LockError::QueueFull { .. })), "{refused:?}");
    assert_eq!(board.unlock(key(1), "host-b").unwrap().len(), QUEUE_MAX);
}

#[test]
fn bad_values_are_refused_naming_the_field() {
    let (mut board, _) = memory_board();
    let field = |result: Result<Accepted, ServiceError>| match result {
        Err(ServiceError::Invalid(invalid)) => (invalid.field, invalid.problem),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(field(board.put(RecordKey::new(0, MacAddr([2, 0, 0, 0, 0, 1])), on_host(1, "a"))).0, "vni");
    assert_eq!(field(board.put(RecordKey::new(1 << 24, MacAddr([2, 0, 0, 0, 0, 1])), on_host(1, "a"))).0, "vni");
    assert_eq!(field(board.put(RecordKey::new(1, MacAddr::BROADCAST), on_host(1, "a"))).0, "mac");
    assert_eq!(field(board.put(key(1), Update { vtep: Ipv4Addr::UNSPECIFIED, ..on_host(1, "a") })).0, "vtep");
    assert_eq!(field(board.put(key(1), Update { ip: Some(Ipv4Addr::BROADCAST), ..on_host(1, "a") })).0, "ip");
    assert_eq!(field(board.put(key(1), on_host(1, ""))).0, "from");
    assert_eq!(field(board.delete(key(1), "no spaces")).0, "from");
    assert!(matches!(board.lock(key(1), "a/b", LEASE, T0), Err(ServiceError::Invalid(i)) if i.field == "holder"));
    assert_eq!(board.revision(), 0);
}

#[test]
fn a_failed_commit_changes_nothing() {
    let (mut board, store) = memory_board();
    board.put(key(1), on_host(1, "host-a")).unwrap();
    board.lock(key(1), "host-b", LEASE, T0).unwrap();
    board.put(key(1), on_host(2, "host-b")).unwrap();
    let before = board.snapshot();

    store.fail_next.store(true, Ordering::Relaxed);
    assert!(matches!(board.unlock(key(1), "host-b"), Err(ServiceError::Store(_))));
    store.fail_next.store(true, Ordering::Relaxed);
    assert!(matches!(board.put(key(1), on_host(3, "host-a")), Err(ServiceError::Store(_))));
    store.fail_next.store(true, Ordering::Relaxed);
    assert!(matches!(board.put(key(2), on_host(3, "host-a")), Err(ServiceError::Store(_))));
    store.fail_next.store(true, Ordering::Relaxed);
    assert!(matches!(board.expire(T0 + LEASE_US), Err(ServiceError::Store(_))));
    assert_eq!(board.snapshot(), before);
    assert_eq!(events(board.events_since(1)).1, []);

    // And it works once the store does.
    assert_eq!(board.unlock(key(1), "host-b").unwrap().len(), 1);
}

#[test]
fn events_since_gives_what_came_after() {
    let (mut board, _) = memory_board();
    assert_eq!(board.events_since(0), WatchReply::Events { revision: 0, events: Vec::new() });
    for host in 1..=3 {
        board.put(key(1), on_host(host, "host-a")).unwrap();
    }
    let (revision, all) = events(board.events_since(0));
    assert_eq!((revision, all.iter().map(|e| e.revision).collect::<Vec<_>>()), (3, vec![1, 2, 3]));
    let (revision, later) = events(board.events_since(2));
    assert_eq!((revision, later.len(), later[0].record.vtep.octets()[3]), (3, 1, 3));
    assert_eq!(board.events_since(3), WatchReply::Events { revision: 3, events: Vec::new() });
}

#[test]
fn a_watcher_too_far_behind_or_ahead_gets_a_reset() {
    let (mut board, _) = memory_board();
    board.keep_events(4);
    for n in 1..=6 {
        board.put(key(n), on_host(1, "host-a")).unwrap();
    }
    // Kept: revisions 3 to 6, so "since 2" is the oldest that can be answered.
    assert_eq!(events(board.events_since(2)).1.len(), 4);
    for since in [0, 1, 7, 100] {
        match board.events_since(since) {
            WatchReply::Reset { revision, records } => assert_eq!((revision, records.len()), (6, 6), "since {since}"),
            events => panic!("since {since}: expected a reset, got {events:?}"),
        }
    }
}

#[test]
fn a_watch_reply_holds_at_most_reply_events_max() {
    let (mut board, _) = memory_board();
    for i in 0..REPLY_EVENTS_MAX + 10 {
        board.put(key(1), on_host(1 + (i % 2) as u8, "host-a")).unwrap();
    }
    let (revision, first) = events(board.events_since(0));
    assert_eq!((first.len(), revision), (REPLY_EVENTS_MAX, REPLY_EVENTS_MAX as u64));
    let (revision, rest) = events(board.events_since(revision));
    assert_eq!((rest.len(), revision), (10, board.revision()));
}

#[test]
fn a_restart_keeps_records_locks_queues_and_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.redb");
    {
        let mut board = redb_board(&path);
        board.put(key(1), on_host(1, "host-a")).unwrap();
        board.put(key(2), on_host(1, "host-a")).unwrap();
        board.lock(key(1), "host-b", LEASE, T0).unwrap();
        board.put(key(1), on_host(2, "host-b")).unwrap();
        board.delete(key(1), "host-a").unwrap();
    }
    let mut board = redb_board(&path);
    assert_eq!(board.revision(), 2);
    let lock = board.lock_on(&key(1)).unwrap().clone();
    assert_eq!((lock.holder.as_str(), lock.expires_at_us), ("host-b", T0 + LEASE_US));
    assert_eq!(lock.queued, [QueuedUpdate::Put(on_host(2, "host-b")), QueuedUpdate::Delete { from: "host-a".into() }]);
    // A restart keeps no events: a watcher behind the stored revision is reset,
    // one at it waits for what comes next.
    assert!(matches!(board.events_since(1), WatchReply::Reset { revision: 2, .. }));
    assert_eq!(board.events_since(2), WatchReply::Events { revision: 2, events: Vec::new() });

    let applied = board.unlock(key(1), "host-b").unwrap();
    assert_eq!(
        applied.iter().map(|e| (e.revision, e.kind)).collect::<Vec<_>>(),
        [(3, EventKind::Put), (4, EventKind::Delete)]
    );
    drop(board);
    let board = redb_board(&path);
    assert_eq!(board.revision(), 4);
    assert!(board.lock_on(&key(1)).is_none() && board.record(&key(1)).is_none());
    assert_eq!(board.record(&key(2)).unwrap().revision, 2);
}

#[test]
fn a_lock_that_expired_while_the_board_was_down_is_released_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.redb");
    {
        let mut board = redb_board(&path);
        board.lock(key(1), "host-b", LEASE, T0).unwrap();
        board.put(key(1), on_host(2, "host-b")).unwrap();
    }
    // Serving starts with `expire(now)` before the first request (serve.rs).
    let mut board = redb_board(&path);
    let events = board.expire(T0 + LEASE_US + 60_000_000).unwrap();
    assert_eq!(events.len(), 1);
    assert!(board.lock_on(&key(1)).is_none());
    drop(board);
    let board = redb_board(&path);
    assert!(board.lock_on(&key(1)).is_none(), "the release was committed");
    assert_eq!(board.record(&key(1)).unwrap().vtep, Ipv4Addr::new(192, 0, 2, 2));
}

#[test]
fn a_database_that_is_not_a_board_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.redb");
    drop(switchyard_configdb::Store::open(&path).unwrap());
    let error = RedbBoardStore::open(&path).err().unwrap().to_string();
    assert!(error.contains("not a board database"), "{error}");
    // The same file twice at once: the second is refused by redb's lock.
    let board_path = dir.path().join("board.redb");
    let _first = RedbBoardStore::open(&board_path).unwrap();
    let error = RedbBoardStore::open(&board_path).err().unwrap().to_string();
    assert!(error.contains("already open"), "{error}");
}

#[test]
fn watch_replies_have_two_json_forms() {
    let events = WatchReply::Events { revision: 4, events: Vec::new() };
    assert_eq!(serde_json::to_value(&events).unwrap(), serde_json::json!({"revision": 4, "events": []}));
    let reset = WatchReply::Reset { revision: 4, records: Vec::new() };
    assert_eq!(serde_json::to_value(&reset).unwrap(), serde_json::json!({"revision": 4, "reset": true, "records": []}));
    for reply in [events, reset] {
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<WatchReply>(&text).unwrap(), reply);
    }
    assert!(serde_json::from_str::<WatchReply>(r#"{"revision": 1}"#).is_err());
}
