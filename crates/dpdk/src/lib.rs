//! The only crate that calls `dpdk-ffi`: safe wrappers named after the DPDK
//! function minus `rte_` (capsule style), newtype ids, one errno conversion.
//! Its `unsafe` blocks each carry a `// SAFETY:` note; the other crates that may
//! hold `unsafe` are `io-ring` and `unit-abi` (the Makefile's `check-unsafe`).
#![allow(unsafe_code)]

mod beneath;
mod eal;
mod error;
mod lcore;
mod mbuf;
mod mempool;
mod packet_socket;
mod port;

pub use beneath::open_beneath;
pub use eal::{rdtsc, Eal};
pub use error::DpdkError;
pub use lcore::LcoreId;
pub use mbuf::{Mbuf, MbufBatch};
pub use mempool::Mempool;
pub use port::{link as port_link, stats as port_stats, Link, Port, PortInfo, PortSetup, PortStats, RxQueue, TxBuffer, TxOutcome};
