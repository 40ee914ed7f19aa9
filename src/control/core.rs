//! The control core, independent of HTTP: every request is validated against the
//! current snapshot, committed to the config database, and only then applied to
//! the data plane. A request that fails validation, or whose commit fails,
//! changes nothing anywhere.
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;

use super::error::ApiError;
use super::runtime::{PortStatus, Runtime};
use crate::config::PortRole;
use crate::store::rules::{check_endpoint_mac, check_flood_vteps, check_network_name, check_unicast_ipv4, check_vni};
use crate::store::{Change, ConfigSnapshot, Network, PortNetwork, RemoteEndpoint, Store, StoreError, VmEndpoint, Vni};
use crate::wire::MacAddr;

/// `POST /v1/networks`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub vni: i64,
    pub name: String,
    #[serde(default)]
    pub flood_vteps: Vec<String>,
}

/// `PUT /v1/networks/{vni}`: replaces name and flood list. `vni` may be repeated
/// (so a GET body can be sent back) but must match the path.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkReplace {
    #[serde(default)]
    pub vni: Option<i64>,
    pub name: String,
    #[serde(default)]
    pub flood_vteps: Vec<String>,
}

/// `POST /v1/endpoints`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointCreate {
    pub vni: i64,
    pub mac: String,
    #[serde(default)]
    pub ip: Option<String>,
    pub port: String,
}

/// `POST /v1/remotes`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteCreate {
    pub vni: i64,
    pub mac: String,
    #[serde(default)]
    pub ip: Option<String>,
    pub vtep: String,
}

/// `PUT /v1/ports/{name}/network`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortBind {
    pub vni: i64,
}

pub struct Control {
    store: Store,
    runtime: Arc<dyn Runtime>,
    /// Held for a whole change (validate, commit, apply): writers take turns, so
    /// validation sees exactly what the commit will change, and the runtime gets
    /// versions in generation order.
    writer: Mutex<()>,
    /// The committed configuration. Locked only to read or swap the `Arc`, so reads
    /// never wait for a commit's fsync or for the runtime.
    current: Mutex<Arc<ConfigSnapshot>>,
}

