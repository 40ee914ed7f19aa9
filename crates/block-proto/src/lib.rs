//! The storage protocol's state that the server stage and the `vbd` client share
//! (docs/storage-protocol.md): fragment reassembly and the anti-replay window.
//! The datagram itself is `switchyard_wire::block`.
pub mod reassembly;
pub mod replay;

pub use reassembly::{Insert, Reassembly, SlotHandle};
pub use replay::{Check, ReplayWindow, RequestIds, MAX_READ_REPEATS, REPLAY_WINDOW};
