//! Port cross-connect: every packet received on a port goes out of one fixed
//! port, with its Ethernet addresses rewritten for the next hop (like DPDK
//! l3fwd's "dst = peer MAC, src = own MAC"). What the switch runs without a
//! vRouter (each port's `forward_to`), and the `forward` benchmark scenario.

mod datapath;

pub use datapath::{CrossConnect, Route};
