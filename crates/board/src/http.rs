//! The board's REST/JSON API over HTTP/1.1 (axum): routes, replies, the watch
//! long poll, and errors as JSON. The work is `Board`'s, done on the blocking
//! pool (each change waits for an fsync) one call at a time.
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use tokio::sync::watch;

use super::api::{
    AppliedReply, DeletedReply, LockRequest, QueuedReply, UnlockReply, LEASE_MS_MAX, WATCH_TIMEOUT_MS_DEFAULT,
    WATCH_TIMEOUT_MS_MAX,
};
use super::error::{ApiError, ErrorBody};
use super::input::{record_key, JsonBody, Query, BODY_LIMIT};
use super::model::{Accepted, EventKind, LockGrant, Snapshot, Update, WatchReply};
use super::service::Board;
use switchyard_model::unix_us;

/// The board as the server shares it: one `Board` behind a mutex, the revision
/// last published to watchers, and whether the server is stopping.
pub struct SharedBoard {
    board: Mutex<Board>,
    published: watch::Sender<u64>,
    stopping: watch::Sender<bool>,
}

impl SharedBoard {
    pub fn new(board: Board) -> Arc<SharedBoard> {
        let revision = board.revision();
        Arc::new(SharedBoard {
            board: Mutex::new(board),
            published: watch::Sender::new(revision),
            stopping: watch::Sender::new(false),
        })
    }

    /// Runs `call` on the board here (a blocking thread), then wakes the
    /// watchers if it made new events.
    pub fn with_board<R>(&self, call: impl FnOnce(&mut Board) -> R) -> Result<R, ApiError> {
        let mut board = self
            .board
            .lock()
            .map_err(|_| ApiError::internal("the board failed while handling an earlier request; restart it"))?;
        let result = call(&mut board);
        let revision = board.revision();
        drop(board);
        // Two calls can publish out of order; the revision never goes back.
        self.published.send_if_modified(|published| {
            let newer = revision > *published;
            if newer {
                *published = revision;
            }
            newer
        });
        Ok(result)
    }

    /// `with_board` on the blocking pool: the reactor thread never waits for a commit.
    pub async fn call<R: Send + 'static>(
        self: &Arc<Self>,
        call: impl FnOnce(&mut Board) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.with_board(call))
            .await
            .map_err(|e| ApiError::internal(format!("the board failed while handling the request: {e}")))?
    }

    /// Ends every watch at once (with what it has) and refuses to wait in new ones.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }
}

type Shared = Arc<SharedBoard>;

pub fn router(shared: Shared) -> Router {
    let api = Router::new()
        .route("/v1/board/records", get(records))
        .route("/v1/board/records/{vni}/{mac}", put(put_record).delete(delete_record))
        .route("/v1/board/records/{vni}/{mac}/lock", post(lock).delete(unlock))
        .route("/v1/board/watch", get(watch_events))
        .fallback(no_route)
        .with_state(shared);
    // Around the whole router rather than each route: axum adds a 405's Allow
    // header outside a route's layers, and the message names the methods.
    Router::new().fallback_service(api).layer(middleware::from_fn(errors_as_json))
}

fn now_us() -> u64 {
    unix_us(SystemTime::now())
}

async fn records(State(shared): State<Shared>, RawQuery(query): RawQuery) -> Result<Json<Snapshot>, ApiError> {
    Query::parse(query.as_deref(), &[])?;
    Ok(Json(shared.call(|board| board.snapshot()).await?))
}

async fn put_record(
    State(shared): State<Shared>,
    Path((vni, mac)): Path<(String, String)>,
    JsonBody(update): JsonBody<Update>,
) -> Result<Response, ApiError> {
    let key = record_key(&vni, &mac)?;
    let accepted = shared.call(move |board| board.put(key, update)).await??;
    Ok(accepted_response(accepted))
}

