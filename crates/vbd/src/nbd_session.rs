//! One client connection from greeting to close: the handshake, then the transmission phase,
//! and one log line for how it ended (a client that disconnects is not an error; a client
//! that breaks the protocol gets one warning naming what it sent).

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::watch;

use super::backend::BlockBackend;
use super::export::ExportSet;
use super::nbd_handshake::{negotiate, Outcome, MAX_OPTIONS};
use super::nbd_transmission::transmit;
use super::nbd_wire::{ClientFlags, FramingError, HandshakeError, OptionError};

/// Requests are read through this buffer: one read() brings in many small requests.
const READ_BUFFER: usize = 64 << 10;

/// Why a session ended early; every variant but `Io` means the client broke the protocol.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    #[error("{0}")]
    Framing(#[from] FramingError),
    /// proto.md: an NBD_OPT_EXPORT_NAME the server cannot satisfy ends the session.
    #[error("NBD_OPT_EXPORT_NAME asked for an unknown export {0:?}")]
    UnknownExport(String),
    #[error("NBD_OPT_EXPORT_NAME refused: {0}")]
    BadExportName(OptionError),
    #[error("{0}; too large to read and drop")]
    OptionTooLarge(OptionError),
    #[error("more than {MAX_OPTIONS} options without choosing an export")]
    TooManyOptions,
    /// On TCP, NBD_OPT_EXPORT_NAME (which has no error reply) or an oversize option before NBD_OPT_STARTTLS.
    #[error("the client did not start TLS, which TCP requires")]
    TlsRequired,
    #[error("TLS handshake refused: {0}")]
    Tls(io::Error),
}

impl SessionError {
    /// The client went away (mid-message included): not the server's concern.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, SessionError::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        ))
    }
}

/// Completes once the server is stopping (or its stop signal is gone).
pub(super) async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves one connection to its end; never fails (how it ended is logged).
pub(super) async fn serve_connection<B, R, W>(
    read_half: R,
    mut write_half: W,
    peer: Arc<str>,
    exports: Arc<ExportSet<B>>,
    greeted: Option<ClientFlags>,
    mut shutdown: watch::Receiver<bool>,
) where
    B: BlockBackend,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = BufReader::with_capacity(READ_BUFFER, read_half);
    let negotiated = tokio::select! {
        negotiated = negotiate(&mut reader, &mut write_half, &exports, greeted) => negotiated,
        _ = stopping(&mut shutdown) => {
            log::debug!("nbd: {peer}: closed during the handshake: the server is stopping");
            return;
        }
    };
    let ended = match negotiated {
        Ok(Outcome::Transmission(export)) => {
            log::debug!("nbd: {peer}: serving export {:?}", export.name());
            transmit(&mut reader, write_half, export, &mut shutdown, &peer).await.map(|end| format!("{end:?}"))
        }
        Ok(Outcome::Aborted) => Ok("NBD_OPT_ABORT".to_string()),
        Err(e) => Err(e),
    };
    match ended {
        Ok(how) => log::debug!("nbd: {peer}: session ended ({how})"),
        Err(e) if e.is_disconnect() => log::debug!("nbd: {peer}: the client disconnected ({e})"),
        Err(e) => log::warn!("nbd: {peer}: closing the connection: {e}"),
    }
}
