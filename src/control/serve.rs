//! Serving the API: the unix socket (always) on a thread of its own with a
//! single-threaded tokio runtime, which also runs the housekeeping; TCP (when
//! configured, authenticated) on a second such thread, so that TCP clients can
//! never starve the unix socket.
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use super::core::Control;
use super::runtime::Runtime;
use crate::config::{ControlConfig, StorageConfig, CONTROL_AUTH_KEYS};
use crate::configdb::{Store, StoreError};
use crate::svc::{HttpLimits, Listener, ServerAuth};

/// How long a stop waits for requests in flight before closing connections.
const DRAIN: Duration = crate::svc::serve::DRAIN;
/// How often migration housekeeping runs: a VM announcing itself at its
/// destination is noticed within this time.
const MIGRATION_TICK: Duration = Duration::from_millis(5);
/// How often the address-migration reports workers queued are applied.
const REPORT_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// TCP without usable authentication (checked again here: the config may not come from a file).
    #[error("control API: control.listen: {0}")]
    Auth(String),
    #[error("control API: cannot create the socket directory {}: {source}", path.display())]
    SocketDir { path: PathBuf, source: io::Error },
    #[error("control API: {} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("control API: another process is serving on {}", .0.display())]
    SocketInUse(PathBuf),
    #[error("control API: cannot listen on {}: {source}", path.display())]
    Socket { path: PathBuf, source: io::Error },
    #[error("control API: cannot give {} to group {group}: {source}", path.display())]
    SocketGroup { path: PathBuf, group: String, source: io::Error },
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
    stop: Option<watch::Sender<bool>>,
    threads: Vec<JoinHandle<()>>,
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
            let _ = stop.send(true);
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                log::error!("control: an API thread panicked");
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
    let auth = match config.listen {
        Some(addr) => Some(
            config.auth.check(&addr, &CONTROL_AUTH_KEYS).and_then(|()| config.auth.server()).map_err(ControlError::Auth)?,
        ),
        None => None,
    };
    let control = Arc::new(match storage {
        Some(storage) => Control::with_storage(store, runtime, storage)?,
        None => Control::new(store, runtime)?,
    });
    let unix = bind_unix(config)?;
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
    let (stop, stopped) = watch::channel(false);
    let router = super::http::router(control.clone());
    let limits = config.limits;
    let mut threads = Vec::new();
    let unix_thread = {
        let (router, control, stopped) = (router.clone(), control.clone(), stopped.clone());
        serving_thread("sy-control", move || {
            unix.set_nonblocking(true)?;
            let unix = tokio::net::UnixListener::from_std(unix)?;
            Ok(serve_unix(unix, router, limits, control, stopped))
        })
    };
    let started = unix_thread.map(|thread| threads.push(thread)).and_then(|()| match (tcp, auth) {
        (Some(tcp), Some(auth)) => serving_thread("sy-control-tcp", move || {
            tcp.set_nonblocking(true)?;
            let tcp = tokio::net::TcpListener::from_std(tcp)?;
            Ok(crate::svc::serve("control API", Listener::Tcp(tcp), router, limits, Some(auth), until_stop(stopped)))
        })
        .map(|thread| threads.push(thread)),
        _ => Ok(()),
    });
    let handle = ControlHandle {
        control,
        socket: config.socket.clone(),
        socket_id,
        tcp: tcp_addr,
        stop: Some(stop),
        threads,
    };
    if let Err(e) = started {
        // Dropping the handle stops what did start and removes the socket.
        drop(handle);
        return Err(ControlError::Thread(e));
    }
    log::info!(
        "control: API on {}{}",
        config.socket.display(),
        tcp_addr.map(|a| format!(" and {}://{a}", if config.auth.tls_configured() { "https" } else { "http" })).unwrap_or_default()
    );
    Ok(handle)
}

/// A thread with a single-threaded tokio runtime that runs the future `start`
/// makes to its end (made on the thread, in the runtime's context, so that it
/// can register sockets; an error there is logged).
fn serving_thread<F>(name: &'static str, start: impl FnOnce() -> io::Result<F> + Send + 'static) -> io::Result<JoinHandle<()>>
where
    F: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let serving = {
            let _context = runtime.enter();
            start()
        };
        match serving {
            Ok(serving) => runtime.block_on(serving),
            Err(e) => log::error!("control: {name}: cannot serve: {e}"),
        }
        runtime.shutdown_timeout(DRAIN);
    })
}

async fn until_stop(mut stopped: watch::Receiver<bool>) {
    // A dropped sender (handle gone without shutdown) stops the server too.
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Binds the unix socket: mode 0600, or 0660 and the group `control.socket_group`;
/// a stale socket left by a crash is replaced, a live one is an error.
fn bind_unix(config: &ControlConfig) -> Result<UnixListener, ControlError> {
    let path = config.socket.as_path();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        let failed = |source| ControlError::SocketDir { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(failed)?;
        // Made under umask 077: the socket's group must also be able to reach it (search only).
        if let Some(group) = &config.socket_group {
            std::os::unix::fs::chown(dir, None, Some(group.gid))
                .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710)))
                .map_err(failed)?;
        }
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
    let listener =
        UnixListener::bind(path).map_err(|source| ControlError::Socket { path: path.to_path_buf(), source })?;
    // Whoever can connect has the whole API: the owner (root, normally), and the one group if configured.
    let shared = match &config.socket_group {
        None => Ok(0o600),
        Some(group) => std::os::unix::fs::chown(path, None, Some(group.gid))
            .map(|()| 0o660)
            .map_err(|source| ControlError::SocketGroup { path: path.to_path_buf(), group: group.name.clone(), source }),
    };
    let result = shared.and_then(|mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|source| ControlError::Socket { path: path.to_path_buf(), source })
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(path);
        return Err(e);
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

/// The unix socket and the housekeeping, until the stop.
async fn serve_unix(
    unix: tokio::net::UnixListener,
    router: axum::Router,
    limits: HttpLimits,
    control: Arc<Control>,
    stopped: watch::Receiver<bool>,
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
    let stop = async move {
        until_stop(stopped).await;
        for task in &housekeeping {
            task.abort();
        }
    };
    crate::svc::serve("control API", Listener::Unix(unix), router, limits, None::<ServerAuth>, stop).await;
}
