//! Startup configuration of `switchyard run --config FILE` (TOML).
//!
//! ```toml
//! [eal]
//! lcores = "0-1"         # DPDK -l list; the lowest listed lcore is the main (control) lcore
//! hugepages = false      # false: --no-huge --no-shconf; true: hugepage memory, --in-memory
//! memory_mb = 512        # -m, 64..=1048576
//! file_prefix = "sy"     # default "switchyard-<pid>"
//! extra_args = []        # appended verbatim to the EAL argv
//!
//! [mempool]
//! mbufs = 8191           # 1023..=16777215
//! cache = 256            # 0..=512 and <= mbufs / 1.5
//! data_room = 2176       # 192..=65535, includes the 128-byte headroom
//!
//! [dataplane]
//! workers = [1]          # worker lcores: in eal.lcores, not the main lcore
//! idle_sleep_us = 0      # 0..=1000000; 0 = pure busy poll
//! idle_polls_before_sleep = 100
//! tx_drain_us = 100      # 1..=100000
//!
//! [[port]]               # 1 to 32 of them; order gives the port index
//! name = "vm0"
//! devargs = "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap"
//! role = "vm"            # or "uplink"
//! rx_queues = 1          # 1..=64
//! rx_descriptors = 1024  # power of two in 64..=32768
//! tx_descriptors = 1024
//! forward_to = "uplink0" # a port name or index
//! peer_mac = "02:00:00:00:00:01"  # default 02:00:00:00:00:<index>
//! vni = 100              # vm-role ports only: the network the port joins (bootstrap)
//!
//! [control]
//! socket = "/run/switchyard/sy.sock"      # default /run/switchyard/<file_prefix or switchyard>.sock
//! listen = "127.0.0.1:8080"               # optional; loopback addresses only
//! database = "/var/lib/switchyard/sy.redb" # default /var/lib/switchyard/<file_prefix or switchyard>.redb
//!
//! # Bootstrap records: they seed the config database on first start only.
//! [[network]]
//! vni = 100              # 1..=16777215
//! name = "blue"          # 1 to 64 of A-Z a-z 0-9 . _ -
//! flood_vteps = ["192.0.2.2"]
//!
//! [[endpoint]]           # a VM interface behind a vm-role port
//! vni = 100
//! mac = "02:00:00:00:01:01"
//! ip = "10.1.0.1"        # optional
//! port = "vm0"
//!
//! [[remote]]             # a VM behind a remote VTEP
//! vni = 100
//! mac = "02:00:00:00:02:01"
//! ip = "10.1.0.2"        # optional
//! vtep = "192.0.2.2"
//!
//! [[address_migration]]  # a VM that moved to another network (docs/address-migration.md)
//! vni = 100
//! primary_ip = "10.1.0.5"           # what peers keep using
//! post_migration_ip = "10.2.0.5"    # optional: without it the VM's report sets it
//! port = "vm0"                      # the VM's vm-role port
//!
//! [storage]              # optional: the network block device (docs/storage-management.md)
//! images = "/var/lib/switchyard/images"  # the image files <id>.img; created when missing
//! port = 10810           # UDP port of the block-I/O service
//! attach_lease_ms = 15000  # an image is attached while a client used it this recently
//!
//! [upgrade]              # optional: hitless upgrades of the switching unit (docs/unit-abi.md)
//! library_dir = "/usr/lib/switchyard/units"  # units load only from here: root-owned, not group/world-writable
//!
//! [gateway]              # this host is its cloud's inter-cloud gateway (docs/gateway.md)
//! [[gateway.vni_map]]    # optional, any number
//! remote_vni = 200       # frames from the other cloud with this VNI ...
//! local_vni = 100        # ... are switched as this [[network]]
//! ```
//!
//! Every problem is reported as one line, `config error: <origin>:
//! <location>: <problem>`, where the location is a 1-based `line N` for TOML
//! syntax and type errors and a key path (`port[1].forward_to`) for value
//! errors. Only the first problem in file order is reported.
//!
//! `rx_pcap=` paths in devargs are checked for readability here; relative
//! paths are relative to the process's working directory, as DPDK opens them.
//! `net_vhost` and `net_tap` devargs (keys, socket directory, interface name)
//! are checked too, see [`vm_ports`].

mod bootstrap;
mod control;
mod devargs;
mod gateway;
mod lcores;
mod migration;
mod storage;
mod tunnels;
mod raw;
mod upgrade;
#[cfg(test)]
mod tests;
pub mod vm_ports;

