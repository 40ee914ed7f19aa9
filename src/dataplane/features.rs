//! The features of the data plane around the switching unit, each registered once: a worker's pipeline is
//! every feature's ingress stage in registration order, the switching unit, then every feature's egress stage
//! in reverse order (the features wrap the unit like layers), and the housekeeping thread gives each its
//! turn. A new datapath feature is a type implementing `Feature` and one line in `overlay_features`.
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::address_migration::{AddressMigrations, Direction};
use crate::block_server::neighbors::ReplyNeighbors;
use crate::block_server::stage::{BlockIoStage, ServiceAddress};
use crate::block_server::version::StorageVersion;
use crate::dpdk::{rdtsc, Mbuf, Mempool};
use crate::io_ring::IoRing;
use crate::overlay::{TunnelControl, TunnelShared, TunnelStage, Underlay, UnitHost};
use crate::pipeline::{Allocator, PacketBuf, Side, Stage};
use crate::unit::Versioned;
use crate::vm_migration::{HoldShared, MigrationStage};

use super::WorkerCounters;

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
    /// The feature's name, for logs.
    fn name(&self) -> &'static str;
    /// The stage a worker runs before the switching unit, if any.
    fn ingress(&self, _worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        None
    }
    /// The stage a worker runs after the switching unit, if any.
    fn egress(&self, _worker: &WorkerSetup<'_, P>) -> Option<BoxedStage<P>> {
        None
    }
    /// Called every few milliseconds on the housekeeping thread: fold in what workers reported, free table
    /// versions no worker reads any more.
    fn housekeeping(&self, _now: Instant) {}
}

/// A worker's stages around the unit stage `unit`, in pipeline order.
pub fn pipeline_of<P: PacketBuf>(
    features: &[Box<dyn Feature<P>>],
    unit: BoxedStage<P>,
    worker: &WorkerSetup<'_, P>,
) -> Vec<BoxedStage<P>> {
    let ingress = features.iter().filter_map(|f| f.ingress(worker));
    let egress: Vec<_> = features.iter().rev().filter_map(|f| f.egress(worker)).collect();
    ingress.chain(std::iter::once(unit)).chain(egress).collect()
}

/// The features the vRouter runs with, in registration order: storage requests to the switch's own address
/// first (they are not the overlay's), the buffer for migrating VMs, the address rewrite, and tunnels
/// coming up on demand (with an underlay).
pub fn overlay_features<P: PacketBuf + Send + 'static>(
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
    features
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
}
