//! SIGTERM or SIGINT ends the long-running roles (`board serve`, the inter-cloud roles, `vbd`): one place
//! that catches both, inside the role's tokio runtime.
use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Resolves when SIGTERM or SIGINT arrives, logging which for `role`. Catching starts now, so a signal that
/// comes before the future is awaited is not lost.
pub fn until_stop_signal(role: &'static str) -> Result<impl Future<Output = ()> + Send + 'static, String> {
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("cannot catch SIGTERM: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("cannot catch SIGINT: {e}"))?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        log::info!("{role}: {name}, stopping");
    })
}