use core::fmt;
use core::ops::RangeInclusive;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use crate::model::ConfigSnapshot;
use crate::wire::MacAddr;
pub use control::{ControlConfig, SocketGroup, CONTROL_AUTH_KEYS, SOCKET_PATH_MAX};
pub use crate::svc::auth::is_loopback;
pub use switchyard_model::{GatewayConfig, VniMapping, VtepConfig};
use switchyard_model::on_link;
pub use migration::{BoardConfig, MigrationConfig};
pub use storage::{ImageGroup, StorageConfig};
pub use tunnels::{TunnelsConfig, TunnelsMode};
pub use upgrade::UpgradeConfig;
use raw::{PortRef, RawConfig, RawPort};
use vm_ports::VhostSocket;

/// DPDK's `RTE_MAX_ETHPORTS` in the Debian bookworm build.
pub const MAX_PORTS: usize = 32;
/// DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`.
pub const MEMPOOL_CACHE_MAX: u32 = 512;
/// `RTE_PKTMBUF_HEADROOM`.
pub const MBUF_HEADROOM: u16 = 128;
/// Smallest pool: 2^10 - 1 (DPDK pools are most compact at 2^q - 1
/// elements). Whether the pool can fill every receive ring is checked
/// separately, against the ports actually configured.
pub const MIN_MBUFS: u32 = 1023;
pub const MAX_MBUFS: u32 = 16_777_215;

