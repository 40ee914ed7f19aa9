//! Config requests that arrive while changes are paused (during an upgrade of
//! the switching unit): persisted as they arrive, applied in order afterwards,
//! and their outcomes kept for a while so clients can ask what became of them.
//!
//! Two tables keyed by request id (ids come from `next_request_id` in `meta`, so
//! they keep rising across restarts): `queued_requests` holds what is still to be
//! applied, in arrival order; `finished_requests` the last `FINISHED_KEPT`
//! outcomes. Finishing a request moves it from one to the other in the same
//! transaction as the configuration change it made.
use std::time::SystemTime;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::db::{Store, StoreError, META};
use switchyard_model::unix_us;

pub(super) const QUEUED_REQUESTS: TableDefinition<u64, &str> = TableDefinition::new("queued_requests");
pub(super) const FINISHED_REQUESTS: TableDefinition<u64, &str> = TableDefinition::new("finished_requests");

/// How many finished requests are kept; older ones are dropped as new ones finish.
pub const FINISHED_KEPT: usize = 1000;

const NEXT_REQUEST_KEY: &str = "next_request_id";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for the upgrade to end.
    Queued,
    /// Validated, committed and applied (or it asked for what already was).
    Applied,
    /// Refused when its turn came; it changed nothing.
    Failed,
}

/// One queued request as stored (JSON in both tables).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: u64,
    /// "POST", "PUT" or "DELETE", and the API path it was sent to.
    pub method: String,
    pub path: String,
    pub state: RequestState,
    /// Microseconds since the Unix epoch.
    pub queued_unix_us: u64,
    #[serde(default)]
    pub finished_unix_us: Option<u64>,
    /// The HTTP status the request would have had if applied at once (201, 200,
    /// 204, or the error's).
    #[serde(default)]
    pub status: Option<u16>,
    /// Applied: the generation after it, and the body it would have been answered with.
    #[serde(default)]
    pub generation: Option<u64>,
    #[serde(default)]
    pub reply: Option<Value>,
    /// Failed: why, and the field at fault.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
    /// The request itself as the control plane wrote it; the store does not read it.
    pub request: Value,
}

/// How a queued request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The generation is taken from the transaction that records it.
    Applied {
        status: u16,
        reply: Value,
    },
    Failed {
        status: u16,
        error: String,
        field: Option<String>,
    },
}

fn now_us() -> u64 {
    unix_us(SystemTime::now())
}

impl Store {
    /// Persists a request at the end of the queue (fsync'd before it returns) and
    /// returns it with its id.
    pub fn queue_request(&self, method: &str, path: &str, request: Value) -> Result<RequestRecord, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_error(e))?;
        let record = {
            let mut meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
            let id = meta.get(NEXT_REQUEST_KEY).map_err(|e| self.db_error(e))?.map_or(1, |v| v.value());
            meta.insert(NEXT_REQUEST_KEY, id + 1).map_err(|e| self.db_error(e))?;
            let record = RequestRecord {
                id,
                method: method.to_string(),
                path: path.to_string(),
                state: RequestState::Queued,
                queued_unix_us: now_us(),
                finished_unix_us: None,
                status: None,
                generation: None,
                reply: None,
                error: None,
                field: None,
                request,
            };
            let mut queued = txn.open_table(QUEUED_REQUESTS).map_err(|e| self.db_error(e))?;
            queued.insert(id, self.encode(&record)?.as_str()).map_err(|e| self.db_error(e))?;
            record
        };
        self.commit_durably(txn)?;
        Ok(record)
    }

    /// The requests still queued, oldest first.
    pub fn queued_requests(&self) -> Result<Vec<RequestRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error(e))?;
        let table = txn.open_table(QUEUED_REQUESTS).map_err(|e| self.db_error(e))?;
        let mut records = Vec::new();
        for entry in table.iter().map_err(|e| self.db_error(e))? {
            let (key, value) = entry.map_err(|e| self.db_error(e))?;
            records.push(self.decode(QUEUED_REQUESTS, key.value(), value.value())?);
        }
        Ok(records)
    }

    /// A request, queued or finished; `None` if it never existed or its outcome
    /// was dropped (only the last `FINISHED_KEPT` are kept).
    pub fn request(&self, id: u64) -> Result<Option<RequestRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error(e))?;
        for definition in [QUEUED_REQUESTS, FINISHED_REQUESTS] {
            let table = txn.open_table(definition).map_err(|e| self.db_error(e))?;
            if let Some(value) = table.get(id).map_err(|e| self.db_error(e))? {
                return self.decode(definition, id, value.value()).map(Some);
            }
        }
        Ok(None)
    }

    /// Records the outcome of a queued request that made no configuration change
    /// (refused, or it asked for what already was).
    pub fn finish_request(&self, id: u64, outcome: RequestOutcome) -> Result<(), StoreError> {
        self.commit_and_finish(&[], Some((id, outcome))).map(drop)
    }

    /// Moves request `id` from the queue to the finished ones, inside `txn`.
    pub(super) fn finish_in(
        &self,
        txn: &redb::WriteTransaction,
        id: u64,
        outcome: RequestOutcome,
        generation: u64,
    ) -> Result<(), StoreError> {
        let mut queued = txn.open_table(QUEUED_REQUESTS).map_err(|e| self.db_error(e))?;
        let Some(text) = queued.remove(id).map_err(|e| self.db_error(e))?.map(|v| v.value().to_string()) else {
            return Err(StoreError::Missing { path: self.path.clone(), what: format!("queued request {id}") });
        };
        let mut record = self.decode(QUEUED_REQUESTS, id, &text)?;
        record.finished_unix_us = Some(now_us());
        match outcome {
            RequestOutcome::Applied { status, reply } => {
                record.state = RequestState::Applied;
                record.status = Some(status);
                record.generation = Some(generation);
                record.reply = Some(reply);
            }
            RequestOutcome::Failed { status, error, field } => {
                record.state = RequestState::Failed;
                record.status = Some(status);
                record.error = Some(error);
                record.field = field;
            }
        }
        let mut finished = txn.open_table(FINISHED_REQUESTS).map_err(|e| self.db_error(e))?;
        finished.insert(id, self.encode(&record)?.as_str()).map_err(|e| self.db_error(e))?;
        while finished.len().map_err(|e| self.db_error(e))? > self.finished_kept() as u64 {
            finished.pop_first().map_err(|e| self.db_error(e))?;
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn finished_kept(&self) -> usize {
        FINISHED_KEPT
    }

    #[cfg(test)]
    fn finished_kept(&self) -> usize {
        self.finished_kept.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Keeps only the last `n` finished requests from now on (tests of the pruning).
    #[cfg(test)]
    pub(crate) fn keep_finished(&self, n: usize) {
        self.finished_kept.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn encode(&self, record: &RequestRecord) -> Result<String, StoreError> {
        serde_json::to_string(record).map_err(|e| StoreError::Database {
            path: self.path.clone(),
            message: format!("cannot encode request {}: {e}", record.id),
        })
    }

    fn decode(&self, table: TableDefinition<u64, &str>, id: u64, text: &str) -> Result<RequestRecord, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            table: redb::TableHandle::name(&table).to_string(),
            key: id.to_string(),
            message: e.to_string(),
        })
    }
}
