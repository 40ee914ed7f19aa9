//! `switchyard coordinator serve`, `switchyard controller serve` and
//! `switchyard agent switch|gateway`. Errors are one line and exit code 1.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::agent::{Agent, Source};
use super::client::Peer;
use super::controller::Controller;
use super::coordinator::Coordinator;
use super::http::{controller_router, coordinator_router, Shared};
use super::model::check_cloud;
use super::serve::{bind, serve};
use crate::svc::auth::AuthArgs;
use crate::svc::serve::HttpLimitArgs;
use super::store::RedbIntercloudStore;
use super::tasks::{follow, hand_over, parse_vtep};

#[derive(Args, Debug)]
pub struct CoordinatorArgs {
    #[command(subcommand)]
    pub command: CoordinatorCommand,
}

#[derive(Subcommand, Debug)]
pub enum CoordinatorCommand {
    /// Serve the network coordinator until SIGINT/SIGTERM. Prints
    /// `coordinator listening on URL` once it accepts requests.
    Serve {
        /// ADDR:PORT (port 0 picks a free one): a loopback address with --token-file,
        /// any address with --tls-ca, --tls-cert and --tls-key.
        #[arg(long, value_name = "ADDR")]
        listen: String,
        /// Its redb file (created when absent).
        #[arg(long, value_name = "PATH")]
        database: PathBuf,
        #[command(flatten)]
        auth: AuthArgs,
        #[command(flatten)]
        limits: HttpLimitArgs,
    },
}

#[derive(Args, Debug)]
pub struct ControllerArgs {
    #[command(subcommand)]
    pub command: ControllerCommand,
}

#[derive(Subcommand, Debug)]
pub enum ControllerCommand {
    /// Serve a cloud's network controller until SIGINT/SIGTERM. Prints
    /// `controller listening on URL` once it accepts requests. The credential
    /// flags also authenticate it to the coordinator.
    Serve {
        /// ADDR:PORT, as for the coordinator.
        #[arg(long, value_name = "ADDR")]
        listen: String,
        #[arg(long, value_name = "PATH")]
        database: PathBuf,
        /// The cloud's name (1 to 64 of A-Z a-z 0-9 . _ - :).
        #[arg(long)]
        cloud: String,
        /// The VTEP of the cloud's gateway node: the other clouds reach this cloud's VMs through it.
        #[arg(long, value_name = "IP")]
        gateway_vtep: String,
        /// The network coordinator, e.g. http://127.0.0.1:7120.
        #[arg(long, value_name = "URL")]
        coordinator: String,
        /// How long a VM withdrawn by its compute node stays at the coordinator
        /// in case it is announced again (a move): the other clouds see no change.
        #[arg(long, default_value_t = 200)]
        withdraw_hold_ms: u64,
        #[command(flatten)]
        auth: AuthArgs,
        #[command(flatten)]
        limits: HttpLimitArgs,
    },
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// How the agent authenticates to the controller or coordinator.
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Beside a compute node's switch: announce its VMs to the controller and
    /// program table 1 (the other clouds' VMs at their gateway).
    Switch {
        /// The switch's control socket.
        #[arg(long, value_name = "PATH")]
        switch_socket: PathBuf,
        /// The cloud's controller, e.g. http://127.0.0.1:7121.
        #[arg(long, value_name = "URL")]
        controller: String,
        /// The compute node's VTEP (the switch's uplink address).
        #[arg(long, value_name = "IP")]
        vtep: String,
        /// Where the agent keeps the entries it made (JSON), so that a restarted
        /// agent still removes them and nothing else.
        #[arg(long, value_name = "PATH")]
        state: Option<PathBuf>,
    },
    /// Beside a gateway node's switch: program table 2 (this cloud's VMs at
    /// their compute node), as the coordinator sends it.
    Gateway {
        #[arg(long, value_name = "PATH")]
        switch_socket: PathBuf,
        /// The network coordinator.
        #[arg(long, value_name = "URL")]
        coordinator: String,
        /// The gateway's cloud.
        #[arg(long)]
        cloud: String,
        #[arg(long, value_name = "PATH")]
        state: Option<PathBuf>,
    },
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("switchyard: {message}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))
}

fn announce_ready(line: &str) -> Result<(), String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| format!("cannot write the output: {e}"))
}

/// A serving role's command-line mistakes about its listener: exit code 2.
fn check_listen(role: &str, listen: &str, auth: &AuthArgs) -> Result<(), ExitCode> {
    auth.check_listen(listen).map_err(|message| {
        eprintln!("switchyard: {role}: {message}");
        ExitCode::from(2)
    })
}

