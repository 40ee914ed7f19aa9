//! The bulletin board's logic (docs/board.md), synchronous and without HTTP: records
//! change one at a time, each change gets the next board revision and an event
//! for watchers, and a locked record's changes wait in its lock's queue until
//! the holder unlocks it (or its lease runs out), then apply in arrival order.
//! Every change is committed to the store before memory changes and before the
//! caller hears of it; a failed commit changes nothing.
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::model::{
    check_name, Accepted, Event, EventKind, Invalid, Lock, LockEntry, LockGrant, QueuedUpdate, Record, RecordKey,
    Snapshot, Update, WatchReply,
};
use super::store::{Batch, BoardStore, BoardStoreError, Write};

/// Events kept in memory for watchers; one asking for an older revision gets a reset.
pub const EVENTS_KEPT: usize = 65536;
/// At most this many events in one watch reply; the watcher asks again for the rest.
pub const REPLY_EVENTS_MAX: usize = 4096;
/// Updates one lock may hold back; more are refused until it is unlocked.
pub const QUEUE_MAX: usize = 1024;

/// A refusal that is about a lock.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("{key} is locked by {holder} until {}", unix_time(*expires_at_us))]
    HeldBy { key: RecordKey, holder: String, expires_at_us: u64 },
    #[error("{key} is not locked")]
    NotLocked { key: RecordKey },
    #[error("{key} already has {QUEUE_MAX} updates queued behind the lock of {holder}; unlock it first")]
    QueueFull { key: RecordKey, holder: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("there is no record for {0}")]
    NoRecord(RecordKey),
    #[error(transparent)]
    Store(#[from] BoardStoreError),
}

/// Microseconds since the epoch as "1712345678.901234 (unix time)".
pub fn unix_time(us: u64) -> String {
    format!("{}.{:06} (unix time)", us / 1_000_000, us % 1_000_000)
}

pub struct Board {
    store: Box<dyn BoardStore>,
    revision: u64,
    records: BTreeMap<RecordKey, Record>,
    locks: BTreeMap<RecordKey, Lock>,
    /// Every event after revision `kept_after`, oldest first. Revisions are
    /// dense (each event is one), so the event for revision r is at index
    /// r - kept_after - 1.
    events: VecDeque<Event>,
    kept_after: u64,
    events_kept: usize,
}

impl Board {
    /// Loads the store. Locks are loaded as they were, expired or not: the
    /// caller runs `expire` before serving, so one that ran out while the board
    /// was down is released (and its queue applied) at start.
    pub fn open(store: impl BoardStore) -> Result<Board, BoardStoreError> {
        let stored = store.load()?;
        Ok(Board {
            store: Box::new(store),
            revision: stored.revision,
            records: stored.records.into_iter().map(|r| (r.key(), r)).collect(),
            locks: stored.locks.into_iter().map(|e| (e.key, e.lock)).collect(),
            events: VecDeque::new(),
            // A restart keeps no events: watchers behind the stored revision get a reset.
            kept_after: stored.revision,
            events_kept: EVENTS_KEPT,
        })
    }

    /// Keeps only `n` events (tests of the reset rule).
    #[cfg(test)]
    pub(crate) fn keep_events(&mut self, n: usize) {
        self.events_kept = n;
    }

