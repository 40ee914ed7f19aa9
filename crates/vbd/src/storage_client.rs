//! `StorageClient`: the storage-protocol client of one user on one server, shared by that user's exports
//! (docs/vbd.md). One UDP socket, one `RequestIds`, one `Engine`, all owned by one task: it receives and
//! checks replies, wakes for retransmissions and keepalives, sends, and completes callers' requests. Callers
//! talk to it over a bounded channel, so the engine needs no lock; memory is bounded by `Limits::max_queued`
//! (a semaphore a caller holds a slot of until its request completes) and the engine's fixed tables.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use switchyard_block_proto::RequestIds;
use switchyard_wire::block::{BlockError, FragmentSize, ImageInfo, UserKey};

use super::io_scheduler::Limits;
use super::retransmit::Timing;
use super::storage_codec::{Sender, MAX_DATAGRAM_LEN};
use super::storage_counters::Counters;
use super::storage_engine::{Engine, EngineConfig, IoOutput, IoResult};
use super::storage_error::StorageError;
use super::storage_request::IoRequest;

/// The socket's receive buffer: replies to a full window of 64 KiB READs (64 x 47 datagrams) arrive at once.
/// The kernel caps it at net.core.rmem_max.
pub const RECEIVE_BUFFER: usize = 4 << 20;
/// How long a stopping client waits for its fence's reply.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);
/// Datagrams taken per wake-up before the task looks at its other work.
const RECEIVE_BATCH: usize = 64;
/// Commands queued to the task.
const COMMAND_QUEUE: usize = 256;
/// Larger than any valid datagram, so that an oversize one is seen (and dropped) as such.
const RECEIVE_LEN: usize = 2048;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's address and port (IPv4: docs/storage-protocol.md "Transport").
    pub server: SocketAddr,
    pub user_id: u32,
    pub key: UserKey,
    pub fragment_size: FragmentSize,
    pub limits: Limits,
    pub timing: Timing,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("storage: the server address {0} is not IPv4 (the storage protocol runs over IPv4)")]
    NotIpv4(SocketAddr),
    #[error("storage: cannot open a UDP socket to {server}: {source}")]
    Socket { server: SocketAddr, source: io::Error },
}

/// A caller waiting for its request, holding its place in the queue.
pub struct Waiter {
    reply: oneshot::Sender<IoResult>,
    _slot: Option<OwnedSemaphorePermit>,
}

enum Command {
    Submit(IoRequest, Waiter),
    KeepAttached(u32),
    Shutdown(oneshot::Sender<Counters>),
}

/// A request handed to the client; `wait` for its result.
pub struct Pending(oneshot::Receiver<IoResult>);

impl Pending {
    pub async fn wait(self) -> IoResult {
        // A dropped sender: the client stopped before it answered.
        self.0.await.unwrap_or(Err(StorageError::ShuttingDown))
    }
}

/// A handle to the client's task; clones share it.
#[derive(Clone)]
pub struct StorageClient {
    commands: mpsc::Sender<Command>,
    slots: Arc<Semaphore>,
    server: SocketAddr,
    user_id: u32,
}

