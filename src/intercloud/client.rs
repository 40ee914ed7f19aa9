//! Calls from one role to another (controller -> coordinator, agent ->
//! controller or coordinator, agent -> its switch's control API), over the
//! control API's client (`control::client`), each bounded by a timeout.
use std::time::Duration;

use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::control::client::{Client, ClientError};

/// How long any call but a long poll may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A long poll may take its own timeout plus this.
pub const POLL_GRACE: Duration = Duration::from_secs(10);

/// A failed call: the peer's HTTP status when it answered, and one sentence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{target}: {message}")]
pub struct PeerError {
    pub target: String,
    pub status: Option<u16>,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct Peer {
    client: Client,
    target: String,
}

impl Peer {
    /// `http://127.0.0.1:PORT` (with a token) or `https://HOST:PORT` (with TLS).
    pub fn url(url: &str, auth: &crate::svc::ClientAuth) -> Result<Peer, String> {
        let client = Client::url(url, auth.clone()).map_err(|e| e.to_string())?;
        Ok(Peer { target: url.trim_end_matches('/').to_string(), client })
    }

    /// A switch's control socket.
    pub fn unix(socket: &std::path::Path) -> Peer {
        Peer { client: Client::unix(socket), target: format!("switch {}", socket.display()) }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str, timeout: Duration) -> Result<T, PeerError> {
        self.call(Method::GET, path, None::<&()>, timeout).await
    }

    pub async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, PeerError> {
        self.call(method, path, body, CALL_TIMEOUT).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        let error = |status, message: String| PeerError { target: self.target.clone(), status, message };
        let body = body.map(serde_json::to_value).transpose().map_err(|e| error(None, format!("cannot encode: {e}")))?;
        let call = self.client.call(method, path, body.as_ref());
        let value = match tokio::time::timeout(timeout, call).await {
            Err(_) => return Err(error(None, format!("no reply within {:.1} s", timeout.as_secs_f64()))),
            Ok(Err(ClientError::Api { status, body })) => {
                let field = body.field.map(|f| format!(" (field: {f})")).unwrap_or_default();
                return Err(error(Some(status), format!("{}{field}", body.error)));
            }
            Ok(Err(ClientError::BadReply { status, message, .. })) => return Err(error(Some(status), message)),
            Ok(Err(e)) => return Err(error(None, e.to_string())),
            Ok(Ok(value)) => value,
        };
        serde_json::from_value(value).map_err(|e| error(None, format!("unexpected reply to {path}: {e}")))
    }
}

/// Logs a failing call once per outage (per distinct message), and the recovery.
pub struct Outage {
    what: String,
    last: Option<String>,
}

impl Outage {
    pub fn new(what: impl Into<String>) -> Outage {
        Outage { what: what.into(), last: None }
    }

    pub fn failed(&mut self, message: &str) {
        if self.last.as_deref() != Some(message) {
            log::warn!("{}: {message}; retrying", self.what);
            self.last = Some(message.to_string());
        }
    }

    pub fn worked(&mut self) {
        if self.last.take().is_some() {
            log::info!("{}: works again", self.what);
        }
    }
}
