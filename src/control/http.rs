//! The REST/JSON API over HTTP/1.1 (axum): routes, the JSON body rules, and
//! error responses. The work itself is done by `Control`.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::core::{
    AddressMigrationNotify, Applied, Control, EndpointCreate, NetworkCreate, NetworkReplace, PortBind, RemoteCreate,
};
use super::error::{ApiError, ErrorBody, ErrorKind};
use super::migration::MigrationEventBody;
use super::queue::Submitted;
use super::request::ConfigRequest;
use super::storage::{
    StorageImageClone, StorageImageCreate, StorageImageGrow, StorageImageReadOnly, StorageOrphanAdopt, StorageUserCreate, StorageUserIps,
    StorageUserQuota,
};
use super::upgrade::UpgradeStart;
use crate::configdb::RequestState;
use crate::upgrade::{Outcome, UpgradeRecord, UpgradeRefused};

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Shared = Arc<Control>;

/// The router plus the list of (method, path) it serves, which the OpenAPI test
/// compares with the document.
struct Routes {
    router: Router<Shared>,
    listed: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn add<H, T>(mut self, method: &'static str, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Shared>,
        T: 'static,
    {
        let method_router = match method {
            "get" => axum::routing::get(handler),
            "post" => axum::routing::post(handler),
            "put" => axum::routing::put(handler),
            "delete" => axum::routing::delete(handler),
            _ => unreachable!("method {method} is not used by the API"),
        };
        self.router = self.router.route(path, method_router);
        self.listed.push((method, path));
        self
    }
}

fn routes() -> Routes {
    Routes { router: Router::new(), listed: Vec::new() }
        .add("get", "/v1/networks", list_networks)
        .add("post", "/v1/networks", create_network)
        .add("get", "/v1/networks/{vni}", get_network)
        .add("put", "/v1/networks/{vni}", replace_network)
        .add("delete", "/v1/networks/{vni}", delete_network)
        .add("get", "/v1/endpoints", list_endpoints)
        .add("post", "/v1/endpoints", create_endpoint)
        .add("get", "/v1/endpoints/{vni}/{mac}", get_endpoint)
        .add("delete", "/v1/endpoints/{vni}/{mac}", delete_endpoint)
        .add("get", "/v1/remotes", list_remotes)
        .add("post", "/v1/remotes", create_remote)
        .add("get", "/v1/remotes/{vni}/{mac}", get_remote)
        .add("delete", "/v1/remotes/{vni}/{mac}", delete_remote)
        .add("get", "/v1/ports", list_ports)
        .add("get", "/v1/ports/{name}", get_port)
        .add("put", "/v1/ports/{name}/network", bind_port)
        .add("delete", "/v1/ports/{name}/network", unbind_port)
        .add("get", "/v1/address-migrations", list_address_migrations)
        .add("post", "/v1/address-migrations", notify_address_migration)
        .add("get", "/v1/address-migrations/reports", list_address_reports)
        .add("get", "/v1/address-migrations/{vni}/{primary_ip}", get_address_migration)
        .add("delete", "/v1/address-migrations/{vni}/{primary_ip}", delete_address_migration)
        .add("get", "/v1/config", get_config)
        .add("get", "/v1/unit", get_unit)
        .add("get", "/v1/stats", get_stats)
        .add("get", "/v1/learned", get_learned)
        .add("get", "/v1/tunnels", list_tunnels)
        .add("get", "/v1/requests/{id}", get_request)
        .add("get", "/v1/upgrade", get_upgrade)
        .add("post", "/v1/upgrade", start_upgrade)
        // The names the upgrade issue gives them.
        .add("get", "/upgrade", get_upgrade)
        .add("post", "/upgrade", start_upgrade)
        .add("get", "/v1/migrations", list_migrations)
        .add("post", "/v1/migrations", migration_event)
        .add("get", "/v1/migrations/{vni}/{mac}", get_migration)
        .add("get", "/v1/storage/users", list_storage_users)
        .add("post", "/v1/storage/users", create_storage_user)
        .add("get", "/v1/storage/users/{name}", get_storage_user)
        .add("delete", "/v1/storage/users/{name}", delete_storage_user)
        .add("put", "/v1/storage/users/{name}/ips", set_storage_user_ips)
        .add("put", "/v1/storage/users/{name}/quota", set_storage_user_quota)
        .add("post", "/v1/storage/users/{name}/secret", rotate_storage_user_secret)
        .add("get", "/v1/storage/images", list_storage_images)
        .add("post", "/v1/storage/images", create_storage_image)
        .add("get", "/v1/storage/images/{name}", get_storage_image)
        .add("delete", "/v1/storage/images/{name}", delete_storage_image)
        .add("post", "/v1/storage/images/{name}/grow", grow_storage_image)
        .add("post", "/v1/storage/images/{name}/clone", clone_storage_image)
        .add("put", "/v1/storage/images/{name}/read-only", set_storage_image_read_only)
        .add("get", "/v1/storage/orphans", list_storage_orphans)
        .add("delete", "/v1/storage/orphans/{file}", remove_storage_orphan)
        .add("post", "/v1/storage/orphans/{file}/adopt", adopt_storage_orphan)
        .add("get", "/metrics", get_metrics)
        .add("get", "/openapi.json", get_openapi)
}

/// Every (method, path) the router serves; methods in lower case, paths in
/// OpenAPI template form (`/v1/networks/{vni}`).
pub fn route_list() -> Vec<(&'static str, &'static str)> {
    routes().listed
}

pub fn router(control: Arc<Control>) -> Router {
    let api = routes().router.fallback(no_route).with_state(control);
    // Around the whole router rather than each route: axum adds a 405's Allow
    // header outside a route's layers, and the message names the methods.
    Router::new().fallback_service(api).layer(middleware::from_fn(errors_as_json))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

/// Runs a `Control` call on the blocking pool: commits fsync and the runtime may
/// take a while, and reads should not wait behind them on the reactor thread.
async fn blocking<R: Send + 'static>(
    control: Shared,
    call: impl FnOnce(&Control) -> R + Send + 'static,
) -> Result<R, ApiError> {
    tokio::task::spawn_blocking(move || call(&control))
        .await
        .map_err(|e| ApiError::internal(format!("the request failed inside the switch: {e}")))
}

type Reply<T> = Result<Json<T>, ApiError>;

async fn list_networks(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, Control::networks).await?))
}

