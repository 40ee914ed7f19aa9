//! `switchyard-vbd` (also `switchyard vbd`): the virtual block device driver on the VM host. Each attached
//! image of a storage server is served as an NBD export on a private unix socket, and on TCP to clients that
//! start TLS with a certificate (`nbd_tls`), so that QEMU and the NBD tools use it unchanged; behind the
//! export, the storage-protocol client (docs/vbd.md, docs/storage-protocol.md). NBD: NetworkBlockDevice/nbd
//! doc/proto.md, fixed-newstyle handshake, simple replies. This crate does not link DPDK.
//!
//! NBD side:
//! - `nbd_wire`: constants, pure decoders and encoders, a named error for every bad input.
//! - `nbd_handshake`, `nbd_transmission`, `nbd_session`: one connection, options then requests.
//! - `nbd_server`: listeners and the accept loops; `export`: what is served.
//! - `backend`: the `BlockBackend` trait an export reads and writes; `file_backend`: a local file.
//!
//! Storage side (imports `switchyard_wire::block` and `switchyard_block_proto`, nothing above them):
//! - `storage_request`: one queued request; `io_scheduler`: which goes next (pure logic).
//! - `storage_codec`: datagrams out and checks in; `retransmit`: timing; `storage_error`: errors and their
//!   NBD error values; `storage_counters`.
//! - `storage_engine`: the client as a state machine without I/O; `storage_client`: its socket and task.
//! - `storage_backend`: `StorageBackend`, the `BlockBackend` over it; `cli`: `switchyard vbd`.
//!
//! The data plane never sees any of it.
pub mod backend;
pub mod cli;
pub mod export;
pub mod file_backend;
pub mod io_scheduler;
#[cfg(test)]
mod io_scheduler_tests;
mod nbd_handshake;
pub mod nbd_server;
mod nbd_session;
mod nbd_tls;
mod nbd_transmission;
pub mod nbd_wire;
pub mod retransmit;
pub mod storage_backend;
pub mod storage_client;
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
pub use storage_backend::StorageBackend;
pub use storage_client::{ClientConfig, ConnectError, StorageClient};
pub use storage_engine::{IoOutput, IoResult};
pub use storage_error::StorageError;
pub use storage_request::IoRequest;
