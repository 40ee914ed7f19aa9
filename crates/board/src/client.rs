//! The board's HTTP/1.1 client (hyper), as a host's sync loop and the CLI use it.
//! Changes go over a connection of their own each; reads (the watch long poll,
//! above all) reuse idle keep-alive connections, and are retried once on a new
//! connection when a reused one turns out to be closed.
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;

use switchyard_service::connect::{connect, ServiceUrl};
use switchyard_service::ClientAuth;

use super::api::{AppliedReply, DeletedReply, LockRequest, QueuedReply, UnlockReply};
use super::error::ErrorBody;
use super::model::{Accepted, Event, EventKind, LockGrant, RecordKey, Snapshot, Update, WatchReply};

/// How long any request but a watch may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A watch may take its own timeout plus this before the client gives up on it.
const WATCH_GRACE: Duration = Duration::from_secs(10);
/// Idle connections kept per client.
const IDLE_MAX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("{0:?} is not a board URL of the form http://127.0.0.1:PORT or https://HOST:PORT")]
    BadUrl(String),
    #[error("board {url}: cannot connect: {source}; is the board running there?")]
    Connect { url: String, source: std::io::Error },
    #[error("board {url}: the request failed: {message}")]
    Http { url: String, message: String },
    #[error("board {url}: no reply within {:.1} s", timeout.as_secs_f64())]
    Timeout { url: String, timeout: Duration },
    /// The board refused the request: its status and `{"error", "field", ...}`.
    #[error("board {url}: {}{}", body.error, body.field.as_ref().map(|f| format!(" (field: {f})")).unwrap_or_default())]
    Refused { url: String, status: u16, body: ErrorBody },
    #[error("board {url}: unexpected reply (HTTP {status}): {message}")]
    BadReply { url: String, status: u16, message: String },
}

impl BoardError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            BoardError::Refused { status, .. } | BoardError::BadReply { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A lock conflict (409): who holds the lock and until when (us since the epoch).
    pub fn held_by(&self) -> Option<(&str, u64)> {
        match self {
            BoardError::Refused { status: 409, body, .. } => Some((body.holder.as_deref()?, body.expires_at_us?)),
            _ => None,
        }
    }
}

/// A reply as received.
struct Reply {
    status: u16,
    body: Bytes,
}

type Sender = SendRequest<Full<Bytes>>;

pub struct BoardClient {
    /// `http://host:port`, for messages.
    url: String,
    service: ServiceUrl,
    auth: ClientAuth,
    idle: Mutex<Vec<Sender>>,
}

