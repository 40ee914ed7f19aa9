//! The features of the data plane, each registered once: a worker's pipeline is every feature's ingress stage
//! in registration order, then every feature's egress stage in reverse order (with the vRouter, the features
//! wrap the switching unit, registered last, like layers), and the housekeeping thread gives each its turn;
//! committed changes and the `/metrics` page reach each one too. A new datapath feature is a type
//! implementing `Feature` and one line in `overlay_features`.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::address_migration::{AddressMigrations, Direction};
use crate::block_server::neighbors::ReplyNeighbors;
use crate::block_server::stage::{BlockIoStage, ServiceAddress};
use crate::block_server::version::StorageVersion;
use crate::dpdk::{rdtsc, Mbuf, Mempool};
use crate::io_ring::IoRing;
use crate::model::{Change, ConfigSnapshot};
use crate::overlay::{TunnelControl, TunnelShared, TunnelStage, Underlay, UnitHost};
use crate::pipeline::{Allocator, PacketBuf, Side, Stage};
use crate::unit::Versioned;
use crate::unit::{UnitCommand, UnitStage};
use crate::vm_migration::{HoldShared, MigrationStage};
use crate::xconnect::CrossConnect;
use crate::vni_counters::{self, VniCounters};

use super::{MetricsPage, Summary, WorkerCounters};

/// A worker's stage, boxed as the run loop holds it.
pub type BoxedStage<P> = Box<dyn Stage<P> + Send>;

/// What a feature is told about the worker whose stages it makes.
pub struct WorkerSetup<'a, P> {
    /// Which side of the switch each port is on, by port id.
    pub sides: &'a [Side],
    pub tsc_hz: u64,
    /// The worker's counters: a feature's stage counts into its own block.
    pub counters: &'a WorkerCounters,
    /// Makes an allocator of new packets (ARP requests, replies) for one stage.
    pub alloc: &'a dyn Fn() -> Allocator<P>,
}

/// One feature of the data plane. Its stages are made once per worker at start, off the fast path.
pub trait Feature<P: PacketBuf>: Send + Sync {
    /// The feature's name: its key under `features` in the stats.
    fn name(&self) -> &'static str;
    /// The stage a worker runs on the way in (before the switching unit), if any.
    fn ingress(&self, _worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        None
    }
    /// The stage a worker runs on the way out (after the switching unit), if any.
    fn egress(&self, _worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        None
    }
    /// Called every few milliseconds on the housekeeping thread: fold in what workers reported, free table
    /// versions no worker reads any more.
    fn housekeeping(&self, _now: Instant) {}
    /// Takes a committed change: `changes` made `config`. Called on the control plane's thread in generation
    /// order after every commit, and once at start with no changes and the database's snapshot.
    fn apply(&self, _changes: &[Change], _config: &ConfigSnapshot) {}
    /// Writes its families on the `/metrics` page, from the counters summed over workers.
    fn metrics(&self, _summary: &Summary, _page: &mut MetricsPage) {}
    /// Its section of `GET /v1/stats` (under `features`, by name), if it has one.
    fn stats(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Each feature's `stats` section, by name.
pub(super) fn stats_of<P: PacketBuf>(features: &[Box<dyn Feature<P>>]) -> BTreeMap<&'static str, serde_json::Value> {
    features.iter().filter_map(|f| Some((f.name(), f.stats()?))).collect()
}

/// A worker's stages, in pipeline order: every ingress stage in registration order, then every egress
/// stage in reverse order.
pub fn pipeline_of<P: PacketBuf>(features: &[Box<dyn Feature<P>>], worker: &WorkerSetup<'_, P>) -> Vec<BoxedStage<P>> {
    let ingress = features.iter().filter_map(|f| f.ingress(worker));
    let egress: Vec<_> = features.iter().rev().filter_map(|f| f.egress(worker)).collect();
    ingress.chain(egress).collect()
}

/// The features the vRouter runs with, in registration order: storage requests to the switch's own address
/// first (they are not the overlay's), the buffer for migrating VMs, the address rewrite, tunnels coming up
/// on demand (with an underlay), the per-network counters (next to the unit, on both sides), and the
/// switching unit itself, innermost.
pub fn overlay_features<P: PacketBuf + Send + 'static>(
    host: &Arc<UnitHost<P>>,
    block_server: Option<Box<dyn Feature<P>>>,
    holding: &Arc<HoldShared>,
    migrations: &Arc<AddressMigrations>,
    tunnels: Option<Tunnels<P>>,
) -> Vec<Box<dyn Feature<P>>> {
    let mut features: Vec<Box<dyn Feature<P>>> = Vec::new();
    features.extend(block_server);
    features.push(Box::new(VmMigration(holding.clone())));
    features.push(Box::new(AddressMigration(migrations.clone())));
    if let Some(tunnels) = tunnels {
        features.push(Box::new(tunnels));
    }
    features.push(Box::new(VniCounting::new(host)));
    features.push(Box::new(Overlay(host.clone())));
    features
}

