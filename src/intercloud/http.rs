//! The REST/JSON APIs of the coordinator and of a controller (axum), with the
//! board's request rules (`board::input`: bodies, queries, `{vni}/{mac}` paths,
//! every refusal a JSON error naming the field). The logic runs on the blocking
//! pool, one call at a time (each change waits for an fsync). Views are served
//! by long poll: at once when the follower's `since` is not the view's
//! revision, else when it changes or the timeout ends. docs/intercloud.md.
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, put};
use axum::{Json, Router};
use tokio::sync::watch;

use super::controller::{Controller, ControllerError};
use super::coordinator::{Coordinator, CoordinatorError, ViewKind};
use super::model::{check_cloud, Announce, Cloud, CloudRegistration, View, VmRecord, Withdrawn};
use crate::board::error::ApiError;
use crate::board::http::{errors_as_json, no_route};
use crate::board::input::{record_key, JsonBody, Query};

pub const WATCH_TIMEOUT_MS_DEFAULT: u64 = 25_000;
pub const WATCH_TIMEOUT_MS_MAX: u64 = 60_000;

/// State that counts its changes, so watchers know when to look again.
pub trait Changes {
    fn changes(&self) -> u64;
}

impl Changes for Coordinator {
    fn changes(&self) -> u64 {
        self.revision()
    }
}

impl Changes for Controller {
    fn changes(&self) -> u64 {
        Controller::changes(self)
    }
}

/// A role's state as the server (and the controller's tasks) share it.
pub struct Shared<S> {
    state: Mutex<S>,
    changed: watch::Sender<u64>,
    stopping: watch::Sender<bool>,
}

