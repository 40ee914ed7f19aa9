//! Serving the API: unix socket (always) and loopback TCP (when configured), on a
//! dedicated thread with a single-threaded tokio runtime.
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::core::Control;
use super::runtime::Runtime;
use crate::config::{is_loopback, ControlConfig, StorageConfig};
use crate::store::{Store, StoreError};

/// How long a stop waits for requests in flight before closing connections.
const DRAIN: Duration = Duration::from_secs(2);
/// How often migration housekeeping runs: a VM announcing itself at its
/// destination is noticed within this time.
const MIGRATION_TICK: Duration = Duration::from_millis(5);
/// How often the address-migration reports workers queued are applied.
const REPORT_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "control API: {0} is not a loopback address; the API has no authentication, so it listens only on 127.0.0.1 or ::1"
    )]
    NotLoopback(SocketAddr),
    #[error("control API: cannot create the socket directory {}: {source}", path.display())]
    SocketDir { path: PathBuf, source: io::Error },
    #[error("control API: {} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("control API: another process is serving on {}", .0.display())]
    SocketInUse(PathBuf),
    #[error("control API: cannot listen on {}: {source}", path.display())]
    Socket { path: PathBuf, source: io::Error },
    #[error("control API: cannot listen on {addr}: {source}")]
    Tcp { addr: SocketAddr, source: io::Error },
    #[error("control API: cannot start its thread: {0}")]
    Thread(io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// `[storage]` cannot be served: the images directory, or the files in it.
    #[error("storage: {0}")]
    Storage(String),
}

/// The running API. `shutdown` (or drop) stops the server, waits for its thread
/// and removes the socket file.
pub struct ControlHandle {
    control: Arc<Control>,
    socket: PathBuf,
    /// (device, inode) of the socket we bound, so we never remove someone else's.
    socket_id: (u64, u64),
    tcp: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ControlHandle {
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }
    pub fn socket(&self) -> &Path {
        &self.socket
    }
    /// The TCP address actually bound (port 0 in the config picks a free port).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("control: the API thread panicked");
            }
        }
        if let Ok(meta) = std::fs::symlink_metadata(&self.socket) {
            if (meta.dev(), meta.ino()) == self.socket_id {
                let _ = std::fs::remove_file(&self.socket);
            }
        }
    }
}

impl Drop for ControlHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts the API: applies the database's configuration to `runtime` once
/// (`Control::new`), binds the unix socket (mode 0600; a stale socket left by a
/// crash is replaced, a live one is an error) and the loopback TCP address, and
/// serves until the handle is dropped.
pub fn spawn(config: &ControlConfig, store: Store, runtime: Arc<dyn Runtime>) -> Result<ControlHandle, ControlError> {
    spawn_with_storage(config, None, store, runtime)
}