/// One line: `config error: <origin>: <location>: <problem>`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// Builds the error line; control characters (newlines) become spaces,
    /// so the message is always exactly one line.
    fn line(text: String) -> ConfigError {
        ConfigError(text.replace("\r\n", " ").chars().map(|c| if c.is_control() { ' ' } else { c }).collect())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    pub eal: EalConfig,
    pub mempool: MempoolConfig,
    pub dataplane: DataplaneConfig,
    pub ports: Vec<PortConfig>,
    pub control: ControlConfig,
    pub migration: MigrationConfig,
    /// `[tunnels]`: on demand or in advance, and the queues of tunnels coming up.
    pub tunnels: TunnelsConfig,
    pub board: Option<BoardConfig>,
    /// `[gateway]`: the vRouter relays the other cloud's VXLAN to this cloud's compute nodes.
    pub gateway: Option<GatewayConfig>,
    /// `[storage]`: users and images of the network block device; `None` without the table.
    pub storage: Option<StorageConfig>,
    /// `[upgrade]`: the directory unit libraries are loaded from.
    pub upgrade: UpgradeConfig,
    /// `[[network]]`, `[[endpoint]]`, `[[remote]]` and `port.vni`: seeds the config
    /// database on first start (generation 0 here).
    pub bootstrap: ConfigSnapshot,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EalConfig {
    pub lcores: String,
    pub hugepages: bool,
    pub memory_mb: u32,
    pub file_prefix: Option<String>,
    pub extra_args: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig { lcores: "0-1".into(), hugepages: false, memory_mb: 512, file_prefix: None, extra_args: Vec::new() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MempoolConfig {
    pub mbufs: u32,
    pub cache: u32,
    pub data_room: u16,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig { mbufs: 8191, cache: 256, data_room: 2176 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataplaneConfig {
    pub workers: Vec<u32>,
    pub idle_sleep_us: u32,
    pub idle_polls_before_sleep: u32,
    pub tx_drain_us: u32,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig { workers: vec![1], idle_sleep_us: 0, idle_polls_before_sleep: 100, tx_drain_us: 100 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortRole {
    /// Towards VMs / the virtual bridge.
    Vm,
    /// Towards the IP network.
    Uplink,
}

impl fmt::Display for PortRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortRole::Vm => "vm",
            PortRole::Uplink => "uplink",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortConfig {
    pub name: String,
    /// As written, except that a PCI address is normalized to DPDK's port
    /// name form (`01:00.0` -> `0000:01:00.0`, lower-case hex).
    pub devargs: String,
    pub role: PortRole,
    pub rx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    /// The resolved index of the port that frames received here are sent out of.
    pub forward_to: Option<usize>,
    /// Destination MAC written on frames transmitted out of this port.
    #[serde(serialize_with = "serialize_mac")]
    pub peer_mac: MacAddr,
    /// The local VTEP on this uplink port, if the overlay runs over it.
    pub vtep: Option<VtepConfig>,
}

fn serialize_mac<S: Serializer>(mac: &MacAddr, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(mac)
}

impl PortConfig {
    /// The default `peer_mac` of port `index`: 02:00:00:00:00:<index>.
    pub fn default_peer_mac(index: usize) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, u8::try_from(index).unwrap_or(u8::MAX)])
    }

    /// The device name DPDK gives the port: the devargs up to the first ','
    /// ("net_pcap0", "0000:01:00.0").
    pub fn device_name(&self) -> &str {
        devargs::device_name(&self.devargs)
    }

    /// The device name looks like a PCI address `DDDD:BB:DD.F` or `BB:DD.F`.
    pub fn is_pci(&self) -> bool {
        devargs::parse_pci(self.device_name()).is_some()
    }

    /// For vdevs the device name without trailing digits ("net_pcap"); for PCI "pci".
    pub fn driver(&self) -> &str {
        devargs::driver(self.device_name())
    }

    /// Key/value pairs of the devargs after the device name, in order (keys
    /// may repeat, e.g. rx_pcap). Bracketed values keep their commas.
    pub fn devargs_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        devargs::pairs(&self.devargs)
    }

    /// Some(files) when this port's only receive source is one or more finite
    /// pcap files: driver net_pcap (or its alias eth_pcap), at least one
    /// rx_pcap=, no rx_iface/rx_iface_in/iface, and infinite_rx absent or 0.
    pub fn finite_pcap_inputs(&self) -> Option<Vec<PathBuf>> {
        if !devargs::is_pcap_driver(self.driver()) {
            return None;
        }
        let mut files = Vec::new();
        for (key, value) in self.devargs_pairs() {
            match key {
                "rx_pcap" => files.push(PathBuf::from(value)),
                key if devargs::PCAP_RX_SOURCES.contains(&key) => return None,
                "infinite_rx" if value != "0" => return None,
                _ => {}
            }
        }
        (!files.is_empty()).then_some(files)
    }

    /// The vhost-user socket of a `net_vhost` port.
    pub fn vhost_socket(&self) -> Option<VhostSocket> {
        if !vm_ports::is_vhost_driver(self.driver()) {
            return None;
        }
        vm_ports::vhost_socket(self.devargs_pairs())
    }

    /// True for the TAP driver (`net_tap`, `eth_tap`) and its TUN sibling
    /// `net_tun`: both create a kernel interface, which needs CAP_NET_ADMIN.
    pub fn creates_kernel_interface(&self) -> bool {
        vm_ports::is_tap_driver(self.driver()) || self.driver() == "net_tun"
    }

    /// The kernel interface a `net_tap`/`net_tun` port creates, when `iface=` names it.
    pub fn tap_iface(&self) -> Option<&str> {
        if !self.creates_kernel_interface() {
            return None;
        }
        self.devargs_pairs().find(|(key, _)| *key == "iface").map(|(_, value)| value)
    }

    /// True when the port can never receive: a net_pcap port without any receive
    /// source (tx only), or a `net_null` sink with `no-rx=1`.
    pub fn never_receives(&self) -> bool {
        let mut pairs = self.devargs_pairs();
        if devargs::is_pcap_driver(self.driver()) {
            pairs.all(|(key, _)| key != "rx_pcap" && !devargs::PCAP_RX_SOURCES.contains(&key))
        } else {
            self.driver() == "net_null" && pairs.any(|pair| pair == ("no-rx", "1"))
        }
    }
}

impl Config {
    /// Reads and validates `path`; the path as given names the file in errors.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, &origin),
            Err(e) => Err(ConfigError::line(format!("config error: {origin}: cannot read: {e}"))),
        }
    }

    /// Parses and validates `text`; `origin` (the file name) prefixes errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let location = match e.span() {
                Some(span) => {
                    let before = text.as_bytes().get(..span.start).unwrap_or(text.as_bytes());
                    format!("line {}: ", before.iter().filter(|b| **b == b'\n').count() + 1)
                }
                None => String::new(),
            };
            ConfigError::line(format!("config error: {origin}: {location}{}", e.message().trim()))
        })?;
        validate(raw).map_err(|problem| ConfigError::line(format!("config error: {origin}: {problem}")))
    }

    /// The records that seed an empty config database (`Store::bootstrap_if_empty`).
    pub fn bootstrap_snapshot(&self) -> ConfigSnapshot {
        self.bootstrap.clone()
    }

    /// The main (control) lcore: the lowest lcore in `eal.lcores`.
    pub fn main_lcore(&self) -> u32 {
        lcores::parse(&self.eal.lcores).ok().and_then(|l| lcores::main_lcore(&l)).unwrap_or(0)
    }

    /// Full argv for rte_eal_init, argv[0] = program.
    ///
    /// vdevs are not in the argv (the caller probes them); PCI ports are
    /// allowed with `-a <devargs>`, or `--no-pci` when there are none.
    pub fn eal_args(&self, program: &str) -> Vec<String> {
        let mut args: Vec<String> = vec![
            program.into(),
            "-l".into(),
            self.eal.lcores.clone(),
            "--main-lcore".into(),
            self.main_lcore().to_string(),
            "-m".into(),
            self.eal.memory_mb.to_string(),
        ];
        if self.eal.hugepages {
            args.push("--in-memory".into());
        } else {
            args.extend(["--no-huge".into(), "--no-shconf".into()]);
        }
        args.push("--file-prefix".into());
        args.push(self.eal.file_prefix.clone().unwrap_or_else(|| format!("switchyard-{}", std::process::id())));
        let mut pci = self.ports.iter().filter(|p| p.is_pci()).peekable();
        if pci.peek().is_none() {
            args.push("--no-pci".into());
        }
        for port in pci {
            args.extend(["-a".into(), port.devargs.clone()]);
        }
        args.push("--no-telemetry".into());
        // EAL and drivers report start-up details at INFO; keep warnings and errors.
        // A later --log-level in extra_args overrides this.
        args.push("--log-level=*:warning".into());
        args.extend(self.eal.extra_args.iter().cloned());
        args
    }
}

