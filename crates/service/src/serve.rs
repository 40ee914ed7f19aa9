//! The one way every HTTP service of the product is served (the control API on
//! its unix socket and on TCP, the bulletin board, the coordinator, the
//! controllers): a cap on concurrent connections, a deadline for a request's
//! head and one for its body, authentication on TCP, and JSON error bodies even
//! for requests the HTTP parser refuses.
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use super::auth::ServerAuth;
use super::body_deadline::BodyDeadline;
use super::parse_errors::JsonParseErrors;

/// How long a stop waits for requests in flight before closing connections.
pub const DRAIN: Duration = Duration::from_secs(2);
/// How long to wait after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Bounds on what one listener's clients may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HttpLimits {
    /// A request's head (request line and headers) must arrive within this
    /// after the connection opened or the previous request ended; so must a
    /// TLS handshake.
    pub header_timeout: Duration,
    /// A request's body must arrive within this after its head.
    pub body_timeout: Duration,
    /// Connections open at once; the next waits in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits { header_timeout: Duration::from_secs(10), body_timeout: Duration::from_secs(30), max_connections: 256 }
    }
}

/// `HttpLimits` as flags, for the services started from the command line.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct HttpLimitArgs {
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = HttpLimits::default().max_connections)]
    pub max_connections: usize,
    /// A request's head (and a TLS handshake) must arrive within this.
    #[arg(long, value_name = "MS", default_value_t = HttpLimits::default().header_timeout.as_millis() as u64)]
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this after its head.
    #[arg(long, value_name = "MS", default_value_t = HttpLimits::default().body_timeout.as_millis() as u64)]
    pub body_timeout_ms: u64,
}

impl HttpLimitArgs {
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(self.body_timeout_ms.max(1)),
            max_connections: self.max_connections.max(1),
        }
    }
}

/// A bound listening socket.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin> Stream for S {}

impl Listener {
    async fn accept(&self) -> io::Result<Box<dyn Stream>> {
        Ok(match self {
            Listener::Tcp(listener) => {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Box::new(stream)
            }
            Listener::Unix(listener) => Box::new(listener.accept().await?.0),
        })
    }
}

/// Serves `router` on `listener` until `stop` completes, then waits up to
/// `DRAIN` for requests in flight. `auth` is required on TCP (the caller has
/// checked the configuration) and ignored on a unix socket.
pub async fn serve(
    name: &str,
    listener: Listener,
    router: Router,
    limits: HttpLimits,
    auth: Option<ServerAuth>,
    stop: impl Future<Output = ()>,
) {
    let (tls, token) = match auth {
        Some(ServerAuth::Tls(config)) => (Some(tokio_rustls::TlsAcceptor::from(config)), None),
        Some(ServerAuth::Token(token)) => (None, Some(token)),
        None => (None, None),
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut last_accept_error = None;
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = async {
                // Wait for a free slot first: past the cap, clients wait in the backlog.
                let permit = slots.clone().acquire_owned().await;
                (permit, listener.accept().await)
            } => accepted,
        };
        let (Ok(permit), result) = accepted else { break };
        let stream = match result {
            Ok(stream) => stream,
            Err(e) => {
                let text = e.to_string();
                if last_accept_error.as_ref() != Some(&text) {
                    log::error!("{name}: cannot accept a connection: {text}");
                }
                last_accept_error = Some(text);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        last_accept_error = None;
        let (http, watcher, router, tls, token) = (http.clone(), graceful.watcher(), router.clone(), tls.clone(), token.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let stream: Box<dyn Stream> = match tls {
                None => stream,
                Some(tls) => match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => Box::new(stream),
                    // A peer without a certificate the client CA signed, or a stalled handshake.
                    Ok(Err(e)) => return log::debug!("TLS handshake refused: {e}"),
                    Err(_) => return,
                },
            };
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let router = router.clone();
                let refused = token.as_ref().filter(|t| !t.admits(authorization(&request))).is_some();
                let request = request.map(|body| Body::new(BodyDeadline::new(body, limits.body_timeout)));
                async move {
                    if refused {
                        return Ok(unauthorized());
                    }
                    tower::ServiceExt::oneshot(router, request).await
                }
            });
            let connection = http.serve_connection(TokioIo::new(JsonParseErrors::new(stream)), service);
            if let Err(e) = watcher.watch(connection).await {
                log::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        log::warn!("{name}: requests still open after {DRAIN:?}; closing them");
    }
}

fn authorization<B>(request: &Request<B>) -> Option<&[u8]> {
    request.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes())
}

fn unauthorized() -> Response<Body> {
    let body = serde_json::json!({
        "error": "this service needs a bearer token: send Authorization: Bearer <the contents of the server's token file>",
        "field": null,
    });
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::WWW_AUTHENTICATE, "Bearer realm=\"switchyard\"")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}
