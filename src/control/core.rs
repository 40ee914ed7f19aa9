//! The control core, independent of HTTP: every request is validated against the
//! current snapshot, committed to the config database, and only then applied to
//! the data plane. A request that fails validation, or whose commit fails,
//! changes nothing anywhere. Every change, live or replayed from the queue of an
//! upgrade (`queue.rs`), goes through `Control::execute`.
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::migration::Migrations;
use super::request::ConfigRequest;
use super::runtime::{PortStatus, Runtime};
use super::serve::ControlError;
use super::storage::StorageSetup;
use crate::config::{PortRole, StorageConfig};
use crate::model::rules::{
    check_address_migration, check_address_migration_ips, check_endpoint_mac, check_endpoint_port, check_flood_vteps,
    check_network_name, check_port_binding, check_remote_vtep, check_unicast_ipv4, check_vni,
};
use crate::configdb::{RequestOutcome, Store, StoreError};
use crate::model::{AddressMigration, AddressMigrationSource, Change, ConfigSnapshot, Network, PortNetwork, RemoteEndpoint, RemoteSource, VmEndpoint, Vni};
use crate::wire::MacAddr;

/// `POST /v1/networks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub vni: i64,
    pub name: String,
    #[serde(default)]
    pub flood_vteps: Vec<String>,
}

/// `PUT /v1/networks/{vni}`: replaces name and flood list. `vni` may be repeated
/// (so a GET body can be sent back) but must match the path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkReplace {
    #[serde(default)]
    pub vni: Option<i64>,
    pub name: String,
    #[serde(default)]
    pub flood_vteps: Vec<String>,
}

/// `POST /v1/endpoints`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointCreate {
    pub vni: i64,
    pub mac: String,
    #[serde(default)]
    pub ip: Option<String>,
    pub port: String,
}

/// `POST /v1/remotes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteCreate {
    pub vni: i64,
    pub mac: String,
    #[serde(default)]
    pub ip: Option<String>,
    pub vtep: String,
}

/// `PUT /v1/ports/{name}/network`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortBind {
    pub vni: i64,
}

/// `POST /v1/address-migrations`: the network control system's notification
/// that the VM on `port` moved from `primary_ip` to `post_migration_ip` (or,
/// without it, that `primary_ip` is registered for that VM, whose report will
/// say where it lives).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressMigrationNotify {
    pub vni: i64,
    pub primary_ip: String,
    #[serde(default)]
    pub post_migration_ip: Option<String>,
    pub port: String,
}

/// A change that went through: the status and body the API answers with, and
/// the generation it left (the same one when it asked for what already was).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub status: u16,
    pub generation: u64,
    /// The reply body as JSON text (kept as text so the API sends the fields in
    /// the records' order); `None` for 204.
    pub body: Option<String>,
}

impl Applied {
    /// The reply as the record it is (`()` for a 204).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_str(self.body.as_deref().unwrap_or("null"))
            .map_err(|e| ApiError::internal(format!("the reply could not be read back: {e}")))
    }
}

/// A request that passed every check that does not depend on the configuration
/// (ids, ranges, addresses, the switch's port list): what it asks for, typed.
/// What remains is checked against the snapshot when it is applied.
pub(super) enum Checked {
    CreateNetwork(Network),
    ReplaceNetwork(Network),
    DeleteNetwork(Vni),
    AddEndpoint(VmEndpoint),
    DeleteEndpoint(Vni, MacAddr),
    AddRemote(RemoteEndpoint),
    DeleteRemote(Vni, MacAddr),
    BindPort(PortNetwork),
    UnbindPort(String),
    NotifyAddressMigration(AddressMigration),
    DeleteAddressMigration(Vni, Ipv4Addr),
}

