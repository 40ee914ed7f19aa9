//! The data plane: EAL, mempool, ports and one worker per configured lcore.
//!
//! Each worker owns a share of the rx queues (round-robin over all ports'
//! queues) and one tx queue on every port, so no queue is ever shared.

mod counters;
mod features;
mod input;
mod metrics;
mod monitor;
mod summary;
mod vm_ports;
mod worker;

pub use counters::{MigrationTotals, PortTotals, Totals, WorkerCounters};
pub use features::{
    overlay_features, pipeline_of, AddressMigration, BlockServer, BoxedStage, CrossConnecting, Feature, Overlay, Tunnels, VmMigration,
    VniCounting, WorkerSetup,
};
pub use input::{count_pcap_packets, InputKind};
pub use metrics::MetricsPage;
pub use monitor::Monitor;
pub use summary::{PortSummary, Summary};
pub use worker::{IdlePolicy, Pipeline, Worker};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;

use crate::block_server::stage::ServiceAddress;
use crate::block_server::version::StorageVersion;
use crate::config::{Config, GatewayConfig, PortConfig, PortRole, TunnelsMode};
use crate::io_ring::{IoRing, IoRingConfig};
use crate::dpdk::{self, Eal, LcoreId, Mbuf, Mempool, Port, PortSetup, RxQueue, TxBuffer};
use crate::vm_migration::{HoldLimits, HoldShared};
use crate::overlay::{TunnelControl, TunnelLimits, TunnelShared, TunnelTable, Underlay, UnitHost, UnitSetup, VmPort};
use crate::pipeline::{Allocator, PortId, QueueId};
use crate::address_migration::{AddressMigrations, RewritePort};
use crate::model::ConfigSnapshot;
use crate::unit::{Side, UnitState, Versioned};
use crate::wire::MacAddr;
use crate::xconnect::{CrossConnect, Route};

/// What the workers run.
#[derive(Debug, Clone)]
pub enum Forwarding {
    /// The static patch panel: each port's `forward_to`.
    CrossConnect,
    /// The vRouter switching unit, built from this configuration.
    Overlay { config: ConfigSnapshot, ageing: Duration },
}

/// The data plane's registered features, shared with the control side.
pub type Features = Arc<Vec<Box<dyn Feature<Mbuf>>>>;

/// Learned MACs and neighbours not seen for this long are forgotten.
pub const DEFAULT_MAC_AGEING: Duration = Duration::from_secs(300);
/// How often the control side folds in learned entries and frees old units.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(10);

/// Why the data plane could not start. `Config` problems exit with code 2.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("config error: {0}")]
    Config(String),
    #[error("{0}")]
    Dpdk(String),
    /// The host lacks something a port needs (a capability, a device, a free socket path).
    #[error("{0}")]
    Host(String),
}

/// A port as the stages see it: its config index, DPDK id and MAC.
#[derive(Debug, Clone)]
pub struct PortBinding {
    pub index: usize,
    pub id: PortId,
    pub mac: MacAddr,
    pub config: PortConfig,
}

struct RunningPort {
    binding: PortBinding,
    driver: String,
    input: InputKind,
    port: Port,
}

/// Why `wait` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// SIGINT or SIGTERM.
    Signal,
    /// Every rx port is a finite pcap and all of it was read.
    InputDone,
    /// Finite pcap input stopped short of its packet count (see the port's rx_nombuf).
    InputStalled,
}

/// A running data plane. Dropping it stops workers, closes ports, then the EAL.
pub struct Dataplane {
    stop: Arc<AtomicBool>,
    /// Workers poll no rx queue until this is set (`open_rx`).
    rx_open: Arc<AtomicBool>,
    overlay: Option<Arc<UnitHost<Mbuf>>>,
    /// The buffer-or-forward stage's shared table (used with the vRouter).
    holding: Arc<HoldShared>,
    address_migrations: Option<Arc<AddressMigrations>>,
    /// The features around the switching unit (none with the cross-connect).
    features: Features,
    /// Per remote VTEP, the tunnel's state (kept by the housekeeping thread).
    tunnels: Option<TunnelTable>,
    /// How long a frame may wait for a tunnel's next hop (`tunnels.resolve_timeout_ms`).
    tunnel_timeout: Duration,
    /// The storage users, images and files the block-I/O stages serve (with `[storage]`).
    storage: Option<Arc<Versioned<StorageVersion>>>,
    housekeeping: Option<std::thread::JoinHandle<()>>,
    workers: Vec<(LcoreId, Arc<CachePadded<WorkerCounters>>)>,
    running: bool,
    port_slots: usize,
    started_at: Instant,
    // Field order is drop order: ports close before the pool is freed, the EAL goes last.
    ports: Vec<RunningPort>,
    pool: Arc<Mempool>,
    eal: Eal,
}

