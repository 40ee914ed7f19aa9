//! The only module that calls `dpdk-ffi`: safe wrappers named after the DPDK
//! function minus `rte_` (capsule style), newtype ids, one errno conversion.
//! Every `unsafe` block of the switch lives here, each with a `// SAFETY:` note.
#![allow(unsafe_code)]

mod beneath;
mod eal;
mod error;
pub mod io_ring;
mod lcore;
mod mbuf;
mod mempool;
mod packet_socket;
mod port;
pub mod unit_abi;

pub use beneath::open_beneath;
pub use eal::{rdtsc, Eal};
pub use error::DpdkError;
pub use lcore::LcoreId;
pub use mbuf::{Mbuf, MbufBatch};
pub use mempool::Mempool;
pub use port::{link as port_link, stats as port_stats, Link, Port, PortInfo, PortSetup, PortStats, RxQueue, TxBuffer, TxOutcome};
