//! The control side of the address rewrite: table versions built from the
//! configuration (the address migrations and the VM endpoints' addresses) and
//! published to the workers' stages through a versioned pointer, without
//! pausing them; the reports workers judged, drained for the control plane.
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam::utils::CachePadded;
use serde::Serialize;
use serde_json::{json, Value};

use super::counters::RewriteCounters;
use super::report::ReportQueue;
use super::stage::AddressRewrite;
use super::table::{AddressMigrationTable, AddressMigrationRecord, VmPortRecord, ABSENT_PORT};
use super::translate::Direction;
use switchyard_pipeline::PortId;
use switchyard_model::ConfigSnapshot;
use switchyard_unit_abi::Versioned;
use switchyard_wire::{MacAddr, ReportStatus};

/// Judged reports the workers may queue between two drains.
const REPORT_QUEUE_LEN: usize = 1024;

/// A VM-role port of the switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewritePort {
    pub name: String,
    pub id: PortId,
    pub mac: MacAddr,
}

/// A report a worker judged, with its port by name: what the control plane
/// applies (accepted ones) and logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressReport {
    pub port: String,
    pub source_mac: MacAddr,
    pub source_ip: Ipv4Addr,
    pub request_id: u32,
    pub primary_ip: Ipv4Addr,
    pub post_migration_ip: Ipv4Addr,
    /// How the worker judged it (`ReportStatus::name`).
    #[serde(serialize_with = "status_name")]
    pub status: ReportStatus,
}

fn status_name<S: serde::Serializer>(status: &ReportStatus, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(status.name())
}

pub struct AddressMigrations {
    tables: Arc<Versioned<AddressMigrationTable>>,
    reports: Arc<ReportQueue>,
    ports: Vec<RewritePort>,
    current: Mutex<Arc<AddressMigrationTable>>,
}

impl AddressMigrations {
    pub fn new(config: &ConfigSnapshot, ports: Vec<RewritePort>) -> Self {
        let current = Arc::new(build(config, &ports));
        AddressMigrations {
            tables: Arc::new(Versioned::new(current.clone())),
            reports: Arc::new(ReportQueue::new(REPORT_QUEUE_LEN)),
            ports,
            current: Mutex::new(current),
        }
    }

    /// A worker's stage for `direction`; both stages of a worker share `counters`.
    pub fn stage(&self, direction: Direction, counters: Arc<CachePadded<RewriteCounters>>) -> AddressRewrite {
        AddressRewrite::new(direction, &self.tables, counters, self.reports.clone())
    }

    /// Publishes a table version for `config`: after every committed change,
    /// since endpoints' addresses and port bindings matter to it too.
    pub fn apply(&self, config: &ConfigSnapshot) {
        let mut current = lock(&self.current);
        let table = Arc::new(build(config, &self.ports));
        *current = table.clone();
        self.tables.publish_both(table);
    }

    /// Frees table versions no worker uses any more.
    pub fn reclaim(&self) {
        self.tables.reclaim();
    }

    /// The table version workers are being switched to.
    pub fn current(&self) -> Arc<AddressMigrationTable> {
        lock(&self.current).clone()
    }

    /// The reports workers queued since the last call, oldest first.
    pub fn take_reports(&self) -> Vec<AddressReport> {
        let name = |id: PortId| self.ports.iter().find(|p| p.id == id).map_or_else(|| format!("port {}", id.0), |p| p.name.clone());
        std::iter::from_fn(|| self.reports.pop())
            .map(|e| AddressReport {
                port: name(e.port),
                source_mac: e.source_mac,
                source_ip: e.source_ip,
                request_id: e.request_id,
                primary_ip: e.primary,
                post_migration_ip: e.post,
                status: e.status,
            })
            .collect()
    }

    /// Table sizes and the reports lost to a full queue, for `GET /v1/unit` and metrics.
    pub fn info(&self) -> Value {
        let (active, pending) = self.current().sizes();
        json!({ "active": active, "pending": pending, "reports_lost": self.reports.lost() })
    }
}

/// The table for `config` on these ports.
pub fn build(config: &ConfigSnapshot, ports: &[RewritePort]) -> AddressMigrationTable {
    let id = |name: &str| ports.iter().find(|p| p.name == name).map_or(ABSENT_PORT, |p| p.id);
    let records: Vec<AddressMigrationRecord> = config
        .address_migrations
        .iter()
        .map(|m| AddressMigrationRecord { vni: m.vni, primary: m.primary_ip, post: m.post_migration_ip, port: id(&m.port) })
        .collect();
    let bound: Vec<(u32, Ipv4Addr, PortId)> =
        config.endpoints.iter().filter_map(|e| Some((e.vni, e.ip?, id(&e.port)))).collect();
    let vm_ports: Vec<VmPortRecord> =
        ports.iter().map(|p| VmPortRecord { id: p.id, vni: config.port_vni(&p.name), mac: p.mac }).collect();
    AddressMigrationTable::build(config.generation, &records, &bound, &vm_ports)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