/// Keeps the problem that comes first in the file.
struct Problems {
    first: Option<(usize, String)>,
}

impl Problems {
    fn at(&mut self, pos: usize, location: impl fmt::Display, problem: impl fmt::Display) {
        if self.first.as_ref().is_none_or(|(first, _)| pos < *first) {
            self.first = Some((pos, format!("{location}: {problem}")));
        }
    }

    /// An integer key in `range`, `default` when absent; None after reporting.
    fn int<T: TryFrom<i64>>(
        &mut self,
        field: &Option<Spanned<i64>>,
        location: &str,
        default: T,
        range: RangeInclusive<i64>,
        hint: &str,
    ) -> Option<T> {
        let Some(field) = field else { return Some(default) };
        let value = *field.get_ref();
        match T::try_from(value) {
            Ok(v) if range.contains(&value) => Some(v),
            _ => {
                let (lo, hi) = (range.start(), range.end());
                self.at(field.span().start, location, format!("{value} is out of range {lo}..={hi}{hint}"));
                None
            }
        }
    }

    /// A descriptor count: a power of two in 64..=32768, 1024 when absent.
    fn descriptors(&mut self, field: &Option<Spanned<i64>>, location: &str) -> Option<u16> {
        let Some(field) = field else { return Some(1024) };
        let value = *field.get_ref();
        match u16::try_from(value) {
            Ok(v) if (64..=32768).contains(&v) && v.is_power_of_two() => Some(v),
            _ => {
                self.at(field.span().start, location, format!("{value} is not a power of two in 64..=32768"));
                None
            }
        }
    }
}

