//! What makes a single record valid on its own, shared by the TOML bootstrap
//! (`config`) and the REST API (`control`). Checks that need the rest of the
//! configuration (does the VNI exist, is the MAC taken) live with their callers.
//!
//! Each check returns the problem as a phrase that starts with the offending value,
//! so it reads after a key path (`network[0].vni: 0 is out of range ...`) and after
//! a noun (`VNI 0 is out of range ...`).
use std::net::Ipv4Addr;

use super::snapshot::{AddressMigration, ConfigSnapshot, PortNetwork, VmEndpoint, Vni, VNI_MAX};
use super::storage::SECTOR_BYTES;
use switchyard_wire::address_report::REPORT_ADDRESS;
use switchyard_wire::{MacAddr, ReportStatus};

/// Network names: 1 to 64 of these characters.
pub const NETWORK_NAME_MAX: usize = 64;

pub fn check_vni(vni: i64) -> Result<Vni, String> {
    match Vni::try_from(vni) {
        Ok(v) if (1..=VNI_MAX).contains(&v) => Ok(v),
        _ => Err(format!("{vni} is out of range 1..={VNI_MAX}")),
    }
}

pub fn check_network_name(name: &str) -> Result<(), String> {
    check_record_name("network", name)
}

/// Storage user and image names: the same characters as network names.
pub fn check_storage_name(noun: &str, name: &str) -> Result<(), String> {
    check_record_name(noun, name)
}

fn check_record_name(noun: &str, name: &str) -> Result<(), String> {
    let ok = (1..=NETWORK_NAME_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid {noun} name: use 1 to {NETWORK_NAME_MAX} characters of A-Z a-z 0-9 . _ -"))
    }
}

/// The largest image: 1 PiB, far above any disk here, so sums of sizes never overflow.
pub const IMAGE_SIZE_MAX: u64 = 1 << 50;

/// An image size: whole sectors, more than none, at most `IMAGE_SIZE_MAX`.
pub fn check_image_size(size: u64) -> Result<(), String> {
    if size == 0 {
        Err("0 bytes is not an image size: an image has at least one 512-byte sector".into())
    } else if size % SECTOR_BYTES != 0 {
        Err(format!("{size} bytes is not a multiple of the {SECTOR_BYTES}-byte sector"))
    } else if size > IMAGE_SIZE_MAX {
        Err(format!("{size} bytes is more than the largest image, {IMAGE_SIZE_MAX} bytes (1 PiB)"))
    } else {
        Ok(())
    }
}

/// A storage user's addresses: at least one, each unicast, none twice.
pub fn check_storage_ips(ips: &[Ipv4Addr]) -> Result<(), String> {
    if ips.is_empty() {
        return Err("no address given: a user needs at least one IP its packets come from".into());
    }
    check_flood_vteps(ips).map_err(|(_, problem)| problem)
}

/// A MAC a VM interface can own: unicast and not all zeros.
pub fn check_endpoint_mac(mac: MacAddr) -> Result<(), String> {
    if mac.is_broadcast() {
        Err(format!("{mac} is the broadcast address, not a unicast MAC address"))
    } else if mac.is_multicast() {
        Err(format!("{mac} is a multicast address, not a unicast MAC address"))
    } else if mac == MacAddr::ZERO {
        Err(format!("{mac} is the all-zero address, not a usable MAC address"))
    } else {
        Ok(())
    }
}

/// An address a host (a VTEP or a VM) can own: not 0.0.0.0, multicast,
/// broadcast, loopback or class E (RFC 1122 section 3.2.1.3).
pub fn check_unicast_ipv4(ip: Ipv4Addr) -> Result<(), String> {
    let problem = if ip.is_unspecified() {
        "is the unspecified address"
    } else if ip.is_broadcast() {
        "is the broadcast address"
    } else if ip.is_multicast() {
        "is a multicast address"
    } else if ip.is_loopback() {
        "is a loopback address"
    } else if ip.octets()[0] >= 240 {
        "is a reserved (class E) address"
    } else {
        return Ok(());
    };
    Err(format!("{ip} {problem}, not a unicast IPv4 address"))
}

/// A remote VTEP (a remote endpoint's `vtep`, a flood-list entry) is never the
/// switch's own VTEP address: frames sent there would come back to us, and the
/// uplink drops VXLAN from its own address as a martian (RFC 1122 3.2.1.3).
pub fn check_remote_vtep(vtep: Ipv4Addr, local_vtep: Option<Ipv4Addr>) -> Result<(), String> {
    if Some(vtep) == local_vtep {
        return Err(format!("{vtep} is this switch's own VTEP address, not a remote VTEP"));
    }
    Ok(())
}

