//! Switchyard: a DPDK poll-mode virtual switch for bare-metal NFV hosts.
//!
//! Floors, bottom up (a module never imports one above it):
//! `wire`; `pipeline`, `dpdk`, `store`, `config` (builds `store` records from the TOML), `json_body`, `stop_signal`;
//! feature modules (`xconnect`, `overlay`, `rewrite`, `migration`, `board`, `blockio`, `vbd`); `dataplane`; `bench`,
//! `control`; `intercloud` (uses `control`'s client to reach the switches); `fuzzing` (the fuzz bodies, over all
//! of it); `main.rs`.
//! Raw pointers and FFI live only in `dpdk` (and the `dpdk-ffi` crate): the Rust
//! lint against them is denied crate-wide in Cargo.toml and allowed there alone.

#![recursion_limit = "256"] // the OpenAPI document is one large json! literal

pub mod bench;
pub mod blockio;
pub mod board;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod dpdk;
pub mod fuzzing;
pub mod intercloud;
pub mod json_body;
pub mod migration;
pub mod overlay;
pub mod pipeline;
pub mod rewrite;
pub mod stop_signal;
pub mod store;
pub mod svc;
pub mod telemetry;
pub mod unit;
pub mod upgrade;
pub mod vbd;
pub mod wire;
pub mod xconnect;
