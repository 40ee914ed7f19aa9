//! HTTP/1.1 client of the control API (hyper), over the unix socket or TCP
//! (a bearer token on `http://`, TLS on `https://`). One connection per
//! request: the CLI makes one or two.
use std::path::PathBuf;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Request};
use hyper_util::rt::TokioIo;

use super::error::ErrorBody;
use crate::svc::connect::{connect, ServiceUrl};
use crate::svc::ClientAuth;

/// Where the API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(ServiceUrl),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "{}", path.display()),
            Target::Tcp(url) => write!(f, "{url}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {target}: {source}; is switchyard running with this control socket?")]
    Connect { target: Target, source: std::io::Error },
    #[error("{0:?} is not a URL of the form http://127.0.0.1:PORT or https://HOST:PORT")]
    BadUrl(String),
    #[error("the request to {target} failed: {message}")]
    Http { target: Target, message: String },
    /// The API refused the request; `Display` is `<error> (field: <field>)`.
    #[error("{}{}", body.error, body.field.as_ref().map(|f| format!(" (field: {f})")).unwrap_or_default())]
    Api { status: u16, body: ErrorBody },
    #[error("unexpected reply from {target}: status {status}: {message}")]
    BadReply { target: Target, status: u16, message: String },
    /// Something wrong with the command found before anything was sent.
    #[error("{0}")]
    Argument(String),
}

/// The reply to a change request.
#[derive(Clone, Debug, PartialEq)]
pub enum Changed {
    /// Applied: the record (Null for a delete).
    Done(serde_json::Value),
    /// 202: an upgrade is running and the request was queued as `id`; `reply`
    /// is the API's `{"request_id", "state", "status"}`.
    Queued { id: u64, reply: serde_json::Value },
}

/// A reply as received.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    /// The `Location` header (a 202's request status).
    pub location: Option<String>,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    target: Target,
    auth: ClientAuth,
}

impl Client {
    pub fn unix(path: impl Into<PathBuf>) -> Client {
        Client { target: Target::Unix(path.into()), auth: ClientAuth::default() }
    }

    /// `http://HOST:PORT` or `https://HOST:PORT` (a trailing `/` is allowed;
    /// nothing else), with the credentials to present.
    pub fn url(url: &str, auth: ClientAuth) -> Result<Client, ClientError> {
        let url = ServiceUrl::parse(url).ok_or_else(|| ClientError::BadUrl(url.to_string()))?;
        Ok(Client { target: Target::Tcp(url), auth })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends one request and returns the reply whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<Reply, ClientError> {
        let http_error =
            |e: &dyn std::fmt::Display| ClientError::Http { target: self.target.clone(), message: e.to_string() };
        let host = match &self.target {
            Target::Unix(_) => "localhost",
            Target::Tcp(url) => &url.authority,
        };
        let mut request = Request::builder().method(method).uri(path).header(header::HOST, host);
        if let (Target::Tcp(_), Some(token)) = (&self.target, &self.auth.token) {
            request = request.header(header::AUTHORIZATION, token.header_value());
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(body.into())).map_err(|e| http_error(&e))?;
        let connect_error = |source| ClientError::Connect { target: self.target.clone(), source };
        let response = match &self.target {
            Target::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(connect_error)?;
                exchange(TokioIo::new(stream), request).await
            }
            Target::Tcp(url) => {
                let stream = connect(url, &self.auth).await.map_err(connect_error)?;
                exchange(TokioIo::new(stream), request).await
            }
        };
        response.map_err(|e| http_error(&e))
    }

    /// Sends a JSON body (or none) and returns the reply whatever its status.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, ClientError> {
        match body {
            Some(body) => {
                let bytes = serde_json::to_vec(body).unwrap_or_default();
                self.send(method, path, Some("application/json"), bytes).await
            }
            None => self.send(method, path, None, Bytes::new()).await,
        }
    }

    /// A JSON request; a 2xx reply's JSON body (Null for 204), or the API's error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let reply = self.send_json(method, path, body).await?;
        self.check(&reply)?;
        self.body_json(&reply)
    }

    /// A change request: applied, or queued (202) while an upgrade runs.
    pub async fn change(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Changed, ClientError> {
        let reply = self.send_json(method, path, body).await?;
        self.check(&reply)?;
        let value = self.body_json(&reply)?;
        if reply.status != 202 {
            return Ok(Changed::Done(value));
        }
        match value["request_id"].as_u64() {
            Some(id) => Ok(Changed::Queued { id, reply: value }),
            None => Err(self.bad_reply(&reply, format!("a 202 reply without a request_id: {value}"))),
        }
    }

    /// A reply's JSON body; Null when it has none (204).
    pub fn body_json(&self, reply: &Reply) -> Result<serde_json::Value, ClientError> {
        if reply.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        reply.json().map_err(|e| self.bad_reply(reply, format!("the body is not JSON: {e}")))
    }

    /// A text GET (`/metrics`).
    pub async fn text(&self, path: &str) -> Result<String, ClientError> {
        let reply = self.send(Method::GET, path, None, Bytes::new()).await?;
        self.check(&reply)?;
        Ok(reply.text())
    }

    pub async fn get(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// Ok for 2xx; the API's `{"error", "field"}` as `ClientError::Api` otherwise.
    pub fn check(&self, reply: &Reply) -> Result<(), ClientError> {
        if (200..300).contains(&reply.status) {
            return Ok(());
        }
        match serde_json::from_slice::<ErrorBody>(&reply.body) {
            Ok(body) => Err(ClientError::Api { status: reply.status, body }),
            Err(_) => Err(self.bad_reply(reply, reply.text())),
        }
    }

    pub fn bad_reply(&self, reply: &Reply, message: String) -> ClientError {
        ClientError::BadReply { target: self.target.clone(), status: reply.status, message }
    }
}

async fn exchange<S>(io: TokioIo<S>, request: Request<Full<Bytes>>) -> Result<Reply, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::debug!("control client: connection: {e}");
        }
    });
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let header =
        |name| response.headers().get(name).and_then(|v: &header::HeaderValue| v.to_str().ok()).map(str::to_string);
    let (content_type, location) = (header(header::CONTENT_TYPE), header(header::LOCATION));
    let body = response.into_body().collect().await?.to_bytes();
    drop(sender);
    driver.abort();
    Ok(Reply { status, content_type, location, body })
}
