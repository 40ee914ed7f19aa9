//! `switchyard-bench --scenario board`: how long a record update on
//! the bulletin board takes to reach every host that follows it.
//!
//! A board is served in-process on 127.0.0.1:0 with a fresh database in the
//! bench's directory. N watchers follow it the way a host does (each its own
//! client and long-poll loop, on the bench's tokio runtime), and one writer
//! makes the updates one after another (each PUT sent when the last one was
//! answered). For each update the time from sending the PUT until the last
//! watcher has its event is the propagation latency; it includes the board's
//! commit (fsync'd before the board answers or publishes). No EAL, no testpmd.
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use super::{write_json, BenchOptions, Scenario};
use switchyard::svc::auth::Token;
use switchyard::svc::{ClientAuth, ServerAuth};
use switchyard::board::{Accepted, Board, BoardClient, BoardServer, RecordKey, RedbBoardStore, Update, VmState, WatchReply};
use switchyard::wire::MacAddr;

const VNI: u32 = 100;
/// The updates move VMs between these two hosts, as migrations do.
const VTEPS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];
/// How long a watcher's long poll waits before asking again.
const WATCH_TIMEOUT: Duration = Duration::from_secs(25);
/// Every watcher must have every event this long after the last PUT.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub(super) struct BoardReport {
    pub scenario: &'static str,
    pub updates: u32,
    pub watchers: u32,
    /// From sending a PUT until every watcher has received its event.
    pub propagation_us: Percentiles,
    /// From sending a PUT until its reply (the board's commit included).
    pub put_us: Percentiles,
    /// Updates over the time from the first PUT until the last event reached every watcher.
    pub updates_per_second: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<f64>) -> Percentiles {
        samples.sort_by(f64::total_cmp);
        // Nearest rank.
        let rank = |q: f64| {
            let index = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
            samples.get(index).copied().unwrap_or(0.0)
        };
        Percentiles { p50: rank(0.5), p99: rank(0.99), max: samples.last().copied().unwrap_or(0.0) }
    }
}

/// What a watcher tells the bench.
enum Heard {
    Event { revision: u64, at: Instant },
    Failed(String),
}

