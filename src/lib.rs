//! Switchyard: a DPDK poll-mode virtual switch for bare-metal NFV hosts.
//!
//! Floors, bottom up (a module never imports one above it):
//! `wire`; `pipeline`, `dpdk`, `store`, `config` (builds `store` records from the TOML);
//! feature datapaths (`xconnect`, `overlay`, `rewrite`); `dataplane`; `bench`, `control`; `main.rs`.
//! Raw pointers and FFI live only in `dpdk` (and the `dpdk-ffi` crate): the Rust
//! lint against them is denied crate-wide in Cargo.toml and allowed there alone.

pub mod bench;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod dpdk;
pub mod overlay;
pub mod pipeline;
pub mod rewrite;
pub mod store;
pub mod telemetry;
pub mod unit;
pub mod upgrade;
pub mod wire;
pub mod xconnect;
