//! `switchyard board`: serve the bulletin board, or talk to a running one.
//! Errors are one line and exit code 1.
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use super::api::{AppliedReply, DeletedReply, QueuedReply, DEFAULT_LEASE_MS, WATCH_TIMEOUT_MS_DEFAULT};
use super::client::BoardClient;
use super::model::{Accepted, Event, EventKind, Record, RecordKey, Update, VmState, WatchReply};
use super::serve::{bind, serve};
use super::service::{unix_time, Board};
use super::store::RedbBoardStore;
use switchyard_model::unix_us;
use switchyard_service::auth::AuthArgs;
use switchyard_service::serve::HttpLimitArgs;
use switchyard_wire::MacAddr;

#[derive(Args, Debug)]
pub struct BoardArgs {
    /// How the board authenticates its clients (serve), or a client itself.
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(subcommand)]
    pub command: BoardCommand,
}

#[derive(Subcommand, Debug)]
pub enum BoardCommand {
    /// Serve the board until SIGINT/SIGTERM. Prints `board listening on URL`
    /// once it accepts requests.
    Serve {
        /// ADDR:PORT (port 0 picks a free one): a loopback address with --token-file,
        /// any address with --tls-ca, --tls-cert and --tls-key.
        #[arg(long, value_name = "ADDR")]
        listen: String,
        /// The board's redb file (created when absent).
        #[arg(long, value_name = "PATH")]
        database: PathBuf,
        #[command(flatten)]
        limits: HttpLimitArgs,
    },
    /// Every record and lock, with the board's revision.
    Records {
        #[command(flatten)]
        board: BoardUrl,
    },
    /// Set a VM's record (queued while it is locked).
    Put {
        #[command(flatten)]
        board: BoardUrl,
        #[command(flatten)]
        key: KeyArgs,
        /// The VTEP of the host the VM runs on.
        #[arg(long)]
        vtep: String,
        #[arg(long)]
        ip: Option<String>,
        /// running, paused or stopped.
        #[arg(long, default_value = "running")]
        state: String,
        /// Who sends it (a host name).
        #[arg(long)]
        from: String,
    },
    /// Remove a VM's record (queued while it is locked).
    Delete {
        #[command(flatten)]
        board: BoardUrl,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        from: String,
    },
    /// Lock a VM's record (or renew the lock) while the VM migrates to `holder`.
    Lock {
        #[command(flatten)]
        board: BoardUrl,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        holder: String,
        #[arg(long, default_value_t = DEFAULT_LEASE_MS)]
        lease_ms: u64,
    },
    /// Unlock a VM's record: the updates queued behind the lock apply, in order.
    Unlock {
        #[command(flatten)]
        board: BoardUrl,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        holder: String,
    },
    /// Print the board's events as JSON lines until killed (a reset as one
    /// `{"revision", "reset": true, "records"}` line).
    Watch {
        #[command(flatten)]
        board: BoardUrl,
        /// Start after this revision [default: the board's current one].
        #[arg(long)]
        since: Option<u64>,
    },
}

#[derive(Args, Debug)]
pub struct BoardUrl {
    /// The board, e.g. http://127.0.0.1:7117.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Print the board's JSON reply instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[arg(long)]
    pub vni: String,
    #[arg(long)]
    pub mac: String,
}

impl KeyArgs {
    /// The same checks and words as the board's for a path.
    fn key(&self) -> Result<RecordKey, String> {
        let (vni, mac) = (&self.vni, &self.mac);
        let vni: u32 = vni.parse().map_err(|_| format!("--vni {vni:?} is not a VNI (1..=16777215)"))?;
        let mac: MacAddr = mac.parse().map_err(|e| format!("--mac {mac:?}: {e}"))?;
        let key = RecordKey::new(vni, mac);
        key.check().map_err(|invalid| invalid.problem)?;
        Ok(key)
    }
}

pub fn main(args: BoardArgs) -> ExitCode {
    if let BoardCommand::Serve { listen, .. } = &args.command {
        if let Err(message) = args.auth.check_listen(listen) {
            eprintln!("switchyard: board: {message}");
            return ExitCode::from(2);
        }
    }
    let stdout = std::io::stdout();
    match run(args, &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("switchyard: {message}");
            ExitCode::from(1)
        }
    }
}