/// The vRouter: the switching unit every burst goes through, bound per side and replaced copy-on-write on
/// every change (docs/vrouter.md). The gateway role is its configuration too (docs/gateway.md).
pub struct Overlay<P: PacketBuf + 'static>(pub Arc<UnitHost<P>>);

impl<P: PacketBuf + Send + 'static> Feature<P> for Overlay<P> {
    fn name(&self) -> &'static str {
        "overlay"
    }
    fn ingress(&self, worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        Some(Box::new(UnitStage::new(self.0.units().clone(), worker.sides.to_vec(), worker.tsc_hz)))
    }
    /// Folds in what workers learned, ages entries out, frees units no worker uses.
    fn housekeeping(&self, _now: Instant) {
        self.0.housekeeping();
    }
    fn apply(&self, changes: &[Change], config: &ConfigSnapshot) {
        let command = if changes.is_empty() {
            // At start: the units were built from this snapshot, unless the
            // database moved on since (queued requests applied at start).
            if self.0.bound().iter().all(|unit| unit.generation() == config.generation) {
                return;
            }
            UnitCommand::Replace(config.clone())
        } else {
            UnitCommand::Apply { generation: config.generation, changes: changes.to_vec() }
        };
        if let Err(e) = self.0.apply(&command) {
            log::error!("control: generation {} committed but not applied: {e}", config.generation);
        }
    }
    fn metrics(&self, _summary: &Summary, page: &mut MetricsPage) {
        page.family("switchyard_unit_info", "gauge", "The switching unit bound to each side (VM ports, uplink ports).");
        page.family("switchyard_unit_generation", "gauge", "The configuration generation of the unit bound to each side.");
        for (side, name) in [(Side::Vm, "vm"), (Side::Uplink, "uplink")] {
            let unit = self.0.units().active(side);
            page.sample("switchyard_unit_info", &[("side", name), ("id", unit.id()), ("version", unit.version())], 1);
            page.sample("switchyard_unit_generation", &[("side", name)], unit.generation());
        }
        let info = self.0.units().active(Side::Vm).info();
        page.family("switchyard_table_entries", "gauge", "Entries in the vRouter's tables.");
        for (table, size) in info["tables"].as_object().into_iter().flatten() {
            page.sample("switchyard_table_entries", &[("table", table)], size.as_u64().unwrap_or(0));
        }
        page.family("switchyard_learn_reports_lost_total", "counter", "Learn reports dropped because the control side was behind (no packet is lost).");
        page.sample("switchyard_learn_reports_lost_total", &[], info["learn_reports_lost"].as_u64().unwrap_or(0));
    }
}

/// The static patch panel the switch runs without a vRouter: each port's `forward_to`.
pub struct CrossConnecting(pub CrossConnect);

impl<P: PacketBuf + Send + 'static> Feature<P> for CrossConnecting {
    fn name(&self) -> &'static str {
        "cross-connect"
    }
    fn ingress(&self, _worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        Some(Box::new(self.0.clone()))
    }
}

/// VM live migration: packets for a migrating VM wait in a buffer, or go on to its new host
/// (docs/migration.md).
pub struct VmMigration(pub Arc<HoldShared>);

impl<P: PacketBuf + Send + 'static> Feature<P> for VmMigration {
    fn name(&self) -> &'static str {
        "vm-migration"
    }
    fn ingress(&self, worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        Some(Box::new(MigrationStage::new(self.0.clone(), worker.sides.to_vec(), worker.counters.migration.clone())))
    }
    fn housekeeping(&self, _now: Instant) {
        self.0.reclaim();
    }
}

/// Address migration: sources from VM ports rewritten before the unit switches or encapsulates them,
/// destinations after it chose a VM port (docs/address-migration.md).
pub struct AddressMigration(pub Arc<AddressMigrations>);

