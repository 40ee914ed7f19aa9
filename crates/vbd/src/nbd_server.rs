//! `NbdServer`: serves an `ExportSet` on unix sockets and TCP listeners, one task per
//! connection, until told to stop. On a unix socket the file's owner, group and mode are the
//! access control; on TCP every client must start TLS and present a certificate the
//! configured CA signed (`nbd_tls`), since NBD clients have no other way to authenticate.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::backend::BlockBackend;
use super::export::{Export, ExportError, ExportSet};
use super::nbd_session::{serve_connection, stopping, SessionError};
use super::nbd_tls::{until_starttls, BeforeTls};

/// How long a stop waits for connections to answer the requests they have in flight.
pub const DRAIN: Duration = Duration::from_secs(2);
/// How long a client may take for the TLS handshake after NBD_OPT_STARTTLS.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("nbd: cannot listen on {listener}: {source}")]
    Listen { listener: String, source: io::Error },
}

/// Removes the socket file when the listener goes away.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A bound listening socket, made before the runtime runs so that its address is known.
#[derive(Debug)]
pub struct NbdListener {
    bound: Bound,
}

enum Bound {
    Unix { listener: std::os::unix::net::UnixListener, file: SocketFile },
    Tcp(std::net::TcpListener, TlsAcceptor),
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Unix { file, .. } => write!(f, "Unix({})", file.0.display()),
            Bound::Tcp(listener, _) => write!(f, "Tcp({:?}, TLS)", listener.local_addr().ok()),
        }
    }
}

impl NbdListener {
    /// Listens on a new unix socket at `path` (a file already there is an error: it may be
    /// another server's), mode 0600, or 0660 and group `group`. The file is removed when the
    /// listener is dropped.
    pub fn bind_unix(path: impl AsRef<Path>, group: Option<u32>) -> Result<NbdListener, ServeError> {
        let path = path.as_ref();
        let failed = |source| ServeError::Listen { listener: format!("unix:{}", path.display()), source };
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(failed)?;
        let file = SocketFile(path.to_path_buf());
        // Whoever can connect reads and writes the user's disks.
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        std::os::unix::fs::chown(path, None, group)
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
            .map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        Ok(NbdListener { bound: Bound::Unix { listener, file } })
    }

    /// Listens on TCP `addr` (port 0 picks a free port); every client must start TLS with `tls`,
    /// which verifies its certificate.
    pub fn bind_tls(addr: SocketAddr, tls: Arc<rustls::ServerConfig>) -> Result<NbdListener, ServeError> {
        let failed = |source| ServeError::Listen { listener: format!("tcp:{addr}"), source };
        let listener = std::net::TcpListener::bind(addr).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        Ok(NbdListener { bound: Bound::Tcp(listener, TlsAcceptor::from(tls)) })
    }

    /// The TCP address actually bound (the port when 0 was asked for); `None` for a unix socket.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match &self.bound {
            Bound::Tcp(listener, _) => listener.local_addr().ok(),
            Bound::Unix { .. } => None,
        }
    }

    /// "unix:/path" or "tcp:127.0.0.1:10809", for log lines.
    pub fn describe(&self) -> String {
        match &self.bound {
            Bound::Unix { file, .. } => format!("unix:{}", file.0.display()),
            Bound::Tcp(listener, _) => match listener.local_addr() {
                Ok(addr) => format!("tcp+tls:{addr}"),
                Err(_) => "tcp+tls:?".to_string(),
            },
        }
    }

    fn into_tokio(self) -> Result<Listening, ServeError> {
        let name = self.describe();
        let failed = |source| ServeError::Listen { listener: name.clone(), source };
        Ok(match self.bound {
            Bound::Unix { listener, file } => {
                Listening::Unix { listener: UnixListener::from_std(listener).map_err(failed)?, _file: file }
            }
            Bound::Tcp(listener, tls) => Listening::Tcp(TcpListener::from_std(listener).map_err(failed)?, tls),
        })
    }
}

enum Listening {
    Unix { listener: UnixListener, _file: SocketFile },
    Tcp(TcpListener, TlsAcceptor),
}

enum Accepted {
    Unix(UnixStream),
    Tcp(TcpStream, SocketAddr),
}

impl Listening {
    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listening::Unix { listener, .. } => listener.accept().await.map(|(stream, _)| Accepted::Unix(stream)),
            Listening::Tcp(listener, _) => listener.accept().await.map(|(stream, peer)| Accepted::Tcp(stream, peer)),
        }
    }
}

/// The NBD server: an export set, shared by every listener and connection. Clones share it.
pub struct NbdServer<B> {
    exports: Arc<ExportSet<B>>,
}

