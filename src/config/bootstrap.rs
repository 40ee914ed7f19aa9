//! `[[network]]`, `[[endpoint]]`, `[[remote]]`, `[[address_migration]]` and `port.vni`: the records that seed
//! the config database on first start. After that the database is the record and
//! these tables are not read again (see `Store::bootstrap_if_empty`).
use std::net::Ipv4Addr;

use toml::Spanned;

use super::raw::{RawAddressMigration, RawEndpoint, RawNetwork, RawPort, RawRemote};
use super::{PortRole, Problems};
use crate::model::rules::{
    check_address_migration, check_address_migration_ips, check_endpoint_mac, check_endpoint_port, check_network_name,
    check_remote_vtep, check_unicast_ipv4, check_vni,
};
use crate::model::{AddressMigration, AddressMigrationSource, ConfigSnapshot, Network, PortNetwork, RemoteEndpoint, RemoteSource, VmEndpoint, Vni};
use crate::wire::MacAddr;

pub(super) struct RawRecords {
    pub networks: Option<Spanned<Vec<Spanned<RawNetwork>>>>,
    pub endpoints: Option<Spanned<Vec<Spanned<RawEndpoint>>>>,
    pub remotes: Option<Spanned<Vec<Spanned<RawRemote>>>>,
    pub address_migrations: Option<Spanned<Vec<Spanned<RawAddressMigration>>>>,
}

