//! Fuzz bodies (docs/fuzzing.md): each `pub fn <target>(data: &[u8])` drives the real code the way the
//! data plane or the API does, and asserts what it can check cheaply. The libFuzzer binaries in `fuzz/`
//! are one-line calls of these; `tests/fuzz_regressions.rs` runs them over the kept crash inputs and the
//! seed corpus. A body never panics on any input unless it found a bug: a panic is a finding.
//!
//! A crate above the product: it may use all of it, and the product does not link it.
mod datapath;
mod fixture;
mod migration;
mod nbd;
mod rest;
mod storage;
mod unit_config;
mod wire;

pub use datapath::{address_rewrite, gateway, pipeline, vxlan_decap};
pub use migration::migration;
pub use nbd::nbd;
pub use rest::rest_bodies;
pub use storage::storage_protocol;
pub use unit_config::unit_config;
pub use wire::wire_parsers;

/// A fuzz body: any bytes in, a panic only for a bug.
pub type Body = fn(&[u8]);

/// Every body by its target name (the names of `fuzz/fuzz_targets/*.rs`).
pub const TARGETS: [(&str, Body); 10] = [
    ("wire_parsers", wire_parsers),
    ("pipeline", pipeline),
    ("vxlan_decap", vxlan_decap),
    ("address_rewrite", address_rewrite),
    ("gateway", gateway),
    ("migration", migration),
    ("storage_protocol", storage_protocol),
    ("nbd", nbd),
    ("rest_bodies", rest_bodies),
    ("unit_config", unit_config),
];

/// The body named `name`.
pub fn target(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, body)| *body)
}

/// Largest frame a body builds from its input (a jumbo frame): longer inputs are cut, so nothing grows
/// with the input beyond this.
const MAX_FRAME: usize = 9216;
