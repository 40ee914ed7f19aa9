//! What an agent does to a switch's remote table to make it say what its
//! source (the controller's table 1, or the coordinator's table 2) wants, as a
//! pure function of three inputs: the wanted entries, the switch's
//! configuration, and the entries this agent made earlier. Idempotent: an entry
//! already there is not added again; entries the agent made and no longer
//! wants are removed; entries it did not make are left alone.
use std::collections::BTreeMap;

use super::model::{Entry, VmKey};
use crate::model::{ConfigSnapshot, RemoteEndpoint};

/// One call to the switch's control API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `POST /v1/remotes`.
    Add(Entry),
    /// `DELETE /v1/remotes/{vni}/{mac}`: an entry this agent made.
    Remove(Entry),
    /// An entry this agent made that must point elsewhere: delete, then add
    /// (the API refuses a second entry for the same VM).
    Replace { old: Entry, new: Entry },
}

/// Why a wanted entry is not programmed (logged once per change by the agent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The switch has no network with the VNI.
    NoNetwork,
    /// The VM is attached to this switch.
    AttachedHere,
    /// Another entry for the VM is there that this agent did not make.
    NotMine,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Entries of `made` that are gone or were changed by someone else: no
    /// longer this agent's to manage.
    pub forget: Vec<VmKey>,
    pub skipped: Vec<(VmKey, Skip)>,
}

fn as_entry(remote: &RemoteEndpoint) -> Entry {
    Entry { vni: remote.vni, mac: remote.mac, ip: remote.ip, vtep: remote.vtep }
}

pub fn plan(wanted: &[Entry], switch: &ConfigSnapshot, made: &BTreeMap<VmKey, Entry>) -> Plan {
    let there: BTreeMap<VmKey, Entry> = switch.remotes.iter().map(|r| (VmKey::new(r.vni, r.mac), as_entry(r))).collect();
    let mut plan = Plan::default();
    let mut wanted_keys = std::collections::BTreeSet::new();
    for entry in wanted {
        let key = entry.key();
        if !switch.networks.iter().any(|n| n.vni == entry.vni) {
            plan.skipped.push((key, Skip::NoNetwork));
            continue;
        }
        if switch.endpoints.iter().any(|e| e.vni == entry.vni && e.mac == entry.mac) {
            plan.skipped.push((key, Skip::AttachedHere));
            continue;
        }
        wanted_keys.insert(key);
        match (there.get(&key), made.get(&key)) {
            (None, _) => plan.actions.push(Action::Add(*entry)),
            (Some(current), _) if current == entry => {}
            (Some(current), Some(mine)) if current == mine => {
                plan.actions.push(Action::Replace { old: *current, new: *entry })
            }
            (Some(_), _) => plan.skipped.push((key, Skip::NotMine)),
        }
    }
    for (key, mine) in made {
        match there.get(key) {
            // Changed by someone else: theirs now.
            Some(current) if current != mine => plan.forget.push(*key),
            Some(current) if !wanted_keys.contains(key) => plan.actions.push(Action::Remove(*current)),
            Some(_) => {}
            // Removed by someone else; re-added above if still wanted.
            None if !wanted_keys.contains(key) => plan.forget.push(*key),
            None => {}
        }
    }
    plan
}
