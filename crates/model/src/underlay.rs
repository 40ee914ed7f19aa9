//! The underlay the overlay runs over: this host's VTEP addressing, and for the
//! inter-cloud gateway role the VNIs the other cloud uses (docs/gateway.md).
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use switchyard_wire::MacAddr;

use crate::Vni;

/// The underlay addressing of the uplink that carries VXLAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtepConfig {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// Next hop towards VTEPs outside the subnet.
    pub gateway: Option<Ipv4Addr>,
    /// Fixed next-hop MAC (no ARP), for pcap tests and static underlays.
    pub next_hop_mac: Option<MacAddr>,
    /// Largest outer IPv4 packet, headers included.
    pub mtu: u16,
}

impl VtepConfig {
    /// Whether `ip` is on the uplink subnet (reached directly, not through the gateway).
    pub fn is_on_link(&self, ip: Ipv4Addr) -> bool {
        on_link(self.address, self.prefix_len, ip)
    }
}

/// Whether `ip` is in `address/prefix_len`. A prefix over 32 (refused where configurations are read, but a
/// `VtepConfig` also comes in a unit's setup blob) is taken as /32.
pub fn on_link(address: Ipv4Addr, prefix_len: u8, ip: Ipv4Addr) -> bool {
    let mask = u32::MAX.checked_shl(32u32.saturating_sub(u32::from(prefix_len))).unwrap_or(0);
    u32::from(ip) & mask == u32::from(address) & mask
}

/// The gateway role and its VNI mappings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayConfig {
    /// VNIs the other cloud uses for networks that are known here under another VNI.
    pub vni_map: Vec<VniMapping>,
}

/// Frames from the other cloud with `remote_vni` are switched, and re-encapsulated, as `local_vni`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VniMapping {
    pub remote_vni: Vni,
    pub local_vni: Vni,
}

impl GatewayConfig {
    /// The local network a VNI from the tunnel stands for: its mapping, else itself.
    #[inline]
    pub fn local_vni(&self, wire_vni: Vni) -> Vni {
        self.vni_map.iter().find(|m| m.remote_vni == wire_vni).map_or(wire_vni, |m| m.local_vni)
    }
}

