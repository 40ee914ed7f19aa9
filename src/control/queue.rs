//! Config requests during an upgrade: `Control` is the orchestrator's
//! `ConfigGate`. While paused, a change request is checked as far as it can be
//! without the configuration, persisted in the config database, and answered
//! 202 with its id; `resume` applies the queue in arrival order through
//! `Control::execute`, exactly as live requests are applied, and records each
//! outcome for `GET /v1/requests/{id}`.
use std::sync::PoisonError;

use serde::Serialize;

use super::core::{Applied, Control};
use super::error::ApiError;
use super::request::ConfigRequest;
use crate::configdb::{RequestOutcome, RequestRecord, RequestState, StoreError, FINISHED_KEPT};
use crate::model::ConfigSnapshot;
use crate::upgrade::{ConfigGate, Resumed};

/// What became of a change request handed to `submit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Applied at once (no upgrade was running).
    Applied(Applied),
    /// Persisted; applied when the upgrade ends.
    Queued(RequestRecord),
}

/// `GET /v1/requests/{id}`: a queued request and, once its turn came, its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestStatus {
    pub id: u64,
    pub state: RequestState,
    pub method: String,
    pub path: String,
    /// Microseconds since the Unix epoch.
    pub queued_unix_us: u64,
    pub finished_unix_us: Option<u64>,
    /// The status the request would have had if applied at once (201, 200, 204,
    /// or the error's).
    pub status: Option<u16>,
    /// Applied: the generation after it, and the body it would have been answered with.
    pub generation: Option<u64>,
    pub reply: Option<serde_json::Value>,
    /// Failed: why, and the field at fault.
    pub error: Option<String>,
    pub field: Option<String>,
}

impl From<RequestRecord> for RequestStatus {
    fn from(r: RequestRecord) -> Self {
        RequestStatus {
            id: r.id,
            state: r.state,
            method: r.method,
            path: r.path,
            queued_unix_us: r.queued_unix_us,
            finished_unix_us: r.finished_unix_us,
            status: r.status,
            generation: r.generation,
            reply: r.reply,
            error: r.error,
            field: r.field,
        }
    }
}

impl Control {
    /// The API's way in for every change request: applied now, or, while an
    /// upgrade runs, checked as far as the configuration is not needed and queued.
    pub fn submit(&self, request: ConfigRequest) -> Result<Submitted, ApiError> {
        let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        if !*paused {
            return self.execute(request).map(Submitted::Applied);
        }
        self.check(&request)?;
        let json = serde_json::to_value(&request)
            .map_err(|e| ApiError::internal(format!("the request could not be encoded for the queue: {e}")))?;
        let record = self.store.queue_request(request.method(), &request.path(), json).map_err(|e| {
            log::error!("control: cannot queue a request: {e}");
            ApiError::internal(format!("the request was not queued: {e}"))
        })?;
        log::info!("control: request {} queued while an upgrade runs: {} {}", record.id, record.method, record.path);
        Ok(Submitted::Queued(record))
    }

    /// Whether change requests are being queued.
    pub fn is_paused(&self) -> bool {
        *self.paused.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A queued request or the outcome of a finished one.
    pub fn request_status(&self, id: &str) -> Result<RequestStatus, ApiError> {
        let number = id.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_request("id", format!("{id:?} is not a request id (a positive integer from a 202 reply)"))
        })?;
        let record = self.store.request(number).map_err(|e| ApiError::internal(e.to_string()))?;
        record.map(RequestStatus::from).ok_or_else(|| {
            ApiError::not_found(
                "id",
                format!("there is no request {number} (the outcomes of the last {FINISHED_KEPT} are kept)"),
            )
        })
    }

    /// Applies every queued request, oldest first, recording each outcome. The
    /// caller holds the turn (`paused`), or is `new`, before anyone else can.
    fn apply_queue(&self) -> Result<Resumed, StoreError> {
        let mut resumed = Resumed::default();
        for record in self.store.queued_requests()? {
            let outcome = serde_json::from_value::<ConfigRequest>(record.request.clone())
                .map_err(|e| ApiError::internal(format!("the queued request could not be read back: {e}")))
                .and_then(|request| self.execute_queued(request, Some(record.id)));
            match outcome {
                Ok(applied) => {
                    resumed.applied += 1;
                    log::info!(
                        "control: queued request {} applied ({} {}, generation {})",
                        record.id,
                        record.method,
                        record.path,
                        applied.generation
                    );
                }
                Err(error) => {
                    resumed.failed += 1;
                    log::warn!(
                        "control: queued request {} failed ({} {}): {error}",
                        record.id,
                        record.method,
                        record.path
                    );
                    let failed = RequestOutcome::Failed {
                        status: error.status(),
                        error: error.message().to_string(),
                        field: error.field().map(str::to_string),
                    };
                    if let Err(e) = self.store.finish_request(record.id, failed) {
                        // It stays queued and is tried again at the next start.
                        log::error!("control: cannot record that queued request {} failed: {e}", record.id);
                    }
                }
            }
        }
        Ok(resumed)
    }

    /// At start: requests still queued mean the previous run stopped during an
    /// upgrade; they are applied now, in order, before the API serves anything.
    pub(super) fn apply_left_over_queue(&self) -> Result<(), StoreError> {
        let left = self.store.queued_requests()?.len();
        if left == 0 {
            return Ok(());
        }
        log::warn!("control: {left} config requests were left queued by the previous run (it stopped during an upgrade); applying them in order");
        let resumed = self.apply_queue()?;
        log::info!("control: left-over queue: {} applied, {} failed", resumed.applied, resumed.failed);
        Ok(())
    }
}

impl ConfigGate for Control {
    /// Waits for a change being applied to finish; every later one is queued.
    fn pause(&self) {
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        if *paused {
            log::warn!("control: config requests were already paused");
        }
        *paused = true;
        log::info!("control: config requests paused; changes are queued until the upgrade ends");
    }

    /// Steps 2 and 5 (and a rollback): the snapshot last committed. It is what
    /// the database holds: a commit swaps it in under the writer lock, and no
    /// change runs while paused.
    fn committed(&self) -> Result<ConfigSnapshot, String> {
        Ok(ConfigSnapshot::clone(&self.snapshot()))
    }

    /// Applies the queue holding the turn, so a request arriving meanwhile waits
    /// and comes after every queued one; then lets requests through again.
    fn resume(&self) -> Resumed {
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        match self.apply_queue() {
            Ok(resumed) => {
                *paused = false;
                log::info!(
                    "control: config requests resumed; {} queued applied, {} failed",
                    resumed.applied,
                    resumed.failed
                );
                resumed
            }
            Err(e) => {
                // Letting requests through would apply them before the queued ones.
                log::error!(
                    "control: cannot read the queued config requests: {e}; changes stay paused (queued) so none \
                     is applied out of order; restart switchyard to apply them"
                );
                Resumed::default()
            }
        }
    }
}
