//! One edit of the configuration, and how a snapshot takes it.
use serde::{Deserialize, Serialize};

use std::net::Ipv4Addr;

use super::snapshot::{AddressMigration, ConfigSnapshot, Network, PortNetwork, RemoteEndpoint, VmEndpoint, Vni};
use super::storage::{StorageImage, StorageUser};
use switchyard_wire::MacAddr;

/// One edit. `Store::commit` applies a list of them in one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Creates or replaces the network with this VNI.
    PutNetwork(Network),
    DeleteNetwork {
        vni: Vni,
    },
    /// Creates or replaces the VM endpoint (vni, mac).
    PutEndpoint(VmEndpoint),
    DeleteEndpoint {
        vni: Vni,
        mac: MacAddr,
    },
    /// Creates or replaces the remote endpoint (vni, mac).
    PutRemote(RemoteEndpoint),
    DeleteRemote {
        vni: Vni,
        mac: MacAddr,
    },
    /// Binds (or rebinds) a VM-role port to a network.
    PutPortNetwork(PortNetwork),
    DeletePortNetwork {
        port: String,
    },
    /// Creates or replaces the address migration (vni, primary IP).
    PutAddressMigration(AddressMigration),
    DeleteAddressMigration {
        vni: Vni,
        primary_ip: Ipv4Addr,
    },
    /// Creates or replaces the storage user with this name (its secret included:
    /// the database stores it, JSON never carries it).
    PutStorageUser(StorageUser),
    DeleteStorageUser {
        name: String,
    },
    /// Creates or replaces the storage image with this name.
    PutStorageImage(StorageImage),
    DeleteStorageImage {
        name: String,
    },
}

impl Change {
    /// Whether the change is to storage users or images (what the block-I/O
    /// service serves, `StorageCatalog`).
    pub fn is_storage(&self) -> bool {
        matches!(
            self,
            Change::PutStorageUser(_)
                | Change::DeleteStorageUser { .. }
                | Change::PutStorageImage(_)
                | Change::DeleteStorageImage { .. }
        )
    }
}

impl ConfigSnapshot {
    /// Applies `changes` in memory, keeping every list in the database's key order
    /// (networks by VNI, endpoints and remotes by VNI then MAC, ports by name,
    /// address migrations by VNI then primary IP, storage users and images by name;
    /// the last ids assigned follow the records put), so the
    /// result equals what `Store::snapshot` reads back after the same commit.
    /// Deleting a record that is absent does nothing; the generation is not touched.
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::PutNetwork(n) => put(&mut self.networks, n.clone(), |r| r.vni),
                Change::DeleteNetwork { vni } => delete(&mut self.networks, vni, |r| r.vni),
                Change::PutEndpoint(e) => put(&mut self.endpoints, e.clone(), |r| (r.vni, r.mac)),
                Change::DeleteEndpoint { vni, mac } => delete(&mut self.endpoints, &(*vni, *mac), |r| (r.vni, r.mac)),
                Change::PutRemote(r) => put(&mut self.remotes, r.clone(), |r| (r.vni, r.mac)),
                Change::DeleteRemote { vni, mac } => delete(&mut self.remotes, &(*vni, *mac), |r| (r.vni, r.mac)),
                Change::PutPortNetwork(p) => put(&mut self.ports, p.clone(), |r| r.port.clone()),
                Change::DeletePortNetwork { port } => delete(&mut self.ports, port, |r| r.port.clone()),
                Change::PutAddressMigration(m) => put(&mut self.address_migrations, m.clone(), |r| (r.vni, r.primary_ip)),
                Change::DeleteAddressMigration { vni, primary_ip } => {
                    delete(&mut self.address_migrations, &(*vni, *primary_ip), |r| (r.vni, r.primary_ip))
                }
                Change::PutStorageUser(u) => {
                    self.storage.last_user_id = self.storage.last_user_id.max(u.id);
                    put(&mut self.storage.users, u.clone(), |r| r.name.clone())
                }
                Change::DeleteStorageUser { name } => delete(&mut self.storage.users, name, |r| r.name.clone()),
                Change::PutStorageImage(i) => {
                    self.storage.last_image_id = self.storage.last_image_id.max(i.id);
                    put(&mut self.storage.images, i.clone(), |r| r.name.clone())
                }
                Change::DeleteStorageImage { name } => delete(&mut self.storage.images, name, |r| r.name.clone()),
            }
        }
    }
}

fn put<T, K: Ord>(list: &mut Vec<T>, record: T, key: impl Fn(&T) -> K) {
    match list.binary_search_by_key(&key(&record), &key) {
        Ok(i) => list[i] = record,
        Err(i) => list.insert(i, record),
    }
}

fn delete<T, K: Ord>(list: &mut Vec<T>, wanted: &K, key: impl Fn(&T) -> K) {
    if let Ok(i) = list.binary_search_by(|r| key(r).cmp(wanted)) {
        list.remove(i);
    }
}
