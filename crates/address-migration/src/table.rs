//! One immutable version of the address migration table, as workers use it:
//! per VM port the addresses to rewrite in each direction, and what judging a
//! VM's report needs. Built on the control side (`control.rs`) from the
//! configuration and published whole (copy-on-write).
use std::net::Ipv4Addr;

use rustc_hash::FxHashMap;

use switchyard_pipeline::PortId;
use switchyard_wire::{MacAddr, ReportStatus};

/// Stands for a port this switch does not have (a record naming a port that
/// left the TOML): never equal to a real port, so "another port" in judgements.
pub(super) const ABSENT_PORT: PortId = PortId(u16::MAX);

/// IPv4 address -> IPv4 address, as host-order integers.
#[derive(Debug, Default, Clone)]
pub struct AddressMap(FxHashMap<u32, u32>);

impl AddressMap {
    #[inline]
    pub fn get(&self, ip: u32) -> Option<u32> {
        self.0.get(&ip).copied()
    }

    pub fn insert(&mut self, from: Ipv4Addr, to: Ipv4Addr) {
        self.0.insert(from.to_bits(), to.to_bits());
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The rewrites of one VM port.
#[derive(Debug, Default)]
pub struct PortRewrites {
    /// Network -> VM: destination primary IP -> post-migration IP.
    pub to_vm: AddressMap,
    /// VM -> network: source post-migration IP -> primary IP.
    pub from_vm: AddressMap,
}

/// An address migration as the table takes it (the port resolved to its id,
/// `ABSENT_PORT` if the switch has no such port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressMigrationRecord {
    pub vni: u32,
    pub primary: Ipv4Addr,
    pub post: Option<Ipv4Addr>,
    pub port: PortId,
}

/// A VM port of this switch: its id, its network and its own MAC (the source
/// of the switch's replies on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmPortRecord {
    pub id: PortId,
    pub vni: Option<u32>,
    pub mac: MacAddr,
}

fn key(vni: u32, ip: Ipv4Addr) -> u64 {
    (u64::from(vni) << 32) | u64::from(ip.to_bits())
}

#[derive(Debug, Default)]
pub struct AddressMigrationTable {
    /// The configuration generation it was built from.
    pub generation: u64,
    /// By port id; `None` for ports without an active migration.
    rewrites: Vec<Option<PortRewrites>>,
    /// By port id: VM ports (`Some`) with their network and MAC.
    vm_ports: Vec<Option<VmPortRecord>>,
    /// (VNI, primary IP) -> the port it is registered for and its post-migration IP.
    registered: FxHashMap<u64, (PortId, Option<Ipv4Addr>)>,
    /// (VNI, IP) -> the ports whose VM endpoints have that IP.
    bound: FxHashMap<u64, Vec<PortId>>,
    /// (VNI, IP) -> the primary IP of the migration that uses it (as primary or post-migration IP).
    used: FxHashMap<u64, Ipv4Addr>,
    active: usize,
}

impl AddressMigrationTable {
    /// `bound` lists (VNI, IP, port) of every VM endpoint with an IP. A
    /// migration rewrites only while its port is in its network and its
    /// post-migration IP is known.
    pub fn build(generation: u64, records: &[AddressMigrationRecord], bound: &[(u32, Ipv4Addr, PortId)], vm_ports: &[VmPortRecord]) -> Self {
        let slots = vm_ports.iter().map(|p| p.id.index() + 1).max().unwrap_or(0);
        let mut table = AddressMigrationTable {
            generation,
            rewrites: (0..slots).map(|_| None).collect(),
            vm_ports: vec![None; slots],
            ..Default::default()
        };
        for port in vm_ports {
            table.vm_ports[port.id.index()] = Some(*port);
        }
        for &(vni, ip, port) in bound {
            table.bound.entry(key(vni, ip)).or_default().push(port);
        }
        for record in records {
            table.registered.insert(key(record.vni, record.primary), (record.port, record.post));
            table.used.insert(key(record.vni, record.primary), record.primary);
            let Some(post) = record.post else { continue };
            table.used.insert(key(record.vni, post), record.primary);
            let in_network = table.vm_port(record.port).is_some_and(|p| p.vni == Some(record.vni));
            if let (true, Some(slot)) = (in_network, table.rewrites.get_mut(record.port.index())) {
                let rewrites = slot.get_or_insert_with(PortRewrites::default);
                rewrites.to_vm.insert(record.primary, post);
                rewrites.from_vm.insert(post, record.primary);
                table.active += 1;
            }
        }
        table
    }

    /// No migration registered at all: the stages do nothing (one branch per burst).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.registered.is_empty()
    }

    /// The rewrites of `port`, if it has an active migration.
    #[inline]
    pub fn port(&self, port: PortId) -> Option<&PortRewrites> {
        self.rewrites.get(port.index()).and_then(Option::as_ref)
    }

    pub fn vm_port(&self, port: PortId) -> Option<&VmPortRecord> {
        self.vm_ports.get(port.index()).and_then(Option::as_ref)
    }

    /// Migrations that rewrite now, and those registered without a
    /// post-migration IP (or whose port is not in their network).
    pub fn sizes(&self) -> (usize, usize) {
        (self.active, self.registered.len() - self.active)
    }

    /// How a report received on `port` is judged: the rules of
    /// `store::rules::judge_report`, on this version's lookups.
    pub fn judge_report(&self, port: PortId, source: Ipv4Addr, primary: Ipv4Addr, post: Ipv4Addr) -> ReportStatus {
        use ReportStatus::*;
        if source != post {
            return SourceNotPostMigrationIp;
        }
        let Some(vni) = self.vm_port(port).and_then(|p| p.vni) else {
            return PostMigrationIpNotBound;
        };
        match self.bound.get(&key(vni, post)) {
            None => return PostMigrationIpNotBound,
            Some(ports) if !ports.contains(&port) => return PostMigrationIpOnOtherPort,
            Some(_) => {}
        }
        let Some(&(owner, current)) = self.registered.get(&key(vni, primary)) else {
            return PrimaryIpNotRegistered;
        };
        if owner != port {
            return PrimaryIpOfOtherPort;
        }
        if self.used.get(&key(vni, post)).is_some_and(|&user| user != primary) || post == primary {
            return PostMigrationIpInUse;
        }
        if current == Some(post) {
            InEffect
        } else {
            Accepted
        }
    }
}
