//! What crosses a unit's configuration interface: commands in, state out. Both
//! are plain data (JSON across the shared-library boundary, see docs/unit-abi.md).
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::Location;
use switchyard_model::{Change, ConfigSnapshot, Vni};
use switchyard_wire::MacAddr;

/// One configuration command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitCommand {
    /// The changes of one committed generation, applied to the unit's configuration.
    Apply { generation: u64, changes: Vec<Change> },
    /// Runs this configuration from now on (a resynchronisation).
    Replace(ConfigSnapshot),
}

impl UnitCommand {
    /// Decodes the command blob a unit library's `apply` is handed (docs/unit-abi.md).
    pub fn decode(blob: &[u8]) -> Result<UnitCommand, String> {
        serde_json::from_slice(blob).map_err(|e| format!("unreadable command: {e}"))
    }

    /// The generation the unit runs after this command.
    pub fn generation(&self) -> u64 {
        match self {
            UnitCommand::Apply { generation, .. } => *generation,
            UnitCommand::Replace(config) => config.generation,
        }
    }

    /// `config` after this command.
    pub fn applied_to(&self, config: &ConfigSnapshot) -> ConfigSnapshot {
        match self {
            UnitCommand::Apply { generation, changes } => {
                let mut next = config.clone();
                next.apply(changes);
                next.generation = *generation;
                next
            }
            UnitCommand::Replace(config) => config.clone(),
        }
    }
}

/// A learned MAC location, with how long ago a worker last saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedMac {
    pub vni: Vni,
    pub mac: MacAddr,
    pub location: Location,
    pub age_ms: u64,
}

/// A resolved underlay neighbour (the VTEP's next hops).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedNeighbor {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub age_ms: u64,
}

/// A unit's configuration and learned state: what `export` returns, and what a
/// new unit is created from during an upgrade (the configuration comes from the
/// database, the learned entries from the unit being replaced, so the new unit
/// neither floods nor re-resolves next hops).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    pub config: ConfigSnapshot,
    #[serde(default)]
    pub macs: Vec<LearnedMac>,
    #[serde(default)]
    pub neighbors: Vec<LearnedNeighbor>,
}