/// Validates the records against each other and against the ports; the result is
/// in the database's key order (networks by VNI, endpoints by VNI and MAC, ports by name).
/// `local_vtep`: the uplink's VTEP address, never a remote VTEP.
pub(super) fn validate(p: &mut Problems, raw: RawRecords, ports: &[Spanned<RawPort>], local_vtep: Option<Ipv4Addr>) -> ConfigSnapshot {
    let (raw_networks, raw_endpoints, raw_remotes) = (list(raw.networks), list(raw.endpoints), list(raw.remotes));

    let mut networks: Vec<Network> = Vec::new();
    // (VNI, index) of every network whose VNI is valid, for references and duplicates.
    let mut vnis: Vec<(Vni, usize)> = Vec::new();
    for (i, network) in raw_networks.iter().enumerate() {
        let network = network.get_ref();
        let at = |key: &str| format!("network[{i}].{key}");
        let vni = vni(p, &network.vni, &at("vni"));
        if let Some(vni) = vni {
            match vnis.iter().find(|(v, _)| *v == vni) {
                Some((_, j)) => p.at(network.vni.span().start, at("vni"), format!("VNI {vni} is already network[{j}]")),
                None => vnis.push((vni, i)),
            }
        }
        let name = network.name.get_ref();
        if let Err(problem) = check_network_name(name) {
            p.at(network.name.span().start, at("name"), problem);
        } else if let Some(j) = raw_networks[..i].iter().position(|n| n.get_ref().name.get_ref() == name) {
            p.at(network.name.span().start, at("name"), format!("{name:?} is already the name of network[{j}]"));
        }
        let mut flood_vteps: Vec<Ipv4Addr> = Vec::new();
        if let Some(list) = &network.flood_vteps {
            for (k, text) in list.get_ref().iter().enumerate() {
                let location = format!("network[{i}].flood_vteps[{k}]");
                match ipv4(text).and_then(|vtep| check_remote_vtep(vtep, local_vtep).map(|()| vtep)) {
                    Err(problem) => p.at(list.span().start, location, problem),
                    Ok(vtep) if flood_vteps.contains(&vtep) => {
                        p.at(list.span().start, location, format!("{vtep} is listed twice"))
                    }
                    Ok(vtep) => flood_vteps.push(vtep),
                }
            }
        }
        if let Some(vni) = vni {
            networks.push(Network { vni, name: name.clone(), flood_vteps });
        }
    }
    let network_exists = |p: &mut Problems, field: &Spanned<i64>, location: &str| -> Option<Vni> {
        let vni = vni(p, field, location)?;
        if vnis.iter().any(|(v, _)| *v == vni) {
            Some(vni)
        } else {
            p.at(field.span().start, location, format!("no [[network]] has VNI {vni}"));
            None
        }
    };

    // (VNI, MAC) of every endpoint and remote so far, for duplicates across both lists.
    let mut taken: Vec<(Vni, MacAddr, String)> = Vec::new();
    // With the index and position of each, to check them against the ports' networks below.
    let mut endpoints: Vec<(VmEndpoint, usize, usize)> = Vec::new();
    for (i, endpoint) in raw_endpoints.iter().enumerate() {
        let endpoint = endpoint.get_ref();
        let at = |key: &str| format!("endpoint[{i}].{key}");
        let vni = network_exists(p, &endpoint.vni, &at("vni"));
        let mac = mac(p, &endpoint.mac, &at("mac"));
        let ip = endpoint.ip.as_ref().and_then(|ip| address(p, ip, &at("ip")));
        let port_name = endpoint.port.get_ref();
        let port_ok = match ports.iter().map(Spanned::get_ref).find(|port| port.name.get_ref() == port_name) {
            None => {
                p.at(endpoint.port.span().start, at("port"), format!("no port named {port_name:?}"));
                false
            }
            Some(port) if port.role != PortRole::Vm => {
                let problem =
                    format!("port {port_name:?} has role {}; VM endpoints attach to vm-role ports", port.role);
                p.at(endpoint.port.span().start, at("port"), problem);
                false
            }
            Some(_) => true,
        };
        if let (Some(vni), Some(mac)) = (vni, mac) {
            if claim(p, &mut taken, vni, mac, format!("endpoint[{i}]"), endpoint.mac.span().start, &at("mac"))
                && port_ok
            {
                endpoints.push((VmEndpoint { vni, mac, ip, port: port_name.clone() }, i, endpoint.port.span().start));
            }
        }
    }

    let mut remotes = Vec::new();
    for (i, remote) in raw_remotes.iter().enumerate() {
        let remote = remote.get_ref();
        let at = |key: &str| format!("remote[{i}].{key}");
        let vni = network_exists(p, &remote.vni, &at("vni"));
        let mac = mac(p, &remote.mac, &at("mac"));
        let ip = remote.ip.as_ref().and_then(|ip| address(p, ip, &at("ip")));
        let vtep = address(p, &remote.vtep, &at("vtep")).filter(|&vtep| match check_remote_vtep(vtep, local_vtep) {
            Ok(()) => true,
            Err(problem) => {
                p.at(remote.vtep.span().start, at("vtep"), problem);
                false
            }
        });
        if let (Some(vni), Some(mac), Some(vtep)) = (vni, mac, vtep) {
            if claim(p, &mut taken, vni, mac, format!("remote[{i}]"), remote.mac.span().start, &at("mac")) {
                remotes.push(RemoteEndpoint { vni, mac, ip, vtep, source: RemoteSource::Operator });
            }
        }
    }

    let mut port_networks = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let port = port.get_ref();
        let Some(field) = &port.vni else { continue };
        let location = format!("port[{index}].vni");
        if port.role != PortRole::Vm {
            let problem = format!("only vm-role ports join a network; this port has role {}", port.role);
            p.at(field.span().start, location, problem);
        } else if let Some(vni) = network_exists(p, field, &location) {
            port_networks.push(PortNetwork { port: port.name.get_ref().clone(), vni });
        }
    }

    // Tenant isolation: a port is in one network, and its endpoints with it.
    let mut placed = ConfigSnapshot { networks: networks.clone(), ports: port_networks.clone(), ..Default::default() };
    for (endpoint, i, span) in endpoints {
        match check_endpoint_port(&placed, &endpoint) {
            Ok(()) => placed.endpoints.push(endpoint),
            Err(problem) => p.at(span, format!("endpoint[{i}].port"), problem),
        }
    }
    let mut endpoints = placed.endpoints;

    networks.sort_by_key(|n| n.vni);
    endpoints.sort_by_key(|e| (e.vni, e.mac));
    remotes.sort_by_key(|r| (r.vni, r.mac));
    port_networks.sort_by(|a, b| a.port.cmp(&b.port));
    let mut snapshot = ConfigSnapshot { generation: 0, networks, endpoints, remotes, ports: port_networks, ..Default::default() };

    for (i, raw) in list(raw.address_migrations).iter().enumerate() {
        let at = |key: &str| format!("address_migration[{i}].{key}");
        let raw = raw.get_ref();
        let vni = network_exists(p, &raw.vni, &at("vni"));
        let primary = address(p, &raw.primary_ip, &at("primary_ip"));
        let post = match &raw.post_migration_ip {
            Some(text) => address(p, text, &at("post_migration_ip")).map(Some),
            None => Some(None),
        };
        let port_name = raw.port.get_ref();
        let port_ok = match ports.iter().map(Spanned::get_ref).find(|port| port.name.get_ref() == port_name) {
            None => {
                p.at(raw.port.span().start, at("port"), format!("no port named {port_name:?}"));
                false
            }
            Some(port) if port.role != PortRole::Vm => {
                let problem = format!("port {port_name:?} has role {}; address migrations are for vm-role ports", port.role);
                p.at(raw.port.span().start, at("port"), problem);
                false
            }
            Some(_) => true,
        };
        let (Some(vni), Some(primary), Some(post), true) = (vni, primary, post, port_ok) else { continue };
        let span = |field: &str| match field {
            "port" => raw.port.span().start,
            "post_migration_ip" => raw.post_migration_ip.as_ref().map_or(raw.primary_ip.span().start, |f| f.span().start),
            _ => raw.primary_ip.span().start,
        };
        if let Err((field, problem)) = check_address_migration_ips(primary, post) {
            p.at(span(field), at(field), problem);
            continue;
        }
        if let Some(j) = snapshot.address_migrations.iter().position(|m| m.vni == vni && m.primary_ip == primary) {
            p.at(span("primary_ip"), at("primary_ip"), format!("{primary} in VNI {vni} is already address_migration[{j}]"));
            continue;
        }
        let entry = AddressMigration {
            vni,
            primary_ip: primary,
            post_migration_ip: post,
            port: port_name.clone(),
            source: AddressMigrationSource::Notification,
        };
        match check_address_migration(&snapshot, &entry) {
            Err(problem) => p.at(span(problem.field), at(problem.field), problem.problem),
            Ok(()) => snapshot.address_migrations.push(entry),
        }
    }
    snapshot.address_migrations.sort_by_key(|m| (m.vni, m.primary_ip));
    snapshot
}