impl<P: PacketBuf + Send + 'static> Feature<P> for AddressMigration {
    fn name(&self) -> &'static str {
        "address-migration"
    }
    fn ingress(&self, worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        Some(Box::new(self.0.stage(Direction::FromVm, worker.counters.rewrite.clone())))
    }
    fn egress(&self, worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        Some(Box::new(self.0.stage(Direction::ToVm, worker.counters.rewrite.clone())))
    }
    fn housekeeping(&self, _now: Instant) {
        self.0.reclaim();
    }
    /// Its tables are rebuilt after every change: migrations, endpoints' addresses and port bindings all
    /// matter to them.
    fn apply(&self, _changes: &[Change], config: &ConfigSnapshot) {
        if self.0.current().generation != config.generation {
            self.0.apply(config);
        }
    }
    fn metrics(&self, summary: &Summary, page: &mut MetricsPage) {
        let rewrite = &summary.address_rewrite;
        page.family("switchyard_address_rewrites_total", "counter", "Packets whose address an address migration rewrote: to_vm (destination primary -> post-migration IP), from_vm (source post-migration -> primary IP).");
        page.sample("switchyard_address_rewrites_total", &[("direction", "to_vm")], rewrite.to_vm);
        page.sample("switchyard_address_rewrites_total", &[("direction", "from_vm")], rewrite.from_vm);
        page.family("switchyard_address_rewrite_icmp_errors_total", "counter", "ICMP errors whose embedded packet was translated too.");
        page.sample("switchyard_address_rewrite_icmp_errors_total", &[], rewrite.icmp_errors);
        page.family("switchyard_address_reports_total", "counter", "VM reports of address migrations, by the status the VM was answered with.");
        for (status, count) in &rewrite.reports {
            page.sample("switchyard_address_reports_total", &[("status", status)], *count);
        }
        page.family("switchyard_address_report_arp_replies_total", "counter", "ARP requests for the report address the switch answered.");
        page.sample("switchyard_address_report_arp_replies_total", &[], rewrite.report_arp_replies);
        let info = self.0.info();
        page.family("switchyard_address_migrations", "gauge", "Address migrations: active (rewriting) and pending (no post-migration IP yet, or the port is outside their network).");
        page.sample("switchyard_address_migrations", &[("state", "active")], info["active"].as_u64().unwrap_or(0));
        page.sample("switchyard_address_migrations", &[("state", "pending")], info["pending"].as_u64().unwrap_or(0));
        page.family("switchyard_address_reports_lost_total", "counter", "Judged VM reports the control plane never saw because its queue was full (accepted ones were answered busy).");
        page.sample("switchyard_address_reports_lost_total", &[], info["reports_lost"].as_u64().unwrap_or(0));
    }
}

/// Tunnels coming up on demand: frames the unit could not send for want of a next-hop MAC wait in the
/// egress stage while the housekeeping resolves it (docs/tunnels.md).
pub struct Tunnels<P: PacketBuf + 'static> {
    shared: Arc<TunnelShared>,
    underlay: Underlay,
    host: Arc<UnitHost<P>>,
    /// The tunnel control, and the block server's version whose users' addresses it keeps resolved.
    control: Mutex<(TunnelControl, Option<u64>)>,
    /// The block server's users, whose addresses stay resolved too.
    storage: Option<Arc<Versioned<StorageVersion>>>,
}

impl<P: PacketBuf + 'static> Tunnels<P> {
    /// `None` without an underlay (no VTEP, nothing to resolve).
    pub fn new(
        shared: Arc<TunnelShared>,
        host: Arc<UnitHost<P>>,
        control: TunnelControl,
        storage: Option<Arc<Versioned<StorageVersion>>>,
    ) -> Option<Self> {
        let underlay = host.template().underlay.clone()?;
        Some(Tunnels { shared, underlay, host, control: Mutex::new((control, None)), storage })
    }
}

impl<P: PacketBuf + Send + 'static> Feature<P> for Tunnels<P> {
    fn name(&self) -> &'static str {
        "tunnels"
    }
    fn egress(&self, worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        let stage = TunnelStage::new(self.shared.clone(), self.underlay.clone(), worker.tsc_hz, worker.counters.tunnels.clone());
        Some(Box::new(stage.with_allocator((worker.alloc)())))
    }
    fn housekeeping(&self, now: Instant) {
        let (control, storage_seen) = &mut *self.control.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(versions) = self.storage.as_ref().filter(|v| *storage_seen != Some(v.generation())) {
            *storage_seen = Some(versions.generation());
            control.keep_resolved(versions.active(Side::Uplink).catalog.peer_ips());
        }
        control.tick(&self.host, now);
    }
}

/// I/Os one worker's block-I/O stage runs at once, and WRITEs it reassembles at once.
pub(super) const BLOCK_IO_IN_FLIGHT: usize = 128;
const BLOCK_IO_WRITES: usize = 64;

/// The storage server: requests to the switch's own address answered from image files through each
/// worker's io_uring, replies to the MACs ARP resolved on the underlay (docs/block-io.md).
pub struct BlockServer {
    address: ServiceAddress,
    versions: Arc<Versioned<StorageVersion>>,
    tunnels: Arc<TunnelShared>,
    underlay: Underlay,
    pool: Arc<Mempool>,
    /// One ring per worker, made at start so that a refusal stops the start; each worker takes one.
    rings: Mutex<Vec<IoRing>>,
}

