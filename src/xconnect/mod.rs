//! Port cross-connect: every packet received on a port goes out of one fixed
//! port, with its Ethernet addresses rewritten for the next hop (like DPDK
//! l3fwd's "dst = peer MAC, src = own MAC"). The foundation's forwarding, and the
//! `forward` benchmark scenario; the switching unit (issue 3) decides per packet.

mod datapath;

pub use datapath::{CrossConnect, Route};
