//! `switchyard ctl`: the command-line client of the control API. Aligned tables
//! by default, the API's JSON with `--json`.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use super::client::{Changed, Client, ClientError};
use super::request::segment;
use super::storage_cli::{self, Shown, StorageCommand};
use crate::upgrade::{Outcome, StepRecord, UnitDescription, UpgradeRecord, UpgradeStatus, STEP_NAMES};

/// How often `ctl upgrade` asks for the running upgrade's steps.
const UPGRADE_POLL: Duration = Duration::from_millis(20);

/// The socket of an instance without `eal.file_prefix` or `control.socket`.
pub const DEFAULT_SOCKET: &str = "/run/switchyard/switchyard.sock";

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The API's unix socket (`control.socket` in the config).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
    /// Use the TCP listener instead (`control.listen`): http://127.0.0.1:8080 with
    /// --token-file, or https://HOST:PORT with --tls-ca, --tls-cert and --tls-key.
    #[arg(long, value_name = "URL", global = true, conflicts_with = "socket")]
    pub url: Option<String>,
    #[command(flatten)]
    pub auth: crate::svc::auth::AuthArgs,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Virtual networks (VNIs).
    #[command(subcommand)]
    Network(NetworkCommand),
    /// VM endpoints on this switch's vm-role ports.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Endpoints behind remote VTEPs.
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Ports and their network binding.
    #[command(subcommand)]
    Port(PortCommand),
    /// Address migrations: VMs moved to another network, rewritten between their
    /// primary and post-migration IPs.
    #[command(subcommand, name = "address-migration")]
    AddressMigration(AddressMigrationCommand),
    /// The whole configuration with its generation.
    Config,
    /// Active switching unit(s).
    Unit,
    /// Counters per port, worker and drop reason.
    Stats,
    /// Learned MAC entries and resolved neighbours.
    Learned,
    /// Tunnels to remote VTEPs: state, next hop and counters.
    #[command(subcommand)]
    Tunnel(TunnelCommand),
    /// Prometheus metrics text.
    Metrics,
    /// Replace the switching unit with one from a shared library, hitlessly.
    ///
    /// Prints each of the eight steps as it completes, then the outcome. Config
    /// changes sent meanwhile are queued and applied, in order, when it ends.
    /// Exit code 1 if the new unit was refused (rolled back).
    Upgrade(UpgradeArgs),
    /// VM live migration: the events a VM monitor hook sends, and the migration table.
    #[command(subcommand)]
    Migration(MigrationCommand),
    /// What became of a change request queued during an upgrade.
    Request {
        /// The id a queued change printed (or the API's request_id).
        id: String,
    },
    /// Users and images of the network block device (`[storage]`).
    #[command(subcommand)]
    Storage(StorageCommand),
}

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// The new unit's shared library (.so), in the switch's unit directory
    /// (`[upgrade] library_dir`): its file name there, or its path (a relative
    /// path is taken from the current directory).
    #[arg(value_name = "LIBRARY", required_unless_present = "status")]
    pub library: Option<PathBuf>,
    /// Show the units bound now, the upgrade running and the finished ones instead.
    #[arg(long, conflicts_with = "library")]
    pub status: bool,
}