impl<S: Changes + Send + 'static> Shared<S> {
    pub fn new(state: S) -> Arc<Shared<S>> {
        let changes = state.changes();
        Arc::new(Shared { state: Mutex::new(state), changed: watch::Sender::new(changes), stopping: watch::Sender::new(false) })
    }

    /// Runs `call` here (a blocking thread), then wakes the watchers if it changed something.
    pub fn with<R>(&self, call: impl FnOnce(&mut S) -> R) -> Result<R, ApiError> {
        let mut state =
            self.state.lock().map_err(|_| ApiError::internal("the server failed while handling an earlier request; restart it"))?;
        let result = call(&mut state);
        let changes = state.changes();
        drop(state);
        self.changed.send_if_modified(|seen| {
            let newer = changes != *seen;
            *seen = changes;
            newer
        });
        Ok(result)
    }

    /// `with` on the blocking pool: the reactor thread never waits for a commit.
    pub async fn call<R: Send + 'static>(
        self: &Arc<Self>,
        call: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.with(call))
            .await
            .map_err(|e| ApiError::internal(format!("the server failed while handling the request: {e}")))?
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Ends every long poll at once and refuses to wait in new ones.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// The long poll: `view` at once when its revision is not `since`, else
    /// when it changes, or as it is when `timeout_ms` ends.
    async fn long_poll(
        self: &Arc<Self>,
        query: Option<&str>,
        view: impl Fn(&mut S) -> Result<View, ApiError> + Clone + Send + 'static,
    ) -> Result<Json<View>, ApiError> {
        let query = Query::parse(query, &["since", "timeout_ms"])?;
        let since = query.number("since")?;
        let timeout_ms = query.number("timeout_ms")?.unwrap_or(WATCH_TIMEOUT_MS_DEFAULT);
        if timeout_ms > WATCH_TIMEOUT_MS_MAX {
            let message = format!("timeout_ms {timeout_ms} is out of range 0..={WATCH_TIMEOUT_MS_MAX}");
            return Err(ApiError::bad_request("timeout_ms", message));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        // Subscribed before the first look: a change between the look and the wait still wakes it.
        let mut changed = self.changed.subscribe();
        let mut stopping = self.stopping.subscribe();
        loop {
            let current = self.call(view.clone()).await??;
            if since != Some(current.revision) || *stopping.borrow_and_update() {
                return Ok(Json(current));
            }
            tokio::select! {
                result = changed.changed() => if result.is_err() { return Ok(Json(current)) },
                () = tokio::time::sleep_until(deadline) => return Ok(Json(current)),
                _ = stopping.changed() => return Ok(Json(current)),
            }
        }
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(error: CoordinatorError) -> ApiError {
        let message = error.to_string();
        match error {
            CoordinatorError::Invalid(invalid) => ApiError::bad_request(invalid.field, message),
            CoordinatorError::UnknownCloud(_) => ApiError::new(StatusCode::NOT_FOUND, Some("cloud"), message),
            CoordinatorError::Store(_) => ApiError::internal(message),
        }
    }
}

impl From<ControllerError> for ApiError {
    fn from(error: ControllerError) -> ApiError {
        let message = error.to_string();
        match error {
            ControllerError::Invalid(invalid) => ApiError::bad_request(invalid.field, message),
            ControllerError::Store(_) => ApiError::internal(message),
        }
    }
}

fn with_errors(api: Router) -> Router {
    // Around the whole router: axum adds a 405's Allow header outside a route's layers.
    Router::new().fallback_service(api).layer(middleware::from_fn(errors_as_json))
}

fn cloud_name(cloud: &str) -> Result<String, ApiError> {
    check_cloud(cloud).map_err(|invalid| ApiError::bad_request(invalid.field, invalid.problem))?;
    Ok(cloud.to_string())
}

// --- the coordinator ---

type SharedCoordinator = Arc<Shared<Coordinator>>;

pub fn coordinator_router(shared: SharedCoordinator) -> Router {
    let api = Router::new()
        .route("/v1/coordinator/clouds", get(list_clouds))
        .route("/v1/coordinator/clouds/{cloud}", put(register_cloud))
        .route("/v1/coordinator/vms", get(list_vms))
        .route("/v1/coordinator/clouds/{cloud}/vms/{vni}/{mac}", put(put_vm).delete(delete_vm))
        .route("/v1/coordinator/clouds/{cloud}/gateway", get(gateway_view))
        .route("/v1/coordinator/clouds/{cloud}/forwarding", get(forwarding_view))
        .fallback(no_route)
        .with_state(shared);
    with_errors(api)
}

async fn list_clouds(State(shared): State<SharedCoordinator>, RawQuery(q): RawQuery) -> Result<Json<Vec<Cloud>>, ApiError> {
    Query::parse(q.as_deref(), &[])?;
    Ok(Json(shared.call(|c| c.clouds()).await?))
}

async fn list_vms(State(shared): State<SharedCoordinator>, RawQuery(q): RawQuery) -> Result<Json<Vec<VmRecord>>, ApiError> {
    Query::parse(q.as_deref(), &[])?;
    Ok(Json(shared.call(|c| c.vms()).await?))
}

async fn register_cloud(
    State(shared): State<SharedCoordinator>,
    Path(cloud): Path<String>,
    JsonBody(body): JsonBody<CloudRegistration>,
) -> Result<Json<Cloud>, ApiError> {
    let cloud = cloud_name(&cloud)?;
    Ok(Json(shared.call(move |c| c.register(&cloud, body.gateway_vtep)).await??))
}

async fn put_vm(
    State(shared): State<SharedCoordinator>,
    Path((cloud, vni, mac)): Path<(String, String, String)>,
    JsonBody(announce): JsonBody<Announce>,
) -> Result<Json<VmRecord>, ApiError> {
    let cloud = cloud_name(&cloud)?;
    let key = record_key(&vni, &mac)?;
    Ok(Json(shared.call(move |c| c.put_vm(&cloud, key, announce)).await??))
}

async fn delete_vm(
    State(shared): State<SharedCoordinator>,
    Path((cloud, vni, mac)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<Withdrawn>, ApiError> {
    Query::parse(q.as_deref(), &[])?;
    let cloud = cloud_name(&cloud)?;
    let key = record_key(&vni, &mac)?;
    Ok(Json(shared.call(move |c| c.delete_vm(&cloud, key)).await??))
}

async fn gateway_view(
    State(shared): State<SharedCoordinator>,
    Path(cloud): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<View>, ApiError> {
    let cloud = cloud_name(&cloud)?;
    shared.long_poll(q.as_deref(), move |c| Ok(c.view(ViewKind::Gateway, &cloud)?)).await
}

async fn forwarding_view(
    State(shared): State<SharedCoordinator>,
    Path(cloud): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<View>, ApiError> {
    let cloud = cloud_name(&cloud)?;
    shared.long_poll(q.as_deref(), move |c| Ok(c.view(ViewKind::Forwarding, &cloud)?)).await
}

// --- a controller ---

type SharedController = Arc<Shared<Controller>>;

pub fn controller_router(shared: SharedController) -> Router {
    let api = Router::new()
        .route("/v1/controller/vms", get(list_local))
        .route("/v1/controller/vms/{vni}/{mac}", put(announce).delete(withdraw))
        .route("/v1/controller/remotes", get(remotes))
        .fallback(no_route)
        .with_state(shared);
    with_errors(api)
}

async fn list_local(State(shared): State<SharedController>, RawQuery(q): RawQuery) -> Result<Json<Vec<VmRecord>>, ApiError> {
    Query::parse(q.as_deref(), &[])?;
    Ok(Json(shared.call(|c| c.local()).await?))
}

async fn announce(
    State(shared): State<SharedController>,
    Path((vni, mac)): Path<(String, String)>,
    JsonBody(announce): JsonBody<Announce>,
) -> Result<Json<VmRecord>, ApiError> {
    let key = record_key(&vni, &mac)?;
    Ok(Json(shared.call(move |c| c.announce(key, announce)).await??))
}

/// `DELETE /v1/controller/vms/{vni}/{mac}?vtep=IP`: the compute node it is withdrawn from.
async fn withdraw(
    State(shared): State<SharedController>,
    Path((vni, mac)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<Withdrawn>, ApiError> {
    let key = record_key(&vni, &mac)?;
    let query = Query::parse(q.as_deref(), &["vtep"])?;
    let vtep = query.required("vtep")?;
    let vtep: Ipv4Addr =
        vtep.parse().map_err(|_| ApiError::bad_request("vtep", format!("vtep {vtep:?} is not an IPv4 address")))?;
    Ok(Json(shared.call(move |c| c.withdraw(key, vtep)).await??))
}

async fn remotes(State(shared): State<SharedController>, RawQuery(q): RawQuery) -> Result<Json<View>, ApiError> {
    shared.long_poll(q.as_deref(), |c| Ok(c.remote_view())).await
}
