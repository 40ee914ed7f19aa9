//! The overlay: the vRouter switching unit (L2 per VNI, VXLAN to remote VTEPs,
//! local ARP answers) and its control side (table versions from the config
//! database and from what workers learn).
mod arp;
mod control;
mod tables;
mod vrouter;
mod vxlan;

pub use control::OverlayControl;
pub use tables::{Learned, Underlay, VRouterTables, VmPort};
pub use vrouter::VRouter;
pub use vxlan::{encapsulate, Tunnel};
#[cfg(test)]
mod tests;
