//! Serving the board on TCP (authenticated): the listener, the lease sweeper,
//! and a clean stop. `serve` runs on the caller's tokio runtime (`switchyard board
//! serve`); `BoardServer::start` gives it a thread of its own (the bench, tests).
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use super::http::{router, SharedBoard};
use super::service::Board;
use switchyard_model::unix_us;
use switchyard_service::{HttpLimits, Listener, ServerAuth};

/// How often expired leases are released.
pub const SWEEP_PERIOD: Duration = Duration::from_millis(100);
/// How long a stop waits for requests in flight (watches end at once).
const DRAIN: Duration = switchyard_service::serve::DRAIN;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("board: cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("board: cannot start its runtime: {0}")]
    Runtime(io::Error),
    #[error("board: the server failed: {0}")]
    Serve(io::Error),
}

/// Binds `addr` (port 0 picks a free port); the caller has checked its authentication.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| ServeError::Listen { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| ServeError::Listen { addr, source })?;
    Ok(listener)
}

/// Serves `board` on `listener` until `stop` completes, to clients that `auth`
/// admits. Expired leases are released before the first request (a lock that
/// ran out while the board was down) and then every `SWEEP_PERIOD`.
pub async fn serve(
    listener: std::net::TcpListener,
    auth: ServerAuth,
    limits: HttpLimits,
    board: Board,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Serve)?;
    let shared = SharedBoard::new(board);
    let mut sweep_failure = None;
    sweep(&shared, &mut sweep_failure).await;
    let sweeper = tokio::spawn(sweep_forever(shared.clone(), sweep_failure));
    let stopping = shared.clone();
    let until_stopped = async move {
        stop.await;
        // Watches return what they have, so the drain does not wait for them.
        stopping.stop();
    };
    switchyard_service::serve("board", Listener::Tcp(listener), router(shared), limits, Some(auth), until_stopped).await;
    sweeper.abort();
    Ok(())
}

async fn sweep_forever(shared: Arc<SharedBoard>, mut last_failure: Option<String>) {
    let mut tick = tokio::time::interval(SWEEP_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep(&shared, &mut last_failure).await;
    }
}

/// One `expire`; a failure is logged when it differs from the last one, not
/// ten times a second.
async fn sweep(shared: &Arc<SharedBoard>, last_failure: &mut Option<String>) {
    let outcome = match shared.call(|board| board.expire(unix_us(SystemTime::now()))).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.body.error),
    };
    if let Some(failure) = &outcome {
        if last_failure.as_ref() != Some(failure) {
            log::error!("board: cannot release an expired lock: {failure}");
        }
    }
    *last_failure = outcome;
}

/// A board served on a thread of its own; `shutdown` (or drop) stops it.
pub struct BoardServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServeError>>>,
}

impl BoardServer {
    pub fn start(listen: SocketAddr, auth: ServerAuth, board: Board) -> Result<BoardServer, ServeError> {
        let listener = bind(listen)?;
        let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: listen, source })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ServeError::Runtime)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sy-board".into())
            .spawn(move || {
                // A dropped sender stops the server too.
                let result = runtime.block_on(serve(listener, auth, HttpLimits::default(), board, async move {
                    let _ = stopped.await;
                }));
                runtime.shutdown_timeout(DRAIN);
                result
            })
            .map_err(ServeError::Runtime)?;
        Ok(BoardServer { addr, stop: Some(stop), thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (the bench and tests serve it with a token).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ServeError::Serve(io::Error::other("the board thread panicked"))),
        }
    }
}

impl Drop for BoardServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop_now() {
            log::error!("{e}");
        }
    }
}