impl Dataplane {
    /// Starts EAL, the mempool, every port and the workers. `origin` names the
    /// config file in error messages; `forwarding` says what the workers run.
    pub fn start(config: &Config, origin: &str, forwarding: Forwarding) -> Result<Dataplane, StartError> {
        let config_error = |key: String, message: String| StartError::Config(format!("{origin}: {key}: {message}"));
        let mut inputs = Vec::with_capacity(config.ports.len());
        for (index, port) in config.ports.iter().enumerate() {
            let input = InputKind::of(port)
                .map_err(|e| config_error(format!("port[{index}].devargs"), format!("cannot read rx_pcap input: {e}")))?;
            inputs.push(input);
            vm_ports::prepare(port).map_err(|e| StartError::Host(format!("port[{index}] \"{}\": {e}", port.name)))?;
        }

        let eal = Eal::init(&config.eal_args("switchyard"))
            .map_err(|e| StartError::Dpdk(format!("EAL initialisation failed ({e}); check [eal] in {origin}")))?;
        let pool = Mempool::create("switchyard_mbufs", config.mempool.mbufs, config.mempool.cache, config.mempool.data_room)
            .map(Arc::new)
            .map_err(|e| StartError::Dpdk(format!("{e}; lower mempool.mbufs or raise eal.memory_mb in {origin}")))?;

        let workers = config.dataplane.workers.len();
        let tx_queues = u16::try_from(workers).unwrap_or(u16::MAX);
        let mut ports = Vec::with_capacity(config.ports.len());
        for ((index, pc), input) in config.ports.iter().enumerate().zip(inputs) {
            let key = format!("port[{index}]");
            let id = Port::probe(&pc.devargs, pc.device_name())
                .map_err(|e| config_error(format!("{key}.devargs"), probe_failure(pc, &e)))?;
            let info = Port::info(id).map_err(|e| StartError::Dpdk(format!("{key} \"{}\": {e}", pc.name)))?;
            if pc.rx_queues > info.max_rx_queues {
                return Err(config_error(
                    format!("{key}.rx_queues"),
                    format!("{} asked, but {} supports at most {}", pc.rx_queues, info.driver, info.max_rx_queues),
                ));
            }
            if tx_queues > info.max_tx_queues {
                return Err(config_error(
                    "dataplane.workers".into(),
                    format!(
                        "{workers} workers need {workers} tx queues on port[{index}] \"{}\", but {} supports at most {}",
                        pc.name, info.driver, info.max_tx_queues
                    ),
                ));
            }
            let setup = PortSetup {
                rx_queues: pc.rx_queues,
                tx_queues,
                rx_descriptors: pc.rx_descriptors,
                tx_descriptors: pc.tx_descriptors,
            };
            let port = Port::configure(id, setup, pool.clone()).map_err(|e| match pc.vhost_socket() {
                // The vhost PMD binds or connects its socket when the port is configured.
                Some(socket) => StartError::Dpdk(format!(
                    "{key} \"{}\": cannot set up vhost-user socket {:?} ({e}; see the VHOST_CONFIG line above)",
                    pc.name, socket.path
                )),
                None => StartError::Dpdk(format!("{key} \"{}\": {e}", pc.name)),
            })?;
            log::info!("{key} \"{}\" is {} ({}, {}), mac {}", pc.name, id, info.driver, pc.role, info.mac);
            ports.push(RunningPort {
                binding: PortBinding { index, id, mac: info.mac, config: pc.clone() },
                driver: info.driver,
                input,
                port,
            });
        }

        let port_slots = ports.iter().map(|p| p.binding.id.index() + 1).max().unwrap_or(0);
        let bindings: Vec<PortBinding> = ports.iter().map(|p| p.binding.clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let rx_open = Arc::new(AtomicBool::new(false));
        let tsc_hz = eal.tsc_hz();
        let gateway_role = config.gateway.clone();
        let (overlay, address_migrations) = match forwarding {
            Forwarding::CrossConnect => (None, None),
            Forwarding::Overlay { config, ageing } => {
                let migrations = Arc::new(AddressMigrations::new(&config, rewrite_ports(&bindings)));
                let setup = unit_setup(&bindings, config, gateway_role, ageing);
                (Some(Arc::new(UnitHost::new(setup))), Some(migrations))
            }
        };
        let limits = HoldLimits { packets: config.migration.buffer_packets, bytes: config.migration.buffer_bytes };
        let holding = Arc::new(HoldShared::new(limits));
        let t = &config.tunnels;
        let limits = TunnelLimits { packets: t.queue_packets, bytes: t.queue_bytes, resolve_timeout_ms: t.resolve_timeout_ms };
        let tunnels = Arc::new(TunnelShared::new(limits));
        let in_advance = t.mode == TunnelsMode::InAdvance;
        // The block-I/O service answers on the uplink's address (docs/storage-protocol.md).
        let storage = match (&config.storage, &overlay) {
            (Some(storage), Some(_)) => {
                let uplink = bindings.iter().find(|b| b.config.role == PortRole::Uplink && b.config.vtep.is_some());
                let address = uplink.and_then(|b| {
                    let ip = b.config.vtep.as_ref()?.address;
                    Some(ServiceAddress { port: b.id, mac: b.mac, ip, udp_port: storage.port })
                });
                let Some(address) = address else {
                    return Err(config_error("storage".into(), "the block-I/O service needs an uplink port with an address".into()));
                };
                Some((address, Arc::new(Versioned::new(Arc::new(StorageVersion::default())))))
            }
            _ => None,
        };
        // One io_uring per worker for the block-I/O stage, made here so that a refusal stops the start.
        let mut rings = Vec::new();
        if storage.is_some() {
            for _ in &config.dataplane.workers {
                let ring = IoRing::new(block_io_ring());
                rings.push(ring.map_err(|e| config_error("storage".into(), format!("cannot set up io_uring: {e}")))?);
            }
        }
        // The features around the switching unit, and one worker's pipeline of them.
        let (features, tunnel_table) = match (&overlay, &address_migrations) {
            (Some(host), Some(migrations)) => {
                let underlay = host.template().underlay.clone();
                let tunnel_control = TunnelControl::new(tunnels.clone(), underlay.clone(), in_advance);
                let tunnel_table = tunnel_control.table.clone();
                let block_server = storage.as_ref().zip(underlay).map(|((address, versions), underlay)| {
                    let rings = std::mem::take(&mut rings);
                    let server = BlockServer::new(*address, versions.clone(), tunnels.clone(), underlay, pool.clone(), rings);
                    Box::new(server) as Box<dyn Feature<Mbuf>>
                });
                let storage_versions = storage.as_ref().map(|(_, versions)| versions.clone());
                let tunnel_feature = Tunnels::new(tunnels.clone(), host.clone(), tunnel_control, storage_versions);
                (overlay_features(host, block_server, &holding, migrations, tunnel_feature), Some(tunnel_table))
            }
            _ => (vec![Box::new(CrossConnecting(cross_connect(&bindings))) as Box<dyn Feature<Mbuf>>], None),
        };
        let features: Features = Arc::new(features);
        let new_packets = || -> Allocator<Mbuf> {
            let pool = pool.clone();
            Box::new(move || pool.alloc())
        };
        let sides = port_sides(&bindings);
        let build_pipeline = |counters: &WorkerCounters| {
            pipeline_of(&features, &WorkerSetup { sides: &sides, tsc_hz, counters, alloc: &new_packets })
        };
        let mut plans: Vec<Worker> = config
            .dataplane
            .workers
            .iter()
            .enumerate()
            .map(|(w, &lcore)| {
                let counters = Arc::new(CachePadded::new(WorkerCounters::new(port_slots)));
                Worker {
                    lcore: LcoreId(lcore),
                    rx_queues: Vec::new(),
                    tx: (0..port_slots)
                        .map(|slot| {
                            bindings
                                .iter()
                                .any(|b| b.id.index() == slot)
                                .then(|| TxBuffer::new(PortId(slot as u16), QueueId(w as u16)))
                        })
                        .collect(),
                    pipeline: build_pipeline(&counters),
                    counters,
                    stop: stop.clone(),
                    rx_open: rx_open.clone(),
                    idle: IdlePolicy {
                        polls_before_sleep: config.dataplane.idle_polls_before_sleep,
                        sleep: Duration::from_micros(u64::from(config.dataplane.idle_sleep_us)),
                    },
                    drain_cycles: tsc_hz * u64::from(config.dataplane.tx_drain_us) / 1_000_000,
                    sent: 0,
                }
            })
            .collect();
        let queues = bindings.iter().map(|b| (b.id, b.config.rx_queues));
        for (plan, rx_queues) in plans.iter_mut().zip(assign_rx_queues(queues, workers)) {
            plan.rx_queues = rx_queues;
        }

        for running in &mut ports {
            let (index, name) = (running.binding.index, &running.binding.config.name);
            running.port.start().map_err(|e| StartError::Dpdk(format!("port[{index}] \"{name}\": {e}")))?;
            let link = running.port.link();
            let waiting = match running.binding.config.vhost_socket() {
                Some(socket) if !link.up && socket.client => format!(" (connecting to the VM at {:?})", socket.path),
                Some(socket) if !link.up => format!(" (until a VM connects to {:?})", socket.path),
                _ => String::new(),
            };
            log::info!("port[{index}] \"{name}\": link {}{waiting}", if link.up { "up" } else { "down" });
        }
        let housekeeping = {
            let (stop, features) = (stop.clone(), features.clone());
            std::thread::Builder::new()
                .name("housekeeping".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let now = Instant::now();
                        for feature in features.iter() {
                            feature.housekeeping(now);
                        }
                        std::thread::sleep(HOUSEKEEPING_INTERVAL);
                    }
                })
                .expect("spawn the housekeeping thread")
        };
        let mut dataplane = Dataplane {
            stop,
            rx_open,
            overlay,
            holding,
            address_migrations,
            features,
            tunnels: tunnel_table,
            tunnel_timeout: Duration::from_millis(config.tunnels.resolve_timeout_ms),
            storage: storage.map(|(_, versions)| versions),
            housekeeping: Some(housekeeping),
            workers: Vec::new(),
            running: true,
            port_slots,
            started_at: Instant::now(),
            ports,
            pool,
            eal,
        };
        for worker in plans {
            let (lcore, counters) = (worker.lcore, worker.counters.clone());
            lcore.launch(move || worker.run()).map_err(|e| StartError::Dpdk(e.to_string()))?;
            dataplane.workers.push((lcore, counters));
        }
        Ok(dataplane)
    }

    /// Lets the workers poll their rx queues. The caller first applies what must be in place before the first
    /// packet: the control plane's storage catalog is applied after `start` (it needs the `monitor`), and a pcap
    /// port's input would otherwise be read, and its storage requests refused as from unknown users, before it.
    pub fn open_rx(&self) {
        self.rx_open.store(true, Ordering::Release);
    }

    /// The vRouter units, when the vRouter forwards.
    pub fn overlay(&self) -> Option<&Arc<UnitHost<Mbuf>>> {
        self.overlay.as_ref()
    }

    /// The address migration tables, when the vRouter forwards.
    pub fn address_migrations(&self) -> Option<&Arc<AddressMigrations>> {
        self.address_migrations.as_ref()
    }

    /// A read-only view for the control plane; drop it before the data plane.
    pub fn monitor(&self) -> Monitor {
        Monitor {
            workers: self.workers.clone(),
            ports: self.ports.iter().map(|p| (p.binding.clone(), p.driver.clone())).collect(),
            port_slots: self.port_slots,
            pool: self.pool.clone(),
            started_at: self.started_at,
            overlay: self.overlay.clone(),
            holding: self.holding.clone(),
            address_migrations: self.address_migrations.clone(),
            features: self.features.clone(),
            tunnels: self.tunnels.clone(),
            storage: self.storage.clone(),
        }
    }

    /// The DPDK port id of the configured port `name`.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.ports.iter().map(|p| &p.binding).find(|b| b.config.name == name).map(|b| b.id)
    }

    pub fn tsc_hz(&self) -> u64 {
        self.eal.tsc_hz()
    }

    /// Starts a new output-gap measuring window on every worker.
    pub fn open_gap_window(&self) {
        for (_, counters) in &self.workers {
            counters.output_gap.window.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The longest pause in any worker's output since the last `open_gap_window`
    /// (between two run-loop iterations that transmitted), in TSC cycles.
    pub fn longest_output_gap(&self) -> u64 {
        self.workers.iter().map(|(_, c)| c.output_gap.longest_cycles.load(Ordering::Relaxed)).max().unwrap_or(0)
    }

    /// Counters summed over workers, read while they run.
    pub fn totals(&self) -> Totals {
        Totals::sum(self.workers.iter().map(|(_, c)| &***c), self.port_slots)
    }

    /// Blocks until a signal sets `signal`, or (pcap test mode) all input is read.
    pub fn wait(&self, signal: &AtomicBool) -> StopCause {
        let finite: Vec<(PortId, u64)> = self
            .ports
            .iter()
            .filter_map(|p| match p.input {
                InputKind::FinitePcap { packets } => Some((p.binding.id, packets)),
                _ => None,
            })
            .collect();
        let auto_end = !finite.is_empty() && self.ports.iter().all(|p| p.input != InputKind::Live);
        const STALL: Duration = Duration::from_secs(2);
        const LINK_POLL: Duration = Duration::from_millis(100);
        let (mut last_read, mut last_progress) = (u64::MAX, Instant::now());
        let mut all_read_at = None;
        let mut links: Vec<bool> = self.ports.iter().map(|p| p.port.link().up).collect();
        let mut last_link_poll = Instant::now();
        loop {
            if signal.load(Ordering::Relaxed) {
                return StopCause::Signal;
            }
            if last_link_poll.elapsed() >= LINK_POLL {
                last_link_poll = Instant::now();
                self.log_link_changes(&mut links);
            }
            if auto_end {
                let (mut read, mut expected) = (0, 0);
                for &(id, packets) in &finite {
                    let stats = dpdk::port_stats(id).unwrap_or_default();
                    read += stats.ipackets + stats.ierrors;
                    expected += packets;
                }
                if read >= expected {
                    // Frames still waiting for a tunnel's next hop are part of the
                    // input: each goes out or is dropped within the resolve timeout.
                    let all_read = *all_read_at.get_or_insert_with(Instant::now);
                    if self.totals().tunnels.waiting == 0 || all_read.elapsed() > self.tunnel_timeout + STALL {
                        return StopCause::InputDone;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                if read != last_read {
                    (last_read, last_progress) = (read, Instant::now());
                } else if last_progress.elapsed() >= STALL {
                    log::warn!("pcap input stalled: {read} of {expected} packets read in {STALL:?}");
                    return StopCause::InputStalled;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the workers (each stops rx, drains and flushes tx) and reports the
    /// final counters. Ports close (pcap files are completed) when `self` drops.
    pub fn stop(&mut self) -> Summary {
        self.stop_workers();
        let totals = self.totals();
        let ports = self
            .ports
            .iter()
            .map(|p| PortSummary::new(&p.binding, &p.driver, p.port.stats().unwrap_or_default(), p.port.link(), &totals))
            .collect();
        Summary::new(self.started_at.elapsed(), ports, totals, self.pool.in_use(), features::stats_of(&self.features))
    }
}

impl Dataplane {
    /// Logs each port whose link went up or down since `links` (a VM connecting
    /// to or leaving a vhost-user port, a kernel interface going down). Traffic
    /// towards a port whose link is down is counted as `tx_refused`.
    fn log_link_changes(&self, links: &mut [bool]) {
        for (running, was_up) in self.ports.iter().zip(links.iter_mut()) {
            let link = running.port.link();
            if link.up != *was_up {
                *was_up = link.up;
                let (index, name) = (running.binding.index, &running.binding.config.name);
                if link.up {
                    log::info!("port[{index}] \"{name}\": link up, {} Mbps", link.speed_mbps);
                } else {
                    log::info!("port[{index}] \"{name}\": link down");
                }
            }
        }
    }

    fn stop_workers(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.running {
            for (lcore, _) in &self.workers {
                if !lcore.wait() {
                    log::error!("{lcore}: the worker panicked");
                }
            }
            self.running = false;
        }
        if let Some(thread) = self.housekeeping.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

/// Deals every (port, rx queue) pair to exactly one of `workers`, round-robin in
/// port order, so queue 0 of consecutive ports lands on different workers.
fn assign_rx_queues(ports: impl Iterator<Item = (PortId, u16)>, workers: usize) -> Vec<Vec<RxQueue>> {
    let mut assigned = vec![Vec::new(); workers];
    let all = ports.flat_map(|(port, queues)| (0..queues).map(move |q| RxQueue { port, queue: QueueId(q) }));
    for (k, queue) in all.enumerate() {
        assigned[k % workers].push(queue);
    }
    assigned
}

/// Says what a failed `rte_dev_probe` means for the operator: DPDK's errno alone
/// ("Bad address") does not.
fn probe_failure(port: &PortConfig, err: &dpdk::DpdkError) -> String {
    const EFAULT: i32 = 14; // rte_devargs_parse: no bus knows the device name
    if err.errno == EFAULT {
        format!("\"{}\": DPDK knows no device or driver named \"{}\"", port.devargs, port.device_name())
    } else {
        format!(
            "\"{}\": the {} driver refused these devargs ({}; see the EAL message above)",
            port.devargs,
            port.driver(),
            err.text
        )
    }
}

/// What the vRouter units are made from for these ports: VM-role ports by
/// name, the uplink with a VTEP address as the underlay (with the gateway role, if any).
fn unit_setup(bindings: &[PortBinding], config: ConfigSnapshot, gateway_role: Option<GatewayConfig>, ageing: Duration) -> UnitSetup {
    let vm_ports = bindings
        .iter()
        .filter(|b| b.config.role == PortRole::Vm)
        .map(|b| VmPort { name: b.config.name.clone(), id: b.id })
        .collect();
    let underlay = bindings
        .iter()
        .find_map(|b| Some(Underlay { port: b.id, mac: b.mac, vtep: b.config.vtep.clone()?, gateway_role: gateway_role.clone() }));
    UnitSetup { vm_ports, underlay, ageing_ms: ageing.as_millis() as u64, state: UnitState { config, ..UnitState::default() } }
}

/// Which side of the switch each port is on, by port id: uplink ports use the uplink binding of the
/// switching unit, every other port the VM-side one.
fn port_sides(bindings: &[PortBinding]) -> Vec<Side> {
    let slots = bindings.iter().map(|b| b.id.index() + 1).max().unwrap_or(0);
    let mut sides = vec![Side::Vm; slots];
    for b in bindings.iter().filter(|b| b.config.role == PortRole::Uplink) {
        sides[b.id.index()] = Side::Uplink;
    }
    sides
}

/// A worker's io_uring: a buffer per I/O in flight (64 KiB, the largest READ or WRITE).
fn block_io_ring() -> IoRingConfig {
    IoRingConfig { queue_depth: 256, buffers: features::BLOCK_IO_IN_FLIGHT as u32, buffer_size: 64 * 1024, file_slots: 256 }
}

/// The VM-role ports, as the address rewrite knows them.
fn rewrite_ports(bindings: &[PortBinding]) -> Vec<RewritePort> {
    bindings
        .iter()
        .filter(|b| b.config.role == PortRole::Vm)
        .map(|b| RewritePort { name: b.config.name.clone(), id: b.id, mac: b.mac })
        .collect()
}

/// Without a vRouter: each port's `forward_to` as a cross-connect.
fn cross_connect(bindings: &[PortBinding]) -> CrossConnect {
    let routes = bindings.iter().filter_map(|b| {
        let out = bindings.get(b.config.forward_to?)?;
        Some((b.id, Route { out: out.id, src: out.mac, dst: out.config.peer_mac }))
    });
    CrossConnect::new(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(queues: &[RxQueue]) -> Vec<(u16, u16)> {
        queues.iter().map(|q| (q.port.0, q.queue.0)).collect()
    }

    #[test]
    fn rx_queues_are_dealt_round_robin_each_to_one_worker() {
        let ports = [(PortId(0), 3), (PortId(1), 1), (PortId(4), 2)];
        let assigned = assign_rx_queues(ports.into_iter(), 2);
        assert_eq!(names(&assigned[0]), [(0, 0), (0, 2), (4, 0)]);
        assert_eq!(names(&assigned[1]), [(0, 1), (1, 0), (4, 1)]);
        let one = assign_rx_queues(ports.into_iter(), 1);
        assert_eq!(one[0].len(), 6, "a single worker polls every queue");
        let many = assign_rx_queues([(PortId(0), 1)].into_iter(), 3);
        assert_eq!(many.iter().map(Vec::len).collect::<Vec<_>>(), [1, 0, 0], "spare workers poll nothing");
    }
}
