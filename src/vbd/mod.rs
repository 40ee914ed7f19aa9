//! The NBD side of `switchyard vbd` (issue 8): each attached image is served as an NBD export
//! on a unix socket and on loopback TCP, so that QEMU and the NBD tools use it unchanged. The
//! image itself sits behind the `BlockBackend` trait (the storage-protocol client later;
//! `FileBackend` over a local file now). Protocol: NetworkBlockDevice/nbd doc/proto.md,
//! fixed-newstyle handshake, simple replies, no TLS.
//!
//! - `nbd_wire`: constants, pure decoders and encoders, a named error for every bad input.
//! - `nbd_handshake`, `nbd_transmission`, `nbd_session`: one connection, options then requests.
//! - `nbd_server`: listeners and the accept loops; `export`: what is served.
//!
//! Imports nothing of ours (tokio and std only): the data plane never sees it.
pub mod backend;
pub mod export;
pub mod file_backend;
pub mod io_scheduler;
#[cfg(test)]
mod io_scheduler_tests;
mod nbd_handshake;
pub mod nbd_server;
mod nbd_session;
mod nbd_transmission;
pub mod nbd_wire;
pub mod retransmit;
pub mod storage_codec;
pub mod storage_counters;
pub mod storage_engine;
#[cfg(test)]
mod storage_engine_tests;
pub mod storage_error;
pub mod storage_request;

pub use backend::{BackendError, BlockBackend, Zeroing};
pub use export::{Export, ExportError, ExportSet, BLOCK_SIZES, MAX_PAYLOAD};
pub use file_backend::{FileBackend, OpenError};
pub use nbd_handshake::{MAX_OPTIONS, OPTION_DISCARD_MAX};
pub use nbd_server::{NbdListener, NbdServer, ServeError, DRAIN};
pub use nbd_session::SessionError;
pub use nbd_transmission::MAX_IN_FLIGHT;