    /// The revision of the last change (0 before any).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn record(&self, key: &RecordKey) -> Option<&Record> {
        self.records.get(key)
    }

    pub fn lock_on(&self, key: &RecordKey) -> Option<&Lock> {
        self.locks.get(key)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            revision: self.revision,
            records: self.records.values().cloned().collect(),
            locks: self.locks.iter().map(|(key, lock)| LockEntry { key: *key, lock: lock.clone() }).collect(),
        }
    }

    /// Sets the record (creating it); queued instead while the record is locked.
    pub fn put(&mut self, key: RecordKey, update: Update) -> Result<Accepted, ServiceError> {
        key.check()?;
        update.check()?;
        self.submit(key, QueuedUpdate::Put(update))
    }

    /// Removes the record; queued instead while it is locked (whether or not it
    /// exists yet: a put may be queued before it).
    pub fn delete(&mut self, key: RecordKey, from: &str) -> Result<Accepted, ServiceError> {
        key.check()?;
        check_name("from", from)?;
        if !self.locks.contains_key(&key) && !self.records.contains_key(&key) {
            return Err(ServiceError::NoRecord(key));
        }
        self.submit(key, QueuedUpdate::Delete { from: from.to_string() })
    }

    fn submit(&mut self, key: RecordKey, change: QueuedUpdate) -> Result<Accepted, ServiceError> {
        let Some(lock) = self.locks.get(&key) else {
            let events = self.apply(key, &[change], false)?;
            return events.into_iter().next().map(Accepted::Applied).ok_or(ServiceError::NoRecord(key));
        };
        // Seed 001: the board caches the update requests for a locked record.
        if lock.queued.len() >= QUEUE_MAX {
            return Err(LockError::QueueFull { key, holder: lock.holder.clone() }.into());
        }
        let mut lock = lock.clone();
        lock.queued.push(change);
        let entry = LockEntry { key, lock };
        self.store.commit(&Batch { revision: self.revision, writes: vec![Write::PutLock(entry.clone())] })?;
        let accepted = Accepted::Queued { position: entry.lock.queued.len(), holder: entry.lock.holder.clone() };
        self.locks.insert(key, entry.lock);
        Ok(accepted)
    }

    /// Locks the record for `holder` until `lease` from `now_us`; the same holder
    /// again renews (the lease then runs from `now_us`). A record that does not
    /// exist yet can be locked. A lock whose lease ran out is released first, as
    /// `expire` would.
    pub fn lock(
        &mut self,
        key: RecordKey,
        holder: &str,
        lease: Duration,
        now_us: u64,
    ) -> Result<LockGrant, ServiceError> {
        key.check()?;
        check_name("holder", holder)?;
        if self.locks.get(&key).is_some_and(|l| l.expires_at_us <= now_us) {
            self.release_expired(key, now_us)?;
        }
        let lease_us = u64::try_from(lease.as_micros()).unwrap_or(u64::MAX);
        let expires_at_us = now_us.saturating_add(lease_us);
        let queued = match self.locks.get(&key) {
            Some(lock) if lock.holder != holder => {
                return Err(
                    LockError::HeldBy { key, holder: lock.holder.clone(), expires_at_us: lock.expires_at_us }.into()
                )
            }
            Some(lock) => lock.queued.clone(),
            None => Vec::new(),
        };
        let entry = LockEntry { key, lock: Lock { holder: holder.to_string(), expires_at_us, queued } };
        self.store.commit(&Batch { revision: self.revision, writes: vec![Write::PutLock(entry.clone())] })?;
        self.locks.insert(key, entry.lock);
        Ok(LockGrant { holder: holder.to_string(), expires_at_us })
    }

    /// Ends `holder`'s lock: applies its queued updates in arrival order (each
    /// its own revision and event) and drops the lock, in one commit.
    pub fn unlock(&mut self, key: RecordKey, holder: &str) -> Result<Vec<Event>, ServiceError> {
        key.check()?;
        check_name("holder", holder)?;
        let lock = self.locks.get(&key).ok_or(LockError::NotLocked { key })?;
        if lock.holder != holder {
            return Err(
                LockError::HeldBy { key, holder: lock.holder.clone(), expires_at_us: lock.expires_at_us }.into()
            );
        }
        let queued = lock.queued.clone();
        self.apply(key, &queued, true)
    }

    /// Releases every lock whose lease ended by `now_us` exactly as its holder's
    /// unlock would, and returns the events that made. A lease protects the
    /// table from a holder that crashed: its queued updates still apply.
    pub fn expire(&mut self, now_us: u64) -> Result<Vec<Event>, ServiceError> {
        let due: Vec<RecordKey> =
            self.locks.iter().filter(|(_, lock)| lock.expires_at_us <= now_us).map(|(key, _)| *key).collect();
        let mut events = Vec::new();
        for key in due {
            events.extend(self.release_expired(key, now_us)?);
        }
        Ok(events)
    }

    fn release_expired(&mut self, key: RecordKey, now_us: u64) -> Result<Vec<Event>, ServiceError> {
        let Some(lock) = self.locks.get(&key) else { return Ok(Vec::new()) };
        let (holder, expires_at_us, queued) = (lock.holder.clone(), lock.expires_at_us, lock.queued.clone());
        let events = self.apply(key, &queued, true)?;
        // Logged after the commit, so once: the lock is gone from here on.
        log::warn!(
            "board: the lock of {holder} on {key} expired {:.3} s ago without an unlock; released it and applied its {} queued updates",
            now_us.saturating_sub(expires_at_us) as f64 / 1e6,
            queued.len()
        );
        Ok(events)
    }

    /// Applies `changes` to one record in order, and drops its lock if
    /// `release_lock`, in one commit. A delete that finds no record (queued
    /// behind a lock on a record that never existed or was deleted before it)
    /// changes nothing and makes no event.
    fn apply(
        &mut self,
        key: RecordKey,
        changes: &[QueuedUpdate],
        release_lock: bool,
    ) -> Result<Vec<Event>, ServiceError> {
        let mut current = self.records.get(&key).cloned();
        let mut revision = self.revision;
        let mut events = Vec::new();
        for change in changes {
            match change {
                QueuedUpdate::Put(update) => {
                    revision += 1;
                    let record = Record {
                        vni: key.vni,
                        mac: key.mac,
                        ip: update.ip,
                        vtep: update.vtep,
                        state: update.state,
                        revision,
                        updated_by: update.from.clone(),
                    };
                    events.push(Event { revision, kind: EventKind::Put, record: record.clone() });
                    current = Some(record);
                }
                QueuedUpdate::Delete { from } => match current.take() {
                    Some(mut record) => {
                        revision += 1;
                        record.revision = revision;
                        record.updated_by = from.clone();
                        events.push(Event { revision, kind: EventKind::Delete, record });
                    }
                    None => log::info!("board: the delete of {key} from {from} found no record; nothing deleted"),
                },
            }
        }
        let mut writes = Vec::new();
        if !events.is_empty() {
            writes.push(match &current {
                Some(record) => Write::PutRecord(record.clone()),
                None => Write::DeleteRecord(key),
            });
        }
        if release_lock {
            writes.push(Write::DeleteLock(key));
        }
        if !writes.is_empty() {
            self.store.commit(&Batch { revision, writes })?;
        }
        self.revision = revision;
        match current {
            Some(record) => self.records.insert(key, record),
            None => self.records.remove(&key),
        };
        if release_lock {
            self.locks.remove(&key);
        }
        for event in &events {
            self.remember(event.clone());
        }
        Ok(events)
    }

    fn remember(&mut self, event: Event) {
        self.events.push_back(event);
        while self.events.len() > self.events_kept {
            if let Some(oldest) = self.events.pop_front() {
                self.kept_after = oldest.revision;
            }
        }
    }

    /// The events after revision `since` (at most `REPLY_EVENTS_MAX`; none when
    /// `since` is the current revision), or a reset with every record when they
    /// are not all kept any more, or when `since` is ahead of the board (a
    /// watcher of a board that restarted from an older file).
    pub fn events_since(&self, since: u64) -> WatchReply {
        if since > self.revision || since < self.kept_after {
            return WatchReply::Reset { revision: self.revision, records: self.records.values().cloned().collect() };
        }
        // since - kept_after <= events.len() by the density of revisions.
        let first = usize::try_from(since - self.kept_after).unwrap_or(usize::MAX).min(self.events.len());
        let events: Vec<Event> = self.events.range(first..).take(REPLY_EVENTS_MAX).cloned().collect();
        let revision = events.last().map_or(since, |e| e.revision);
        WatchReply::Events { revision, events }
    }
}
