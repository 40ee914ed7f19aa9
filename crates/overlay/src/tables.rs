//! The vRouter's lookup tables: one immutable version per configuration
//! generation (copy-on-write), built on the control side from the config
//! database snapshot plus what workers learned.
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use rustc_hash::{FxHashMap, FxHashSet};

use switchyard_model::{GatewayConfig, VtepConfig};
use switchyard_pipeline::PortId;
use switchyard_model::{vni_mac_key, ConfigSnapshot, RemoteSource, VmEndpoint, Vni};
use switchyard_unit_abi::Location;
use switchyard_wire::MacAddr;

/// The underlay side of the uplink port: the local VTEP.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Underlay {
    pub port: PortId,
    /// The uplink port's own MAC: the outer source of encapsulated frames.
    pub mac: MacAddr,
    /// The VTEP address (outer source, the only outer destination accepted),
    /// gateway, next-hop MAC and MTU, as configured on the uplink port.
    pub vtep: VtepConfig,
    /// `[gateway]`: this VTEP is its cloud's inter-cloud gateway (docs/gateway.md).
    #[serde(default)]
    pub gateway_role: Option<GatewayConfig>,
}

impl Underlay {
    /// The underlay host a frame to `vtep` is sent to: the VTEP itself when it
    /// is on the uplink subnet, otherwise the gateway.
    pub fn next_hop(&self, vtep: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.vtep.is_on_link(vtep) {
            Some(vtep)
        } else {
            self.vtep.gateway
        }
    }
}

/// A VM-role port as the tables see it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct VmPort {
    pub name: String,
    pub id: PortId,
}

/// One virtual network.
#[derive(Clone, Debug, Default)]
pub struct NetworkTable {
    /// VM ports in this network: broadcast and unknown unicast are flooded to them.
    pub ports: Vec<PortId>,
    /// Remote VTEPs for head-end replication.
    pub flood_vteps: Vec<Ipv4Addr>,
}

/// Learned state carried from one table version to the next, each entry with
/// when a worker last reported it (for ageing).
#[derive(Clone, Debug, Default)]
pub struct Learned {
    pub macs: HashMap<(Vni, MacAddr), (Location, Instant)>,
    pub neighbors: HashMap<Ipv4Addr, (MacAddr, Instant)>,
}

/// Everything the vRouter looks up per packet.
#[derive(Debug, Default)]
pub struct VRouterTables {
    pub generation: u64,
    /// By port id: the network of a VM port.
    pub port_vni: Vec<Option<Vni>>,
    pub networks: FxHashMap<Vni, NetworkTable>,
    macs: FxHashMap<u128, Location>,
    /// (VNI, IP) -> MAC, answered locally for ARP requests from VMs.
    arp: FxHashMap<u64, MacAddr>,
    pub neighbors: FxHashMap<Ipv4Addr, MacAddr>,
    /// (VNI, MAC) of VMs migrating to or from here, or on a gateway of every
    /// remote endpoint (table 2): relayed between tunnels.
    relays: FxHashSet<u128>,
    pub underlay: Option<Underlay>,
    /// Configured MAC entries (endpoints and remotes); the rest were learned.
    configured_macs: usize,
}

fn ip_key(vni: Vni, ip: Ipv4Addr) -> u64 {
    (u64::from(vni) << 32) | u64::from(u32::from(ip))
}

/// The network of each VM port that has one: its binding, else the network of
/// its first endpoint (a port appears once).
pub fn port_networks(config: &ConfigSnapshot, vm_ports: &[VmPort]) -> Vec<(PortId, Vni)> {
    let port_id = |name: &str| vm_ports.iter().find(|p| p.name == name).map(|p| p.id);
    let bindings = config.ports.iter().map(|b| (b.port.as_str(), b.vni));
    let endpoint_ports = config.endpoints.iter().map(|e| (e.port.as_str(), e.vni));
    let mut networks: Vec<(PortId, Vni)> = Vec::new();
    for (name, vni) in bindings.chain(endpoint_ports) {
        if let Some(id) = port_id(name).filter(|id| !networks.iter().any(|(p, _)| p == id)) {
            if config.networks.iter().any(|n| n.vni == vni) {
                networks.push((id, vni));
            }
        }
    }
    networks
}

