//! The configuration records an operator manages: virtual networks, VM endpoints,
//! remote endpoints, VM-port bindings, address migrations, and storage users and
//! images (`storage.rs`). The config database stores exactly these,
//! the REST API reads and writes them, and the switching unit builds its tables
//! from a `ConfigSnapshot` of them.
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::storage::StorageRecords;
use switchyard_wire::MacAddr;

/// A VXLAN network identifier: 24 bits (RFC 7348 section 5), 0 is not used.
pub type Vni = u32;
pub const VNI_MAX: Vni = (1 << 24) - 1;

/// A VM's identity (VNI, MAC) as one integer: the key of per-packet lookup tables.
pub fn vni_mac_key(vni: Vni, mac: MacAddr) -> u128 {
    let mac = mac.0.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    (u128::from(vni) << 64) | u128::from(mac)
}

/// A virtual network (an L2 domain carried over VXLAN).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub vni: Vni,
    pub name: String,
    /// Remote VTEPs that get a copy of broadcast, unknown-unicast and multicast
    /// frames (head-end replication, RFC 7348 section 4.2 without multicast).
    #[serde(default)]
    pub flood_vteps: Vec<Ipv4Addr>,
}

/// A VM interface attached to a VM-role port of this switch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmEndpoint {
    pub vni: Vni,
    pub mac: MacAddr,
    /// Answered locally for ARP requests when set.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// The name of the VM-role port (from the TOML `[[port]]` list).
    pub port: String,
}

/// A VM reached through a remote VTEP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEndpoint {
    pub vni: Vni,
    pub mac: MacAddr,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    pub vtep: Ipv4Addr,
    /// Who manages the entry. Omitted in JSON for the operator's own.
    #[serde(default, skip_serializing_if = "RemoteSource::is_operator")]
    pub source: RemoteSource,
}

/// Where a remote endpoint comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteSource {
    /// Configured by the operator (TOML, API): nothing else changes it.
    #[default]
    Operator,
    /// Follows the bulletin board (`[board]`): the board's record of a VM on another host.
    Board,
    /// A VM migrating away from or towards this host: frames for it that arrive
    /// over a tunnel are relayed to its VTEP instead of dropped by split horizon.
    Migration,
}

impl RemoteSource {
    pub fn is_operator(&self) -> bool {
        *self == RemoteSource::Operator
    }
}

/// Which network a VM-role port belongs to: frames from an unknown source MAC on
/// the port are switched (and learned) in this VNI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortNetwork {
    pub port: String,
    pub vni: Vni,
}

/// Who set an address migration's post-migration IP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressMigrationSource {
    /// The network control system: the API, the CLI or the TOML bootstrap.
    #[default]
    Notification,
    /// The VM itself, in a report on its VM port (docs/address-migration.md).
    VmReport,
}

/// A VM that moved to another network and got a new address (address migration): peers
/// keep using its primary IP, and the switch rewrites it to the post-migration
/// IP towards the VM's port, and back on what the VM sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressMigration {
    pub vni: Vni,
    pub primary_ip: Ipv4Addr,
    /// `None`: the primary IP is registered for the port, and the VM's report
    /// will say where it lives now; nothing is rewritten until then.
    #[serde(default)]
    pub post_migration_ip: Option<Ipv4Addr>,
    /// The VM-role port the VM is attached to.
    pub port: String,
    #[serde(default)]
    pub source: AddressMigrationSource,
}

/// Everything the database holds, as one consistent version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    /// Bumped by every committed change; 0 for an empty database.
    pub generation: u64,
    pub networks: Vec<Network>,
    pub endpoints: Vec<VmEndpoint>,
    pub remotes: Vec<RemoteEndpoint>,
    pub ports: Vec<PortNetwork>,
    /// By VNI, then primary IP.
    #[serde(default)]
    pub address_migrations: Vec<AddressMigration>,
    /// Users and images of the block-I/O service (their secrets are never in JSON).
    #[serde(default)]
    pub storage: StorageRecords,
}

impl ConfigSnapshot {
    /// The snapshot as JSON carries it (to a switching unit in a shared library,
    /// or in the API): storage users without their secrets.
    pub fn without_secrets(&self) -> ConfigSnapshot {
        let mut copy = self.clone();
        for user in &mut copy.storage.users {
            user.secret = Default::default();
        }
        copy
    }

    /// The network a VM-role port belongs to, as the vRouter decides it: its
    /// binding, else the network of its first VM endpoint (networks that exist only).
    pub fn port_vni(&self, port: &str) -> Option<Vni> {
        let exists = |vni: &Vni| self.networks.iter().any(|n| n.vni == *vni);
        let bound = self.ports.iter().filter(|b| b.port == port).map(|b| b.vni);
        let endpoint = self.endpoints.iter().filter(|e| e.port == port).map(|e| e.vni);
        bound.chain(endpoint).find(exists)
    }
}
