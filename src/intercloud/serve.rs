//! Serving a role on TCP until a stop future completes, with its background
//! tasks (a controller's links to the coordinator) ended at stop.
use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::task::JoinHandle;

use crate::svc::auth::AuthArgs;
use crate::svc::{HttpLimits, Listener};

/// A role's listener and how its clients authenticate: `--listen` (port 0
/// picks a free port) with a token (loopback only) or TLS.
pub struct Bound {
    listener: std::net::TcpListener,
    auth: crate::svc::ServerAuth,
    /// `http://ADDR` or `https://ADDR`, the address actually bound.
    pub url: String,
}

pub fn bind(role: &str, listen: &str, auth: &AuthArgs) -> Result<Bound, String> {
    let addr: SocketAddr =
        listen.parse().map_err(|_| format!("--listen {listen:?} is not an address of the form 127.0.0.1:PORT"))?;
    let server_auth = auth.server(&addr).map_err(|e| format!("{role}: {e}"))?;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("{role}: cannot listen on {addr}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("{role}: cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("{role}: {e}"))?;
    let scheme = if auth.files().tls_configured() { "https" } else { "http" };
    Ok(Bound { listener, auth: server_auth, url: format!("{scheme}://{local}") })
}

/// Serves `router` until `stop`; then `on_stop` (ends the long polls) and the tasks are aborted.
pub async fn serve(
    role: &str,
    bound: Bound,
    limits: HttpLimits,
    router: Router,
    tasks: Vec<JoinHandle<()>>,
    on_stop: impl FnOnce() + Send + 'static,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::from_std(bound.listener).map_err(|e| format!("{role}: {e}"))?;
    let until_stopped = async move {
        stop.await;
        on_stop();
        for task in &tasks {
            task.abort();
        }
    };
    crate::svc::serve(role, Listener::Tcp(listener), router, limits, Some(bound.auth), until_stopped).await;
    Ok(())
}