pub fn coordinator_main(args: CoordinatorArgs) -> ExitCode {
    let CoordinatorCommand::Serve { listen, database, auth, limits } = args.command;
    if let Err(code) = check_listen("coordinator", &listen, &auth) {
        return code;
    }
    exit(runtime().and_then(|runtime| runtime.block_on(serve_coordinator(&listen, &database, &auth, limits))))
}

async fn serve_coordinator(listen: &str, database: &Path, auth: &AuthArgs, limits: HttpLimitArgs) -> Result<(), String> {
    let bound = bind("coordinator", listen, auth)?;
    let store = RedbIntercloudStore::open(database, "coordinator").map_err(|e| format!("coordinator: {e}"))?;
    let coordinator = Coordinator::open(store).map_err(|e| format!("coordinator: {e}"))?;
    log::info!(
        "coordinator: {} clouds and {} VMs at revision {} from {}",
        coordinator.clouds().len(),
        coordinator.vms().len(),
        coordinator.revision(),
        database.display()
    );
    let shared = Shared::new(coordinator);
    let stop = crate::stop_signal::until_stop_signal("coordinator")?;
    announce_ready(&format!("coordinator listening on {}", bound.url))?;
    let stopping = shared.clone();
    let router = coordinator_router(shared);
    serve("coordinator", bound, limits.limits(), router, Vec::new(), move || stopping.stop(), stop).await
}

pub fn controller_main(args: ControllerArgs) -> ExitCode {
    let ControllerCommand::Serve { listen, auth, .. } = &args.command;
    if let Err(code) = check_listen("controller", listen, auth) {
        return code;
    }
    exit(runtime().and_then(|runtime| runtime.block_on(serve_controller(args.command))))
}

async fn serve_controller(command: ControllerCommand) -> Result<(), String> {
    let ControllerCommand::Serve { listen, database, cloud, gateway_vtep, coordinator, withdraw_hold_ms, auth, limits } =
        command;
    let hold = Duration::from_millis(withdraw_hold_ms);
    let (database, cloud) = (database.as_path(), cloud.as_str());
    check_cloud(cloud).map_err(|invalid| format!("--cloud: {}", invalid.problem))?;
    let gateway_vtep = parse_vtep("--gateway-vtep", &gateway_vtep)?;
    let client_auth = auth.client()?;
    let coordinator = Peer::url(&coordinator, &client_auth).map_err(|e| format!("--coordinator: {e}"))?;
    let bound = bind("controller", &listen, &auth)?;
    let store = RedbIntercloudStore::open(database, &format!("controller:{cloud}")).map_err(|e| format!("controller: {e}"))?;
    let controller = Controller::open(store, cloud, gateway_vtep).map_err(|e| format!("controller: {e}"))?;
    log::info!(
        "controller {cloud}: {} VMs of this cloud and {} remote entries from {}",
        controller.local().len(),
        controller.remote_view().entries.len(),
        database.display()
    );
    let shared = Shared::new(controller);
    let (registered, registration) = tokio::sync::watch::channel(false);
    let tasks = vec![
        tokio::spawn(hand_over(shared.clone(), coordinator.clone(), hold, registered)),
        tokio::spawn(follow(shared.clone(), coordinator, registration)),
    ];
    let stop = crate::stop_signal::until_stop_signal("controller")?;
    announce_ready(&format!("controller listening on {}", bound.url))?;
    let stopping = shared.clone();
    let router = controller_router(shared);
    serve("controller", bound, limits.limits(), router, tasks, move || stopping.stop(), stop).await
}

pub fn agent_main(args: AgentArgs) -> ExitCode {
    exit(runtime().and_then(|runtime| runtime.block_on(run_agent(args))))
}

async fn run_agent(args: AgentArgs) -> Result<(), String> {
    let auth = args.auth.client()?;
    let (socket, source, state) = match args.command {
        AgentCommand::Switch { switch_socket, controller, vtep, state } => {
            let vtep = parse_vtep("--vtep", &vtep)?;
            let controller = Peer::url(&controller, &auth).map_err(|e| format!("--controller: {e}"))?;
            (switch_socket, Source::Controller { controller, vtep }, state)
        }
        AgentCommand::Gateway { switch_socket, coordinator, cloud, state } => {
            check_cloud(&cloud).map_err(|invalid| format!("--cloud: {}", invalid.problem))?;
            let coordinator = Peer::url(&coordinator, &auth).map_err(|e| format!("--coordinator: {e}"))?;
            (switch_socket, Source::Gateway { coordinator, cloud }, state)
        }
    };
    let agent = Agent::new(&socket, source, state)?;
    let role = agent.role();
    let stop = crate::stop_signal::until_stop_signal(role)?;
    announce_ready(&format!("{role} running for {}", socket.display()))?;
    tokio::select! {
        () = agent.run() => {}
        () = stop => {}
    }
    log::info!("{role}: stopped");
    Ok(())
}
