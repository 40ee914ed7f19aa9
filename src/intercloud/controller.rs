//! A cloud's network controller (inter-cloud control plane), synchronous and without HTTP. It
//! keeps two tables:
//!
//! - `local`: the VMs its switch agents announced (VM address + compute-node
//!   VTEP), which the hand-over task (`tasks.rs`) keeps in line at the
//!   coordinator;
//! - `remotes`: table 1 of this cloud, the other clouds' VMs at their gateway,
//!   as the coordinator serves it; stored, so a compute node or VM that appears
//!   later (or a restart) gets it, and served to the switch agents by long poll.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::model::{check_address, check_cloud, Announce, Entry, Invalid, View, VmKey, VmRecord, Withdrawn};
use super::store::{decode_rows, encode, row_key, Batch, IntercloudStore, StoreError, Write};

const LOCAL: &str = "local";
const REMOTES: &str = "remotes";

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Controller {
    store: Box<dyn IntercloudStore>,
    cloud: String,
    gateway_vtep: Ipv4Addr,
    /// Bumped by every change of `remotes` (stored): the switch agents' `since`.
    revision: u64,
    local: BTreeMap<VmKey, VmRecord>,
    remotes: BTreeMap<VmKey, Entry>,
    /// Bumped by every change of either table, in memory: wakes the tasks.
    changes: u64,
}

impl Controller {
    pub fn open(store: impl IntercloudStore, cloud: &str, gateway_vtep: Ipv4Addr) -> Result<Controller, ControllerError> {
        check_cloud(cloud)?;
        check_address("gateway_vtep", gateway_vtep)?;
        let stored = store.load()?;
        let local: Vec<VmRecord> = decode_rows(&stored, LOCAL)?;
        let remotes: Vec<Entry> = decode_rows(&stored, REMOTES)?;
        Ok(Controller {
            store: Box::new(store),
            cloud: cloud.to_string(),
            gateway_vtep,
            revision: stored.revision,
            local: local.into_iter().map(|vm| (vm.key(), vm)).collect(),
            remotes: remotes.into_iter().map(|e| (e.key(), e)).collect(),
            changes: 0,
        })
    }

    pub fn cloud(&self) -> &str {
        &self.cloud
    }

    pub fn gateway_vtep(&self) -> Ipv4Addr {
        self.gateway_vtep
    }

    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn local(&self) -> Vec<VmRecord> {
        self.local.values().cloned().collect()
    }

    /// Table 1 with its revision.
    pub fn remote_view(&self) -> View {
        View { revision: self.revision, entries: self.remotes.values().copied().collect() }
    }

    /// A switch agent's "VM online here". A VM announced from another compute
    /// node moved: the last announcement wins.
    pub fn announce(&mut self, key: VmKey, announce: Announce) -> Result<VmRecord, ControllerError> {
        key.check()?;
        announce.check()?;
        let vm = VmRecord { vni: key.vni, mac: key.mac, ip: announce.ip, vtep: announce.vtep, cloud: self.cloud.clone() };
        if self.local.get(&key) == Some(&vm) {
            return Ok(vm);
        }
        let write = Write { table: LOCAL, key: row_key(key.vni, &key.mac), value: Some(encode(&vm)) };
        self.store.commit(&Batch { revision: self.revision, writes: vec![write] })?;
        self.local.insert(key, vm.clone());
        self.changes += 1;
        Ok(vm)
    }

    /// A switch agent's "VM gone from `vtep`". Removes nothing when the VM was
    /// meanwhile announced at another compute node (it moved: make before break).
    pub fn withdraw(&mut self, key: VmKey, vtep: Ipv4Addr) -> Result<Withdrawn, ControllerError> {
        key.check()?;
        check_address("vtep", vtep)?;
        let Some(vm) = self.local.get(&key) else { return Ok(Withdrawn { withdrawn: false, vtep: None }) };
        if vm.vtep != vtep {
            return Ok(Withdrawn { withdrawn: false, vtep: Some(vm.vtep) });
        }
        let write = Write { table: LOCAL, key: row_key(key.vni, &key.mac), value: None };
        self.store.commit(&Batch { revision: self.revision, writes: vec![write] })?;
        self.local.remove(&key);
        self.changes += 1;
        Ok(Withdrawn { withdrawn: true, vtep: Some(vtep) })
    }

    /// Takes the coordinator's table 1 for this cloud as it is. Stored (one
    /// commit, a new revision) only when its entries differ from ours, so the
    /// switch agents see no change when nothing they program changed.
    pub fn follow(&mut self, entries: &[Entry]) -> Result<bool, ControllerError> {
        let wanted: BTreeMap<VmKey, Entry> = entries.iter().map(|e| (e.key(), *e)).collect();
        if wanted == self.remotes {
            return Ok(false);
        }
        let mut writes = Vec::new();
        for (key, entry) in &wanted {
            if self.remotes.get(key) != Some(entry) {
                writes.push(Write { table: REMOTES, key: row_key(key.vni, &key.mac), value: Some(encode(entry)) });
            }
        }
        for key in self.remotes.keys().filter(|key| !wanted.contains_key(key)) {
            writes.push(Write { table: REMOTES, key: row_key(key.vni, &key.mac), value: None });
        }
        let revision = self.revision + 1;
        self.store.commit(&Batch { revision, writes })?;
        self.remotes = wanted;
        self.revision = revision;
        self.changes += 1;
        Ok(true)
    }
}