/// How a command that ran to its end went: `Failed` exits with 1 after its
/// output (an upgrade that rolled back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    Ok,
    Failed,
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// All networks.
    List,
    /// One network.
    Show { vni: String },
    /// Create a network.
    Create {
        /// 1..=16777215.
        #[arg(long)]
        vni: i64,
        /// 1 to 64 characters of A-Z a-z 0-9 . _ -
        #[arg(long)]
        name: String,
        /// Flood list: comma-separated remote VTEP addresses.
        #[arg(long, value_name = "IP,IP,...")]
        flood: Option<String>,
    },
    /// Change a network's name and/or flood list (`--flood ""` empties it).
    Set {
        vni: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_name = "IP,IP,...")]
        flood: Option<String>,
    },
    /// Delete a network no endpoint, remote or port uses.
    Delete { vni: String },
}

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// All VM endpoints.
    List,
    /// One VM endpoint.
    Show { vni: String, mac: String },
    /// Add a VM endpoint on a vm-role port.
    Add {
        #[arg(long)]
        vni: i64,
        #[arg(long)]
        mac: String,
        #[arg(long)]
        ip: Option<String>,
        /// A vm-role port.
        #[arg(long)]
        port: String,
    },
    /// Delete a VM endpoint.
    Delete { vni: String, mac: String },
}

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// All remote endpoints.
    List,
    /// One remote endpoint.
    Show { vni: String, mac: String },
    /// Add an endpoint behind a remote VTEP.
    Add {
        #[arg(long)]
        vni: i64,
        #[arg(long)]
        mac: String,
        #[arg(long)]
        ip: Option<String>,
        /// The VTEP (unicast IPv4) the endpoint is behind.
        #[arg(long)]
        vtep: String,
    },
    /// Delete a remote endpoint.
    Delete { vni: String, mac: String },
}

#[derive(Subcommand, Debug)]
pub enum TunnelCommand {
    /// Every tunnel this switch has brought up or is bringing up.
    List,
}