pub fn run(args: BoardArgs, out: &mut dyn Write) -> Result<(), String> {
    let BoardArgs { auth, command } = args;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let write_error = |e: std::io::Error| format!("cannot write the output: {e}");
    match command {
        BoardCommand::Serve { listen, database, limits } => {
            runtime.block_on(serve_until_signal(&listen, &database, &auth, limits, out))
        }
        BoardCommand::Watch { board, since } => runtime.block_on(watch(&board.url, &auth, since, out)),
        other => {
            let text = runtime.block_on(operate(other, &auth))?;
            writeln!(out, "{text}").map_err(write_error)
        }
    }
}

async fn serve_until_signal(
    listen: &str,
    database: &Path,
    auth: &AuthArgs,
    limits: HttpLimitArgs,
    out: &mut dyn Write,
) -> Result<(), String> {
    let addr: SocketAddr =
        listen.parse().map_err(|_| format!("--listen {listen:?} is not an address of the form 127.0.0.1:PORT"))?;
    // The address and its authentication first: a refused one leaves no database behind.
    let server_auth = auth.server(&addr).map_err(|e| format!("board: {e}"))?;
    let listener = bind(addr).map_err(|e| e.to_string())?;
    let local = listener.local_addr().map_err(|e| format!("board: cannot read the bound address: {e}"))?;
    let store = RedbBoardStore::open(database).map_err(|e| e.to_string())?;
    let board = Board::open(store).map_err(|e| e.to_string())?;
    let snapshot = board.snapshot();
    let (records, locks, revision) = (snapshot.records.len(), snapshot.locks.len(), snapshot.revision);
    let stop = switchyard_service::stop_signal::until_stop_signal("board")?;
    log::info!("board: {records} records and {locks} locks at revision {revision} from {}", database.display());
    let scheme = if auth.files().tls_configured() { "https" } else { "http" };
    writeln!(out, "board listening on {scheme}://{local}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the output: {e}"))?;
    serve(listener, server_auth, limits.limits(), board, stop).await.map_err(|e| e.to_string())?;
    log::info!("board: stopped");
    Ok(())
}

/// One request; the text to print.
async fn operate(command: BoardCommand, auth: &AuthArgs) -> Result<String, String> {
    let auth = auth.client()?;
    let connect = |board: &BoardUrl| BoardClient::new(&board.url, auth.clone()).map_err(|e| e.to_string());
    match command {
        BoardCommand::Records { board } => {
            let snapshot = connect(&board)?.records().await.map_err(|e| e.to_string())?;
            Ok(if board.json { to_json(&snapshot)? } else { records_table(&snapshot) })
        }
        BoardCommand::Put { board, key, vtep, ip, state, from } => {
            let key = key.key()?;
            let vtep: Ipv4Addr = vtep.parse().map_err(|_| format!("--vtep {vtep:?} is not an IPv4 address"))?;
            let ip = ip
                .map(|ip| ip.parse::<Ipv4Addr>().map_err(|_| format!("--ip {ip:?} is not an IPv4 address")))
                .transpose()?;
            let state: VmState = state.parse().map_err(|e| format!("--state {e}"))?;
            let update = Update { ip, vtep, state, from };
            let accepted = connect(&board)?.put(key, &update).await.map_err(|e| e.to_string())?;
            accepted_text(key, accepted, board.json)
        }
        BoardCommand::Delete { board, key, from } => {
            let key = key.key()?;
            let accepted = connect(&board)?.delete(key, &from).await.map_err(|e| e.to_string())?;
            accepted_text(key, accepted, board.json)
        }
        BoardCommand::Lock { board, key, holder, lease_ms } => {
            let key = key.key()?;
            let lease = Duration::from_millis(lease_ms);
            let grant = connect(&board)?.lock(key, &holder, lease).await.map_err(|e| e.to_string())?;
            if board.json {
                return to_json(&grant);
            }
            Ok(format!("locked {key} for {} until {}", grant.holder, unix_time(grant.expires_at_us)))
        }
        BoardCommand::Unlock { board, key, holder } => {
            let key = key.key()?;
            let reply = connect(&board)?.unlock(key, &holder).await.map_err(|e| e.to_string())?;
            if board.json {
                return to_json(&reply);
            }
            let mut text = format!(
                "unlocked {key}; {} queued updates applied, board at revision {}",
                reply.applied.len(),
                reply.revision
            );
            for event in &reply.applied {
                text.push_str(&format!("\n  {}", event_text(event)));
            }
            Ok(text)
        }
        BoardCommand::Serve { .. } | BoardCommand::Watch { .. } => Err("not a one-request command".into()),
    }
}