async fn get_network(State(c): State<Shared>, Path(vni): Path<String>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.network(&vni)).await??))
}

async fn create_network(
    State(c): State<Shared>,
    JsonBody(body): JsonBody<NetworkCreate>,
) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::CreateNetwork(body)).await
}

async fn replace_network(
    State(c): State<Shared>,
    Path(vni): Path<String>,
    JsonBody(body): JsonBody<NetworkReplace>,
) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::ReplaceNetwork { vni, body }).await
}

async fn delete_network(State(c): State<Shared>, Path(vni): Path<String>) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::DeleteNetwork { vni }).await
}

async fn list_endpoints(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, Control::endpoints).await?))
}

async fn get_endpoint(State(c): State<Shared>, Path((vni, mac)): Path<(String, String)>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.endpoint(&vni, &mac)).await??))
}

async fn create_endpoint(
    State(c): State<Shared>,
    JsonBody(body): JsonBody<EndpointCreate>,
) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::AddEndpoint(body)).await
}

async fn delete_endpoint(
    State(c): State<Shared>,
    Path((vni, mac)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::DeleteEndpoint { vni, mac }).await
}

async fn list_remotes(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, Control::remotes).await?))
}

async fn get_remote(State(c): State<Shared>, Path((vni, mac)): Path<(String, String)>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.remote(&vni, &mac)).await??))
}

async fn create_remote(State(c): State<Shared>, JsonBody(body): JsonBody<RemoteCreate>) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::AddRemote(body)).await
}

async fn delete_remote(
    State(c): State<Shared>,
    Path((vni, mac)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::DeleteRemote { vni, mac }).await
}

async fn list_ports(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, Control::ports).await?))
}

async fn get_port(State(c): State<Shared>, Path(name): Path<String>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.port(&name)).await??))
}

async fn bind_port(
    State(c): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PortBind>,
) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::BindPort { name, body }).await
}

async fn unbind_port(State(c): State<Shared>, Path(name): Path<String>) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::UnbindPort { name }).await
}

async fn list_address_migrations(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, Control::address_migrations).await?))
}

async fn get_address_migration(
    State(c): State<Shared>,
    Path((vni, primary_ip)): Path<(String, String)>,
) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.address_migration(&vni, &primary_ip)).await??))
}

async fn notify_address_migration(
    State(c): State<Shared>,
    JsonBody(body): JsonBody<AddressMigrationNotify>,
) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::NotifyAddressMigration(body)).await
}

async fn delete_address_migration(
    State(c): State<Shared>,
    Path((vni, primary_ip)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    submit(c, ConfigRequest::DeleteAddressMigration { vni, primary_ip }).await
}

async fn list_address_reports(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, Control::address_report_log).await?))
}