impl Problems {
    /// The VTEP keys of port `index` (`address`, `gateway`, `next_hop_mac`, `mtu`):
    /// only on an uplink, at most one such port, the others need `address`.
    fn vtep(&mut self, port: &RawPort, index: usize, vtep_port: &mut Option<usize>) -> Option<VtepConfig> {
        let at = |key: &str| format!("port[{index}].{key}");
        let Some(address) = &port.address else {
            for (key, span) in [
                ("gateway", port.gateway.as_ref().map(Spanned::span)),
                ("next_hop_mac", port.next_hop_mac.as_ref().map(Spanned::span)),
                ("mtu", port.mtu.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    self.at(span.start, at(key), "needs `address` (the local VTEP address) on the same port");
                }
            }
            return None;
        };
        let pos = address.span().start;
        if port.role != PortRole::Uplink {
            self.at(pos, at("address"), "only an uplink port carries the VTEP address");
            return None;
        }
        if let Some(other) = vtep_port.replace(index) {
            self.at(pos, at("address"), format!("port[{other}] already has the VTEP address; one uplink carries the overlay"));
            return None;
        }
        let Some((ip, prefix_len)) = parse_prefix(address.get_ref()) else {
            self.at(pos, at("address"), format!("{:?} is not an IPv4 address with prefix length such as \"192.0.2.1/24\"", address.get_ref()));
            return None;
        };
        if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
            self.at(pos, at("address"), format!("{ip} cannot be a VTEP address (unspecified, multicast, broadcast or loopback)"));
            return None;
        }
        let gateway = match &port.gateway {
            None => None,
            Some(g) => match g.get_ref().parse::<Ipv4Addr>() {
                Ok(gw) if gw != ip && on_link(ip, prefix_len, gw) => Some(gw),
                Ok(gw) => {
                    self.at(g.span().start, at("gateway"), format!("{gw} is not another address on {ip}/{prefix_len}"));
                    return None;
                }
                Err(_) => {
                    self.at(g.span().start, at("gateway"), format!("{:?} is not an IPv4 address", g.get_ref()));
                    return None;
                }
            },
        };
        let next_hop_mac = match &port.next_hop_mac {
            None => None,
            Some(m) => match m.get_ref().parse::<MacAddr>() {
                Ok(mac) if mac.is_unicast() && mac != MacAddr::ZERO => Some(mac),
                Ok(mac) => {
                    self.at(m.span().start, at("next_hop_mac"), format!("{mac} is not a unicast MAC address"));
                    return None;
                }
                Err(e) => {
                    self.at(m.span().start, at("next_hop_mac"), format!("{:?}: {e}", m.get_ref()));
                    return None;
                }
            },
        };
        // 68 is the IPv4 minimum (RFC 791); 9216 covers jumbo underlays.
        let mtu = self.int(&port.mtu, &at("mtu"), 1500u16, 68..=9216, "")?;
        Some(VtepConfig { address: ip, prefix_len, gateway, next_hop_mac, mtu })
    }
}

/// "192.0.2.1/24" -> (address, 24).
fn parse_prefix(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = text.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|&l| l <= 32)?;
    Some((ip.parse().ok()?, len))
}

/// Where a key is in the file: its own span, else `fallback` (its table).
fn pos<T>(field: &Option<Spanned<T>>, fallback: usize) -> usize {
    field.as_ref().map_or(fallback, |f| f.span().start)
}

