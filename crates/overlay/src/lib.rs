//! The overlay: the vRouter switching unit (L2 per VNI, VXLAN to remote VTEPs,
//! local ARP answers) with its control side (table versions from configuration
//! commands and from what workers learn), and the intermediate unit that
//! forwards during an upgrade.
mod arp;
mod host;
mod intermediate;
mod tables;
mod tunnels;
mod unit;
mod vrouter;
mod vxlan;

pub use host::UnitHost;
pub use intermediate::IntermediateUnit;
pub use tables::{port_networks, Learned, Underlay, VRouterTables, VmPort};
pub use tunnels::{
    NeighborView, TunnelControl, TunnelCounters, TunnelInfo, TunnelLimits, TunnelMode, TunnelReport, TunnelShared, TunnelStage,
    TunnelState, TunnelTable, MAX_RESOLVING_TUNNELS,
};
pub use unit::{UnitSetup, UnitSetupError, VRouterUnit};
pub use vrouter::VRouter;
pub use vxlan::{decapsulate, encapsulate, Decapsulated, Tunnel};
#[cfg(test)]
mod tests;
