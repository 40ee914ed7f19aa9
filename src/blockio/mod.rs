//! The network block device's building blocks shared by the server stage and the `vbd` client
//! (docs/storage-protocol.md): fragment reassembly and the anti-replay window. The datagram itself is
//! `wire::block`.

pub mod neighbors;
pub mod reassembly;
pub mod replay;
pub mod service;
pub mod stage;
pub mod version;

pub use reassembly::{Insert, Reassembly, SlotHandle};
pub use replay::{Check, ReplayWindow, RequestIds, MAX_READ_REPEATS, REPLAY_WINDOW};
