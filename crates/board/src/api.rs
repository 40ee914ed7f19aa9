//! The JSON bodies of the board's REST API that are not model types, shared by
//! the server (`http.rs`) and the client (`client.rs`). docs/board.md has them all.
use serde::{Deserialize, Serialize};

use super::model::{Event, Record};

/// A lock's lease when the request names none.
pub const DEFAULT_LEASE_MS: u64 = 5000;
/// The longest lease one request may ask for; a holder renews before it runs out.
pub const LEASE_MS_MAX: u64 = 600_000;
/// How long a watch waits for an event when the request does not say.
pub const WATCH_TIMEOUT_MS_DEFAULT: u64 = 25_000;
pub const WATCH_TIMEOUT_MS_MAX: u64 = 60_000;

/// `POST /v1/board/records/{vni}/{mac}/lock`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRequest {
    pub holder: String,
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

fn default_lease_ms() -> u64 {
    DEFAULT_LEASE_MS
}

/// 200 to a PUT: the record as it is now, and the revision the change made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedReply {
    pub applied: Record,
    pub revision: u64,
}

/// 200 to a DELETE: the record as it was removed (with the delete's revision).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedReply {
    pub deleted: Record,
    pub revision: u64,
}

/// 202 to a PUT or DELETE of a locked record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedReply {
    /// Its place in the lock's queue, 1 = first to apply.
    pub queued: usize,
    pub holder: String,
}

/// 200 to an unlock: the queued updates as applied, in order, and the board's
/// revision after them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockReply {
    pub applied: Vec<Event>,
    pub revision: u64,
}