/// The one way a change request goes: applied now, or 202 while an upgrade runs.
async fn submit(c: Shared, request: ConfigRequest) -> Result<Response, ApiError> {
    Ok(match blocking(c, move |c| c.submit(request)).await?? {
        Submitted::Applied(applied) => applied_response(applied),
        Submitted::Queued(record) => {
            let status = format!("/v1/requests/{}", record.id);
            let location = HeaderValue::from_str(&status).unwrap_or(HeaderValue::from_static("/v1/requests"));
            let reply = QueuedReply { request_id: record.id, state: record.state, status };
            (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(reply)).into_response()
        }
    })
}

fn applied_response(applied: Applied) -> Response {
    let status = StatusCode::from_u16(applied.status).unwrap_or(StatusCode::OK);
    match applied.body {
        Some(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => status.into_response(),
    }
}

/// The 202 reply to a change request queued during an upgrade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedReply {
    pub request_id: u64,
    pub state: RequestState,
    /// Where to ask what became of it (also the `Location` header).
    pub status: String,
}

async fn get_request(State(c): State<Shared>, Path(id): Path<String>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.request_status(&id)).await??))
}

async fn list_migrations(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, Control::migration_list).await?))
}

async fn get_migration(State(c): State<Shared>, Path((vni, mac)): Path<(String, String)>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.migration(&vni, &mac)).await??))
}

/// A VM monitor hook's event; 200 with the migration, also for a duplicate or
/// stale event (`outcome` says which), so a hook may safely retry.
async fn migration_event(State(c): State<Shared>, JsonBody(body): JsonBody<MigrationEventBody>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.migration_event(body)).await??))
}

// Storage users and images: applied at once, never queued (`storage.rs`).

async fn list_storage_users(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, Control::storage_users).await??))
}

async fn get_storage_user(State(c): State<Shared>, Path(name): Path<String>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.storage_user(&name)).await??))
}

async fn create_storage_user(
    State(c): State<Shared>,
    JsonBody(body): JsonBody<StorageUserCreate>,
) -> Result<Response, ApiError> {
    let user = blocking(c, move |c| c.create_storage_user(body)).await??;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

async fn delete_storage_user(State(c): State<Shared>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    blocking(c, move |c| c.delete_storage_user(&name)).await??;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_storage_user_ips(
    State(c): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<StorageUserIps>,
) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.set_storage_user_ips(&name, body)).await??))
}

async fn set_storage_user_quota(
    State(c): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<StorageUserQuota>,
) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.set_storage_user_quota(&name, body)).await??))
}

async fn rotate_storage_user_secret(State(c): State<Shared>, Path(name): Path<String>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.rotate_storage_user_secret(&name)).await??))
}

async fn list_storage_images(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, Control::storage_images).await??))
}

async fn get_storage_image(State(c): State<Shared>, Path(name): Path<String>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.storage_image(&name)).await??))
}

async fn create_storage_image(
    State(c): State<Shared>,
    JsonBody(body): JsonBody<StorageImageCreate>,
) -> Result<Response, ApiError> {
    let image = blocking(c, move |c| c.create_storage_image(body)).await??;
    Ok((StatusCode::CREATED, Json(image)).into_response())
}

async fn delete_storage_image(State(c): State<Shared>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    blocking(c, move |c| c.delete_storage_image(&name)).await??;
    Ok(StatusCode::NO_CONTENT)
}

async fn grow_storage_image(
    State(c): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<StorageImageGrow>,
) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.grow_storage_image(&name, body)).await??))
}

async fn clone_storage_image(
    State(c): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<StorageImageClone>,
) -> Result<Response, ApiError> {
    let image = blocking(c, move |c| c.clone_storage_image(&name, body)).await??;
    Ok((StatusCode::CREATED, Json(image)).into_response())
}

async fn set_storage_image_read_only(
    State(c): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<StorageImageReadOnly>,
) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, move |c| c.set_storage_image_read_only(&name, body)).await??))
}

async fn list_storage_orphans(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, Control::storage_orphans).await??))
}

async fn remove_storage_orphan(State(c): State<Shared>, Path(file): Path<String>) -> Result<StatusCode, ApiError> {
    blocking(c, move |c| c.remove_storage_orphan(&file)).await??;
    Ok(StatusCode::NO_CONTENT)
}

async fn adopt_storage_orphan(
    State(c): State<Shared>,
    Path(file): Path<String>,
    JsonBody(body): JsonBody<StorageOrphanAdopt>,
) -> Result<Response, ApiError> {
    let image = blocking(c, move |c| c.adopt_storage_orphan(&file, body)).await??;
    Ok((StatusCode::CREATED, Json(image)).into_response())
}

async fn get_upgrade(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, |c| c.runtime().upgrade_status()).await?.map_err(refused)?))
}

