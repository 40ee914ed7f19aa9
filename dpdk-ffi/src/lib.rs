//! Raw bindings to the system DPDK, generated at build time by bindgen.
//!
//! Static-inline DPDK functions (`rte_eth_rx_burst`, `rte_pktmbuf_alloc`, ...) are
//! reached through wrappers that bindgen generates and `cc` compiles; their Rust
//! names are the DPDK names. Nothing but `switchyard::dpdk` should use this crate.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code)]
#![allow(clippy::all, clippy::undocumented_unsafe_blocks)]
#![allow(unsafe_op_in_unsafe_fn)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