#[derive(Subcommand, Debug)]
pub enum MigrationCommand {
    /// VMs migrating to or from this host, and recently finished migrations.
    List,
    /// One migration.
    Show { vni: String, mac: String },
    /// Send an event: start, paused, resumed, completed or aborted.
    Event {
        /// start, paused, resumed, completed or aborted.
        event: String,
        #[arg(long)]
        vni: i64,
        #[arg(long)]
        mac: String,
        #[arg(long)]
        ip: Option<String>,
        /// The source host's VTEP address (start).
        #[arg(long)]
        source: Option<String>,
        /// The destination host's VTEP address (start).
        #[arg(long)]
        destination: Option<String>,
        /// The VM port the VM arrives on at the destination.
        #[arg(long)]
        port: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PortCommand {
    /// All ports with role, driver, MAC, network and counters.
    List,
    /// One port.
    Show { name: String },
    /// Put a vm-role port into a network.
    Bind {
        name: String,
        #[arg(long)]
        vni: i64,
    },
    /// Take a port out of its network.
    Unbind { name: String },
}

#[derive(Subcommand, Debug)]
pub enum AddressMigrationCommand {
    /// All address migrations.
    List,
    /// One address migration.
    Show { vni: String, primary_ip: String },
    /// Notify an address migration (creates it, or replaces the one of this primary IP).
    Add {
        #[arg(long)]
        vni: i64,
        /// The IP peers keep using.
        #[arg(long, value_name = "IP")]
        primary: String,
        /// Where the VM lives now; without it the primary IP is only registered
        /// for the port and the VM's report sets it.
        #[arg(long, value_name = "IP")]
        post: Option<String>,
        /// The VM's vm-role port.
        #[arg(long)]
        port: String,
    },
    /// Remove an address migration.
    Delete { vni: String, primary_ip: String },
    /// The last VM reports and what became of them.
    Reports,
}

/// Runs the command and prints `switchyard ctl: <error> (field: x)` on failure.
pub fn main(args: CtlArgs) -> ExitCode {
    let stdout = std::io::stdout();
    match run(&args, &mut stdout.lock()) {
        Ok(Finished::Ok) => ExitCode::SUCCESS,
        Ok(Finished::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("switchyard ctl: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn client_for(args: &CtlArgs) -> Result<Client, ClientError> {
    match &args.url {
        Some(url) => Client::url(url, args.auth.client().map_err(ClientError::Argument)?),
        None => Ok(Client::unix(&args.socket)),
    }
}

/// Runs one command against the API, writing its output to `out`.
pub fn run(args: &CtlArgs, out: &mut dyn Write) -> Result<Finished, ClientError> {
    let client = client_for(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| ClientError::Http { target: client.target().clone(), message: e.to_string() })?;
    runtime.block_on(async {
        match &args.command {
            CtlCommand::Upgrade(UpgradeArgs { library: Some(library), status: false }) => {
                upgrade(&client, library, args.json, out).await
            }
            command => execute(&client, command, args.json, out).await.map(|()| Finished::Ok),
        }
    })
}

fn flood_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

async fn execute(client: &Client, command: &CtlCommand, raw: bool, out: &mut dyn Write) -> Result<(), ClientError> {
    let (value, view) = match command {
        CtlCommand::Network(c) => network(client, c).await?,
        CtlCommand::Endpoint(c) => endpoint(client, c).await?,
        CtlCommand::Remote(c) => remote(client, c).await?,
        CtlCommand::Port(c) => port(client, c).await?,
        CtlCommand::Migration(c) => migration(client, c).await?,
        CtlCommand::AddressMigration(c) => address_migration(client, c).await?,
        CtlCommand::Config => (client.get("/v1/config").await?, View::Config),
        CtlCommand::Unit => (client.get("/v1/unit").await?, View::Generic),
        CtlCommand::Stats => (client.get("/v1/stats").await?, View::Generic),
        CtlCommand::Learned => (client.get("/v1/learned").await?, View::Generic),
        CtlCommand::Tunnel(TunnelCommand::List) => (client.get("/v1/tunnels").await?, View::Tunnels),
        CtlCommand::Metrics => (Value::String(client.text("/metrics").await?), View::Text),
        CtlCommand::Upgrade(_) => (client.get("/v1/upgrade").await?, View::UpgradeStatus),
        CtlCommand::Request { id } => (client.get(&format!("/v1/requests/{}", segment(id))).await?, View::Request),
        CtlCommand::Storage(c) => match storage_cli::storage(client, c).await? {
            (value, Ok(shown)) => (value, View::Storage(shown)),
            (value, Err(line)) => (value, View::Done(line)),
        },
    };
    let text = if raw {
        match (&view, &value) {
            (View::Done(_), Value::Null) => String::new(),
            (View::Queued(_), reply) => serde_json::to_string_pretty(reply).unwrap_or_default() + "\n",
            (View::Text, Value::String(text)) => text.clone(),
            _ => serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
        }
    } else {
        render(&view, &value)
    };
    write_out(client, out, &text)
}

fn write_out(client: &Client, out: &mut dyn Write, text: &str) -> Result<(), ClientError> {
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| ClientError::Http {
        target: client.target().clone(),
        message: format!("cannot write the output: {e}"),
    })
}

/// How to print a reply.
enum View {
    /// A list (or one record) as a table with these columns.
    Table(&'static [&'static str]),
    Config,
    Generic,
    Text,
    /// A change without a reply body: this line.
    Done(String),
    /// A change queued during an upgrade, with its request id.
    Queued(u64),
    /// `GET /v1/upgrade`.
    UpgradeStatus,
    /// `GET /v1/requests/{id}`.
    Request,
    /// Migrations, one row each.
    Migrations,
    /// Tunnels, one row each, with how long each has been in its state.
    Tunnels,
    /// Storage users or images (`storage_cli.rs`).
    Storage(Shown),
}

/// The reply to a change, or the queued view when an upgrade made it a 202.
fn changed(reply: Changed, view: View) -> (Value, View) {
    match reply {
        Changed::Done(value) => (value, view),
        Changed::Queued { id, reply } => (reply, View::Queued(id)),
    }
}

const NETWORK_COLUMNS: &[&str] = &["vni", "name", "flood_vteps"];
const ENDPOINT_COLUMNS: &[&str] = &["vni", "mac", "ip", "port"];
const REMOTE_COLUMNS: &[&str] = &["vni", "mac", "ip", "vtep", "source"];
const PORT_COLUMNS: &[&str] =
    &["name", "role", "driver", "mac", "vni", "rx_packets", "tx_packets", "rx_dropped", "tx_dropped", "rx_relayed"];
const BINDING_COLUMNS: &[&str] = &["port", "vni"];
const ADDRESS_MIGRATION_COLUMNS: &[&str] = &["vni", "primary_ip", "post_migration_ip", "port", "source"];
const REPORT_COLUMNS: &[&str] =
    &["port", "source_ip", "primary_ip", "post_migration_ip", "status", "outcome", "generation", "error"];
const TUNNEL_COLUMNS: &[&str] = &[
    "vtep", "state", "for", "next_hop", "next_hop_mac", "in_advance", "packets_queued", "packets_released",
    "packets_dropped", "timeouts",
];
const MIGRATION_COLUMNS: &[&str] = &["vni", "mac", "ip", "role", "phase", "source", "destination", "port"];

async fn network(client: &Client, command: &NetworkCommand) -> Result<(Value, View), ClientError> {
    let table = View::Table(NETWORK_COLUMNS);
    Ok(match command {
        NetworkCommand::List => (client.get("/v1/networks").await?, table),
        NetworkCommand::Show { vni } => (client.get(&format!("/v1/networks/{}", segment(vni))).await?, table),
        NetworkCommand::Create { vni, name, flood } => {
            let body =
                json!({"vni": vni, "name": name, "flood_vteps": flood.as_deref().map(flood_list).unwrap_or_default()});
            changed(client.change(Method::POST, "/v1/networks", Some(&body)).await?, table)
        }
        NetworkCommand::Set { vni, name, flood } => {
            let path = format!("/v1/networks/{}", segment(vni));
            let mut body = client.get(&path).await?;
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(flood) = flood {
                body["flood_vteps"] = json!(flood_list(flood));
            }
            changed(client.change(Method::PUT, &path, Some(&body)).await?, table)
        }
        NetworkCommand::Delete { vni } => {
            let reply = client.change(Method::DELETE, &format!("/v1/networks/{}", segment(vni)), None).await?;
            changed(reply, View::Done(format!("deleted network {vni}")))
        }
    })
}

async fn endpoint(client: &Client, command: &EndpointCommand) -> Result<(Value, View), ClientError> {
    let table = View::Table(ENDPOINT_COLUMNS);
    Ok(match command {
        EndpointCommand::List => (client.get("/v1/endpoints").await?, table),
        EndpointCommand::Show { vni, mac } => {
            (client.get(&format!("/v1/endpoints/{}/{}", segment(vni), segment(mac))).await?, table)
        }
        EndpointCommand::Add { vni, mac, ip, port } => {
            let body = json!({"vni": vni, "mac": mac, "ip": ip, "port": port});
            changed(client.change(Method::POST, "/v1/endpoints", Some(&body)).await?, table)
        }
        EndpointCommand::Delete { vni, mac } => {
            let path = format!("/v1/endpoints/{}/{}", segment(vni), segment(mac));
            let reply = client.change(Method::DELETE, &path, None).await?;
            changed(reply, View::Done(format!("deleted VM endpoint {mac} in network {vni}")))
        }
    })
}

async fn remote(client: &Client, command: &RemoteCommand) -> Result<(Value, View), ClientError> {
    let table = View::Table(REMOTE_COLUMNS);
    Ok(match command {
        RemoteCommand::List => (client.get("/v1/remotes").await?, table),
        RemoteCommand::Show { vni, mac } => {
            (client.get(&format!("/v1/remotes/{}/{}", segment(vni), segment(mac))).await?, table)
        }
        RemoteCommand::Add { vni, mac, ip, vtep } => {
            let body = json!({"vni": vni, "mac": mac, "ip": ip, "vtep": vtep});
            changed(client.change(Method::POST, "/v1/remotes", Some(&body)).await?, table)
        }
        RemoteCommand::Delete { vni, mac } => {
            let path = format!("/v1/remotes/{}/{}", segment(vni), segment(mac));
            let reply = client.change(Method::DELETE, &path, None).await?;
            changed(reply, View::Done(format!("deleted remote endpoint {mac} in network {vni}")))
        }
    })
}

async fn port(client: &Client, command: &PortCommand) -> Result<(Value, View), ClientError> {
    Ok(match command {
        PortCommand::List => (client.get("/v1/ports").await?, View::Table(PORT_COLUMNS)),
        PortCommand::Show { name } => {
            (client.get(&format!("/v1/ports/{}", segment(name))).await?, View::Table(PORT_COLUMNS))
        }
        PortCommand::Bind { name, vni } => {
            let body = json!({"vni": vni});
            let path = format!("/v1/ports/{}/network", segment(name));
            changed(client.change(Method::PUT, &path, Some(&body)).await?, View::Table(BINDING_COLUMNS))
        }
        PortCommand::Unbind { name } => {
            let reply = client.change(Method::DELETE, &format!("/v1/ports/{}/network", segment(name)), None).await?;
            changed(reply, View::Done(format!("port {name} left its network")))
        }
    })
}

async fn address_migration(client: &Client, command: &AddressMigrationCommand) -> Result<(Value, View), ClientError> {
    let table = View::Table(ADDRESS_MIGRATION_COLUMNS);
    let one = |vni: &str, primary: &str| format!("/v1/address-migrations/{}/{}", segment(vni), segment(primary));
    Ok(match command {
        AddressMigrationCommand::List => (client.get("/v1/address-migrations").await?, table),
        AddressMigrationCommand::Show { vni, primary_ip } => (client.get(&one(vni, primary_ip)).await?, table),
        AddressMigrationCommand::Add { vni, primary, post, port } => {
            let body = json!({"vni": vni, "primary_ip": primary, "post_migration_ip": post, "port": port});
            changed(client.change(Method::POST, "/v1/address-migrations", Some(&body)).await?, table)
        }
        AddressMigrationCommand::Delete { vni, primary_ip } => {
            let reply = client.change(Method::DELETE, &one(vni, primary_ip), None).await?;
            changed(reply, View::Done(format!("deleted the address migration of {primary_ip} in network {vni}")))
        }
        AddressMigrationCommand::Reports => {
            (client.get("/v1/address-migrations/reports").await?, View::Table(REPORT_COLUMNS))
        }
    })
}

fn render(view: &View, value: &Value) -> String {
    match view {
        View::Table(columns) => match value {
            Value::Array(rows) => table(columns, rows),
            one => table(columns, std::slice::from_ref(one)),
        },
        View::Config => {
            let mut text = format!("generation {}\n", cell(&value["generation"]));
            for (title, key, columns) in [
                ("networks", "networks", NETWORK_COLUMNS),
                ("VM endpoints", "endpoints", ENDPOINT_COLUMNS),
                ("remote endpoints", "remotes", REMOTE_COLUMNS),
                ("port bindings", "ports", BINDING_COLUMNS),
                ("address migrations", "address_migrations", ADDRESS_MIGRATION_COLUMNS),
            ] {
                let rows = value[key].as_array().cloned().unwrap_or_default();
                text.push_str(&format!("\n{title}\n{}", table(columns, &rows)));
            }
            let storage = &value["storage"];
            if storage["users"].as_array().is_some_and(|u| !u.is_empty()) {
                text.push_str(&format!("\nstorage users\n{}", table(&["name", "id", "ips", "quota_bytes"], &rows_of(&storage["users"]))));
                let columns = ["name", "id", "owner", "size", "read_only"];
                text.push_str(&format!("\nstorage images\n{}", table(&columns, &rows_of(&storage["images"]))));
            }
            text
        }
        View::Storage(shown) => storage_cli::render(*shown, value),
        View::Generic => generic(value),
        View::Text => value.as_str().unwrap_or_default().to_string(),
        View::Done(line) => format!("{line}\n"),
        View::Queued(id) => format!("queued as request {id} (an upgrade is running)\n"),
        View::UpgradeStatus => match serde_json::from_value::<UpgradeStatus>(value.clone()) {
            Ok(status) => upgrade_status(&status),
            Err(_) => generic(value),
        },
        View::Request => request_status(value),
        View::Migrations => {
            let one = |m: &Value| {
                let mut row = m.clone();
                row["vni"] = m["vm"]["vni"].clone();
                row["mac"] = m["vm"]["mac"].clone();
                row
            };
            let rows: Vec<Value> = match value {
                Value::Array(list) => list.iter().map(one).collect(),
                // The reply to an event: the migration and what the event did.
                reply if reply.get("migration").is_some() => {
                    let mut row = one(&reply["migration"]);
                    row["outcome"] = reply["outcome"].clone();
                    vec![row]
                }
                single => vec![one(single)],
            };
            let mut columns = MIGRATION_COLUMNS.to_vec();
            if rows.iter().any(|r| r.get("outcome").is_some()) {
                columns.push("outcome");
            }
            table(&columns, &rows)
        }
        View::Tunnels => {
            let now_ms = crate::model::unix_ms(SystemTime::now());
            let rows: Vec<Value> = (value.as_array().into_iter().flatten())
                .map(|t| {
                    let mut row = t.clone();
                    let since = t["since_ms"].as_u64().unwrap_or(now_ms);
                    row["for"] = json!(format!("{:.1}s", now_ms.saturating_sub(since) as f64 / 1000.0));
                    row
                })
                .collect();
            table(TUNNEL_COLUMNS, &rows)
        }
    }
}

async fn migration(client: &Client, command: &MigrationCommand) -> Result<(Value, View), ClientError> {
    Ok(match command {
        MigrationCommand::List => (client.get("/v1/migrations").await?, View::Migrations),
        MigrationCommand::Show { vni, mac } => {
            (client.get(&format!("/v1/migrations/{}/{}", segment(vni), segment(mac))).await?, View::Migrations)
        }
        MigrationCommand::Event { event, vni, mac, ip, source, destination, port } => {
            let body = json!({"event": event, "vni": vni, "mac": mac, "ip": ip, "source": source,
                "destination": destination, "port": port});
            (client.call(Method::POST, "/v1/migrations", Some(&body)).await?, View::Migrations)
        }
    })
}

/// `ctl upgrade LIBRARY`: starts the upgrade and, while it runs, prints each step
/// as `GET /v1/upgrade` shows it done; then the outcome.
async fn upgrade(client: &Client, library: &Path, raw: bool, out: &mut dyn Write) -> Result<Finished, ClientError> {
    // A bare file name that is not here names a file in the switch's unit directory.
    let in_unit_directory = library.components().count() == 1 && !library.exists();
    let absolute = if in_unit_directory {
        library.to_path_buf()
    } else {
        std::fs::canonicalize(library)
            .map_err(|e| ClientError::Argument(format!("cannot use {} as the unit library: {e}", library.display())))?
    };
    let Some(text) = absolute.to_str() else {
        return Err(ClientError::Argument(format!(
            "{} is not valid UTF-8; the API takes paths as text",
            absolute.display()
        )));
    };
    // Steps are printed only for an upgrade that started after this one was asked for.
    let known = match client.get("/v1/upgrade").await.map(serde_json::from_value::<UpgradeStatus>) {
        Ok(Ok(status)) => status.history.iter().chain(&status.running).map(|r| r.id).max().unwrap_or(0),
        _ => 0,
    };
    let body = json!({ "library": text });
    let post = client.send_json(Method::POST, "/v1/upgrade", Some(&body));
    tokio::pin!(post);
    let mut printed = 0;
    let mut poll = tokio::time::interval(UPGRADE_POLL);
    let reply = loop {
        tokio::select! {
            reply = &mut post => break reply?,
            _ = poll.tick(), if !raw => {
                let Ok(Ok(status)) = client.get("/v1/upgrade").await.map(serde_json::from_value::<UpgradeStatus>) else {
                    continue;
                };
                if let Some(running) = status.running.filter(|r| r.id > known) {
                    let lines: String = running.steps.iter().skip(printed).map(|s| step_line(s) + "\n").collect();
                    printed = printed.max(running.steps.len());
                    write_out(client, out, &lines)?;
                }
            }
        }
    };
    let value = match reply.status {
        422 => client.body_json(&reply)?["record"].take(),
        _ => {
            client.check(&reply)?;
            client.body_json(&reply)?
        }
    };
    let record: UpgradeRecord = serde_json::from_value(value.clone())
        .map_err(|e| client.bad_reply(&reply, format!("the reply is not an upgrade record: {e}")))?;
    let text = if raw {
        serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
    } else {
        let mut text: String = record.steps.iter().skip(printed).map(|s| step_line(s) + "\n").collect();
        text.push_str(&upgrade_summary(&record));
        text
    };
    write_out(client, out, &text)?;
    Ok(if record.outcome == Outcome::Upgraded { Finished::Ok } else { Finished::Failed })
}

/// `step 3/8 switch VM-side ports, then uplink ports, to the intermediate unit ... 0.213 ms  (detail)`
pub fn step_line(step: &StepRecord) -> String {
    // Rollback actions (step 0) are named "roll back: ...".
    let head = match step.step {
        0 => step.name.clone(),
        n => format!("step {n}/{} {}", STEP_NAMES.len(), step.name),
    };
    let ms = step.duration_us as f64 / 1000.0;
    let time = if step.ok { format!("{ms:.3} ms") } else { format!("FAILED after {ms:.3} ms") };
    let detail = if step.detail.is_empty() { String::new() } else { format!("  ({})", step.detail) };
    format!("{head} ... {time}{detail}")
}

fn unit_name(unit: &UnitDescription) -> String {
    format!("{} {}", unit.id, unit.version)
}

/// The outcome line(s) after the steps.
pub fn upgrade_summary(record: &UpgradeRecord) -> String {
    let error = record.error.as_deref().unwrap_or("no reason given");
    let mut text = match record.outcome {
        Outcome::Upgraded => format!(
            "upgraded: {} -> {} in {:.1} ms\n",
            unit_name(&record.from),
            record.to.as_ref().map_or_else(|| "?".to_string(), unit_name),
            record.duration_us as f64 / 1000.0
        ),
        Outcome::RolledBack => format!("rolled back: {error}\n"),
        Outcome::Running => format!("upgrade {} is still running\n", record.id),
    };
    let queued = record.queued_applied + record.queued_failed;
    if queued > 0 {
        text.push_str(&format!(
            "config requests queued during the upgrade: {} applied, {} failed{}\n",
            record.queued_applied,
            record.queued_failed,
            if record.queued_failed > 0 { " (switchyard ctl request ID shows why)" } else { "" }
        ));
    }
    text
}

/// `ctl upgrade --status`: the units bound, the running upgrade, the history.
fn upgrade_status(status: &UpgradeStatus) -> String {
    let unit_row = |side: &str, unit: &UnitDescription| json!({"side": side, "id": unit.id, "version": unit.version, "library": unit.library.as_deref().unwrap_or("built in")});
    let mut text =
        table(&["side", "id", "version", "library"], &[unit_row("vm", &status.vm), unit_row("uplink", &status.uplink)]);
    match &status.running {
        Some(running) => {
            text.push_str(&format!("\nrunning: upgrade {} to {}\n", running.id, running.library));
            for step in &running.steps {
                text.push_str(&format!("  {}\n", step_line(step)));
            }
        }
        None => text.push_str("\nno upgrade running\n"),
    }
    if status.history.is_empty() {
        text.push_str("no upgrade since switchyard started\n");
        return text;
    }
    let rows: Vec<Value> = status
        .history
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "outcome": r.outcome,
                "from": unit_name(&r.from),
                "to": r.to.as_ref().map(unit_name),
                "ms": format!("{:.1}", r.duration_us as f64 / 1000.0),
                "queued": r.queued_applied + r.queued_failed,
                "failed": r.queued_failed,
                "error": r.error,
            })
        })
        .collect();
    text.push_str(&format!(
        "\nhistory\n{}",
        table(&["id", "outcome", "from", "to", "ms", "queued", "failed", "error"], &rows)
    ));
    text
}