async fn delete_record(
    State(shared): State<Shared>,
    Path((vni, mac)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let key = record_key(&vni, &mac)?;
    let from = Query::parse(query.as_deref(), &["from"])?.required("from")?.to_string();
    let accepted = shared.call(move |board| board.delete(key, &from)).await??;
    Ok(accepted_response(accepted))
}

/// 200 with the record, or 202 with the place in the lock's queue.
fn accepted_response(accepted: Accepted) -> Response {
    match accepted {
        Accepted::Applied(event) => match event.kind {
            EventKind::Put => Json(AppliedReply { applied: event.record, revision: event.revision }).into_response(),
            EventKind::Delete => Json(DeletedReply { deleted: event.record, revision: event.revision }).into_response(),
        },
        Accepted::Queued { position, holder } => {
            (StatusCode::ACCEPTED, Json(QueuedReply { queued: position, holder })).into_response()
        }
    }
}

async fn lock(
    State(shared): State<Shared>,
    Path((vni, mac)): Path<(String, String)>,
    JsonBody(request): JsonBody<LockRequest>,
) -> Result<Json<LockGrant>, ApiError> {
    let key = record_key(&vni, &mac)?;
    if !(1..=LEASE_MS_MAX).contains(&request.lease_ms) {
        let message = format!("lease_ms {} is out of range 1..={LEASE_MS_MAX}", request.lease_ms);
        return Err(ApiError::bad_request("lease_ms", message));
    }
    let lease = Duration::from_millis(request.lease_ms);
    let grant = shared.call(move |board| board.lock(key, &request.holder, lease, now_us())).await??;
    Ok(Json(grant))
}

async fn unlock(
    State(shared): State<Shared>,
    Path((vni, mac)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<UnlockReply>, ApiError> {
    let key = record_key(&vni, &mac)?;
    let holder = Query::parse(query.as_deref(), &["holder"])?.required("holder")?.to_string();
    let reply = shared
        .call(move |board| {
            board.unlock(key, &holder).map(|applied| UnlockReply { applied, revision: board.revision() })
        })
        .await??;
    Ok(Json(reply))
}

/// The long poll: the events after `since` at once if there are any, else the
/// first ones to come within `timeout_ms` (an empty list when none do). Woken
/// by the published revision, never by polling the board.
async fn watch_events(State(shared): State<Shared>, RawQuery(query): RawQuery) -> Result<Json<WatchReply>, ApiError> {
    let query = Query::parse(query.as_deref(), &["since", "timeout_ms"])?;
    let since = query.number("since")?.unwrap_or(0);
    let timeout_ms = query.number("timeout_ms")?.unwrap_or(WATCH_TIMEOUT_MS_DEFAULT);
    if timeout_ms > WATCH_TIMEOUT_MS_MAX {
        let message = format!("timeout_ms {timeout_ms} is out of range 0..={WATCH_TIMEOUT_MS_MAX}");
        return Err(ApiError::bad_request("timeout_ms", message));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    // Subscribed before the first look, so an event between the look and the
    // wait still wakes it.
    let mut published = shared.published.subscribe();
    let mut stopping = shared.stopping();
    loop {
        let reply = shared.call(move |board| board.events_since(since)).await?;
        let nothing_yet = matches!(&reply, WatchReply::Events { events, .. } if events.is_empty());
        if !nothing_yet || *stopping.borrow_and_update() {
            return Ok(Json(reply));
        }
        tokio::select! {
            changed = published.changed() => if changed.is_err() { return Ok(Json(reply)) },
            () = tokio::time::sleep_until(deadline) => return Ok(Json(reply)),
            _ = stopping.changed() => return Ok(Json(reply)),
        }
    }
}

pub async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, None, format!("there is no route {method} {}", uri.path()))
}

/// Every error leaves as `{"error", "field"}` JSON, including the ones axum makes
/// itself (405, a path segment that is not UTF-8).
pub async fn errors_as_json(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let allow = parts.headers.get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = allow.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
        format!("{path} does not accept {method}; it accepts {allowed}")
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("request refused").to_string()
    } else {
        text
    };
    let body = ErrorBody { error: message, field: None, holder: None, expires_at_us: None };
    let mut reply = (status, Json(body)).into_response();
    if let Some(allow) = allow {
        reply.headers_mut().insert(header::ALLOW, allow);
    }
    reply
}