pub struct Control {
    pub(super) store: Store,
    pub(super) runtime: Arc<dyn Runtime>,
    /// Whether change requests are queued (an upgrade runs), and the turn every
    /// change request of the API takes: held while one is applied or queued, and
    /// by `resume` for the whole replay, so no request overtakes the queue.
    pub(super) paused: Mutex<bool>,
    /// Held for a whole change (validate, commit, apply): writers take turns, so
    /// validation sees exactly what the commit will change, and the runtime gets
    /// versions in generation order.
    pub(super) writer: Mutex<()>,
    /// The committed configuration. Locked only to read or swap the `Arc`, so reads
    /// never wait for a commit's fsync or for the runtime.
    current: Mutex<Arc<ConfigSnapshot>>,
    /// The migration information table (`migration.rs`).
    pub(super) migrations: Migrations,
    /// The last VM reports and what became of them (`address_migration.rs`).
    pub(super) address_reports: Mutex<std::collections::VecDeque<super::address_migration::AddressReportRecord>>,
    /// When a refused report was last logged.
    pub(super) report_warned: Mutex<Option<std::time::Instant>>,
    /// `[storage]`: the images directory and the record of image uses; `None`
    /// without it (the storage API refuses).
    pub(super) storage: Option<StorageSetup>,
}

impl Control {
    /// Reads the database and applies it to the runtime once, so the data plane
    /// starts from what the database holds; then applies, in order, any request
    /// still queued because the previous run stopped during an upgrade.
    pub fn new(store: Store, runtime: Arc<dyn Runtime>) -> Result<Control, StoreError> {
        Control::open(store, runtime, None)
    }

    /// `new`, also serving storage users and images: first the images directory
    /// is created and brought to what the database holds (`ImageFiles::reconcile`),
    /// then the runtime gets the storage catalog with the configuration.
    pub fn with_storage(store: Store, runtime: Arc<dyn Runtime>, config: StorageConfig) -> Result<Control, ControlError> {
        let snapshot = store.snapshot()?;
        let uses = runtime.image_use().unwrap_or_default();
        let storage = StorageSetup::open(config, uses, &snapshot, &store).map_err(ControlError::Storage)?;
        Ok(Control::open(store, runtime, Some(storage))?)
    }

    fn open(store: Store, runtime: Arc<dyn Runtime>, storage: Option<StorageSetup>) -> Result<Control, StoreError> {
        let snapshot = Arc::new(store.snapshot()?);
        runtime.apply(&[], &snapshot);
        if let Some(storage) = &storage {
            runtime.apply_storage(storage.catalog(&snapshot));
        }
        let migrations = Migrations::new(runtime.migration_plane());
        let control = Control {
            store,
            runtime,
            paused: Mutex::new(false),
            writer: Mutex::new(()),
            current: Mutex::new(snapshot),
            migrations,
            address_reports: Mutex::default(),
            report_warned: Mutex::default(),
            storage,
        };
        control.apply_left_over_queue()?;
        Ok(control)
    }

    pub fn snapshot(&self) -> Arc<ConfigSnapshot> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn runtime(&self) -> &dyn Runtime {
        &*self.runtime
    }

    /// Validates, commits and applies one change request now, whether or not
    /// changes are paused (the API goes through `submit`, which queues them then).
    pub fn execute(&self, request: ConfigRequest) -> Result<Applied, ApiError> {
        self.execute_queued(request, None)
    }