fn is_port_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_file_prefix(prefix: &str) -> bool {
    (1..=64).contains(&prefix.len())
        && !prefix.starts_with('.')
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Validates everything and returns the config, or the first problem in
/// file order as `<location>: <problem>`.
fn validate(raw: RawConfig) -> Result<Config, String> {
    let mut p = Problems { first: None };
    let table_pos = |span: Option<core::ops::Range<usize>>| span.map_or(usize::MAX, |s| s.start);

    // [eal]
    let eal_pos = table_pos(raw.eal.as_ref().map(Spanned::span));
    let eal = raw.eal.map(Spanned::into_inner).unwrap_or_default();
    let defaults = EalConfig::default();
    let lcores_text = eal.lcores.as_ref().map_or(defaults.lcores.clone(), |l| l.get_ref().clone());
    let lcore_list = match lcores::parse(&lcores_text) {
        Ok(list) => Some(list),
        Err(problem) => {
            p.at(pos(&eal.lcores, eal_pos), "eal.lcores", problem);
            None
        }
    };
    let main_lcore = lcore_list.as_deref().and_then(lcores::main_lcore);
    let memory_mb = p.int(&eal.memory_mb, "eal.memory_mb", defaults.memory_mb, 64..=1_048_576, "");
    let file_prefix = eal.file_prefix.as_ref().map(|f| f.get_ref().clone());
    if let (Some(field), Some(prefix)) = (&eal.file_prefix, &file_prefix) {
        if !is_file_prefix(prefix) {
            p.at(
                field.span().start,
                "eal.file_prefix",
                format!("{prefix:?} must be 1 to 64 characters of A-Z a-z 0-9 _ - . and not start with '.'"),
            );
        }
    }
    let extra_args_pos = pos(&eal.extra_args, eal_pos);
    let extra_args = eal.extra_args.map(Spanned::into_inner).unwrap_or_default();
    for (i, arg) in extra_args.iter().enumerate() {
        if arg.contains('\0') {
            p.at(extra_args_pos, format_args!("eal.extra_args[{i}]"), format!("{arg:?} contains a NUL character"));
        }
    }

    // [mempool]
    let mempool_pos = table_pos(raw.mempool.as_ref().map(Spanned::span));
    let mempool = raw.mempool.map(Spanned::into_inner).unwrap_or_default();
    let defaults = MempoolConfig::default();
    let mbufs_range = i64::from(MIN_MBUFS)..=i64::from(MAX_MBUFS);
    let mbufs = p.int(&mempool.mbufs, "mempool.mbufs", defaults.mbufs, mbufs_range, "");
    let cache_max = i64::from(MEMPOOL_CACHE_MAX);
    let cache = p.int(&mempool.cache, "mempool.cache", defaults.cache, 0..=cache_max, " (RTE_MEMPOOL_CACHE_MAX_SIZE)");
    let data_room = p.int(
        &mempool.data_room,
        "mempool.data_room",
        defaults.data_room,
        i64::from(MBUF_HEADROOM) + 64..=i64::from(u16::MAX),
        " (128 bytes of headroom plus at least 64 bytes of frame)",
    );
    if let (Some(mbufs), Some(cache)) = (mbufs, cache) {
        // rte_mempool_create refuses cache_size * 1.5 > n.
        if u64::from(cache) * 3 > u64::from(mbufs) * 2 {
            let max = u64::from(mbufs) * 2 / 3;
            p.at(
                pos(&mempool.cache, mempool_pos),
                "mempool.cache",
                format!("{cache} is more than mbufs / 1.5 ({max})"),
            );
        }
    }
    let mbufs_pos = pos(&mempool.mbufs, mempool_pos);
    if let (Some(mbufs), Some(data_room), Some(memory_mb)) = (mbufs, data_room, memory_mb) {
        // Per mbuf: data room + struct rte_mbuf (128) + mempool object header (64).
        let bytes = u64::from(mbufs) * (u64::from(data_room) + 128 + 64);
        let need_mb = bytes.div_ceil(1 << 20);
        if need_mb > u64::from(memory_mb) {
            p.at(
                mbufs_pos,
                "mempool.mbufs",
                format!(
                    "{mbufs} mbufs of {data_room} bytes need at least {need_mb} MB, more than eal.memory_mb = {memory_mb}"
                ),
            );
        }
    }

    // [dataplane]
    let dataplane_pos = table_pos(raw.dataplane.as_ref().map(Spanned::span));
    let dataplane = raw.dataplane.map(Spanned::into_inner).unwrap_or_default();
    let defaults = DataplaneConfig::default();
    let workers_pos = pos(&dataplane.workers, dataplane_pos);
    let raw_workers: Vec<i64> = match &dataplane.workers {
        Some(w) => w.get_ref().clone(),
        None => defaults.workers.iter().map(|&w| i64::from(w)).collect(),
    };
    let mut workers: Vec<u32> = Vec::new();
    if raw_workers.is_empty() {
        p.at(workers_pos, "dataplane.workers", "empty: at least one worker lcore is required");
    }
    for &worker in &raw_workers {
        let problem = match u32::try_from(worker) {
            Err(_) => format!("{worker} is not an lcore id"),
            Ok(w) if workers.contains(&w) => format!("lcore {w} is listed twice"),
            Ok(w) if lcore_list.as_ref().is_some_and(|l| !l.contains(&w)) => {
                format!("lcore {w} is not in eal.lcores {lcores_text:?}")
            }
            Ok(w) if main_lcore == Some(w) => format!("lcore {w} is the main lcore, which runs the control plane"),
            Ok(w) => {
                workers.push(w);
                continue;
            }
        };
        p.at(workers_pos, "dataplane.workers", problem);
        break;
    }
    let idle_sleep_us =
        p.int(&dataplane.idle_sleep_us, "dataplane.idle_sleep_us", defaults.idle_sleep_us, 0..=1_000_000, "");
    let idle_polls_before_sleep = p.int(
        &dataplane.idle_polls_before_sleep,
        "dataplane.idle_polls_before_sleep",
        defaults.idle_polls_before_sleep,
        1..=i64::from(u32::MAX),
        "",
    );
    let tx_drain_us = p.int(&dataplane.tx_drain_us, "dataplane.tx_drain_us", defaults.tx_drain_us, 1..=100_000, "");

    // [[port]]
    let ports_pos = table_pos(raw.port.as_ref().map(Spanned::span));
    let raw_ports: Vec<Spanned<RawPort>> = raw.port.map(Spanned::into_inner).unwrap_or_default();
    if raw_ports.is_empty() {
        p.at(ports_pos, "port", "at least one [[port]] is required");
    }
    if let Some(extra) = raw_ports.get(MAX_PORTS) {
        p.at(
            extra.span().start,
            "port",
            format!("{} ports configured; DPDK supports at most {MAX_PORTS} (RTE_MAX_ETHPORTS)", raw_ports.len()),
        );
    }
    let names: Vec<&str> = raw_ports.iter().map(|r| r.get_ref().name.get_ref().as_str()).collect();
    let mut ports = Vec::new();
    let mut devices: Vec<String> = Vec::new();
    let mut endpoints: Vec<Option<String>> = Vec::new();
    let mut rx_total: Option<u64> = Some(0);
    let mut vtep_port: Option<usize> = None;
    for (index, port) in raw_ports.iter().enumerate() {
        let port = port.get_ref();
        let at = |key: &str| format!("port[{index}].{key}");

        let name = port.name.get_ref();
        if !is_port_name(name) {
            p.at(
                port.name.span().start,
                at("name"),
                format!("{name:?} is not a valid port name: use 1 to 32 characters of A-Z a-z 0-9 _ -"),
            );
        } else if names.get(..index).is_some_and(|before| before.contains(&name.as_str())) {
            p.at(port.name.span().start, at("name"), format!("duplicate port name {name:?}"));
        }

        let devargs_pos = port.devargs.span().start;
        let devargs = match devargs::normalize(port.devargs.get_ref()) {
            Ok(normalized) => normalized,
            Err(problem) => {
                p.at(devargs_pos, at("devargs"), problem);
                String::new()
            }
        };
        let device = devargs::device_name(&devargs).to_string();
        let mut rx_sources = 0usize;
        if !devargs.is_empty() && devargs::is_pcap_driver(devargs::driver(&device)) {
            for (key, value) in devargs::pairs(&devargs) {
                if matches!(key, "rx_pcap" | "rx_iface" | "rx_iface_in" | "iface") {
                    rx_sources += 1;
                }
                if key == "rx_pcap" {
                    if let Err(problem) = devargs::check_rx_pcap(value) {
                        p.at(devargs_pos, at("devargs"), problem);
                        break;
                    }
                }
            }
        }
        // VM ports: what the driver creates (a socket, an interface) must be valid and
        // not shared with another port.
        let mut endpoint = None;
        let mut queue_pairs = None;
        if !devargs.is_empty() && vm_ports::is_vhost_driver(devargs::driver(&device)) {
            match vm_ports::check_vhost(devargs::pairs(&devargs)) {
                Ok(socket) => {
                    queue_pairs = Some(socket.queues);
                    endpoint = Some(format!("vhost-user socket {:?}", socket.path));
                }
                Err(problem) => p.at(devargs_pos, at("devargs"), problem),
            }
        } else if !devargs.is_empty() && vm_ports::is_tap_driver(devargs::driver(&device)) {
            match vm_ports::check_tap(devargs::pairs(&devargs)) {
                Ok(iface) => endpoint = iface.map(|name| format!("TAP interface {name:?}")),
                Err(problem) => p.at(devargs_pos, at("devargs"), problem),
            }
        }
        if let Some(endpoint) = endpoint {
            if let Some(other) = endpoints.iter().position(|e| e.as_ref() == Some(&endpoint)) {
                p.at(devargs_pos, at("devargs"), format!("{endpoint} is already used by port[{other}]"));
            }
            endpoints.push(Some(endpoint));
        } else {
            endpoints.push(None);
        }
        if !devargs.is_empty() {
            if let Some(other) = devices.iter().position(|d| *d == device) {
                p.at(devargs_pos, at("devargs"), format!("device {device:?} is already used by port[{other}]"));
            }
        }
        devices.push(device.clone());

        let rx_queues = p.int(&port.rx_queues, &at("rx_queues"), 1u16, 1..=64, "");
        if let Some(queues) = rx_queues {
            if rx_sources > 0 && usize::from(queues) > rx_sources {
                p.at(
                    pos(&port.rx_queues, usize::MAX),
                    at("rx_queues"),
                    format!(
                        "{queues} is more than the {rx_sources} receive queue(s) {} creates from the devargs \
                         (one per rx_pcap, rx_iface, rx_iface_in or iface)",
                        devargs::driver(&device)
                    ),
                );
            }
        }
        if let (Some(queues), Some(pairs)) = (rx_queues, queue_pairs) {
            if queues > pairs {
                p.at(
                    pos(&port.rx_queues, usize::MAX),
                    at("rx_queues"),
                    format!(
                        "{queues} is more than the {pairs} queue pair(s) of the vhost-user port \
                         (queues={pairs} in the devargs)"
                    ),
                );
            }
        }
        let rx_descriptors = p.descriptors(&port.rx_descriptors, &at("rx_descriptors"));
        let tx_descriptors = p.descriptors(&port.tx_descriptors, &at("tx_descriptors"));
        rx_total = match (rx_total, rx_queues, rx_descriptors) {
            (Some(total), Some(q), Some(d)) => Some(total + u64::from(q) * u64::from(d)),
            _ => None,
        };

        let forward_to = port.forward_to.as_ref().and_then(|target| {
            let span = target.span().start;
            let resolved = match target.get_ref() {
                PortRef::Index(i) if *i < 0 => Err(format!("{i} is not a port index (indices start at 0)")),
                PortRef::Index(i) => match usize::try_from(*i) {
                    Ok(i) if i < raw_ports.len() => Ok(i),
                    _ => Err(format!(
                        "port index {i} is out of range ({} configured)",
                        plural(raw_ports.len(), "port")
                    )),
                },
                PortRef::Name(n) => names.iter().position(|m| m == n).ok_or(format!("no port named {n:?}")),
            };
            match resolved {
                Ok(i) if i == index => {
                    p.at(span, at("forward_to"), "a port cannot forward to itself");
                    None
                }
                Ok(i) => Some(i),
                Err(problem) => {
                    p.at(span, at("forward_to"), problem);
                    None
                }
            }
        });

        let vtep = p.vtep(port, index, &mut vtep_port);

        ports.push(PortConfig {
            name: name.clone(),
            devargs,
            role: port.role,
            rx_queues: rx_queues.unwrap_or(1),
            rx_descriptors: rx_descriptors.unwrap_or(1024),
            tx_descriptors: tx_descriptors.unwrap_or(1024),
            forward_to,
            peer_mac: port.peer_mac.unwrap_or_else(|| PortConfig::default_peer_mac(index)),
            vtep,
        });
    }

    // The pool must be able to fill every receive ring and every lcore cache.
    if let (Some(mbufs), Some(cache), Some(rx_total), Some(lcores)) = (mbufs, cache, rx_total, &lcore_list) {
        let lcore_count = lcores.len() as u64;
        let need = rx_total + lcore_count * u64::from(cache);
        if u64::from(mbufs) < need {
            p.at(
                mbufs_pos,
                "mempool.mbufs",
                format!(
                    "{mbufs} is too few: the receive rings and lcore caches hold up to {need} mbufs \
                     ({rx_total} for rx_queues x rx_descriptors over all ports + {lcore_count} lcores x cache {cache})"
                ),
            );
        }
    }

    let control = control::validate(&mut p, raw.control, file_prefix.as_deref());
    let migration = migration::validate_migration(&mut p, raw.migration, mbufs);
    let board = migration::validate_board(&mut p, raw.board);
    let tunnels = tunnels::validate(&mut p, raw.tunnels, mbufs);
    let storage = storage::validate(&mut p, raw.storage);
    let upgrade = upgrade::validate(&mut p, raw.upgrade);
    let records = bootstrap::RawRecords {
        networks: raw.network,
        endpoints: raw.endpoint,
        remotes: raw.remote,
        address_migrations: raw.address_migration,
    };
    let local_vtep = ports.iter().find_map(|port| port.vtep.as_ref().map(|vtep| vtep.address));
    let bootstrap = bootstrap::validate(&mut p, records, &raw_ports, local_vtep);
    let gateway = gateway::validate(&mut p, raw.gateway, vtep_port.is_some(), &bootstrap.networks);

    if let Some((_, problem)) = p.first {
        return Err(problem);
    }
    let defaults = (EalConfig::default(), MempoolConfig::default(), DataplaneConfig::default());
    Ok(Config {
        eal: EalConfig {
            lcores: lcores_text,
            hugepages: eal.hugepages.unwrap_or(defaults.0.hugepages),
            memory_mb: memory_mb.unwrap_or(defaults.0.memory_mb),
            file_prefix,
            extra_args,
        },
        mempool: MempoolConfig {
            mbufs: mbufs.unwrap_or(defaults.1.mbufs),
            cache: cache.unwrap_or(defaults.1.cache),
            data_room: data_room.unwrap_or(defaults.1.data_room),
        },
        dataplane: DataplaneConfig {
            workers,
            idle_sleep_us: idle_sleep_us.unwrap_or(defaults.2.idle_sleep_us),
            idle_polls_before_sleep: idle_polls_before_sleep.unwrap_or(defaults.2.idle_polls_before_sleep),
            tx_drain_us: tx_drain_us.unwrap_or(defaults.2.tx_drain_us),
        },
        ports,
        control,
        migration,
        tunnels,
        board,
        gateway,
        storage,
        upgrade,
        bootstrap,
    })
}

/// "1 port", "2 ports".
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
