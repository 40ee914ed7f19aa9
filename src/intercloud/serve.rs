//! Serving a role on loopback TCP until a stop future completes, with its
//! background tasks (a controller's links to the coordinator) ended at stop.
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

/// How long a stop waits for requests in flight (long polls end at once).
const DRAIN: Duration = Duration::from_secs(2);

/// Binds `listen`, which must be a loopback address (port 0 picks a free port).
pub fn bind(role: &str, listen: &str) -> Result<std::net::TcpListener, String> {
    let addr: SocketAddr =
        listen.parse().map_err(|_| format!("--listen {listen:?} is not an address of the form 127.0.0.1:PORT"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{role}: {addr} is not a loopback address; the {role} has no authentication, so it listens only on 127.0.0.1 or ::1"
        ));
    }
    let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("{role}: cannot listen on {addr}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("{role}: cannot listen on {addr}: {e}"))?;
    Ok(listener)
}

/// Serves `router` until `stop`; then `on_stop` (ends the long polls) and the tasks are aborted.
pub async fn serve(
    role: &str,
    listener: std::net::TcpListener,
    router: Router,
    tasks: Vec<JoinHandle<()>>,
    on_stop: impl FnOnce() + Send + 'static,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| format!("{role}: {e}"))?;
    let (drained, drain) = tokio::sync::oneshot::channel::<()>();
    let until_stopped = async move {
        stop.await;
        on_stop();
        let _ = drained.send(());
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(until_stopped);
    let serving = tokio::spawn(async move { server.await });
    let _ = drain.await;
    for task in &tasks {
        task.abort();
    }
    match tokio::time::timeout(DRAIN, serving).await {
        Ok(Ok(result)) => result.map_err(|e: io::Error| format!("{role}: the server failed: {e}")),
        Ok(Err(e)) => Err(format!("{role}: the server failed: {e}")),
        Err(_) => {
            log::warn!("{role}: requests still open after {DRAIN:?}; closing them");
            Ok(())
        }
    }
}