/// Tenant isolation: a VM port is in one network (its binding, else that of its
/// first VM endpoint), and every VM endpoint on it is in that network. An
/// endpoint of another VNI there would receive that VNI's traffic on the port.
pub fn check_endpoint_port(config: &ConfigSnapshot, endpoint: &VmEndpoint) -> Result<(), String> {
    match config.port_vni(&endpoint.port) {
        Some(vni) if vni != endpoint.vni => Err(format!(
            "port {} is in network {vni}, not {}; a port's VM endpoints are all in its network",
            endpoint.port, endpoint.vni
        )),
        _ => Ok(()),
    }
}

/// A port moves to another network only once no VM endpoint of its old one is
/// on it (they would otherwise be switched in the new network).
pub fn check_port_binding(config: &ConfigSnapshot, binding: &PortNetwork) -> Result<(), String> {
    let stranded: Vec<&VmEndpoint> =
        config.endpoints.iter().filter(|e| e.port == binding.port && e.vni != binding.vni).collect();
    let Some(first) = stranded.first() else { return Ok(()) };
    let macs: Vec<String> = stranded.iter().map(|e| e.mac.to_string()).collect();
    let (noun, pronoun) = if macs.len() == 1 { ("VM endpoint", "it") } else { ("VM endpoints", "them") };
    let listed = match macs.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => macs.join(""),
    };
    let old = first.vni;
    Err(format!(
        "port {} still has {noun} {listed} of network {old}; remove {pronoun} first, or bind the port to network {old}",
        binding.port
    ))
}

/// A flood list: every address unicast, none twice.
pub fn check_flood_vteps(vteps: &[Ipv4Addr]) -> Result<(), (usize, String)> {
    for (i, vtep) in vteps.iter().enumerate() {
        check_unicast_ipv4(*vtep).map_err(|problem| (i, problem))?;
        if vteps[..i].contains(vtep) {
            return Err((i, format!("{vtep} is listed twice")));
        }
    }
    Ok(())
}

/// The addresses of an address migration on their own: unicast, not the report
/// address, and two different ones. The error names the field at fault.
pub fn check_address_migration_ips(primary: Ipv4Addr, post: Option<Ipv4Addr>) -> Result<(), (&'static str, String)> {
    for (field, ip) in [("primary_ip", Some(primary)), ("post_migration_ip", post)] {
        let Some(ip) = ip else { continue };
        check_unicast_ipv4(ip).map_err(|problem| (field, problem))?;
        if ip == REPORT_ADDRESS {
            return Err((field, format!("{ip} is the address VMs send their migration reports to")));
        }
    }
    if post == Some(primary) {
        return Err(("post_migration_ip", format!("{primary} is also the primary IP; a migration moves a VM to another address")));
    }
    Ok(())
}

/// Why an address migration cannot join a configuration: the field at fault,
/// the problem, and whether it is a clash with other records (a conflict) or a
/// mistake in the request itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressMigrationProblem {
    pub field: &'static str,
    pub problem: String,
    pub conflict: bool,
}

/// Whether `entry` fits `config`, replacing the entry of its (VNI, primary IP)
/// if there is one: its port is not in another network, and neither of its
/// addresses is another migration's address or another port's VM endpoint's
/// (a rewrite would take that VM's traffic). Both the API and the TOML
/// bootstrap check with this; that the network and the port exist is theirs.
pub fn check_address_migration(config: &ConfigSnapshot, entry: &AddressMigration) -> Result<(), AddressMigrationProblem> {
    let clash = |field, problem| Err(AddressMigrationProblem { field, problem, conflict: true });
    if let Some(vni) = config.port_vni(&entry.port).filter(|vni| *vni != entry.vni) {
        let problem = format!("port {} is in network {vni}, not {}", entry.port, entry.vni);
        return Err(AddressMigrationProblem { field: "port", problem, conflict: false });
    }
    let others = config.address_migrations.iter().filter(|m| m.vni == entry.vni && m.primary_ip != entry.primary_ip);
    for other in others {
        if other.post_migration_ip == Some(entry.primary_ip) {
            let problem = format!("{} is the post-migration IP of the address migration of {}", entry.primary_ip, other.primary_ip);
            return clash("primary_ip", problem);
        }
        let Some(post) = entry.post_migration_ip else { continue };
        if other.primary_ip == post {
            return clash("post_migration_ip", format!("{post} is the primary IP of another address migration"));
        }
        if other.post_migration_ip == Some(post) {
            let problem = format!("{post} is already the post-migration IP of the address migration of {}", other.primary_ip);
            return clash("post_migration_ip", problem);
        }
    }
    let endpoints = config.endpoints.iter().filter(|e| e.vni == entry.vni && e.port != entry.port);
    for endpoint in endpoints {
        for (field, ip) in [("primary_ip", Some(entry.primary_ip)), ("post_migration_ip", entry.post_migration_ip)] {
            if ip.is_some() && endpoint.ip == ip {
                let problem = format!(
                    "{} is the IP of VM endpoint {} on port {}",
                    endpoint.ip.map_or_else(String::new, |ip| ip.to_string()),
                    endpoint.mac,
                    endpoint.port
                );
                return clash(field, problem);
            }
        }
    }
    Ok(())
}