/// `ctl request ID`: the fields that apply, one per line.
fn request_status(value: &Value) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for key in ["id", "state", "method", "path", "status", "generation", "error", "field"] {
        if !value[key].is_null() {
            pairs.push((key, cell(&value[key])));
        }
    }
    if let (Some(queued), Some(finished)) = (value["queued_unix_us"].as_u64(), value["finished_unix_us"].as_u64()) {
        pairs.push(("waited", format!("{:.1} ms", finished.saturating_sub(queued) as f64 / 1000.0)));
    }
    if !value["reply"].is_null() {
        pairs.push(("reply", value["reply"].to_string()));
    }
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

fn rows_of(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

/// A table: upper-case headers, columns padded to their widest cell, two spaces apart.
pub fn table(columns: &[&str], rows: &[Value]) -> String {
    let mut lines: Vec<Vec<String>> = vec![columns.iter().map(|c| c.to_uppercase()).collect()];
    lines.extend(rows.iter().map(|row| columns.iter().map(|c| cell(&row[*c])).collect()));
    let widths: Vec<usize> =
        (0..columns.len()).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    let mut text = String::new();
    for line in &lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// One value as a table cell: "-" for null or empty, lists joined with commas.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Free-form JSON (unit, stats, learned): scalars as aligned `dotted.key  value`
/// lines, lists of objects as tables under their key.
fn generic(value: &Value) -> String {
    let mut pairs = Vec::new();
    let mut tables = Vec::new();
    flatten("", value, &mut pairs, &mut tables);
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut text: String = pairs.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect();
    for (key, rows) in tables {
        let mut columns: Vec<&str> = Vec::new();
        for row in &rows {
            for k in row.as_object().into_iter().flat_map(|o| o.keys()) {
                if !columns.contains(&k.as_str()) {
                    columns.push(k);
                }
            }
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{key}\n{}", table(&columns, &rows)));
    }
    text
}

fn flatten(prefix: &str, value: &Value, pairs: &mut Vec<(String, String)>, tables: &mut Vec<(String, Vec<Value>)>) {
    let key = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&key(k), v, pairs, tables);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            tables.push((prefix.to_string(), items.clone()));
        }
        other => pairs.push((if prefix.is_empty() { "value".into() } else { prefix.to_string() }, cell(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            json!({"vni": 100, "name": "blue", "flood_vteps": ["192.0.2.2", "192.0.2.3"]}),
            json!({"vni": 7, "name": "a-much-longer-name", "flood_vteps": []}),
        ];
        assert_eq!(
            table(NETWORK_COLUMNS, &rows),
            "VNI  NAME                FLOOD_VTEPS\n\
             100  blue                192.0.2.2,192.0.2.3\n\
             7    a-much-longer-name  -\n"
        );
        assert_eq!(table(NETWORK_COLUMNS, &[]), "VNI  NAME  FLOOD_VTEPS\n");
    }

    #[test]
    fn generic_json_as_lines_and_tables() {
        let value = json!({
            "vm": {"id": "l2", "version": 3},
            "uplink": {"id": "l2", "version": 2},
            "macs": [{"vni": 1, "mac": "02:00:00:00:00:01"}, {"vni": 2, "mac": "02:00:00:00:00:02", "port": "vm0"}],
        });
        // serde_json keeps object keys sorted.
        assert_eq!(
            generic(&value),
            "uplink.id       l2\nuplink.version  2\nvm.id           l2\nvm.version      3\n\n\
             macs\nMAC                VNI  PORT\n02:00:00:00:00:01  1    -\n02:00:00:00:00:02  2    vm0\n"
        );
    }

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        assert_eq!(segment("02:00:00:00:00:01"), "02:00:00:00:00:01");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(flood_list("10.0.0.2, 10.0.0.3,"), ["10.0.0.2", "10.0.0.3"]);
        assert!(flood_list("").is_empty());
    }
}
