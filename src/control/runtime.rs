//! The boundary between the control plane and the data plane. The data plane
//! implements `Runtime`; the control plane calls it after every committed change
//! and for every read of live state. Calls come from a control-plane thread
//! (never a worker), one mutating call at a time.
use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use super::migration::MigrationPlane;
use crate::config::PortRole;
use crate::model::{Change, ConfigSnapshot, ImageUse, StorageCatalog};
use crate::config::UpgradeConfig;
use crate::upgrade::{ConfigGate, UnitFile, UpgradeRecord, UpgradeRefused, UpgradeStatus};
use crate::wire::MacAddr;

pub trait Runtime: Send + Sync + 'static {
    /// Hands a committed change to the switching unit: `changes` made `config`.
    /// Called in generation order after every commit, and once at start
    /// (`Control::new`) with no changes and the database's snapshot, which the
    /// data plane already runs or must switch to.
    fn apply(&self, changes: &[Change], config: &ConfigSnapshot);
    /// The switch's ports as configured: name, role ("vm"/"uplink"), driver, mac, and live counters.
    fn ports(&self) -> Vec<PortView>;
    /// Active switching unit(s): {"vm": {"id","version","generation"}, "uplink": {...}} etc.
    fn unit_info(&self) -> serde_json::Value;
    /// Counters snapshot (per port, per worker, per drop reason) as JSON.
    fn stats(&self) -> serde_json::Value;
    /// Prometheus text exposition for /metrics.
    fn metrics(&self) -> String;
    /// Learned MAC entries and resolved neighbours (read-only, for GET endpoints).
    fn learned(&self) -> serde_json::Value;
    /// Replaces the switching unit with the one in the shared library `library`
    /// (the eight steps of docs/upgrade.md, calling `gate` at steps 1 and 8); blocks until it
    /// is done. A refused unit is rolled back, which is `Ok` with
    /// `Outcome::RolledBack` and the reason in the record.
    fn upgrade(&self, library: &UnitFile, gate: &dyn ConfigGate) -> Result<UpgradeRecord, UpgradeRefused>;
    /// `[upgrade] library_dir`: the only directory unit libraries are loaded from.
    fn unit_directory(&self) -> PathBuf {
        UpgradeConfig::default().library_dir
    }
    /// The units bound now, the upgrade running (if any) and the finished ones.
    fn upgrade_status(&self) -> Result<UpgradeStatus, UpgradeRefused>;
    /// The local VTEP address of the uplink, if the switch has one: never a
    /// remote VTEP or a flood-list entry (frames to it would come back to us).
    fn local_vtep(&self) -> Option<std::net::Ipv4Addr> {
        None
    }
    /// What VM live migration works on; `None` without a vRouter VTEP.
    fn migration_plane(&self) -> Option<MigrationPlane> {
        None
    }

    /// The address-migration reports VMs sent since the last call, as the
    /// workers judged them (and answered the VMs), oldest first.
    fn address_reports(&self) -> Vec<crate::address_migration::AddressReport> {
        Vec::new()
    }

    /// Every tunnel to a remote VTEP: state, next hop, counters (`docs/tunnels.md`).
    fn tunnels(&self) -> Vec<TunnelView> {
        Vec::new()
    }

    /// The storage users and images the block-I/O stage serves from: called
    /// with `[storage]` only, once at start and after every commit that changed
    /// them, after `apply` (docs/storage-management.md).
    fn apply_storage(&self, _catalog: std::sync::Arc<StorageCatalog>) {}

    /// Where the block-I/O stage records each image's last use, which tells the
    /// control plane whether an image is attached; `None` when nothing records
    /// uses (no image is ever attached then).
    fn image_use(&self) -> Option<std::sync::Arc<ImageUse>> {
        None
    }
}

/// One tunnel, as `GET /v1/tunnels` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelView {
    pub vtep: std::net::Ipv4Addr,
    #[serde(flatten)]
    pub info: crate::overlay::TunnelInfo,
}

/// One port of the switch as the data plane sees it (the TOML `[[port]]` list,
/// in port index order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    pub name: String,
    pub role: PortRole,
    /// "net_pcap", "net_tap", "pci", ... (`PortConfig::driver`).
    pub driver: String,
    /// The port's own MAC address.
    pub mac: MacAddr,
    /// Frames and bytes received on this port.
    #[serde(default)]
    pub rx_packets: u64,
    #[serde(default)]
    pub rx_bytes: u64,
    /// Frames and bytes sent out of this port.
    #[serde(default)]
    pub tx_packets: u64,
    #[serde(default)]
    pub tx_bytes: u64,
    /// Frames received here that the switch dropped (any drop reason).
    #[serde(default)]
    pub rx_dropped: u64,
    /// Frames meant for this port that it did not send (for example `tx_refused`).
    #[serde(default)]
    pub tx_dropped: u64,
    /// Frames received here and sent back out here: a gateway's second hop, a migration source's relay.
    #[serde(default)]
    pub rx_relayed: u64,
}

/// A port and the network it is bound to (`GET /v1/ports`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    #[serde(flatten)]
    pub port: PortView,
    /// The network a VM-role port is bound to, from the config database.
    pub vni: Option<crate::model::Vni>,
}