    /// `execute`; for a request replayed from the queue (`queued` is its id), the
    /// outcome is recorded in the transaction of its change.
    pub(super) fn execute_queued(&self, request: ConfigRequest, queued: Option<u64>) -> Result<Applied, ApiError> {
        let status = request.success_status();
        match self.check(&request)? {
            Checked::CreateNetwork(network) => self.change(queued, status, |current| {
                if current.networks.iter().any(|n| n.vni == network.vni) {
                    return Err(ApiError::conflict("vni", format!("network {} already exists", network.vni)));
                }
                name_is_free(current, &network.name, network.vni)?;
                Ok((vec![Change::PutNetwork(network.clone())], network))
            }),
            Checked::ReplaceNetwork(network) => self.change(queued, status, |current| {
                let old = find_network(current, network.vni)?;
                name_is_free(current, &network.name, network.vni)?;
                let changes = if *old == network { vec![] } else { vec![Change::PutNetwork(network.clone())] };
                Ok((changes, network))
            }),
            Checked::DeleteNetwork(vni) => self.change(queued, status, |current| {
                find_network(current, vni)?;
                network_is_unused(current, vni)?;
                Ok((vec![Change::DeleteNetwork { vni }], ()))
            }),
            Checked::AddEndpoint(endpoint) => self.change(queued, status, |current| {
                network_exists(current, endpoint.vni)?;
                mac_is_free(current, endpoint.vni, endpoint.mac)?;
                check_endpoint_port(current, &endpoint).map_err(|problem| ApiError::conflict("port", problem))?;
                Ok((vec![Change::PutEndpoint(endpoint.clone())], endpoint))
            }),
            Checked::DeleteEndpoint(vni, mac) => self.change(queued, status, |current| {
                find_endpoint(current, vni, mac)?;
                Ok((vec![Change::DeleteEndpoint { vni, mac }], ()))
            }),
            Checked::AddRemote(remote) => self.change(queued, status, |current| {
                network_exists(current, remote.vni)?;
                mac_is_free(current, remote.vni, remote.mac)?;
                Ok((vec![Change::PutRemote(remote.clone())], remote))
            }),
            Checked::DeleteRemote(vni, mac) => self.change(queued, status, |current| {
                find_remote(current, vni, mac)?;
                Ok((vec![Change::DeleteRemote { vni, mac }], ()))
            }),
            Checked::BindPort(binding) => self.change(queued, status, |current| {
                network_exists(current, binding.vni)?;
                check_port_binding(current, &binding).map_err(|problem| ApiError::conflict("vni", problem))?;
                let changes = if current.ports.contains(&binding) {
                    vec![]
                } else {
                    vec![Change::PutPortNetwork(binding.clone())]
                };
                Ok((changes, binding))
            }),
            Checked::UnbindPort(name) => {
                let exists = self.runtime.ports().iter().any(|p| p.name == name);
                self.change(queued, status, |current| {
                    if !current.ports.iter().any(|p| p.port == name) {
                        return Err(if exists {
                            ApiError::not_found("name", format!("port {name} is not bound to a network"))
                        } else {
                            no_port(&name)
                        });
                    }
                    Ok((vec![Change::DeletePortNetwork { port: name.clone() }], ()))
                })
            }
            Checked::NotifyAddressMigration(entry) => self.change_with_status(queued, |current| {
                network_exists(current, entry.vni)?;
                check_address_migration(current, &entry).map_err(|p| {
                    if p.conflict {
                        ApiError::conflict(p.field, p.problem)
                    } else {
                        ApiError::bad_request(p.field, p.problem)
                    }
                })?;
                let old = current.address_migrations.iter().find(|m| m.vni == entry.vni && m.primary_ip == entry.primary_ip);
                Ok(match old {
                    Some(old) if *old == entry => (vec![], entry, 200),
                    Some(_) => (vec![Change::PutAddressMigration(entry.clone())], entry, 200),
                    None => (vec![Change::PutAddressMigration(entry.clone())], entry, 201),
                })
            }),
            Checked::DeleteAddressMigration(vni, primary_ip) => self.change(queued, status, |current| {
                find_address_migration(current, vni, primary_ip)?;
                Ok((vec![Change::DeleteAddressMigration { vni, primary_ip }], ()))
            }),
        }
    }