pub(super) fn run(options: &BenchOptions, dir: &Path) -> Result<(), String> {
    let database = dir.join("board.redb");
    let store = RedbBoardStore::open(&database).map_err(|e| e.to_string())?;
    let board = Board::open(store).map_err(|e| e.to_string())?;
    // Served as deployed: every request carries the bearer token.
    let token = Token::load_or_create(&dir.join("board.token"))?;
    let server = BoardServer::start(([127, 0, 0, 1], 0).into(), ServerAuth::Token(token.clone()), board)
        .map_err(|e| e.to_string())?;
    let auth = ClientAuth { token: Some(token), tls: None };
    println!(
        "bench board: {}; {} updates, {} watchers, board on {} with its database in {} (each update fsync'd)",
        Scenario::Board.description(),
        options.updates,
        options.watchers,
        server.url(),
        dir.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let report = runtime.block_on(measure(&server.url(), &auth, options.updates, options.watchers));
    drop(runtime); // ends the watchers' connections before the server waits for them
    server.shutdown().map_err(|e| e.to_string())?;
    let report = report?;
    let p = report.propagation_us;
    println!(
        "board propagation to {} watchers over {} updates: p50 {:.1} us  p99 {:.1} us  max {:.1} us  ({:.0} updates/s)",
        report.watchers, report.updates, p.p50, p.p99, p.max, report.updates_per_second
    );
    let q = report.put_us;
    println!(
        "  PUT round trip (commit and fsync included): p50 {:.1} us  p99 {:.1} us  max {:.1} us",
        q.p50, q.p99, q.max
    );
    write_json(options.json.as_deref(), &report)
}

async fn measure(url: &str, auth: &ClientAuth, updates: u32, watchers: u32) -> Result<BoardReport, String> {
    let writer = BoardClient::new(url, auth.clone()).map_err(|e| e.to_string())?;
    let (heard, mut hearing) = mpsc::unbounded_channel();
    let mut followers = Vec::new();
    for _ in 0..watchers {
        let client = BoardClient::new(url, auth.clone()).map_err(|e| e.to_string())?;
        followers.push(tokio::spawn(follow(client, heard.clone())));
    }
    drop(heard);
    let mut deliveries = Deliveries::new(watchers);
    // One update first, not measured: every watcher has its long poll open after it.
    let first = put(&writer, 0).await?;
    deliveries.note_sent(first, Instant::now());
    deliveries.wait_for(first, &mut hearing).await?;

    let start = Instant::now();
    let mut put_us = Vec::new();
    let mut last = first;
    for i in 1..=updates {
        let sent = Instant::now();
        last = put(&writer, i).await?;
        put_us.push(sent.elapsed().as_secs_f64() * 1e6);
        deliveries.note_sent(last, sent);
        deliveries.take_ready(&mut hearing)?;
    }
    deliveries.wait_for(last, &mut hearing).await?;
    let elapsed = start.elapsed();
    for follower in followers {
        follower.abort();
    }
    let propagation = deliveries.latencies_after(first);
    Ok(BoardReport {
        scenario: Scenario::Board.name(),
        updates,
        watchers,
        propagation_us: Percentiles::of(propagation),
        put_us: Percentiles::of(put_us),
        updates_per_second: f64::from(updates) / elapsed.as_secs_f64(),
    })
}

/// Update `i`: a VM of its own, on one host or the other. Returns its revision.
async fn put(writer: &BoardClient, i: u32) -> Result<u64, String> {
    let [_, a, b, c] = i.to_be_bytes();
    let key = RecordKey::new(VNI, MacAddr([2, 0, 0, a, b, c]));
    let update = Update {
        ip: Some(Ipv4Addr::new(10, a, b, c)),
        vtep: VTEPS[(i % 2) as usize],
        state: VmState::Running,
        from: "bench".into(),
    };
    match writer.put(key, &update).await.map_err(|e| e.to_string())? {
        Accepted::Applied(event) => Ok(event.revision),
        Accepted::Queued { holder, .. } => Err(format!("the bench's update was queued behind a lock of {holder}")),
    }
}

/// A host's sync loop, reduced to reporting when each event arrived.
async fn follow(client: BoardClient, heard: mpsc::UnboundedSender<Heard>) {
    let mut since = 0;
    loop {
        let message = match client.watch(since, WATCH_TIMEOUT).await {
            Ok(WatchReply::Events { revision, events }) => {
                let at = Instant::now();
                since = revision;
                for event in events {
                    if heard.send(Heard::Event { revision: event.revision, at }).is_err() {
                        return;
                    }
                }
                continue;
            }
            Ok(WatchReply::Reset { revision, .. }) => {
                format!("a watcher was reset at revision {revision}; the board should have kept every event")
            }
            Err(e) => format!("a watcher failed: {e}"),
        };
        let _ = heard.send(Heard::Failed(message));
        return;
    }
}

/// Per revision: when its PUT was sent, and when the last watcher had it.
struct Deliveries {
    watchers: u32,
    /// Indexed by revision.
    sent: Vec<Option<Instant>>,
    heard: Vec<(u32, Option<Instant>)>,
}

impl Deliveries {
    fn new(watchers: u32) -> Deliveries {
        Deliveries { watchers, sent: Vec::new(), heard: Vec::new() }
    }

    fn slot(&mut self, revision: u64) -> usize {
        let index = usize::try_from(revision).unwrap_or(usize::MAX);
        if self.sent.len() <= index {
            self.sent.resize(index + 1, None);
            self.heard.resize(index + 1, (0, None));
        }
        index
    }

    fn note_sent(&mut self, revision: u64, sent: Instant) {
        let index = self.slot(revision);
        self.sent[index] = Some(sent);
    }

    fn record(&mut self, heard: Heard) -> Result<(), String> {
        match heard {
            Heard::Event { revision, at } => {
                let index = self.slot(revision);
                let (count, last) = &mut self.heard[index];
                *count += 1;
                *last = Some(last.map_or(at, |last| last.max(at)));
                Ok(())
            }
            Heard::Failed(message) => Err(message),
        }
    }

    /// Takes what the watchers reported so far, without waiting.
    fn take_ready(&mut self, hearing: &mut mpsc::UnboundedReceiver<Heard>) -> Result<(), String> {
        while let Ok(heard) = hearing.try_recv() {
            self.record(heard)?;
        }
        Ok(())
    }

    /// Waits until every watcher has had every revision up to `revision`.
    async fn wait_for(&mut self, revision: u64, hearing: &mut mpsc::UnboundedReceiver<Heard>) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
        let index = self.slot(revision);
        while self.heard[1..=index].iter().any(|(count, _)| *count < self.watchers) {
            match tokio::time::timeout_at(deadline, hearing.recv()).await {
                Ok(Some(heard)) => self.record(heard)?,
                Ok(None) => return Err("every watcher stopped before the last update reached it".into()),
                Err(_) => {
                    return Err(format!(
                        "not every watcher had revision {revision} {} s after it was made",
                        DELIVERY_DEADLINE.as_secs()
                    ))
                }
            }
        }
        Ok(())
    }

    /// Microseconds from each PUT after `first` until every watcher had it.
    fn latencies_after(&self, first: u64) -> Vec<f64> {
        let skip = usize::try_from(first).unwrap_or(usize::MAX).saturating_add(1);
        self.sent
            .iter()
            .zip(&self.heard)
            .skip(skip)
            .filter_map(|(sent, (_, last))| Some(last.as_ref()?.duration_since(*sent.as_ref()?).as_secs_f64() * 1e6))
            .collect()
    }
}
