//! `switchyard`: argument parsing and wiring only.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchyard::board::cli::BoardArgs;
use switchyard::config::Config;
use switchyard::control::cli::CtlArgs;
use switchyard::control::{self, MonitorRuntime};
use switchyard::dataplane::{Dataplane, Forwarding, StartError, StopCause, DEFAULT_MAC_AGEING};
use switchyard::intercloud::cli::{AgentArgs, ControllerArgs, CoordinatorArgs};
use switchyard::vbd::cli::VbdArgs;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "DPDK poll-mode virtual switch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the switch. In pcap test mode (every rx port a finite rx_pcap) it ends by
    /// itself once all input is processed; otherwise on SIGINT/SIGTERM.
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Also write the final stats summary as JSON.
        #[arg(long, value_name = "FILE")]
        stats_json: Option<PathBuf>,
    },
    /// Talk to a running switch's control API (networks, endpoints, ports, stats).
    Ctl(CtlArgs),
    /// The VM information bulletin board: serve it, or read and change a running one.
    Board(BoardArgs),
    /// Inter-cloud: the network coordinator that links the clouds.
    Coordinator(CoordinatorArgs),
    /// Inter-cloud: a cloud's network controller.
    Controller(ControllerArgs),
    /// Inter-cloud: the agent beside a compute node's or a gateway's switch.
    Agent(AgentArgs),
    /// Network block device: serve a user's images on a storage server as NBD exports
    /// (unix socket, loopback TCP) for QEMU and the NBD tools, until SIGINT/SIGTERM.
    Vbd(VbdArgs),
    /// Crash-test workload: commits numbered batches to a config database, printing
    /// each acknowledged generation.
    #[command(hide = true)]
    StoreStress {
        #[arg(long, value_name = "FILE")]
        database: PathBuf,
        /// Stop after this many batches (default: run until killed).
        #[arg(long)]
        batches: Option<u64>,
    },
    /// Checks a database file before a switchyard process opens it (run by
    /// switchyard itself): prints what is wrong with it, if anything.
    #[command(hide = true)]
    CheckDatabase { file: PathBuf },
}

/// An error for the user: one line, and the exit code (2 for configuration).
struct Failure {
    code: u8,
    message: String,
}

impl From<StartError> for Failure {
    fn from(err: StartError) -> Self {
        let code = if matches!(err, StartError::Config(_)) { 2 } else { 1 };
        Failure { code, message: err.to_string() }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Whatever switchyard creates (databases, sockets, pcaps, stats) is its
    // owner's alone unless a setting opens it explicitly.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    // A damaged database can make redb panic, which aborts a release build:
    // every database file is checked in a child process of this binary first.
    if let Ok(exe) = std::env::current_exe() {
        switchyard::svc::database::check_databases_with(exe);
    }
    let result = match cli.command {
        Command::Ctl(args) => return switchyard::control::cli::main(args),
        Command::Board(args) => return switchyard::board::cli::main(args),
        Command::Coordinator(args) => return switchyard::intercloud::cli::coordinator_main(args),
        Command::Controller(args) => return switchyard::intercloud::cli::controller_main(args),
        Command::Agent(args) => return switchyard::intercloud::cli::agent_main(args),
        Command::Vbd(args) => return switchyard::vbd::cli::main(args),
        Command::StoreStress { database, batches } => store_stress(&database, batches),
        Command::CheckDatabase { file } => return switchyard::svc::database::check_database_command(&file),
        Command::Run { config, stats_json } => run(&config, stats_json.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("switchyard: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn store_stress(database: &Path, batches: Option<u64>) -> Result<(), Failure> {
    let store = switchyard::configdb::Store::open(database).map_err(|e| Failure { code: 1, message: e.to_string() })?;
    let stdout = std::io::stdout();
    switchyard::configdb::stress::stress(&store, batches, &mut stdout.lock())
        .map_err(|message| Failure { code: 1, message })
}

fn run(config_path: &Path, stats_json: Option<&Path>) -> Result<(), Failure> {
    let config = Config::load(config_path).map_err(|e| Failure { code: 2, message: e.to_string() })?;
    let signal = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, signal.clone())
            .map_err(|e| Failure { code: 1, message: format!("cannot install signal handler: {e}") })?;
    }
    let origin = config_path.display().to_string();
    let failure = |message: String| Failure { code: 1, message };
    // The cross-connect has no records; the vRouter starts from the config
    // database (seeded from the TOML when empty) and serves the control API.
    let store = if config.ports.iter().any(|p| p.forward_to.is_some()) {
        None
    } else {
        Some(control::open_database(&config).map_err(|e| failure(e.to_string()))?)
    };
    let forwarding = match &store {
        None => Forwarding::CrossConnect,
        Some(store) => {
            let records = store.snapshot().map_err(|e| failure(e.to_string()))?;
            Forwarding::Overlay { config: records, ageing: DEFAULT_MAC_AGEING }
        }
    };
    let mut dataplane = Dataplane::start(&config, &origin, forwarding)?;
    let api = match store {
        None => None,
        Some(store) => {
            let linger = Duration::from_millis(config.migration.linger_ms);
            let runtime = MonitorRuntime::new(dataplane.monitor(), linger, config.board.clone())
                .with_unit_directory(config.upgrade.library_dir.clone());
            let runtime = Arc::new(runtime);
            let api = control::spawn_with_storage(&config.control, config.storage.clone(), store, runtime);
            Some(api.map_err(|e| failure(e.to_string()))?)
        }
    };
    // The control plane has applied the database (storage catalog included): packets may come.
    dataplane.open_rx();
    let cause = dataplane.wait(&signal);
    // The API holds a view of the data plane: it goes first.
    if let Some(api) = api {
        api.shutdown();
    }
    let summary = dataplane.stop();
    drop(dataplane); // closes the ports: pcap output is complete from here on
    println!("{summary}");
    if let Some(path) = stats_json {
        let json = serde_json::to_string_pretty(&summary).map_err(|e| Failure { code: 1, message: e.to_string() })?;
        std::fs::write(path, json + "\n")
            .map_err(|e| Failure { code: 1, message: format!("cannot write {}: {e}", path.display()) })?;
    }
    if summary.unaccounted != 0 {
        return Err(Failure { code: 1, message: format!("{} packets unaccounted for", summary.unaccounted) });
    }
    if cause == StopCause::InputStalled {
        return Err(Failure { code: 1, message: "pcap input stalled before its end".into() });
    }
    Ok(())
}
