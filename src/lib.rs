//! Switchyard: a DPDK poll-mode virtual switch for bare-metal NFV hosts.
//!
//! Floors, bottom up (a module never imports one above it):
//! `wire`; `pipeline`; `dpdk`, `config`; `dataplane`; `bench`; `main.rs`.
//! `unsafe` lives only in `dpdk` (and the `dpdk-ffi` crate).
#![deny(unsafe_code)]

pub mod config;
pub mod wire;