impl VRouterTables {
    /// Builds a table version. Configured entries win over learned ones, and a
    /// learned location in a network that no longer exists is left out.
    pub fn build(config: &ConfigSnapshot, learned: &Learned, vm_ports: &[VmPort], underlay: Option<Underlay>) -> Self {
        let port_id = |name: &str| vm_ports.iter().find(|p| p.name == name).map(|p| p.id);
        let slots = vm_ports.iter().map(|p| p.id.index() + 1).max().unwrap_or(0);
        // On an inter-cloud gateway the remote endpoints are forwarding table 2: all relayed.
        let gateway = underlay.as_ref().is_some_and(|u| u.gateway_role.is_some());
        let mut tables = VRouterTables { generation: config.generation, port_vni: vec![None; slots], underlay, ..Default::default() };
        for network in &config.networks {
            tables.networks.insert(network.vni, NetworkTable { ports: Vec::new(), flood_vteps: network.flood_vteps.clone() });
        }
        for (id, vni) in port_networks(config, vm_ports) {
            if let Some(network) = tables.networks.get_mut(&vni) {
                tables.port_vni[id.index()] = Some(vni);
                network.ports.push(id);
            }
        }
        for ((vni, mac), &(at, _)) in &learned.macs {
            if tables.networks.contains_key(vni) {
                tables.macs.insert(vni_mac_key(*vni, *mac), at);
            }
        }
        tables.neighbors.extend(learned.neighbors.iter().map(|(&ip, &(mac, _))| (ip, mac)));
        for endpoint in &config.endpoints {
            if let Some(id) = port_id(&endpoint.port) {
                tables.macs.insert(vni_mac_key(endpoint.vni, endpoint.mac), Location::Port(id));
                if let Some(ip) = endpoint.ip {
                    tables.arp.insert(ip_key(endpoint.vni, ip), endpoint.mac);
                }
            }
        }
        for remote in &config.remotes {
            tables.macs.insert(vni_mac_key(remote.vni, remote.mac), Location::Vtep(remote.vtep));
            if gateway || remote.source == RemoteSource::Migration {
                tables.relays.insert(vni_mac_key(remote.vni, remote.mac));
            }
            if let Some(ip) = remote.ip {
                tables.arp.insert(ip_key(remote.vni, ip), remote.mac);
            }
        }
        // Address migrations: ARP for a migrated VM's primary IP is
        // answered on its behalf, with the MAC of the VM endpoint on its port that
        // has the post-migration IP, else of the port's only VM endpoint.
        for m in &config.address_migrations {
            let in_network = port_id(&m.port).is_some_and(|id| tables.port_vni.get(id.index()) == Some(&Some(m.vni)));
            let (Some(post), true) = (m.post_migration_ip, in_network) else { continue };
            let on_port: Vec<&VmEndpoint> = config.endpoints.iter().filter(|e| e.vni == m.vni && e.port == m.port).collect();
            let owner = on_port.iter().find(|e| e.ip == Some(post)).or(match on_port.as_slice() {
                [only] => Some(only),
                _ => None,
            });
            if let Some(owner) = owner {
                tables.arp.entry(ip_key(m.vni, m.primary_ip)).or_insert(owner.mac);
            }
        }
        tables.configured_macs = config.endpoints.len() + config.remotes.len();
        tables
    }

    #[inline]
    pub fn mac_location(&self, vni: Vni, mac: MacAddr) -> Option<Location> {
        self.macs.get(&vni_mac_key(vni, mac)).copied()
    }

    /// Whether frames for this VM that arrive over a tunnel are relayed to its
    /// VTEP (a migrating VM; every remote endpoint on an inter-cloud gateway)
    /// rather than dropped by split horizon.
    pub fn relays(&self, vni: Vni, mac: MacAddr) -> bool {
        self.relays.contains(&vni_mac_key(vni, mac))
    }

    #[inline]
    pub fn arp_answer(&self, vni: Vni, ip: Ipv4Addr) -> Option<MacAddr> {
        self.arp.get(&ip_key(vni, ip)).copied()
    }