impl BlockServer {
    pub fn new(
        address: ServiceAddress,
        versions: Arc<Versioned<StorageVersion>>,
        tunnels: Arc<TunnelShared>,
        underlay: Underlay,
        pool: Arc<Mempool>,
        rings: Vec<IoRing>,
    ) -> Self {
        BlockServer { address, versions, tunnels, underlay, pool, rings: Mutex::new(rings) }
    }
}

impl Feature<Mbuf> for BlockServer {
    fn name(&self) -> &'static str {
        "block-server"
    }
    fn ingress(&self, worker: &WorkerSetup<'_, Mbuf>) -> Option<BoxedStage<Mbuf>> {
        let ring = self.rings.lock().unwrap_or_else(PoisonError::into_inner).pop()?;
        let neighbors = ReplyNeighbors::new(self.tunnels.clone(), self.underlay.clone(), worker.tsc_hz);
        let pool = self.pool.clone();
        let alloc: Allocator<Mbuf> = Box::new(move || pool.alloc());
        let limits = (BLOCK_IO_IN_FLIGHT, BLOCK_IO_WRITES);
        let clock = (rdtsc(), worker.tsc_hz);
        let (address, versions, counters) = (self.address, self.versions.clone(), worker.counters.storage.clone());
        let reassembly_timeout = 2 * worker.tsc_hz;
        Some(Box::new(BlockIoStage::new(address, versions, neighbors, ring, limits, reassembly_timeout, clock, alloc, counters)))
    }
    fn housekeeping(&self, _now: Instant) {
        self.versions.reclaim();
    }
    fn metrics(&self, summary: &Summary, page: &mut MetricsPage) {
        let storage = &summary.storage;
        page.family("switchyard_storage_requests_total", "counter", "Authenticated storage request datagrams (each WRITE fragment counts).");
        page.sample("switchyard_storage_requests_total", &[], storage.requests);
        page.family("switchyard_storage_answered_from_window_total", "counter", "Storage retransmissions answered from the anti-replay window, not executed again.");
        page.sample("switchyard_storage_answered_from_window_total", &[], storage.answered_from_window);
        page.family("switchyard_storage_error_replies_total", "counter", "Storage replies with an error status.");
        page.sample("switchyard_storage_error_replies_total", &[], storage.error_replies);
        page.family("switchyard_storage_bytes_total", "counter", "Image bytes read and written by the block-I/O stage.");
        page.sample("switchyard_storage_bytes_total", &[("direction", "read")], storage.bytes_read);
        page.sample("switchyard_storage_bytes_total", &[("direction", "written")], storage.bytes_written);
    }
}

/// Per-network counters: what the VMs of each network sent and received on this switch
/// (docs/vni-counters.md).
pub struct VniCounting(VniCounters);

impl VniCounting {
    pub fn new<P: PacketBuf + 'static>(host: &UnitHost<P>) -> Self {
        VniCounting(VniCounters::new(host.template().vm_ports.iter().map(|p| (p.name.clone(), p.id)).collect()))
    }
}

impl<P: PacketBuf + Send + 'static> Feature<P> for VniCounting {
    fn name(&self) -> &'static str {
        "vni-counters"
    }
    fn ingress(&self, _worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        Some(Box::new(self.0.stage(vni_counters::Direction::FromVms)))
    }
    fn egress(&self, _worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        Some(Box::new(self.0.stage(vni_counters::Direction::ToVms)))
    }
    fn housekeeping(&self, _now: Instant) {
        self.0.reclaim();
    }
    fn apply(&self, _changes: &[Change], config: &ConfigSnapshot) {
        self.0.apply(config);
    }
    fn metrics(&self, _summary: &Summary, page: &mut MetricsPage) {
        let totals = self.0.totals();
        page.family("switchyard_vni_packets_total", "counter", "Packets by network: from_vms = sent into the switch by the VMs of the network on this host, to_vms = delivered to them.");
        for t in &totals {
            let vni = t.vni.to_string();
            page.sample("switchyard_vni_packets_total", &[("vni", &vni), ("direction", "from_vms")], t.from_vms_packets);
            page.sample("switchyard_vni_packets_total", &[("vni", &vni), ("direction", "to_vms")], t.to_vms_packets);
        }
        page.family("switchyard_vni_bytes_total", "counter", "Bytes by network and direction, as switchyard_vni_packets_total.");
        for t in &totals {
            let vni = t.vni.to_string();
            page.sample("switchyard_vni_bytes_total", &[("vni", &vni), ("direction", "from_vms")], t.from_vms_bytes);
            page.sample("switchyard_vni_bytes_total", &[("vni", &vni), ("direction", "to_vms")], t.to_vms_bytes);
        }
    }
    fn stats(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "networks": self.0.totals() }))
    }
}