fn accepted_text(key: RecordKey, accepted: Accepted, json: bool) -> Result<String, String> {
    match (accepted, json) {
        (Accepted::Applied(event), true) => match event.kind {
            EventKind::Put => to_json(&AppliedReply { applied: event.record, revision: event.revision }),
            EventKind::Delete => to_json(&DeletedReply { deleted: event.record, revision: event.revision }),
        },
        (Accepted::Queued { position, holder }, true) => to_json(&QueuedReply { queued: position, holder }),
        (Accepted::Applied(event), false) => Ok(event_text(&event)),
        (Accepted::Queued { position, holder }, false) => {
            Ok(format!("queued: {key} is locked by {holder}; this update is number {position} in its queue"))
        }
    }
}

fn event_text(event: &Event) -> String {
    let verb = match event.kind {
        EventKind::Put => "put",
        EventKind::Delete => "deleted",
    };
    format!("revision {} {verb} {}", event.revision, record_text(&event.record))
}

fn record_text(record: &Record) -> String {
    let ip = record.ip.map(|ip| format!(" ip {ip}")).unwrap_or_default();
    format!("{} on vtep {}{ip} {} (by {})", record.key(), record.vtep, record.state.name(), record.updated_by)
}

fn records_table(snapshot: &super::model::Snapshot) -> String {
    let mut text = format!("revision {}\n", snapshot.revision);
    text.push_str(&format!(
        "{:<9} {:<18} {:<16} {:<16} {:<8} {:>9}  {}\n",
        "vni", "mac", "ip", "vtep", "state", "revision", "updated_by"
    ));
    for r in &snapshot.records {
        let ip = r.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into());
        text.push_str(&format!(
            "{:<9} {:<18} {:<16} {:<16} {:<8} {:>9}  {}\n",
            r.vni,
            r.mac.to_string(),
            ip,
            r.vtep.to_string(),
            r.state.name(),
            r.revision,
            r.updated_by
        ));
    }
    if !snapshot.locks.is_empty() {
        let now = unix_us(SystemTime::now());
        text.push_str(&format!(
            "\n{:<9} {:<18} {:<16} {:>12} {:>7}\n",
            "locked", "mac", "holder", "expires_in_s", "queued"
        ));
        for entry in &snapshot.locks {
            let left = entry.lock.expires_at_us.saturating_sub(now) as f64 / 1e6;
            text.push_str(&format!(
                "{:<9} {:<18} {:<16} {:>12.3} {:>7}\n",
                entry.key.vni,
                entry.key.mac.to_string(),
                entry.lock.holder,
                left,
                entry.lock.queued.len()
            ));
        }
    }
    text.trim_end().to_string()
}

fn to_json(value: &impl serde::Serialize) -> Result<String, String> {
    serde_json::to_string_pretty(value).map_err(|e| format!("cannot encode the reply: {e}"))
}

/// Follows the board the way a host does: one long poll after another.
async fn watch(url: &str, auth: &AuthArgs, since: Option<u64>, out: &mut dyn Write) -> Result<(), String> {
    let client = BoardClient::new(url, auth.client()?).map_err(|e| e.to_string())?;
    let mut since = match since {
        Some(since) => since,
        None => client.records().await.map_err(|e| e.to_string())?.revision,
    };
    let timeout = Duration::from_millis(WATCH_TIMEOUT_MS_DEFAULT);
    loop {
        let reply = client.watch(since, timeout).await.map_err(|e| e.to_string())?;
        since = reply.revision();
        let lines = match &reply {
            WatchReply::Events { events, .. } => events.iter().map(serde_json::to_string).collect(),
            WatchReply::Reset { .. } => vec![serde_json::to_string(&reply)],
        };
        for line in lines {
            let line = line.map_err(|e| format!("cannot encode an event: {e}"))?;
            writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| format!("cannot write the output: {e}"))?;
        }
    }
}