impl Control {
    /// Reads the database and applies it to the runtime once, so the data plane
    /// starts from what the database holds.
    pub fn new(store: Store, runtime: Arc<dyn Runtime>) -> Result<Control, StoreError> {
        let snapshot = Arc::new(store.snapshot()?);
        runtime.apply(&[], &snapshot);
        Ok(Control { store, runtime, writer: Mutex::new(()), current: Mutex::new(snapshot) })
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

    /// Validate, commit, update the snapshot, apply: the one path every change takes.
    /// `plan` sees the current snapshot and returns the changes and the reply; an
    /// empty change list (the request asks for what already is) commits nothing.
    fn change<R>(
        &self,
        plan: impl FnOnce(&ConfigSnapshot) -> Result<(Vec<Change>, R), ApiError>,
    ) -> Result<R, ApiError> {
        let _turn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        let (changes, reply) = plan(&current)?;
        if changes.is_empty() {
            return Ok(reply);
        }
        let generation = self.store.commit(&changes).map_err(|e| {
            log::error!("control: commit failed: {e}");
            ApiError::internal(format!("the change was not made: {e}"))
        })?;
        let mut next = ConfigSnapshot::clone(&current);
        next.apply(&changes);
        next.generation = generation;
        let next = Arc::new(next);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = next.clone();
        self.runtime.apply(&changes, &next);
        log::info!("control: generation {generation}: {}", describe(&changes));
        Ok(reply)
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
        self.change(|current| {
            let vni = body_vni(body.vni)?;
            check_network_name(&body.name).map_err(|problem| ApiError::bad_request("name", problem))?;
            let flood_vteps = flood_vteps(&body.flood_vteps)?;
            if current.networks.iter().any(|n| n.vni == vni) {
                return Err(ApiError::conflict("vni", format!("network {vni} already exists")));
            }
            name_is_free(current, &body.name, vni)?;
            let network = Network { vni, name: body.name, flood_vteps };
            Ok((vec![Change::PutNetwork(network.clone())], network))
        })
    }

    pub fn replace_network(&self, vni: &str, body: NetworkReplace) -> Result<Network, ApiError> {
        let vni = path_vni(vni)?;
        self.change(|current| {
            let old = find_network(current, vni)?;
            if let Some(body_vni) = body.vni {
                if body_vni != i64::from(vni) {
                    let problem = format!("the body's vni {body_vni} differs from VNI {vni} in the path");
                    return Err(ApiError::bad_request("vni", problem));
                }
            }
            check_network_name(&body.name).map_err(|problem| ApiError::bad_request("name", problem))?;
            let flood_vteps = flood_vteps(&body.flood_vteps)?;
            name_is_free(current, &body.name, vni)?;
            let network = Network { vni, name: body.name, flood_vteps };
            let changes = if *old == network { vec![] } else { vec![Change::PutNetwork(network.clone())] };
            Ok((changes, network))
        })
    }

    pub fn delete_network(&self, vni: &str) -> Result<(), ApiError> {
        let vni = path_vni(vni)?;
        self.change(|current| {
            find_network(current, vni)?;
            let endpoints = current.endpoints.iter().filter(|e| e.vni == vni).count();
            let remotes = current.remotes.iter().filter(|r| r.vni == vni).count();
            let ports: Vec<&str> = current.ports.iter().filter(|p| p.vni == vni).map(|p| p.port.as_str()).collect();
            if endpoints + remotes + ports.len() > 0 {
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
                let problem = format!("network {vni} is still used by {}; remove them first", join_and(&users));
                return Err(ApiError::conflict("vni", problem));
            }
            Ok((vec![Change::DeleteNetwork { vni }], ()))
        })
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
        let ports = self.runtime.ports();
        self.change(|current| {
            let vni = body_vni(body.vni)?;
            network_exists(current, vni)?;
            let mac = body_mac(&body.mac)?;
            let ip = body.ip.as_deref().map(|ip| body_ipv4("ip", ip)).transpose()?;
            match ports.iter().find(|p| p.name == body.port) {
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
            mac_is_free(current, vni, mac)?;
            let endpoint = VmEndpoint { vni, mac, ip, port: body.port };
            Ok((vec![Change::PutEndpoint(endpoint.clone())], endpoint))
        })
    }

    pub fn delete_endpoint(&self, vni: &str, mac: &str) -> Result<(), ApiError> {
        let (vni, mac) = (path_vni(vni)?, path_mac(mac)?);
        self.change(|current| {
            find_endpoint(current, vni, mac)?;
            Ok((vec![Change::DeleteEndpoint { vni, mac }], ()))
        })
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
        self.change(|current| {
            let vni = body_vni(body.vni)?;
            network_exists(current, vni)?;
            let mac = body_mac(&body.mac)?;
            let ip = body.ip.as_deref().map(|ip| body_ipv4("ip", ip)).transpose()?;
            let vtep = body_ipv4("vtep", &body.vtep)?;
            mac_is_free(current, vni, mac)?;
            let remote = RemoteEndpoint { vni, mac, ip, vtep };
            Ok((vec![Change::PutRemote(remote.clone())], remote))
        })
    }

    pub fn delete_remote(&self, vni: &str, mac: &str) -> Result<(), ApiError> {
        let (vni, mac) = (path_vni(vni)?, path_mac(mac)?);
        self.change(|current| {
            find_remote(current, vni, mac)?;
            Ok((vec![Change::DeleteRemote { vni, mac }], ()))
        })
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
        let port = self.runtime.ports().into_iter().find(|p| p.name == name).ok_or_else(|| no_port(name))?;
        self.change(|current| {
            if port.role != PortRole::Vm {
                let problem = format!("port {name} has role {}; only vm-role ports join a network", port.role);
                return Err(ApiError::bad_request("name", problem));
            }
            let vni = body_vni(body.vni)?;
            network_exists(current, vni)?;
            let binding = PortNetwork { port: name.to_string(), vni };
            let changes =
                if current.ports.contains(&binding) { vec![] } else { vec![Change::PutPortNetwork(binding.clone())] };
            Ok((changes, binding))
        })
    }

    pub fn unbind_port(&self, name: &str) -> Result<(), ApiError> {
        let exists = self.runtime.ports().iter().any(|p| p.name == name);
        self.change(|current| {
            if !current.ports.iter().any(|p| p.port == name) {
                return Err(if exists {
                    ApiError::not_found("name", format!("port {name} is not bound to a network"))
                } else {
                    no_port(name)
                });
            }
            Ok((vec![Change::DeletePortNetwork { port: name.to_string() }], ()))
        })
    }
}

fn no_port(name: &str) -> ApiError {
    ApiError::not_found("name", format!("there is no port named {name:?}"))
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// "a", "a and b", "a, b and c".
fn join_and(items: &[String]) -> String {
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
    };
    changes.iter().map(one).collect::<Vec<_>>().join(", ")
}

fn path_vni(text: &str) -> Result<Vni, ApiError> {
    let value: i64 = text
        .parse()
        .map_err(|_| ApiError::bad_request("vni", format!("{text:?} is not a VNI (an integer in 1..=16777215)")))?;
    check_vni(value).map_err(|problem| ApiError::bad_request("vni", format!("VNI {problem}")))
}

fn path_mac(text: &str) -> Result<MacAddr, ApiError> {
    text.parse().map_err(|e| ApiError::bad_request("mac", format!("{text:?} is not a MAC address: {e}")))
}

fn body_vni(vni: i64) -> Result<Vni, ApiError> {
    check_vni(vni).map_err(|problem| ApiError::bad_request("vni", format!("VNI {problem}")))
}

fn body_mac(text: &str) -> Result<MacAddr, ApiError> {
    let mac = path_mac(text)?;
    check_endpoint_mac(mac).map_err(|problem| ApiError::bad_request("mac", problem))?;
    Ok(mac)
}

fn parse_ipv4(field: &str, text: &str) -> Result<Ipv4Addr, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(field, format!("{text:?} is not an IPv4 address such as 192.0.2.1")))
}

fn body_ipv4(field: &str, text: &str) -> Result<Ipv4Addr, ApiError> {
    let ip = parse_ipv4(field, text)?;
    check_unicast_ipv4(ip).map_err(|problem| ApiError::bad_request(field, problem))?;
    Ok(ip)
}

fn flood_vteps(texts: &[String]) -> Result<Vec<Ipv4Addr>, ApiError> {
    let vteps = texts.iter().map(|t| parse_ipv4("flood_vteps", t)).collect::<Result<Vec<_>, _>>()?;
    check_flood_vteps(&vteps).map_err(|(_, problem)| ApiError::bad_request("flood_vteps", problem))?;
    Ok(vteps)
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

fn find_remote(snapshot: &ConfigSnapshot, vni: Vni, mac: MacAddr) -> Result<&RemoteEndpoint, ApiError> {
    snapshot
        .remotes
        .iter()
        .find(|r| r.vni == vni && r.mac == mac)
        .ok_or_else(|| ApiError::not_found("mac", format!("there is no remote endpoint with MAC {mac} in VNI {vni}")))
}
