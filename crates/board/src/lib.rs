//! The information bulletin board: the central node information table (VM identity VNI + MAC + IP -> host VTEP, state, revision)
//! that hosts keep their remote-endpoint tables in sync with.
//!
//! During a live migration the destination host locks the VM's record; updates
//! to a locked record are queued (persisted) and applied in arrival order when
//! it unlocks, then published. A lock has a lease, so a crashed holder cannot
//! hold a record forever: an expired lease ends like an unlock by its holder.
//! Watchers follow the table by long poll from a revision; one too far behind
//! gets the whole table (a reset). docs/board.md has the protocol.
//!
//! - `service`: the logic (`Board`), synchronous, time passed in.
//! - `store`: `BoardStore` (load at start, one atomic durable commit per
//!   change) and its redb implementation.
//! - `http` + `serve`: the REST API on loopback TCP and the lease sweeper;
//!   `client`: the hosts' client; `cli`: `switchyard board ...`.
//!
//! Imports `switchyard-wire`, `switchyard-model` and `switchyard-service` only.
mod api;
pub mod cli;
pub mod client;
pub mod error;
pub mod http;
pub mod input;
pub mod model;
pub mod serve;
pub mod service;
pub mod store;
#[cfg(test)]
mod tests;

pub use api::{
    AppliedReply, DeletedReply, LockRequest, QueuedReply, UnlockReply, DEFAULT_LEASE_MS, LEASE_MS_MAX,
    WATCH_TIMEOUT_MS_DEFAULT, WATCH_TIMEOUT_MS_MAX,
};
pub use client::{BoardClient, BoardError};
pub use error::ErrorBody;
pub use model::{
    Accepted, Event, EventKind, Invalid, Lock, LockEntry, LockGrant, QueuedUpdate, Record, RecordKey, Snapshot, Update,
    VmState, WatchReply,
};
pub use serve::{BoardServer, ServeError};
pub use service::{Board, LockError, ServiceError, EVENTS_KEPT};
pub use store::{BoardStore, BoardStoreError, RedbBoardStore};