/// `spawn`, also serving storage users and images (`[storage]`): the images
/// directory is created and brought to what the database holds before the API
/// serves (`Control::with_storage`).
pub fn spawn_with_storage(
    config: &ControlConfig,
    storage: Option<StorageConfig>,
    store: Store,
    runtime: Arc<dyn Runtime>,
) -> Result<ControlHandle, ControlError> {
    if let Some(addr) = config.listen.filter(|a| !is_loopback(a)) {
        return Err(ControlError::NotLoopback(addr));
    }
    let control = Arc::new(match storage {
        Some(storage) => Control::with_storage(store, runtime, storage)?,
        None => Control::new(store, runtime)?,
    });
    let unix = bind_unix(&config.socket)?;
    let meta = std::fs::symlink_metadata(&config.socket)
        .map_err(|source| ControlError::Socket { path: config.socket.clone(), source })?;
    let socket_id = (meta.dev(), meta.ino());
    let remove_socket = || {
        let _ = std::fs::remove_file(&config.socket);
    };
    let tcp = match config.listen.map(std::net::TcpListener::bind).transpose() {
        Ok(tcp) => tcp,
        Err(source) => {
            remove_socket();
            return Err(ControlError::Tcp {
                addr: config.listen.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
                source,
            });
        }
    };
    let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());

    let started = (|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        let (unix, tcp) = {
            let _context = runtime.enter();
            unix.set_nonblocking(true)?;
            let unix = tokio::net::UnixListener::from_std(unix)?;
            let tcp = match tcp {
                Some(tcp) => {
                    tcp.set_nonblocking(true)?;
                    Some(tokio::net::TcpListener::from_std(tcp)?)
                }
                None => None,
            };
            (unix, tcp)
        };
        let (stop, stopped) = oneshot::channel();
        let router = super::http::router(control.clone());
        let housekeeping = control.clone();
        let thread = std::thread::Builder::new().name("sy-control".into()).spawn(move || {
            runtime.block_on(serve(unix, tcp, router, housekeeping, stopped));
            runtime.shutdown_timeout(DRAIN);
        })?;
        Ok::<_, io::Error>((stop, thread))
    })();
    let (stop, thread) = match started {
        Ok(started) => started,
        Err(e) => {
            remove_socket();
            return Err(ControlError::Thread(e));
        }
    };
    log::info!(
        "control: API on {}{}",
        config.socket.display(),
        tcp_addr.map(|a| format!(" and http://{a}")).unwrap_or_default()
    );
    Ok(ControlHandle {
        control,
        socket: config.socket.clone(),
        socket_id,
        tcp: tcp_addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

fn bind_unix(path: &Path) -> Result<std::os::unix::net::UnixListener, ControlError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ControlError::SocketDir { path: dir.to_path_buf(), source })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => return Err(ControlError::NotASocket(path.to_path_buf())),
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::SocketInUse(path.to_path_buf()));
            }
            // Left behind by a process that is gone.
            std::fs::remove_file(path).map_err(|source| ControlError::Socket { path: path.to_path_buf(), source })?;
        }
        Err(_) => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|source| ControlError::Socket { path: path.to_path_buf(), source })?;
    // The API has no authentication: only the owner (root, normally) may use it.
    if let Err(source) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        let _ = std::fs::remove_file(path);
        return Err(ControlError::Socket { path: path.to_path_buf(), source });
    }
    Ok(listener)
}

/// Runs `job` on a blocking thread every `interval`; a late tick waits, none pile up.
fn periodic(interval: Duration, control: Arc<Control>, what: &'static str, job: fn(&Control)) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let control = control.clone();
            if tokio::task::spawn_blocking(move || job(&control)).await.is_err() {
                log::error!("control: {what} failed");
            }
        }
    })
}

async fn serve(
    unix: tokio::net::UnixListener,
    tcp: Option<tokio::net::TcpListener>,
    router: axum::Router,
    control: Arc<Control>,
    stopped: oneshot::Receiver<()>,
) {
    // Housekeeping, off the reactor thread like every change: VMs announcing
    // themselves and finished migrations; VM reports of address migrations.
    let mut housekeeping = vec![
        periodic(MIGRATION_TICK, control.clone(), "migration housekeeping", Control::migration_tick),
        periodic(REPORT_INTERVAL, control.clone(), "applying address-migration reports", |control| {
            control.apply_address_reports();
        }),
    ];
    // With `[board]`: register this host's VMs, follow the board.
    housekeeping.extend(super::board_agent::spawn(&control).into_iter().flatten());
    let (drain, draining) = watch::channel(());
    let until_stop = |mut draining: watch::Receiver<()>| async move {
        let _ = draining.changed().await;
    };
    let mut servers = Vec::new();
    let unix_server = axum::serve(unix, router.clone()).with_graceful_shutdown(until_stop(draining.clone()));
    servers.push(tokio::spawn(async move { unix_server.await }));
    if let Some(tcp) = tcp {
        let tcp_server = axum::serve(tcp, router).with_graceful_shutdown(until_stop(draining));
        servers.push(tokio::spawn(async move { tcp_server.await }));
    }
    // A dropped sender (handle gone without shutdown) stops the server too.
    let _ = stopped.await;
    for task in &housekeeping {
        task.abort();
    }
    let _ = drain.send(());
    let finished = async {
        for server in servers {
            match server.await {
                Ok(Err(e)) => log::error!("control: the API server failed: {e}"),
                Err(e) => log::error!("control: the API server task failed: {e}"),
                Ok(Ok(())) => {}
            }
        }
    };
    if tokio::time::timeout(DRAIN, finished).await.is_err() {
        log::warn!("control: requests still open after {DRAIN:?}; closing them");
    }
}