    /// Entries per table, by the names metrics and the API use.
    pub fn sizes(&self) -> [(&'static str, usize); 5] {
        [
            ("networks", self.networks.len()),
            ("macs", self.macs.len()),
            ("macs_configured", self.configured_macs),
            ("arp", self.arp.len()),
            ("neighbors", self.neighbors.len()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_model::{Network, PortNetwork, RemoteEndpoint, VmEndpoint};

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    #[test]
    fn next_hop_is_the_vtep_on_link_and_the_gateway_otherwise() {
        let vtep = VtepConfig {
            address: Ipv4Addr::new(192, 0, 2, 1),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(192, 0, 2, 254)),
            next_hop_mac: None,
            mtu: 1500,
        };
        let underlay = Underlay { port: PortId(0), mac: mac(1), vtep: vtep.clone(), gateway_role: None };
        assert_eq!(underlay.next_hop(Ipv4Addr::new(192, 0, 2, 9)), Some(Ipv4Addr::new(192, 0, 2, 9)));
        assert_eq!(underlay.next_hop(Ipv4Addr::new(198, 51, 100, 9)), underlay.vtep.gateway);
        let no_gateway = Underlay { vtep: VtepConfig { gateway: None, prefix_len: 0, ..vtep }, ..underlay };
        assert_eq!(no_gateway.next_hop(Ipv4Addr::new(198, 51, 100, 9)), Some(Ipv4Addr::new(198, 51, 100, 9)), "/0: all on link");
    }

    #[test]
    fn configured_entries_win_and_ports_join_their_network() {
        let config = ConfigSnapshot {
            generation: 4,
            networks: vec![Network { vni: 100, name: "blue".into(), flood_vteps: vec![Ipv4Addr::new(192, 0, 2, 2)] }],
            endpoints: vec![VmEndpoint { vni: 100, mac: mac(10), ip: Some(Ipv4Addr::new(10, 0, 0, 10)), port: "vm0".into() }],
            remotes: vec![RemoteEndpoint { vni: 100, mac: mac(20), ip: None, vtep: Ipv4Addr::new(192, 0, 2, 2), source: Default::default() }],
            ports: vec![PortNetwork { port: "vm1".into(), vni: 100 }, PortNetwork { port: "gone".into(), vni: 100 }],
            address_migrations: vec![],
            storage: Default::default(),
        };
        let vm_ports = [VmPort { name: "vm0".into(), id: PortId(0) }, VmPort { name: "vm1".into(), id: PortId(2) }];
        let mut learned = Learned::default();
        let now = Instant::now();
        learned.macs.insert((100, mac(10)), (Location::Port(PortId(2)), now));
        learned.macs.insert((100, mac(30)), (Location::Vtep(Ipv4Addr::new(192, 0, 2, 3)), now));
        learned.macs.insert((999, mac(31)), (Location::Port(PortId(0)), now));
        let tables = VRouterTables::build(&config, &learned, &vm_ports, None);
        assert_eq!(tables.generation, 4);
        assert_eq!(tables.port_vni, vec![Some(100), None, Some(100)]);
        assert_eq!(tables.networks[&100].ports, vec![PortId(2), PortId(0)]);
        assert_eq!(tables.mac_location(100, mac(10)), Some(Location::Port(PortId(0))), "configured beats learned");
        assert_eq!(tables.mac_location(100, mac(20)), Some(Location::Vtep(Ipv4Addr::new(192, 0, 2, 2))));
        assert_eq!(tables.mac_location(100, mac(30)), Some(Location::Vtep(Ipv4Addr::new(192, 0, 2, 3))));
        assert_eq!(tables.mac_location(999, mac(31)), None, "learned in a deleted network");
        assert_eq!(tables.arp_answer(100, Ipv4Addr::new(10, 0, 0, 10)), Some(mac(10)));
        assert_eq!(tables.arp_answer(101, Ipv4Addr::new(10, 0, 0, 10)), None);
        assert_eq!(tables.sizes()[1], ("macs", 3));
    }

    #[test]
    fn arp_for_a_migrated_vms_primary_ip_is_answered_with_its_mac() {
        use switchyard_model::{AddressMigration, AddressMigrationSource};
        let ip = |last: u8| Ipv4Addr::new(10, 2, 0, last);
        let migration = |primary: u8, post: Option<Ipv4Addr>, port: &str| AddressMigration {
            vni: 100,
            primary_ip: Ipv4Addr::new(10, 1, 0, primary),
            post_migration_ip: post,
            port: port.into(),
            source: AddressMigrationSource::Notification,
        };
        let config = ConfigSnapshot {
            networks: vec![Network { vni: 100, name: "blue".into(), flood_vteps: vec![] }],
            endpoints: vec![
                VmEndpoint { vni: 100, mac: mac(10), ip: Some(ip(5)), port: "vm0".into() },
                VmEndpoint { vni: 100, mac: mac(11), ip: None, port: "vm0".into() },
                VmEndpoint { vni: 100, mac: mac(12), ip: None, port: "vm1".into() },
            ],
            address_migrations: vec![
                migration(5, Some(ip(5)), "vm0"), // the endpoint with the post-migration IP
                migration(6, Some(ip(6)), "vm1"), // the port's only endpoint
                migration(7, None, "vm1"),        // registered only
                migration(8, Some(ip(8)), "vm2"), // no endpoint to take the MAC from
            ],
            ..ConfigSnapshot::default()
        };
        let vm_ports = [
            VmPort { name: "vm0".into(), id: PortId(0) },
            VmPort { name: "vm1".into(), id: PortId(1) },
            VmPort { name: "vm2".into(), id: PortId(2) },
        ];
        let tables = VRouterTables::build(&config, &Learned::default(), &vm_ports, None);
        assert_eq!(tables.arp_answer(100, Ipv4Addr::new(10, 1, 0, 5)), Some(mac(10)));
        assert_eq!(tables.arp_answer(100, Ipv4Addr::new(10, 1, 0, 6)), Some(mac(12)));
        assert_eq!(tables.arp_answer(100, Ipv4Addr::new(10, 1, 0, 7)), None);
        assert_eq!(tables.arp_answer(100, Ipv4Addr::new(10, 1, 0, 8)), None);
    }
}
