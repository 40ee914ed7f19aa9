//! The node information table of the bulletin board: which host (VTEP)
//! each VM interface (VNI + MAC) is on, its state, and the locks a migration
//! destination takes on it. The same types are the board's JSON and what it stores.
use core::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use switchyard_model::rules::{check_endpoint_mac, check_unicast_ipv4};
use switchyard_model::{Vni, VNI_MAX};
use switchyard_wire::MacAddr;

/// Holder and sender names: 1 to this many characters of A-Z a-z 0-9 . _ - :
pub const NAME_MAX: usize = 64;

/// A VM interface: the identity a record is kept under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    pub vni: Vni,
    pub mac: MacAddr,
}

impl RecordKey {
    pub fn new(vni: Vni, mac: MacAddr) -> RecordKey {
        RecordKey { vni, mac }
    }

    /// The VNI in 1..=16777215 and the MAC one a VM interface can own.
    pub fn check(&self) -> Result<(), Invalid> {
        if !(1..=VNI_MAX).contains(&self.vni) {
            return Err(Invalid::new("vni", format!("VNI {} is out of range 1..={VNI_MAX}", self.vni)));
        }
        check_endpoint_mac(self.mac).map_err(|problem| Invalid::new("mac", format!("MAC {problem}")))
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in VNI {}", self.mac, self.vni)
    }
}

/// What the VM is doing, as its host last reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    #[default]
    Running,
    Paused,
    Stopped,
}

impl VmState {
    pub fn name(self) -> &'static str {
        match self {
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Stopped => "stopped",
        }
    }
}

impl core::str::FromStr for VmState {
    type Err = String;
    fn from_str(text: &str) -> Result<VmState, String> {
        [VmState::Running, VmState::Paused, VmState::Stopped]
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| format!("{text:?} is not a VM state (running, paused or stopped)"))
    }
}

/// One row of the node information table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub vni: Vni,
    pub mac: MacAddr,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// The VTEP of the host the VM runs on.
    pub vtep: Ipv4Addr,
    #[serde(default)]
    pub state: VmState,
    /// The board revision of its last change.
    pub revision: u64,
    /// Who sent that change.
    pub updated_by: String,
}

impl Record {
    pub fn key(&self) -> RecordKey {
        RecordKey::new(self.vni, self.mac)
    }
}

/// The body of `PUT /v1/board/records/{vni}/{mac}`: the record's new content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    pub vtep: Ipv4Addr,
    #[serde(default)]
    pub state: VmState,
    /// The host (or operator) sending it.
    pub from: String,
}

impl Update {
    pub fn check(&self) -> Result<(), Invalid> {
        check_unicast_ipv4(self.vtep).map_err(|problem| Invalid::new("vtep", format!("vtep {problem}")))?;
        if let Some(ip) = self.ip {
            check_unicast_ipv4(ip).map_err(|problem| Invalid::new("ip", format!("ip {problem}")))?;
        }
        check_name("from", &self.from)
    }
}

/// A change waiting behind a lock, applied in arrival order at unlock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuedUpdate {
    Put(Update),
    Delete { from: String },
}

/// A migration destination's hold on a record: it locks the VM's record while the VM moves to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub holder: String,
    /// Microseconds since the Unix epoch; at this time the lock ends as if its
    /// holder had unlocked it.
    pub expires_at_us: u64,
    /// In arrival order.
    #[serde(default)]
    pub queued: Vec<QueuedUpdate>,
}

/// A lock with the key it is on: the `locks` list of `GET /v1/board/records`
/// and a value of the store's lock table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    #[serde(flatten)]
    pub key: RecordKey,
    #[serde(flatten)]
    pub lock: Lock,
}

/// A granted (or renewed) lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockGrant {
    pub holder: String,
    pub expires_at_us: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Put,
    Delete,
}

/// One applied change, as watchers receive it. For a delete, `record` is the
/// record as it was removed, with the delete's revision and sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub revision: u64,
    pub kind: EventKind,
    pub record: Record,
}

/// What the board does with a put or a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Applied now: the record as it is now (as removed, for a delete) and the
    /// revision it made.
    Applied(Event),
    /// The record is locked: queued at `position` (1 = next to apply).
    Queued { position: usize, holder: String },
}

/// The whole table: `GET /v1/board/records`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub revision: u64,
    pub records: Vec<Record>,
    pub locks: Vec<LockEntry>,
}

/// The reply to a watch: the events after the revision asked for, or (when
/// those are no longer kept, or the board is behind it) the whole table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WatchBody", into = "WatchBody")]
pub enum WatchReply {
    /// `revision` is the last event's (the one asked for when there are none):
    /// the next watch asks for what comes after it.
    Events { revision: u64, events: Vec<Event> },
    /// Replace everything known with `records`, as of `revision`.
    Reset { revision: u64, records: Vec<Record> },
}

impl WatchReply {
    pub fn revision(&self) -> u64 {
        match self {
            WatchReply::Events { revision, .. } | WatchReply::Reset { revision, .. } => *revision,
        }
    }
}

/// The JSON of a `WatchReply`: `{"revision", "events"}` or `{"revision", "reset": true, "records"}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchBody {
    revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events: Option<Vec<Event>>,
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    reset: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    records: Option<Vec<Record>>,
}

impl From<WatchReply> for WatchBody {
    fn from(reply: WatchReply) -> WatchBody {
        match reply {
            WatchReply::Events { revision, events } => {
                WatchBody { revision, events: Some(events), reset: false, records: None }
            }
            WatchReply::Reset { revision, records } => {
                WatchBody { revision, events: None, reset: true, records: Some(records) }
            }
        }
    }
}

impl TryFrom<WatchBody> for WatchReply {
    type Error = String;
    fn try_from(body: WatchBody) -> Result<WatchReply, String> {
        match body {
            WatchBody { revision, events: Some(events), reset: false, records: None } => {
                Ok(WatchReply::Events { revision, events })
            }
            WatchBody { revision, events: None, reset: true, records: Some(records) } => {
                Ok(WatchReply::Reset { revision, records })
            }
            _ => Err("a watch reply has either events, or reset: true and records".into()),
        }
    }
}

/// A value the board refuses, and the field (JSON field or path parameter) it is in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct Invalid {
    pub field: &'static str,
    pub problem: String,
}

impl Invalid {
    pub fn new(field: &'static str, problem: String) -> Invalid {
        Invalid { field, problem }
    }
}

/// A holder or sender name.
pub fn check_name(field: &'static str, name: &str) -> Result<(), Invalid> {
    let ok = (1..=NAME_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!("{field} {name:?} is not a valid name: use 1 to {NAME_MAX} characters of A-Z a-z 0-9 . _ - :"),
        ))
    }
}