impl BoardClient {
    /// `http://HOST:PORT` (with a token) or `https://HOST:PORT` (with TLS); a
    /// trailing `/` is allowed, nothing else.
    pub fn new(url: &str, auth: ClientAuth) -> Result<BoardClient, BoardError> {
        let service = ServiceUrl::parse(url).ok_or_else(|| BoardError::BadUrl(url.to_string()))?;
        Ok(BoardClient { url: service.to_string(), service, auth, idle: Mutex::new(Vec::new()) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every record and lock, with the board's revision.
    pub async fn records(&self) -> Result<Snapshot, BoardError> {
        let reply = self.read("/v1/board/records", REQUEST_TIMEOUT).await?;
        self.decode(&reply)
    }

    /// Sets a record: applied (200), or queued behind its lock (202).
    pub async fn put(&self, key: RecordKey, update: &Update) -> Result<Accepted, BoardError> {
        let reply = self.change(Method::PUT, &record_path(key), Some(update)).await?;
        if reply.status == 202 {
            return self.queued(&reply);
        }
        let applied: AppliedReply = self.decode(&reply)?;
        Ok(Accepted::Applied(Event { revision: applied.revision, kind: EventKind::Put, record: applied.applied }))
    }

    /// Removes a record: applied (200), or queued behind its lock (202).
    pub async fn delete(&self, key: RecordKey, from: &str) -> Result<Accepted, BoardError> {
        let path = format!("{}?from={}", record_path(key), encode(from));
        let reply = self.change::<()>(Method::DELETE, &path, None).await?;
        if reply.status == 202 {
            return self.queued(&reply);
        }
        let deleted: DeletedReply = self.decode(&reply)?;
        Ok(Accepted::Applied(Event { revision: deleted.revision, kind: EventKind::Delete, record: deleted.deleted }))
    }

    /// Locks a record for `holder` (or renews its lock) for `lease` (whole
    /// milliseconds). Held by another: `BoardError::Refused` with status 409,
    /// see `BoardError::held_by`.
    pub async fn lock(&self, key: RecordKey, holder: &str, lease: Duration) -> Result<LockGrant, BoardError> {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let body = LockRequest { holder: holder.to_string(), lease_ms };
        let reply = self.change(Method::POST, &format!("{}/lock", record_path(key)), Some(&body)).await?;
        self.decode(&reply)
    }

    /// Ends `holder`'s lock; the updates queued behind it are applied, in order.
    pub async fn unlock(&self, key: RecordKey, holder: &str) -> Result<UnlockReply, BoardError> {
        let path = format!("{}/lock?holder={}", record_path(key), encode(holder));
        let reply = self.change::<()>(Method::DELETE, &path, None).await?;
        self.decode(&reply)
    }

    /// The events after revision `since`, waiting up to `timeout` (at most 60 s)
    /// for one; or a reset with every record.
    pub async fn watch(&self, since: u64, timeout: Duration) -> Result<WatchReply, BoardError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let path = format!("/v1/board/watch?since={since}&timeout_ms={timeout_ms}");
        let reply = self.read(&path, timeout + WATCH_GRACE).await?;
        self.decode(&reply)
    }

    fn queued(&self, reply: &Reply) -> Result<Accepted, BoardError> {
        let queued: QueuedReply = self.decode(reply)?;
        Ok(Accepted::Queued { position: queued.queued, holder: queued.holder })
    }

    /// A 2xx reply's JSON; the board's refusal otherwise.
    fn decode<T: DeserializeOwned>(&self, reply: &Reply) -> Result<T, BoardError> {
        if !(200..300).contains(&reply.status) {
            return Err(match serde_json::from_slice::<ErrorBody>(&reply.body) {
                Ok(body) => BoardError::Refused { url: self.url.clone(), status: reply.status, body },
                Err(_) => self.bad_reply(reply, String::from_utf8_lossy(&reply.body).into_owned()),
            });
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| self.bad_reply(reply, format!("the body is not what the board sends: {e}")))
    }

    fn bad_reply(&self, reply: &Reply, message: String) -> BoardError {
        BoardError::BadReply { url: self.url.clone(), status: reply.status, message }
    }

    /// A change, on a connection of its own: it is never sent twice.
    async fn change<B: Serialize>(&self, method: Method, path: &str, body: Option<&B>) -> Result<Reply, BoardError> {
        let request = self.request(method, path, body)?;
        let exchange = async {
            let mut sender = self.connect().await?;
            self.exchange(&mut sender, request).await
        };
        self.within(REQUEST_TIMEOUT, exchange).await
    }

    /// A GET on an idle connection when there is one, kept for the next read.
    async fn read(&self, path: &str, timeout: Duration) -> Result<Reply, BoardError> {
        let exchange = async {
            if let Some(mut sender) = self.idle_connection() {
                let request = self.request::<()>(Method::GET, path, None)?;
                // The board may have closed it meanwhile: then once more, anew.
                if let Ok(reply) = self.exchange(&mut sender, request).await {
                    self.keep(sender);
                    return Ok(reply);
                }
            }
            let mut sender = self.connect().await?;
            let reply = self.exchange(&mut sender, self.request::<()>(Method::GET, path, None)?).await?;
            self.keep(sender);
            Ok(reply)
        };
        self.within(timeout, exchange).await
    }

    async fn within(
        &self,
        timeout: Duration,
        exchange: impl std::future::Future<Output = Result<Reply, BoardError>>,
    ) -> Result<Reply, BoardError> {
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| BoardError::Timeout { url: self.url.clone(), timeout })?
    }

    fn request<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Request<Full<Bytes>>, BoardError> {
        let http_error = |message: String| BoardError::Http { url: self.url.clone(), message };
        let mut request =
            Request::builder().method(method).uri(path).header(header::HOST, self.service.authority.as_str());
        if let Some(token) = &self.auth.token {
            request = request.header(header::AUTHORIZATION, token.header_value());
        }
        let bytes = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                serde_json::to_vec(body).map_err(|e| http_error(format!("cannot encode the body: {e}")))?
            }
            None => Vec::new(),
        };
        request.body(Full::new(Bytes::from(bytes))).map_err(|e| http_error(e.to_string()))
    }

    async fn connect(&self) -> Result<Sender, BoardError> {
        let stream = connect(&self.service, &self.auth)
            .await
            .map_err(|source| BoardError::Connect { url: self.url.clone(), source })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| BoardError::Http { url: self.url.clone(), message: e.to_string() })?;
        // Ends when the sender is dropped or the board closes the connection.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("board client: connection: {e}");
            }
        });
        Ok(sender)
    }

    async fn exchange(&self, sender: &mut Sender, request: Request<Full<Bytes>>) -> Result<Reply, BoardError> {
        let http_error = |e: hyper::Error| BoardError::Http { url: self.url.clone(), message: e.to_string() };
        sender.ready().await.map_err(http_error)?;
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(http_error)?.to_bytes();
        Ok(Reply { status, body })
    }

    fn idle_connection(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn keep(&self, sender: Sender) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < IDLE_MAX && !sender.is_closed() {
                idle.push(sender);
            }
        }
    }
}

fn record_path(key: RecordKey) -> String {
    format!("/v1/board/records/{}/{}", key.vni, key.mac)
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}