impl<B> Clone for NbdServer<B> {
    fn clone(&self) -> Self {
        NbdServer { exports: Arc::clone(&self.exports) }
    }
}

impl<B: BlockBackend> Default for NbdServer<B> {
    fn default() -> Self {
        NbdServer::new()
    }
}

impl<B: BlockBackend> NbdServer<B> {
    pub fn new() -> NbdServer<B> {
        NbdServer { exports: Arc::new(ExportSet::new()) }
    }

    /// Offers `export` to new connections, also while serving.
    pub fn add_export(&self, export: Export<B>) -> Result<(), ExportError> {
        self.exports.add(export)
    }

    /// Stops offering `name`; connections using it keep it until they close.
    pub fn remove_export(&self, name: &str) -> bool {
        self.exports.remove(name)
    }

    pub fn exports(&self) -> &ExportSet<B> {
        &self.exports
    }

    /// Accepts on every listener until `stop` completes. Then no new connection is accepted,
    /// each connection answers what it has in flight and closes (for up to `DRAIN`), and the
    /// unix socket files are removed. Must run inside a tokio runtime with I/O and time.
    pub async fn serve(&self, listeners: Vec<NbdListener>, stop: impl Future<Output = ()>) -> Result<(), ServeError> {
        let listening = listeners.into_iter().map(NbdListener::into_tokio).collect::<Result<Vec<_>, _>>()?;
        let (stopper, shutdown) = watch::channel(false);
        let mut accepting = JoinSet::new();
        for listener in listening {
            accepting.spawn(accept_loop(listener, Arc::clone(&self.exports), shutdown.clone()));
        }
        stop.await;
        let _ = stopper.send(true);
        while accepting.join_next().await.is_some() {}
        Ok(())
    }
}

async fn accept_loop<B: BlockBackend>(
    listener: Listening,
    exports: Arc<ExportSet<B>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    let mut connections = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(Accepted::Unix(stream)) => {
                    connections += 1;
                    let peer = format!("unix#{connections}").into();
                    let (exports, shutdown) = (Arc::clone(&exports), shutdown.clone());
                    let (read_half, write_half) = stream.into_split();
                    sessions.spawn(serve_connection(read_half, write_half, peer, exports, None, shutdown));
                }
                Ok(Accepted::Tcp(stream, peer)) => {
                    // proto.md: both ends SHOULD disable Nagle.
                    if let Err(e) = stream.set_nodelay(true) {
                        log::debug!("nbd: {peer}: cannot set TCP_NODELAY: {e}");
                    }
                    let Listening::Tcp(_, tls) = &listener else { continue };
                    let (tls, exports, shutdown) = (tls.clone(), Arc::clone(&exports), shutdown.clone());
                    sessions.spawn(serve_tls_connection(stream, tls, peer.to_string().into(), exports, shutdown));
                }
                Err(e) => {
                    log::warn!("nbd: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = stopping(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async { while sessions.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        log::warn!("nbd: {} connections still busy after {DRAIN:?}; closing them", sessions.len());
    }
}

/// A TCP connection: the plaintext handshake up to NBD_OPT_STARTTLS, the TLS handshake (within
/// `TLS_HANDSHAKE`), then the session inside TLS.
async fn serve_tls_connection<B: BlockBackend>(
    mut stream: TcpStream,
    tls: TlsAcceptor,
    peer: Arc<str>,
    exports: Arc<ExportSet<B>>,
    shutdown: watch::Receiver<bool>,
) {
    let started = async {
        match until_starttls(&mut stream).await? {
            BeforeTls::Aborted => Ok(None),
            BeforeTls::StartTls(client) => match tokio::time::timeout(TLS_HANDSHAKE, tls.accept(stream)).await {
                Ok(Ok(stream)) => Ok(Some((stream, client))),
                Ok(Err(e)) => Err(SessionError::Tls(e)),
                Err(_) => Err(SessionError::Tls(io::ErrorKind::TimedOut.into())),
            },
        }
    };
    match started.await {
        Ok(Some((stream, client))) => {
            let (read_half, write_half) = tokio::io::split(stream);
            serve_connection(read_half, write_half, peer, exports, Some(client), shutdown).await;
        }
        Ok(None) => log::debug!("nbd: {peer}: NBD_OPT_ABORT before TLS"),
        Err(e) if e.is_disconnect() => log::debug!("nbd: {peer}: the client disconnected ({e})"),
        Err(e) => log::warn!("nbd: {peer}: closing the connection: {e}"),
    }
}
