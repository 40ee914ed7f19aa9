//! Switchyard: a DPDK poll-mode virtual switch for bare-metal NFV hosts.
//!
//! This crate composes the workspace's crates (`crates/`, drawn in
//! docs/architecture.md) into the product: the data plane that runs them on
//! DPDK lcores, the control plane (REST API, CLI) that configures them, the
//! configuration file, telemetry, the unit upgrade, and the inter-cloud roles.
//! Each crate below is re-exported under the name the code here uses for it.
//! Modules never import one above them: `config`; `upgrade`; `dataplane`,
//! `telemetry`; `control`; `intercloud` (uses `control`'s client); `main.rs`.
//! The test doubles (`control::testing`) are built for tests and with the
//! `testing` feature only, which the fuzz bodies (`switchyard-fuzzing`) turn on.

#![recursion_limit = "256"] // the OpenAPI document is one large json! literal

// The crates, under the names the modules here use.
pub use switchyard_address_migration as address_migration;
pub use switchyard_block_server as block_server;
pub use switchyard_board as board;
pub use switchyard_configdb as configdb;
pub use switchyard_dpdk as dpdk;
pub use switchyard_io_ring as io_ring;
pub use switchyard_model as model;
pub use switchyard_overlay as overlay;
pub use switchyard_pipeline as pipeline;
pub use switchyard_service as svc;
pub use switchyard_service::{json_body, stop_signal};
pub use switchyard_unit_abi as unit;
pub use switchyard_vbd as vbd;
pub use switchyard_vm_migration as vm_migration;
pub use switchyard_vni_counters as vni_counters;
pub use switchyard_wire as wire;
pub use switchyard_xconnect as xconnect;

pub mod config;
pub mod control;
pub mod dataplane;
pub mod intercloud;
pub mod telemetry;
pub mod upgrade;
