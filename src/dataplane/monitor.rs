//! A read-only view of a running data plane for the control plane: live
//! counters, ports and the switching unit, without touching any worker.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use crossbeam::utils::CachePadded;

use super::{Feature, Features, PortBinding, PortSummary, Summary, Totals, WorkerCounters};
use crate::dpdk::{self, LcoreId, Mbuf, Mempool};
use crate::vm_migration::HoldShared;
use crate::block_server::version::StorageVersion;
use crate::overlay::{TunnelInfo, TunnelTable, UnitHost};
use crate::unit::Versioned;
use crate::address_migration::AddressMigrations;

/// Cloneable and shareable across threads. Drop every clone before the
/// `Dataplane` (it holds the mempool, which must go before the EAL).
#[derive(Clone)]
pub struct Monitor {
    pub(super) workers: Vec<(LcoreId, Arc<CachePadded<WorkerCounters>>)>,
    pub(super) ports: Vec<(PortBinding, String)>,
    pub(super) port_slots: usize,
    pub(super) pool: Arc<Mempool>,
    pub(super) started_at: Instant,
    pub(super) overlay: Option<Arc<UnitHost<Mbuf>>>,
    pub(super) holding: Arc<HoldShared>,
    pub(super) address_migrations: Option<Arc<AddressMigrations>>,
    pub(super) features: Features,
    pub(super) tunnels: Option<TunnelTable>,
    pub(super) storage: Option<Arc<Versioned<StorageVersion>>>,
}

impl Monitor {
    /// The same summary a run prints at its end, read live.
    pub fn summary(&self) -> Summary {
        let totals = self.totals();
        let ports = self
            .ports
            .iter()
            .map(|(binding, driver)| {
                let nic = dpdk::port_stats(binding.id).unwrap_or_default();
                PortSummary::new(binding, driver, nic, dpdk::port_link(binding.id), &totals)
            })
            .collect();
        Summary::new(self.started_at.elapsed(), ports, totals, self.pool.in_use(), super::features::stats_of(&self.features))
    }

    pub fn totals(&self) -> Totals {
        Totals::sum(self.workers.iter().map(|(_, c)| &***c), self.port_slots)
    }

    /// Each worker's own counters, by lcore.
    pub fn per_worker(&self) -> Vec<(u32, Totals)> {
        self.workers.iter().map(|(lcore, c)| (lcore.0, Totals::sum([&***c], self.port_slots))).collect()
    }

    pub fn ports(&self) -> impl Iterator<Item = (&PortBinding, &str)> {
        self.ports.iter().map(|(b, d)| (b, d.as_str()))
    }

    /// The vRouter units, when the vRouter forwards.
    pub fn overlay(&self) -> Option<&Arc<UnitHost<Mbuf>>> {
        self.overlay.as_ref()
    }

    /// The buffer-or-forward stage's shared table.
    pub fn holding(&self) -> &Arc<HoldShared> {
        &self.holding
    }

    /// The address migration tables, when the vRouter forwards.
    pub fn address_migrations(&self) -> Option<&Arc<AddressMigrations>> {
        self.address_migrations.as_ref()
    }

    /// The features around the switching unit, in registration order.
    pub fn features(&self) -> impl Iterator<Item = &dyn Feature<Mbuf>> {
        self.features.iter().map(|f| f.as_ref())
    }

    /// Where the storage users, images and files go to the block-I/O stages (with `[storage]`).
    pub fn storage(&self) -> Option<&Arc<Versioned<StorageVersion>>> {
        self.storage.as_ref()
    }

    /// Every tunnel, by remote VTEP (empty without the vRouter).
    pub fn tunnels(&self) -> BTreeMap<Ipv4Addr, TunnelInfo> {
        let Some(table) = &self.tunnels else { return BTreeMap::new() };
        table.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
