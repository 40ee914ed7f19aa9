//! The records of the inter-cloud control plane (docs/intercloud.md), as they travel in
//! JSON and as they are stored: a VM's announcement (VM address + compute-node
//! VTEP), the coordinator's record of it, a cloud, and the forwarding entries
//! (table 1 and table 2) that agents program into switches.
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use crate::board::{Invalid, RecordKey as VmKey};
use crate::board::model::check_name;
use crate::model::rules::check_unicast_ipv4;
use crate::model::Vni;
use crate::wire::MacAddr;

/// "A VM is online at this compute node": what a switch agent tells its
/// controller and the controller hands to the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// The VTEP of the compute node the VM runs on.
    pub vtep: Ipv4Addr,
}

impl Announce {
    pub fn check(&self) -> Result<(), Invalid> {
        check_address("vtep", self.vtep)?;
        self.ip.map_or(Ok(()), |ip| check_address("ip", ip))
    }
}

pub fn check_address(field: &'static str, ip: Ipv4Addr) -> Result<(), Invalid> {
    check_unicast_ipv4(ip).map_err(|problem| Invalid::new(field, format!("{field} {problem}")))
}

/// A cloud name: 1 to 64 of A-Z a-z 0-9 . _ - :
pub fn check_cloud(name: &str) -> Result<(), Invalid> {
    check_name("cloud", name)
}

/// A VM of some cloud as the coordinator keeps it, and a controller keeps its own cloud's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    pub vni: Vni,
    pub mac: MacAddr,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// The compute node's VTEP.
    pub vtep: Ipv4Addr,
    pub cloud: String,
}

impl VmRecord {
    pub fn key(&self) -> VmKey {
        VmKey::new(self.vni, self.mac)
    }
}

/// A cloud the coordinator links: its name and the VTEP of its gateway node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cloud {
    pub name: String,
    pub gateway_vtep: Ipv4Addr,
}

/// `PUT /v1/coordinator/clouds/{cloud}`: a controller registers its cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudRegistration {
    pub gateway_vtep: Ipv4Addr,
}

/// One forwarding entry an agent wants in a switch's remote table: table 2
/// (VM -> compute node, on a gateway) or table 1 (remote VM -> its cloud's gateway).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry {
    pub vni: Vni,
    pub mac: MacAddr,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    pub vtep: Ipv4Addr,
}

impl Entry {
    pub fn key(&self) -> VmKey {
        VmKey::new(self.vni, self.mac)
    }
}

/// A whole table as served to its followers, with the revision of its last
/// change. Followers long-poll with `since` = the revision they have.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub revision: u64,
    pub entries: Vec<Entry>,
}

/// 200 to a withdrawal: whether it removed the VM. A withdrawal from a VTEP
/// the VM no longer is at (it moved and was announced elsewhere first) removes
/// nothing; `vtep` says where the VM is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawn {
    pub withdrawn: bool,
    pub vtep: Option<Ipv4Addr>,
}