fn list<T>(tables: Option<Spanned<Vec<Spanned<T>>>>) -> Vec<Spanned<T>> {
    tables.map(Spanned::into_inner).unwrap_or_default()
}

fn vni(p: &mut Problems, field: &Spanned<i64>, location: &str) -> Option<Vni> {
    check_vni(*field.get_ref()).map_err(|problem| p.at(field.span().start, location, problem)).ok()
}

fn mac(p: &mut Problems, field: &Spanned<String>, location: &str) -> Option<MacAddr> {
    let text = field.get_ref();
    let problem = match text.parse::<MacAddr>() {
        Ok(mac) => match check_endpoint_mac(mac) {
            Ok(()) => return Some(mac),
            Err(problem) => problem,
        },
        Err(e) => format!("{text:?} is not valid: {e}"),
    };
    p.at(field.span().start, location, problem);
    None
}

/// None after reporting a problem (which fails the whole config).
fn address(p: &mut Problems, field: &Spanned<String>, location: &str) -> Option<Ipv4Addr> {
    ipv4(field.get_ref()).map_err(|problem| p.at(field.span().start, location, problem)).ok()
}

/// A unicast IPv4 address from text.
fn ipv4(text: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = text.parse().map_err(|_| format!("{text:?} is not an IPv4 address such as 192.0.2.1"))?;
    check_unicast_ipv4(ip)?;
    Ok(ip)
}

/// Records that (vni, mac) belongs to `owner`; reports and returns false when taken.
fn claim(
    p: &mut Problems,
    taken: &mut Vec<(Vni, MacAddr, String)>,
    vni: Vni,
    mac: MacAddr,
    owner: String,
    span: usize,
    location: &str,
) -> bool {
    if let Some((_, _, other)) = taken.iter().find(|(v, m, _)| *v == vni && *m == mac) {
        p.at(span, location, format!("MAC {mac} in VNI {vni} is already {other}"));
        return false;
    }
    taken.push((vni, mac, owner));
    true
}