    /// The checks that need no configuration, in the order a client would fix
    /// them: `submit` runs them at once on a request it queues, so a malformed one
    /// is refused then and not when its turn comes.
    pub(super) fn check(&self, request: &ConfigRequest) -> Result<Checked, ApiError> {
        Ok(match request {
            ConfigRequest::CreateNetwork(body) => Checked::CreateNetwork(Network {
                vni: body_vni(body.vni)?,
                name: network_name(&body.name)?,
                flood_vteps: self.flood_vteps(&body.flood_vteps)?,
            }),
            ConfigRequest::ReplaceNetwork { vni, body } => {
                let vni = path_vni(vni)?;
                if let Some(body_vni) = body.vni {
                    if body_vni != i64::from(vni) {
                        let problem = format!("the body's vni {body_vni} differs from VNI {vni} in the path");
                        return Err(ApiError::bad_request("vni", problem));
                    }
                }
                Checked::ReplaceNetwork(Network {
                    vni,
                    name: network_name(&body.name)?,
                    flood_vteps: self.flood_vteps(&body.flood_vteps)?,
                })
            }
            ConfigRequest::DeleteNetwork { vni } => Checked::DeleteNetwork(path_vni(vni)?),
            ConfigRequest::AddEndpoint(body) => {
                let vni = body_vni(body.vni)?;
                let mac = body_mac(&body.mac)?;
                let ip = body.ip.as_deref().map(|ip| body_ipv4("ip", ip)).transpose()?;
                match self.runtime.ports().iter().find(|p| p.name == body.port) {
                    None => {
                        return Err(ApiError::bad_request("port", format!("there is no port named {:?}", body.port)));
                    }
                    Some(port) if port.role != PortRole::Vm => {
                        let problem =
                            format!("port {} has role {}; VM endpoints attach to vm-role ports", port.name, port.role);
                        return Err(ApiError::bad_request("port", problem));
                    }
                    Some(_) => {}
                }
                Checked::AddEndpoint(VmEndpoint { vni, mac, ip, port: body.port.clone() })
            }
            ConfigRequest::DeleteEndpoint { vni, mac } => Checked::DeleteEndpoint(path_vni(vni)?, path_mac(mac)?),
            ConfigRequest::AddRemote(body) => {
                let vni = body_vni(body.vni)?;
                let mac = body_mac(&body.mac)?;
                let ip = body.ip.as_deref().map(|ip| body_ipv4("ip", ip)).transpose()?;
                let vtep = body_ipv4("vtep", &body.vtep)?;
                check_remote_vtep(vtep, self.runtime.local_vtep()).map_err(|problem| ApiError::bad_request("vtep", problem))?;
                Checked::AddRemote(RemoteEndpoint { vni, mac, ip, vtep, source: RemoteSource::Operator })
            }
            ConfigRequest::DeleteRemote { vni, mac } => Checked::DeleteRemote(path_vni(vni)?, path_mac(mac)?),
            ConfigRequest::BindPort { name, body } => {
                let port = self.runtime.ports().into_iter().find(|p| p.name == *name).ok_or_else(|| no_port(name))?;
                if port.role != PortRole::Vm {
                    let problem = format!("port {name} has role {}; only vm-role ports join a network", port.role);
                    return Err(ApiError::bad_request("name", problem));
                }
                Checked::BindPort(PortNetwork { port: name.clone(), vni: body_vni(body.vni)? })
            }
            // A binding may outlive its port in the TOML; unbinding it stays possible.
            ConfigRequest::UnbindPort { name } => Checked::UnbindPort(name.clone()),
            ConfigRequest::NotifyAddressMigration(body) => {
                let vni = body_vni(body.vni)?;
                let primary_ip = parse_ipv4("primary_ip", &body.primary_ip)?;
                let post_migration_ip =
                    body.post_migration_ip.as_deref().map(|ip| parse_ipv4("post_migration_ip", ip)).transpose()?;
                check_address_migration_ips(primary_ip, post_migration_ip)
                    .map_err(|(field, problem)| ApiError::bad_request(field, problem))?;
                match self.runtime.ports().iter().find(|p| p.name == body.port) {
                    None => {
                        return Err(ApiError::bad_request("port", format!("there is no port named {:?}", body.port)));
                    }
                    Some(port) if port.role != PortRole::Vm => {
                        let problem =
                            format!("port {} has role {}; address migrations are for vm-role ports", port.name, port.role);
                        return Err(ApiError::bad_request("port", problem));
                    }
                    Some(_) => {}
                }
                Checked::NotifyAddressMigration(AddressMigration {
                    vni,
                    primary_ip,
                    post_migration_ip,
                    port: body.port.clone(),
                    source: AddressMigrationSource::Notification,
                })
            }
            ConfigRequest::DeleteAddressMigration { vni, primary_ip } => {
                Checked::DeleteAddressMigration(path_vni(vni)?, path_ipv4("primary_ip", primary_ip)?)
            }
        })
    }

