//! The inter-cloud network coordinator, synchronous and without HTTP: it links
//! the clouds. Controllers register their cloud (name + gateway VTEP) and hand
//! over their VMs (VM address + compute-node VTEP). From that one table it
//! serves, per cloud, two views:
//!
//! - the *gateway* view (table 2 of that cloud's gateway): the cloud's own VMs
//!   -> the compute node each runs on, which the gateway agent programs;
//! - the *forwarding* view (table 1 of that cloud's compute nodes): the VMs of
//!   every other cloud -> that cloud's gateway VTEP (the gateway rewrite),
//!   which the cloud's controller stores and pushes to its switch agents.
//!
//! Each view has the revision of the last change that altered it, so a VM that
//! moves between compute nodes of one cloud changes that cloud's gateway view
//! only: the other clouds' followers are not even woken.
use std::collections::BTreeMap;

use super::model::{check_cloud, Announce, Cloud, Entry, Invalid, View, VmKey, VmRecord, Withdrawn};
use super::store::{decode_rows, encode, row_key, Batch, IntercloudStore, StoreError, Write};

const CLOUDS: &str = "clouds";
const VMS: &str = "vms";

/// The two tables a cloud is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViewKind {
    /// Table 2, for the cloud's gateway agent.
    Gateway,
    /// Table 1, for the cloud's controller.
    Forwarding,
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("cloud {0:?} is not registered; its controller registers it (PUT /v1/coordinator/clouds/{0})")]
    UnknownCloud(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Seed 002's rewrite: the connectivity info of a VM (VM address + compute
/// node) becomes, for the other clouds, VM address + the gateway of its cloud.
/// None when the VM's cloud is not known (no gateway to send to).
pub fn rewrite(vm: &VmRecord, clouds: &BTreeMap<String, Cloud>) -> Option<Entry> {
    let cloud = clouds.get(&vm.cloud)?;
    Some(Entry { vni: vm.vni, mac: vm.mac, ip: vm.ip, vtep: cloud.gateway_vtep })
}

/// Table 2 of `cloud`'s gateway: its own VMs at their compute nodes.
pub fn gateway_view(cloud: &str, vms: &BTreeMap<VmKey, VmRecord>) -> Vec<Entry> {
    vms.values()
        .filter(|vm| vm.cloud == cloud)
        .map(|vm| Entry { vni: vm.vni, mac: vm.mac, ip: vm.ip, vtep: vm.vtep })
        .collect()
}

/// Table 1 of `cloud`'s compute nodes: every other cloud's VMs at their gateway.
pub fn forwarding_view(cloud: &str, vms: &BTreeMap<VmKey, VmRecord>, clouds: &BTreeMap<String, Cloud>) -> Vec<Entry> {
    vms.values().filter(|vm| vm.cloud != cloud).filter_map(|vm| rewrite(vm, clouds)).collect()
}

pub struct Coordinator {
    store: Box<dyn IntercloudStore>,
    revision: u64,
    clouds: BTreeMap<String, Cloud>,
    vms: BTreeMap<VmKey, VmRecord>,
    /// The revision of each view's last change; a view not here last changed
    /// at or before `loaded_at`.
    view_revisions: BTreeMap<(ViewKind, String), u64>,
    loaded_at: u64,
}

impl Coordinator {
    pub fn open(store: impl IntercloudStore) -> Result<Coordinator, StoreError> {
        let stored = store.load()?;
        let clouds: Vec<Cloud> = decode_rows(&stored, CLOUDS)?;
        let vms: Vec<VmRecord> = decode_rows(&stored, VMS)?;
        Ok(Coordinator {
            store: Box::new(store),
            revision: stored.revision,
            clouds: clouds.into_iter().map(|c| (c.name.clone(), c)).collect(),
            vms: vms.into_iter().map(|vm| (vm.key(), vm)).collect(),
            view_revisions: BTreeMap::new(),
            // Followers of an older run get every view at once.
            loaded_at: stored.revision,
        })
    }

    /// The revision of the last change (0 before any); bumped by every change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn clouds(&self) -> Vec<Cloud> {
        self.clouds.values().cloned().collect()
    }

    pub fn vms(&self) -> Vec<VmRecord> {
        self.vms.values().cloned().collect()
    }

    /// Registers `name` with its gateway VTEP, or changes the VTEP (every other
    /// cloud's table 1 follows). The same again changes nothing.
    pub fn register(&mut self, name: &str, gateway_vtep: std::net::Ipv4Addr) -> Result<Cloud, CoordinatorError> {
        check_cloud(name)?;
        super::model::check_address("gateway_vtep", gateway_vtep)?;
        let cloud = Cloud { name: name.to_string(), gateway_vtep };
        if self.clouds.get(name) == Some(&cloud) {
            return Ok(cloud);
        }
        let write = Write { table: CLOUDS, key: name.to_string(), value: Some(encode(&cloud)) };
        self.change(vec![write], |me| {
            me.clouds.insert(cloud.name.clone(), cloud.clone());
        })?;
        Ok(cloud)
    }

    /// A VM of `cloud` is online at the compute node `announce.vtep`. A VM
    /// recorded in another cloud moved between clouds: the last word wins.
    pub fn put_vm(&mut self, cloud: &str, key: VmKey, announce: Announce) -> Result<VmRecord, CoordinatorError> {
        check_cloud(cloud)?;
        key.check()?;
        announce.check()?;
        if !self.clouds.contains_key(cloud) {
            return Err(CoordinatorError::UnknownCloud(cloud.to_string()));
        }
        let vm = VmRecord { vni: key.vni, mac: key.mac, ip: announce.ip, vtep: announce.vtep, cloud: cloud.into() };
        if self.vms.get(&key) == Some(&vm) {
            return Ok(vm);
        }
        let write = Write { table: VMS, key: row_key(key.vni, &key.mac), value: Some(encode(&vm)) };
        self.change(vec![write], |me| {
            me.vms.insert(key, vm.clone());
        })?;
        Ok(vm)
    }

    /// `cloud` withdraws a VM. Only the cloud the VM is recorded in can: a
    /// late withdrawal after a move to another cloud removes nothing.
    pub fn delete_vm(&mut self, cloud: &str, key: VmKey) -> Result<Withdrawn, CoordinatorError> {
        check_cloud(cloud)?;
        key.check()?;
        match self.vms.get(&key) {
            Some(vm) if vm.cloud == cloud => {
                let write = Write { table: VMS, key: row_key(key.vni, &key.mac), value: None };
                let vtep = vm.vtep;
                self.change(vec![write], |me| {
                    me.vms.remove(&key);
                })?;
                Ok(Withdrawn { withdrawn: true, vtep: Some(vtep) })
            }
            _ => Ok(Withdrawn { withdrawn: false, vtep: None }),
        }
    }

    /// A view of a registered cloud.
    pub fn view(&self, kind: ViewKind, cloud: &str) -> Result<View, CoordinatorError> {
        check_cloud(cloud)?;
        if !self.clouds.contains_key(cloud) {
            return Err(CoordinatorError::UnknownCloud(cloud.to_string()));
        }
        let revision = self.view_revisions.get(&(kind, cloud.to_string())).copied().unwrap_or(self.loaded_at);
        Ok(View { revision, entries: self.entries(kind, cloud) })
    }

    fn entries(&self, kind: ViewKind, cloud: &str) -> Vec<Entry> {
        match kind {
            ViewKind::Gateway => gateway_view(cloud, &self.vms),
            ViewKind::Forwarding => forwarding_view(cloud, &self.vms, &self.clouds),
        }
    }

    fn all_views(&self) -> BTreeMap<(ViewKind, String), Vec<Entry>> {
        let mut views = BTreeMap::new();
        for name in self.clouds.keys() {
            for kind in [ViewKind::Gateway, ViewKind::Forwarding] {
                views.insert((kind, name.clone()), self.entries(kind, name));
            }
        }
        views
    }

    /// Commits `writes` with the next revision, then applies `apply` in memory
    /// and dates every view it altered. A failed commit changes nothing.
    fn change(&mut self, writes: Vec<Write>, apply: impl FnOnce(&mut Coordinator)) -> Result<(), StoreError> {
        let revision = self.revision + 1;
        self.store.commit(&Batch { revision, writes })?;
        let before = self.all_views();
        apply(self);
        self.revision = revision;
        for (view, entries) in self.all_views() {
            if before.get(&view) != Some(&entries) {
                self.view_revisions.insert(view, revision);
            }
        }
        Ok(())
    }
}