impl StorageClient {
    /// Opens the socket and starts the task, on the current tokio runtime (with I/O and time).
    pub fn connect(config: ClientConfig) -> Result<StorageClient, ConnectError> {
        if !config.server.is_ipv4() {
            return Err(ConnectError::NotIpv4(config.server));
        }
        let failed = |source| ConnectError::Socket { server: config.server, source };
        let socket = UdpSocket::from_std(open_socket(config.server).map_err(failed)?).map_err(failed)?;
        let sender = Sender { user_id: config.user_id, key: config.key, fragment_size: config.fragment_size };
        let engine_config = EngineConfig { sender, limits: config.limits, timing: config.timing };
        let engine = Engine::new(engine_config, ids_from_clock());
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(drive(engine, socket, receiver));
        Ok(StorageClient {
            commands,
            slots: Arc::new(Semaphore::new(config.limits.max_queued)),
            server: config.server,
            user_id: config.user_id,
        })
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub fn user_id(&self) -> u32 {
        self.user_id
    }

    /// Queues `request`, waiting for a free place in the queue first.
    pub async fn submit(&self, request: IoRequest) -> Pending {
        let (reply, result) = oneshot::channel();
        // The semaphore is never closed; without a slot the request is refused by the engine's own bound.
        let slot = Arc::clone(&self.slots).acquire_owned().await.ok();
        // A send error drops the waiter: `wait` says the client stopped.
        let _ = self.commands.send(Command::Submit(request, Waiter { reply, _slot: slot })).await;
        Pending(result)
    }

    pub async fn execute(&self, request: IoRequest) -> IoResult {
        self.submit(request).await.wait().await
    }

    /// The image's size and flags (an INFO); from then on the client keeps the image attached (an INFO when
    /// it is idle for `Timing::keepalive`).
    pub async fn attach(&self, image_id: u32) -> Result<ImageInfo, StorageError> {
        match self.execute(IoRequest::info(image_id)).await? {
            IoOutput::Info(info) => {
                let _ = self.commands.send(Command::KeepAttached(image_id)).await;
                Ok(info)
            }
            _ => Err(StorageError::BadReply(BlockError::MissingPayload)),
        }
    }

    /// Stops the client: waiting requests fail, unanswered ones are fenced (for up to `SHUTDOWN_WAIT`) and
    /// fail. Its counters; `None` if it had stopped already.
    pub async fn shutdown(&self) -> Option<Counters> {
        let (reply, counters) = oneshot::channel();
        self.commands.send(Command::Shutdown(reply)).await.ok()?;
        counters.await.ok()
    }
}

/// Request ids from the wall clock (docs/storage-protocol.md), so a restarted client never reuses one.
fn ids_from_clock() -> RequestIds {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    RequestIds::starting_at(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// A UDP socket connected to `server` (the kernel then drops datagrams from anyone else).
fn open_socket(server: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    if let Err(e) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        log::debug!("storage: cannot set the receive buffer to {RECEIVE_BUFFER} bytes: {e}");
    }
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
    socket.connect(&server.into())?;
    Ok(socket.into())
}

/// The client's task: until shut down (or every handle is gone), feeds the engine and does what it says.
async fn drive(mut engine: Engine<Waiter>, socket: UdpSocket, mut commands: mpsc::Receiver<Command>) {
    let start = Instant::now();
    let mut outgoing = [0u8; MAX_DATAGRAM_LEN];
    let mut incoming = vec![0u8; RECEIVE_LEN];
    // Set once stopping: who wants the counters, and until when the fence is waited for.
    let mut stopping: Option<(Option<oneshot::Sender<Counters>>, Duration)> = None;
    loop {
        let now = start.elapsed();
        if engine.poll_timeout().is_some_and(|wake| wake <= now) {
            engine.handle_timeout(now);
        }
        while let Some(len) = engine.poll_transmit(&mut outgoing) {
            if let Err(e) = socket.send(&outgoing[..len]).await {
                // The retransmission timer covers it.
                engine.count_send_error();
                log::debug!("storage: send to {:?} failed: {e}", socket.peer_addr().ok());
            }
        }
        complete(&mut engine);
        if let Some((_, deadline)) = &stopping {
            if engine.is_idle() || start.elapsed() >= *deadline {
                engine.abandon();
                complete(&mut engine);
                if let Some((Some(reply), _)) = stopping.take() {
                    let _ = reply.send(engine.counters().clone());
                }
                return;
            }
        }
        let wake = engine.poll_timeout().into_iter().chain(stopping.as_ref().map(|(_, deadline)| *deadline)).min();
        let sleep = async {
            match wake {
                Some(wake) => tokio::time::sleep_until((start + wake).into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = socket.recv(&mut incoming) => {
                match received {
                    Ok(len) => engine.handle_datagram(&incoming[..len], start.elapsed()),
                    // An ICMP error for an earlier send (port unreachable): retransmissions go on.
                    Err(e) => log::debug!("storage: receive failed: {e}"),
                }
                for _ in 0..RECEIVE_BATCH {
                    let Ok(len) = socket.try_recv(&mut incoming) else { break };
                    engine.handle_datagram(&incoming[..len], start.elapsed());
                }
            }
            command = commands.recv(), if stopping.is_none() => {
                let now = start.elapsed();
                // Every command already queued, in one turn: the requests of a queue depth go out together.
                let mut next = Some(command);
                while let Some(command) = next.take() {
                    match command {
                        Some(Command::Submit(request, waiter)) => engine.submit(request, waiter, now),
                        Some(Command::KeepAttached(image_id)) => engine.keep_attached(image_id, now),
                        Some(Command::Shutdown(reply)) => {
                            engine.begin_shutdown(now);
                            stopping = Some((Some(reply), now + SHUTDOWN_WAIT));
                            break;
                        }
                        None => {
                            engine.begin_shutdown(now);
                            stopping = Some((None, now + SHUTDOWN_WAIT));
                            break;
                        }
                    }
                    next = commands.try_recv().ok().map(Some);
                }
            }
            () = sleep => {}
        }
    }
}

fn complete(engine: &mut Engine<Waiter>) {
    while let Some((waiter, result)) = engine.poll_completion() {
        // The caller may have gone (its NBD connection closed): nobody to tell.
        let _ = waiter.reply.send(result);
    }
}