    /// Commits and applies the changes `plan` makes of the current configuration
    /// for the switch itself (a migration event, the bulletin board: not a
    /// request, so never queued): while an upgrade runs it waits for the end,
    /// since units are compared with the database then. Returns the generation.
    pub(super) fn commit_unqueued(
        &self,
        plan: impl FnOnce(&ConfigSnapshot) -> Result<Vec<Change>, ApiError>,
    ) -> Result<u64, ApiError> {
        const UPGRADE_WAIT: Duration = Duration::from_secs(10);
        let started = Instant::now();
        loop {
            let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
            if !*paused {
                let applied = self.change(None, 200, |current| plan(current).map(|changes| (changes, ())))?;
                return Ok(applied.generation);
            }
            drop(paused);
            if started.elapsed() >= UPGRADE_WAIT {
                return Err(ApiError::conflict("event", "an upgrade of the switching unit has run for 10 s; try again"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Validate, commit, update the snapshot, apply: the one path every change takes.
    /// `plan` sees the current snapshot and returns the changes and the reply; an
    /// empty change list (the request asks for what already is) commits nothing
    /// (for a queued request, only its outcome).
    fn change<R: Serialize>(
        &self,
        queued: Option<u64>,
        status: u16,
        plan: impl FnOnce(&ConfigSnapshot) -> Result<(Vec<Change>, R), ApiError>,
    ) -> Result<Applied, ApiError> {
        self.change_with_status(queued, |current| plan(current).map(|(changes, reply)| (changes, reply, status)))
    }

    /// `change` for a plan that also decides the success status (a notification
    /// answers 201 when it created a record, 200 when it replaced one).
    pub(super) fn change_with_status<R: Serialize>(
        &self,
        queued: Option<u64>,
        plan: impl FnOnce(&ConfigSnapshot) -> Result<(Vec<Change>, R, u16), ApiError>,
    ) -> Result<Applied, ApiError> {
        let _turn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        let (changes, reply, status) = plan(&current)?;
        let encode_error = |e: serde_json::Error| ApiError::internal(format!("the reply could not be encoded: {e}"));
        let body = if status == 204 { None } else { Some(serde_json::to_string(&reply).map_err(encode_error)?) };
        let finished = match queued {
            Some(id) => {
                let reply = if status == 204 {
                    serde_json::Value::Null
                } else {
                    serde_json::to_value(&reply).map_err(encode_error)?
                };
                Some((id, RequestOutcome::Applied { status, reply }))
            }
            None => None,
        };
        if changes.is_empty() && finished.is_none() {
            return Ok(Applied { status, generation: current.generation, body });
        }
        let generation = self.store.commit_and_finish(&changes, finished).map_err(|e| {
            log::error!("control: commit failed: {e}");
            ApiError::internal(format!("the change was not made: {e}"))
        })?;
        if changes.is_empty() {
            return Ok(Applied { status, generation, body });
        }
        self.publish(&current, &changes, generation);
        Ok(Applied { status, generation, body })
    }

    /// After a commit, under the writer's turn: swaps in the snapshot `changes`
    /// made of `current` at `generation` and hands it to the runtime (with the
    /// storage catalog when storage changed).
    pub(super) fn publish(&self, current: &ConfigSnapshot, changes: &[Change], generation: u64) -> Arc<ConfigSnapshot> {
        let mut next = ConfigSnapshot::clone(current);
        next.apply(changes);
        next.generation = generation;
        let next = Arc::new(next);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = next.clone();
        self.runtime.apply(changes, &next);
        if let Some(storage) = self.storage.as_ref().filter(|_| changes.iter().any(Change::is_storage)) {
            self.runtime.apply_storage(storage.catalog(&next));
        }
        log::info!("control: generation {generation}: {}", describe(changes));
        next
    }

    // Networks.

    pub fn networks(&self) -> Vec<Network> {
        self.snapshot().networks.clone()
    }

    pub fn network(&self, vni: &str) -> Result<Network, ApiError> {
        let vni = path_vni(vni)?;
        find_network(&self.snapshot(), vni).cloned()
    }

    pub fn create_network(&self, body: NetworkCreate) -> Result<Network, ApiError> {
        self.execute(ConfigRequest::CreateNetwork(body))?.decode()
    }

    pub fn replace_network(&self, vni: &str, body: NetworkReplace) -> Result<Network, ApiError> {
        self.execute(ConfigRequest::ReplaceNetwork { vni: vni.to_string(), body })?.decode()
    }

    pub fn delete_network(&self, vni: &str) -> Result<(), ApiError> {
        self.execute(ConfigRequest::DeleteNetwork { vni: vni.to_string() })?.decode()
    }

    // VM endpoints.

    pub fn endpoints(&self) -> Vec<VmEndpoint> {
        self.snapshot().endpoints.clone()
    }

    pub fn endpoint(&self, vni: &str, mac: &str) -> Result<VmEndpoint, ApiError> {
        let (vni, mac) = (path_vni(vni)?, path_mac(mac)?);
        find_endpoint(&self.snapshot(), vni, mac).cloned()
    }

    pub fn add_endpoint(&self, body: EndpointCreate) -> Result<VmEndpoint, ApiError> {
        self.execute(ConfigRequest::AddEndpoint(body))?.decode()
    }

    pub fn delete_endpoint(&self, vni: &str, mac: &str) -> Result<(), ApiError> {
        self.execute(ConfigRequest::DeleteEndpoint { vni: vni.to_string(), mac: mac.to_string() })?.decode()
    }

    // Remote endpoints.

    pub fn remotes(&self) -> Vec<RemoteEndpoint> {
        self.snapshot().remotes.clone()
    }

    pub fn remote(&self, vni: &str, mac: &str) -> Result<RemoteEndpoint, ApiError> {
        let (vni, mac) = (path_vni(vni)?, path_mac(mac)?);
        find_remote(&self.snapshot(), vni, mac).cloned()
    }

    pub fn add_remote(&self, body: RemoteCreate) -> Result<RemoteEndpoint, ApiError> {
        self.execute(ConfigRequest::AddRemote(body))?.decode()
    }

    pub fn delete_remote(&self, vni: &str, mac: &str) -> Result<(), ApiError> {
        self.execute(ConfigRequest::DeleteRemote { vni: vni.to_string(), mac: mac.to_string() })?.decode()
    }

    // Ports.

    pub fn ports(&self) -> Vec<PortStatus> {
        let snapshot = self.snapshot();
        let bound = |name: &str| snapshot.ports.iter().find(|p| p.port == name).map(|p| p.vni);
        self.runtime.ports().into_iter().map(|port| PortStatus { vni: bound(&port.name), port }).collect()
    }

    pub fn port(&self, name: &str) -> Result<PortStatus, ApiError> {
        self.ports().into_iter().find(|p| p.port.name == name).ok_or_else(|| no_port(name))
    }

    /// Binds a VM-role port to a network (or moves it to another one).
    pub fn bind_port(&self, name: &str, body: PortBind) -> Result<PortNetwork, ApiError> {
        self.execute(ConfigRequest::BindPort { name: name.to_string(), body })?.decode()
    }

    pub fn unbind_port(&self, name: &str) -> Result<(), ApiError> {
        self.execute(ConfigRequest::UnbindPort { name: name.to_string() })?.decode()
    }

    // Address migrations.

    pub fn address_migrations(&self) -> Vec<AddressMigration> {
        self.snapshot().address_migrations.clone()
    }

    pub fn address_migration(&self, vni: &str, primary_ip: &str) -> Result<AddressMigration, ApiError> {
        let (vni, primary_ip) = (path_vni(vni)?, path_ipv4("primary_ip", primary_ip)?);
        find_address_migration(&self.snapshot(), vni, primary_ip).cloned()
    }

    pub fn notify_address_migration(&self, body: AddressMigrationNotify) -> Result<AddressMigration, ApiError> {
        self.execute(ConfigRequest::NotifyAddressMigration(body))?.decode()
    }

    pub fn delete_address_migration(&self, vni: &str, primary_ip: &str) -> Result<(), ApiError> {
        let request = ConfigRequest::DeleteAddressMigration { vni: vni.to_string(), primary_ip: primary_ip.to_string() };
        self.execute(request)?.decode()
    }
}

/// Refuses to delete a network that endpoints, remotes or ports still use, naming them.
fn network_is_unused(current: &ConfigSnapshot, vni: Vni) -> Result<(), ApiError> {
    let endpoints = current.endpoints.iter().filter(|e| e.vni == vni).count();
    let remotes = current.remotes.iter().filter(|r| r.vni == vni).count();
    let ports: Vec<&str> = current.ports.iter().filter(|p| p.vni == vni).map(|p| p.port.as_str()).collect();
    let migrations = current.address_migrations.iter().filter(|m| m.vni == vni).count();
    if endpoints + remotes + ports.len() + migrations == 0 {
        return Ok(());
    }
    let mut users = Vec::new();
    if endpoints > 0 {
        users.push(count(endpoints, "VM endpoint"));
    }
    if remotes > 0 {
        users.push(count(remotes, "remote endpoint"));
    }
    if !ports.is_empty() {
        users.push(format!("{} ({})", count(ports.len(), "port"), ports.join(", ")));
    }
    if migrations > 0 {
        users.push(count(migrations, "address migration"));
    }
    let problem = format!("network {vni} is still used by {}; remove them first", join_and(&users));
    Err(ApiError::conflict("vni", problem))
}

fn network_name(name: &str) -> Result<String, ApiError> {
    check_network_name(name).map_err(|problem| ApiError::bad_request("name", problem))?;
    Ok(name.to_string())
}

fn no_port(name: &str) -> ApiError {
    ApiError::not_found("name", format!("there is no port named {name:?}"))
}

pub(super) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// "a", "a and b", "a, b and c".
pub(super) fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn describe(changes: &[Change]) -> String {
    let one = |c: &Change| match c {
        Change::PutNetwork(n) => format!("put network {}", n.vni),
        Change::DeleteNetwork { vni } => format!("delete network {vni}"),
        Change::PutEndpoint(e) => format!("put endpoint {}/{}", e.vni, e.mac),
        Change::DeleteEndpoint { vni, mac } => format!("delete endpoint {vni}/{mac}"),
        Change::PutRemote(r) => format!("put remote {}/{}", r.vni, r.mac),
        Change::DeleteRemote { vni, mac } => format!("delete remote {vni}/{mac}"),
        Change::PutPortNetwork(p) => format!("bind port {} to {}", p.port, p.vni),
        Change::DeletePortNetwork { port } => format!("unbind port {port}"),
        Change::PutAddressMigration(m) => match m.post_migration_ip {
            Some(post) => format!("address migration {}/{} -> {post} on {} ({:?})", m.vni, m.primary_ip, m.port, m.source),
            None => format!("address migration {}/{} registered for {}", m.vni, m.primary_ip, m.port),
        },
        Change::DeleteAddressMigration { vni, primary_ip } => format!("delete address migration {vni}/{primary_ip}"),
        Change::PutStorageUser(u) => format!("put storage user {} (id {}, ips {:?}, quota {})", u.name, u.id, u.ips, u.quota_bytes),
        Change::DeleteStorageUser { name } => format!("delete storage user {name}"),
        Change::PutStorageImage(i) => format!(
            "put storage image {} (id {}, owner {}, {} bytes{})",
            i.name,
            i.id,
            i.owner,
            i.size,
            if i.read_only { ", read-only" } else { "" }
        ),
        Change::DeleteStorageImage { name } => format!("delete storage image {name}"),
    };
    changes.iter().map(one).collect::<Vec<_>>().join(", ")
}

pub(super) fn path_vni(text: &str) -> Result<Vni, ApiError> {
    let value: i64 = text
        .parse()
        .map_err(|_| ApiError::bad_request("vni", format!("{text:?} is not a VNI (an integer in 1..=16777215)")))?;
    check_vni(value).map_err(|problem| ApiError::bad_request("vni", format!("VNI {problem}")))
}

pub(super) fn path_mac(text: &str) -> Result<MacAddr, ApiError> {
    text.parse().map_err(|e| ApiError::bad_request("mac", format!("{text:?} is not a MAC address: {e}")))
}

pub(super) fn body_vni(vni: i64) -> Result<Vni, ApiError> {
    check_vni(vni).map_err(|problem| ApiError::bad_request("vni", format!("VNI {problem}")))
}

pub(super) fn body_mac(text: &str) -> Result<MacAddr, ApiError> {
    let mac = path_mac(text)?;
    check_endpoint_mac(mac).map_err(|problem| ApiError::bad_request("mac", problem))?;
    Ok(mac)
}

pub(super) fn parse_ipv4(field: &str, text: &str) -> Result<Ipv4Addr, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(field, format!("{text:?} is not an IPv4 address such as 192.0.2.1")))
}

fn path_ipv4(field: &str, text: &str) -> Result<Ipv4Addr, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(field, format!("{text:?} is not an IPv4 address such as 10.1.0.5")))
}

pub(super) fn body_ipv4(field: &str, text: &str) -> Result<Ipv4Addr, ApiError> {
    let ip = parse_ipv4(field, text)?;
    check_unicast_ipv4(ip).map_err(|problem| ApiError::bad_request(field, problem))?;
    Ok(ip)
}

impl Control {
    /// A flood list from a request: unicast addresses, none twice, never the local VTEP.
    fn flood_vteps(&self, texts: &[String]) -> Result<Vec<Ipv4Addr>, ApiError> {
        let vteps = texts.iter().map(|t| parse_ipv4("flood_vteps", t)).collect::<Result<Vec<_>, _>>()?;
        check_flood_vteps(&vteps).map_err(|(_, problem)| ApiError::bad_request("flood_vteps", problem))?;
        let local = self.runtime.local_vtep();
        for &vtep in &vteps {
            check_remote_vtep(vtep, local).map_err(|problem| ApiError::bad_request("flood_vteps", problem))?;
        }
        Ok(vteps)
    }
}

fn find_network(snapshot: &ConfigSnapshot, vni: Vni) -> Result<&Network, ApiError> {
    snapshot
        .networks
        .iter()
        .find(|n| n.vni == vni)
        .ok_or_else(|| ApiError::not_found("vni", format!("there is no network with VNI {vni}")))
}

/// A VNI named in a body must be a network already (400: the request is invalid).
fn network_exists(snapshot: &ConfigSnapshot, vni: Vni) -> Result<(), ApiError> {
    if snapshot.networks.iter().any(|n| n.vni == vni) {
        Ok(())
    } else {
        Err(ApiError::bad_request("vni", format!("there is no network with VNI {vni}; create it first")))
    }
}

fn name_is_free(snapshot: &ConfigSnapshot, name: &str, vni: Vni) -> Result<(), ApiError> {
    match snapshot.networks.iter().find(|n| n.name == name && n.vni != vni) {
        Some(other) => {
            Err(ApiError::conflict("name", format!("the name {name:?} is already used by network {}", other.vni)))
        }
        None => Ok(()),
    }
}

/// A MAC is either a local VM endpoint or a remote one in a VNI, never both or twice.
fn mac_is_free(snapshot: &ConfigSnapshot, vni: Vni, mac: MacAddr) -> Result<(), ApiError> {
    if snapshot.endpoints.iter().any(|e| e.vni == vni && e.mac == mac) {
        return Err(ApiError::conflict("mac", format!("MAC {mac} in VNI {vni} is already a VM endpoint")));
    }
    if snapshot.remotes.iter().any(|r| r.vni == vni && r.mac == mac) {
        return Err(ApiError::conflict("mac", format!("MAC {mac} in VNI {vni} is already a remote endpoint")));
    }
    Ok(())
}

fn find_endpoint(snapshot: &ConfigSnapshot, vni: Vni, mac: MacAddr) -> Result<&VmEndpoint, ApiError> {
    snapshot
        .endpoints
        .iter()
        .find(|e| e.vni == vni && e.mac == mac)
        .ok_or_else(|| ApiError::not_found("mac", format!("there is no VM endpoint with MAC {mac} in VNI {vni}")))
}

pub(super) fn find_address_migration(
    snapshot: &ConfigSnapshot,
    vni: Vni,
    primary_ip: Ipv4Addr,
) -> Result<&AddressMigration, ApiError> {
    snapshot.address_migrations.iter().find(|m| m.vni == vni && m.primary_ip == primary_ip).ok_or_else(|| {
        ApiError::not_found("primary_ip", format!("there is no address migration of {primary_ip} in VNI {vni}"))
    })
}

fn find_remote(snapshot: &ConfigSnapshot, vni: Vni, mac: MacAddr) -> Result<&RemoteEndpoint, ApiError> {
    snapshot
        .remotes
        .iter()
        .find(|r| r.vni == vni && r.mac == mac)
        .ok_or_else(|| ApiError::not_found("mac", format!("there is no remote endpoint with MAC {mac} in VNI {vni}")))
}
