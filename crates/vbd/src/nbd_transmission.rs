//! The transmission phase (proto.md "Transmission"): requests are read one after another and
//! each runs as a task of its own, so a client's queue (fio's iodepth 32) reaches the backend
//! at once; replies go out as requests finish, in any order, matched by the client's cookie.
//! One writer task owns the socket's write half and serialises the replies. At most
//! `MAX_IN_FLIGHT` requests per connection are read and not yet answered: reading the next
//! one waits for a free slot, which bounds the memory one client can pin.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::backend::{BackendError, BlockBackend, Zeroing};
use super::export::Export;
use super::nbd_session::{stopping, SessionError};
use super::nbd_wire::{simple_reply, Command, RequestHeader, REQUEST_HEADER_LEN};

/// Requests one connection may have read and not yet answered.
pub const MAX_IN_FLIGHT: usize = 64;
/// Replies are gathered up to this much before a write (a large READ goes straight through).
const REPLY_BUFFER: usize = 256 << 10;

/// How the request stream ended when it ended without a protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// NBD_CMD_DISC: requests in flight were answered, then the connection closed.
    Disconnect,
    /// The server is stopping: requests in flight are answered, no new one is read.
    Shutdown,
    /// The writer stopped (the client closed its side); its error, if any, is the session's.
    WriterStopped,
}

struct Reply {
    cookie: u64,
    /// 0 or an NBD error value.
    error: u32,
    /// A successful READ's data; empty otherwise.
    data: Vec<u8>,
    /// Held until the reply is written: the request's place in `MAX_IN_FLIGHT`.
    _slot: OwnedSemaphorePermit,
}

pub(super) async fn transmit<B, R, W>(
    reader: &mut R,
    writer: W,
    export: Arc<Export<B>>,
    shutdown: &mut watch::Receiver<bool>,
    peer: &Arc<str>,
) -> Result<End, SessionError>
where
    B: BlockBackend,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (replies, queue) = mpsc::channel(MAX_IN_FLIGHT);
    let writing = tokio::spawn(write_replies(writer, queue));
    let reading = read_requests(reader, &export, &replies, shutdown, peer).await;
    // The writer ends once every request task has sent its reply.
    drop(replies);
    let written = writing.await.unwrap_or_else(|e| Err(io::Error::other(e)));
    match (reading, written) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
        (Ok(end), Ok(())) => Ok(end),
    }
}

async fn read_requests<B, R>(
    reader: &mut R,
    export: &Export<B>,
    replies: &mpsc::Sender<Reply>,
    shutdown: &mut watch::Receiver<bool>,
    peer: &Arc<str>,
) -> Result<End, SessionError>
where
    B: BlockBackend,
    R: AsyncRead + Unpin,
{
    let limits = export.limits();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let backend_failed = Arc::new(AtomicBool::new(false));
    loop {
        let mut bytes = [0; REQUEST_HEADER_LEN];
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.map_err(io::Error::other)?,
            _ = replies.closed() => return Ok(End::WriterStopped),
            _ = stopping(shutdown) => return Ok(End::Shutdown),
        };
        tokio::select! {
            read = reader.read_exact(&mut bytes) => { read?; }
            _ = replies.closed() => return Ok(End::WriterStopped),
            _ = stopping(shutdown) => return Ok(End::Shutdown),
        }
        let header = RequestHeader::parse(&bytes)?;
        // Even a request refused below has its payload read, to stay in step with the client.
        let payload_len = header.check_payload(limits.max_payload)?;
        let mut payload = Vec::new();
        if payload_len > 0 {
            payload = vec![0; payload_len as usize];
            reader.read_exact(&mut payload).await?;
        }
        let command = match header.validate(&limits) {
            Ok(Command::Disconnect) => return Ok(End::Disconnect),
            Ok(command) => command,
            Err(refused) => {
                log::debug!("nbd: {peer}: refused: {refused}");
                let reply = Reply { cookie: header.cookie, error: refused.errno(), data: Vec::new(), _slot: slot };
                if replies.send(reply).await.is_err() {
                    return Ok(End::WriterStopped);
                }
                continue;
            }
        };
        let backend = Arc::clone(export.backend());
        let replies = replies.clone();
        let backend_failed = Arc::clone(&backend_failed);
        let peer = Arc::clone(peer);
        tokio::spawn(async move {
            let (error, data) = match execute(&*backend, command, payload).await {
                Ok(data) => (0, data),
                Err(failed) => {
                    // Once at warn per connection: a failing disk fails every request.
                    if backend_failed.swap(true, Ordering::Relaxed) {
                        log::debug!("nbd: {peer}: {command} failed: {failed}");
                    } else {
                        log::warn!("nbd: {peer}: {command} failed: {failed} (later failures are logged at debug)");
                    }
                    (failed.nbd_errno(), Vec::new())
                }
            };
            // A closed queue means the client is gone; the reply has nowhere to go.
            let _ = replies.send(Reply { cookie: header.cookie, error, data, _slot: slot }).await;
        });
    }
}

async fn execute<B: BlockBackend>(backend: &B, command: Command, payload: Vec<u8>) -> Result<Vec<u8>, BackendError> {
    match command {
        Command::Read { offset, length } => {
            let data = backend.read(offset, length).await?;
            // A simple reply promises exactly `length` bytes.
            if data.len() != length as usize {
                return Err(BackendError::ShortRead { wanted: length, got: data.len() });
            }
            Ok(data)
        }
        Command::Write { offset, fua, .. } => backend.write(offset, payload, fua).await.map(|()| Vec::new()),
        Command::Flush => backend.flush().await.map(|()| Vec::new()),
        Command::Trim { offset, length, fua } => backend.trim(offset, length, fua).await.map(|()| Vec::new()),
        Command::WriteZeroes { offset, length, fua, no_hole } => {
            let zeroing = if no_hole { Zeroing::Allocate } else { Zeroing::MayTrim };
            backend.write_zeroes(offset, length, zeroing, fua).await.map(|()| Vec::new())
        }
        // Answered by the reader (by closing); never run.
        Command::Disconnect => Ok(Vec::new()),
    }
}

/// Writes replies as they come, flushing when none is waiting; shuts the write side down
/// once every sender is gone.
async fn write_replies<W: AsyncWrite + Unpin>(writer: W, mut queue: mpsc::Receiver<Reply>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(REPLY_BUFFER, writer);
    while let Some(reply) = queue.recv().await {
        put(&mut out, reply).await?;
        while let Ok(reply) = queue.try_recv() {
            put(&mut out, reply).await?;
        }
        out.flush().await?;
    }
    out.shutdown().await
}

async fn put<W: AsyncWrite + Unpin>(out: &mut BufWriter<W>, reply: Reply) -> io::Result<()> {
    out.write_all(&simple_reply(reply.error, reply.cookie)).await?;
    out.write_all(&reply.data).await
}
