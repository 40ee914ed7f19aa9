//! The config database: the record of configuration. Imports only `wire`.
mod model;

pub use model::{ConfigSnapshot, Network, PortNetwork, RemoteEndpoint, Vni, VmEndpoint, VNI_MAX};