/// Runs the whole upgrade on the blocking pool, so the API keeps answering
/// (status polls, and change requests with 202) while it runs.
async fn start_upgrade(State(c): State<Shared>, JsonBody(body): JsonBody<UpgradeStart>) -> Result<Response, ApiError> {
    let record = blocking(c, move |c| {
        let library = c.unit_library(&body.library)?;
        c.upgrade(&library).map_err(refused)
    })
    .await??;
    let problem = match (&record.outcome, record.error.as_deref().unwrap_or("no reason given")) {
        (Outcome::Upgraded, _) => return Ok(Json(record).into_response()),
        (Outcome::RolledBack, why) => format!("upgrade {} rolled back: {why}", record.id),
        (Outcome::Running, _) => return Err(ApiError::internal("the upgrade returned while still running")),
    };
    let status = StatusCode::from_u16(ErrorKind::UpgradeFailed.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    let body = UpgradeFailedBody { error: ErrorBody { error: problem, field: None }, record };
    Ok((status, Json(body)).into_response())
}

/// The 422 reply: the error, and the record of what ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeFailedBody {
    #[serde(flatten)]
    pub error: ErrorBody,
    pub record: UpgradeRecord,
}

/// 409 either way: the request is fine, the switch's state does not allow it.
fn refused(refusal: UpgradeRefused) -> ApiError {
    ApiError::new(ErrorKind::Conflict, None, refusal.to_string())
}

async fn get_config(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(crate::model::ConfigSnapshot::clone(&c.snapshot())))
}

async fn get_unit(State(c): State<Shared>) -> Reply<serde_json::Value> {
    Ok(Json(blocking(c, |c| c.runtime().unit_info()).await?))
}

async fn get_stats(State(c): State<Shared>) -> Reply<serde_json::Value> {
    Ok(Json(blocking(c, |c| c.runtime().stats()).await?))
}

async fn list_tunnels(State(c): State<Shared>) -> Reply<impl Serialize> {
    Ok(Json(blocking(c, |c| c.runtime().tunnels()).await?))
}

async fn get_learned(State(c): State<Shared>) -> Reply<serde_json::Value> {
    Ok(Json(blocking(c, |c| c.runtime().learned()).await?))
}

async fn get_metrics(State(c): State<Shared>) -> Result<Response, ApiError> {
    let text = blocking(c, |c| c.runtime().metrics()).await?;
    Ok(([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}

async fn get_openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document())
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorKind::NotFound, None, format!("there is no route {method} {}", uri.path()))
}

/// Every error leaves as `{"error", "field"}` JSON, including the ones axum makes
/// itself (405, a path segment that is not UTF-8).
async fn errors_as_json(request: Request, next: Next) -> Response {
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
    let text = axum::body::to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let (kind, message) = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
        (ErrorKind::MethodNotAllowed, format!("{path} does not accept {method}; it accepts {allowed}"))
    } else if text.is_empty() {
        (ErrorKind::BadRequest, status.canonical_reason().unwrap_or("request refused").to_string())
    } else {
        (ErrorKind::BadRequest, text)
    };
    let mut reply = (status, Json(ErrorBody { error: message, field: None })).into_response();
    if kind == ErrorKind::MethodNotAllowed {
        if let Some(allow) = parts.headers.get(header::ALLOW) {
            reply.headers_mut().insert(header::ALLOW, allow.clone());
        }
    }
    reply
}

/// A JSON request body: `Content-Type: application/json` (else 415), at most
/// `BODY_LIMIT` bytes (else 413), well-formed (else 400, field "body"), with the
/// right fields of the right types (else 400 naming the field).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
        if !is_json_content_type(content_type.as_ref()) {
            let got =
                content_type.as_ref().and_then(|v| v.to_str().ok()).map_or("none".to_string(), |v| format!("{v:?}"));
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                Some("Content-Type"),
                format!("the body must be sent as Content-Type: application/json (got {got})"),
            ));
        }
        let too_large = || {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                Some("body"),
                format!("the body is larger than {BODY_LIMIT} bytes"),
            )
        };
        let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(too_large());
        }
        let bytes: Bytes = match axum::body::to_bytes(request.into_body(), BODY_LIMIT).await {
            Ok(bytes) => bytes,
            Err(e) if crate::json_body::is_length_limit(&e) => return Err(too_large()),
            Err(e) => return Err(ApiError::bad_request("body", format!("the body could not be read: {e}"))),
        };
        parse_json(&bytes).map(JsonBody)
    }
}

fn is_json_content_type(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// A body as `T`, or a 400 naming the field at fault (`json_body::parse_json`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    crate::json_body::parse_json(bytes).map_err(|bad| ApiError::bad_request(&bad.field, bad.message))
}