/// How a VM's report "primary IP `primary`, now at `post`", sent from
/// `source` on VM port `port`, is judged against `config`, with a sentence
/// naming the records involved. A VM may only complete or move the address
/// migration registered for its own port, and only to an address a VM endpoint
/// binds to that port, so it cannot claim another VM's address. The
/// workers judge with the same rules on their table version
/// (`rewrite::AddressMigrationTable::judge_report`).
pub fn judge_report(
    config: &ConfigSnapshot,
    port: &str,
    source: Ipv4Addr,
    primary: Ipv4Addr,
    post: Ipv4Addr,
) -> (ReportStatus, String) {
    use ReportStatus::*;
    if source != post {
        return (SourceNotPostMigrationIp, format!("the report came from {source}, not from the post-migration IP {post}"));
    }
    let Some(vni) = config.port_vni(port) else {
        return (PostMigrationIpNotBound, format!("port {port} is in no network, so no VM endpoint binds {post} to it"));
    };
    let holders: Vec<&str> =
        config.endpoints.iter().filter(|e| e.vni == vni && e.ip == Some(post)).map(|e| e.port.as_str()).collect();
    match holders.first() {
        None => {
            return (PostMigrationIpNotBound, format!("no VM endpoint in network {vni} has the post-migration IP {post}"));
        }
        Some(other) if !holders.contains(&port) => {
            return (PostMigrationIpOnOtherPort, format!("the post-migration IP {post} is bound to port {other}, not {port}"));
        }
        Some(_) => {}
    }
    let Some(entry) = config.address_migrations.iter().find(|m| m.vni == vni && m.primary_ip == primary) else {
        return (PrimaryIpNotRegistered, format!("the primary IP {primary} is not registered in network {vni}"));
    };
    if entry.port != port {
        let problem = format!("the primary IP {primary} is registered for port {}, not {port}", entry.port);
        return (PrimaryIpOfOtherPort, problem);
    }
    let in_use = config.address_migrations.iter().find(|m| {
        m.vni == vni && m.primary_ip != primary && (m.post_migration_ip == Some(post) || m.primary_ip == post)
    });
    if let Some(other) = in_use {
        let problem = format!("the post-migration IP {post} is already used by the address migration of {}", other.primary_ip);
        return (PostMigrationIpInUse, problem);
    }
    if post == primary {
        return (PostMigrationIpInUse, format!("the post-migration IP {post} is the primary IP itself"));
    }
    if entry.post_migration_ip == Some(post) {
        return (InEffect, format!("{primary} is rewritten to {post} for port {port} already"));
    }
    (Accepted, format!("{primary} is rewritten to {post} for port {port} from now on"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_range() {
        assert_eq!(check_vni(1), Ok(1));
        assert_eq!(check_vni(16_777_215), Ok(16_777_215));
        assert_eq!(check_vni(0), Err("0 is out of range 1..=16777215".into()));
        assert_eq!(check_vni(16_777_216), Err("16777216 is out of range 1..=16777215".into()));
        assert_eq!(check_vni(-1), Err("-1 is out of range 1..=16777215".into()));
    }

    #[test]
    fn network_names() {
        assert!(check_network_name("blue").is_ok());
        assert!(check_network_name("tenant-1.prod_a").is_ok());
        assert!(check_network_name(&"x".repeat(64)).is_ok());
        for bad in ["", "a b", "blue/1", "grün", &"x".repeat(65)] {
            assert!(check_network_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_network_name("a b"),
            Err("\"a b\" is not a valid network name: use 1 to 64 characters of A-Z a-z 0-9 . _ -".into())
        );
    }

    #[test]
    fn storage_names_sizes_and_addresses() {
        assert!(check_storage_name("user", "alice.v2_x-1").is_ok());
        assert_eq!(
            check_storage_name("image", "disk 1"),
            Err("\"disk 1\" is not a valid image name: use 1 to 64 characters of A-Z a-z 0-9 . _ -".into())
        );
        for bad in ["", "a/b", "..\\x", "ü", &"x".repeat(65)] {
            assert!(check_storage_name("user", bad).is_err(), "{bad}");
        }
        assert!(check_image_size(512).is_ok());
        assert!(check_image_size(IMAGE_SIZE_MAX).is_ok());
        assert!(check_image_size(0).unwrap_err().starts_with("0 bytes is not an image size"));
        assert_eq!(check_image_size(1000), Err("1000 bytes is not a multiple of the 512-byte sector".into()));
        assert!(check_image_size(IMAGE_SIZE_MAX + 512).unwrap_err().contains("largest image"));
        let a: Ipv4Addr = "10.0.0.5".parse().unwrap();
        assert!(check_storage_ips(&[a]).is_ok());
        assert!(check_storage_ips(&[]).unwrap_err().contains("at least one IP"));
        assert_eq!(check_storage_ips(&[a, a]), Err("10.0.0.5 is listed twice".into()));
        assert!(check_storage_ips(&[Ipv4Addr::LOCALHOST]).unwrap_err().contains("loopback"));
    }

    #[test]
    fn endpoint_macs() {
        assert!(check_endpoint_mac(MacAddr([2, 0, 0, 0, 0, 1])).is_ok());
        assert_eq!(
            check_endpoint_mac(MacAddr([1, 0, 0x5e, 0, 0, 1])),
            Err("01:00:5e:00:00:01 is a multicast address, not a unicast MAC address".into())
        );
        assert!(check_endpoint_mac(MacAddr::BROADCAST).unwrap_err().contains("broadcast"));
        assert!(check_endpoint_mac(MacAddr::ZERO).unwrap_err().contains("all-zero"));
    }

    #[test]
    fn unicast_ipv4() {
        assert!(check_unicast_ipv4(Ipv4Addr::new(192, 0, 2, 1)).is_ok());
        for (bad, word) in [
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("239.1.2.3", "multicast"),
            ("127.0.0.1", "loopback"),
            ("127.8.0.1", "loopback"),
            ("240.0.0.1", "class E"),
            ("254.255.255.255", "class E"),
        ] {
            let problem = check_unicast_ipv4(bad.parse().unwrap()).unwrap_err();
            assert!(problem.starts_with(bad) && problem.contains(word), "{problem}");
        }
    }

    #[test]
    fn remote_vteps_are_not_the_local_one() {
        let local: Ipv4Addr = "192.0.2.1".parse().unwrap();
        assert!(check_remote_vtep("192.0.2.2".parse().unwrap(), Some(local)).is_ok());
        assert!(check_remote_vtep(local, None).is_ok());
        assert_eq!(
            check_remote_vtep(local, Some(local)),
            Err("192.0.2.1 is this switch's own VTEP address, not a remote VTEP".into())
        );
    }

    #[test]
    fn a_port_and_its_endpoints_share_one_network() {
        let mac = |last| MacAddr([2, 0, 0, 0, 0, last]);
        let network = |vni| super::super::snapshot::Network { vni, name: format!("n{vni}"), flood_vteps: vec![] };
        let endpoint = |vni, last, port: &str| VmEndpoint { vni, mac: mac(last), ip: None, port: port.into() };
        let config = ConfigSnapshot {
            networks: vec![network(7), network(100)],
            endpoints: vec![endpoint(100, 1, "vm0"), endpoint(100, 2, "vm0"), endpoint(7, 3, "vm2")],
            ports: vec![PortNetwork { port: "vm1".into(), vni: 100 }],
            ..ConfigSnapshot::default()
        };
        assert!(check_endpoint_port(&config, &endpoint(100, 9, "vm1")).is_ok());
        assert!(check_endpoint_port(&config, &endpoint(7, 9, "vm3")).is_ok(), "a port in no network yet");
        assert_eq!(
            check_endpoint_port(&config, &endpoint(7, 9, "vm1")),
            Err("port vm1 is in network 100, not 7; a port's VM endpoints are all in its network".into())
        );
        assert!(check_endpoint_port(&config, &endpoint(100, 9, "vm2")).unwrap_err().starts_with("port vm2 is in network 7"));
        assert!(check_port_binding(&config, &PortNetwork { port: "vm0".into(), vni: 100 }).is_ok());
        assert!(check_port_binding(&config, &PortNetwork { port: "vm1".into(), vni: 7 }).is_ok(), "no endpoints");
        assert_eq!(
            check_port_binding(&config, &PortNetwork { port: "vm0".into(), vni: 7 }),
            Err("port vm0 still has VM endpoints 02:00:00:00:00:01 and 02:00:00:00:00:02 of network 100; \
                 remove them first, or bind the port to network 100"
                .into())
        );
    }

    #[test]
    fn flood_lists() {
        let a: Ipv4Addr = "10.0.0.2".parse().unwrap();
        let b: Ipv4Addr = "10.0.0.3".parse().unwrap();
        assert!(check_flood_vteps(&[]).is_ok());
        assert!(check_flood_vteps(&[a, b]).is_ok());
        assert_eq!(check_flood_vteps(&[a, b, a]), Err((2, "10.0.0.2 is listed twice".into())));
        assert_eq!(check_flood_vteps(&[a, Ipv4Addr::BROADCAST]).unwrap_err().0, 1);
    }
}
