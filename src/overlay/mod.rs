//! The overlay: the vRouter switching unit (L2 per VNI, VXLAN to remote VTEPs,
//! local ARP answers) and its control side (table versions from the config
//! database and from what workers learn).
mod arp;
mod control;
mod tables;
mod vrouter;
mod vxlan;

pub use control::{describe, OverlayControl};
pub use tables::{Learned, Underlay, VRouterTables, VmPort};
pub use vrouter::VRouter;
pub use vxlan::{decapsulate, encapsulate, inner_flow_hash, Decapsulated, Tunnel, ENCAP_LEN};
#[cfg(test)]
mod tests;
