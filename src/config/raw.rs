//! The file as serde sees it: every key optional where a default exists,
//! numbers as i64 (range checks happen in validation, with the key's name in
//! the message), and spans kept so the first problem in file order wins.

use core::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::PortRole;
use crate::wire::MacAddr;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub eal: Option<Spanned<RawEal>>,
    #[serde(default)]
    pub mempool: Option<Spanned<RawMempool>>,
    #[serde(default)]
    pub dataplane: Option<Spanned<RawDataplane>>,
    #[serde(default)]
    pub port: Option<Spanned<Vec<Spanned<RawPort>>>>,
    #[serde(default)]
    pub control: Option<Spanned<RawControl>>,
    #[serde(default)]
    pub network: Option<Spanned<Vec<Spanned<RawNetwork>>>>,
    #[serde(default)]
    pub endpoint: Option<Spanned<Vec<Spanned<RawEndpoint>>>>,
    #[serde(default)]
    pub remote: Option<Spanned<Vec<Spanned<RawRemote>>>>,
    #[serde(default)]
    pub address_migration: Option<Spanned<Vec<Spanned<RawAddressMigration>>>>,
    #[serde(default)]
    pub migration: Option<Spanned<RawMigration>>,
    #[serde(default)]
    pub tunnels: Option<Spanned<super::tunnels::RawTunnels>>,
    #[serde(default)]
    pub board: Option<Spanned<RawBoard>>,
    #[serde(default)]
    pub gateway: Option<Spanned<RawGateway>>,
    #[serde(default)]
    pub storage: Option<Spanned<super::storage::RawStorage>>,
    #[serde(default)]
    pub upgrade: Option<Spanned<super::upgrade::RawUpgrade>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    #[serde(default)]
    pub vni_map: Option<Spanned<Vec<Spanned<RawVniMapping>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVniMapping {
    pub remote_vni: Spanned<i64>,
    pub local_vni: Spanned<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMigration {
    #[serde(default)]
    pub buffer_packets: Option<Spanned<i64>>,
    #[serde(default)]
    pub buffer_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub linger_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBoard {
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    #[serde(default)]
    pub lease_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub token_file: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_ca: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_cert: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_key: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    #[serde(default)]
    pub socket: Option<Spanned<String>>,
    #[serde(default)]
    pub socket_group: Option<Spanned<String>>,
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub token_file: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_cert: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_key: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_client_ca: Option<Spanned<String>>,
    #[serde(default)]
    pub max_connections: Option<Spanned<i64>>,
    #[serde(default)]
    pub header_timeout_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub body_timeout_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub database: Option<Spanned<String>>,
}

/// Addresses are kept as text so that validation names the key in its message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub vni: Spanned<i64>,
    pub name: Spanned<String>,
    #[serde(default)]
    pub flood_vteps: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub vni: Spanned<i64>,
    pub mac: Spanned<String>,
    #[serde(default)]
    pub ip: Option<Spanned<String>>,
    pub port: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    pub vni: Spanned<i64>,
    pub mac: Spanned<String>,
    #[serde(default)]
    pub ip: Option<Spanned<String>>,
    pub vtep: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAddressMigration {
    pub vni: Spanned<i64>,
    pub primary_ip: Spanned<String>,
    #[serde(default)]
    pub post_migration_ip: Option<Spanned<String>>,
    pub port: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEal {
    #[serde(default)]
    pub lcores: Option<Spanned<String>>,
    #[serde(default)]
    pub hugepages: Option<bool>,
    #[serde(default)]
    pub memory_mb: Option<Spanned<i64>>,
    #[serde(default)]
    pub file_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub extra_args: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMempool {
    #[serde(default)]
    pub mbufs: Option<Spanned<i64>>,
    #[serde(default)]
    pub cache: Option<Spanned<i64>>,
    #[serde(default)]
    pub data_room: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataplane {
    #[serde(default)]
    pub workers: Option<Spanned<Vec<i64>>>,
    #[serde(default)]
    pub idle_sleep_us: Option<Spanned<i64>>,
    #[serde(default)]
    pub idle_polls_before_sleep: Option<Spanned<i64>>,
    #[serde(default)]
    pub tx_drain_us: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPort {
    pub name: Spanned<String>,
    pub devargs: Spanned<String>,
    pub role: PortRole,
    #[serde(default)]
    pub rx_queues: Option<Spanned<i64>>,
    #[serde(default)]
    pub rx_descriptors: Option<Spanned<i64>>,
    #[serde(default)]
    pub tx_descriptors: Option<Spanned<i64>>,
    #[serde(default)]
    pub forward_to: Option<Spanned<PortRef>>,
    #[serde(default, deserialize_with = "peer_mac")]
    pub peer_mac: Option<MacAddr>,
    #[serde(default)]
    pub address: Option<Spanned<String>>,
    #[serde(default)]
    pub gateway: Option<Spanned<String>>,
    #[serde(default)]
    pub next_hop_mac: Option<Spanned<String>>,
    #[serde(default)]
    pub mtu: Option<Spanned<i64>>,
    /// VM-role ports only: the network the port joins (bootstraps a PortNetwork).
    #[serde(default)]
    pub vni: Option<Spanned<i64>>,
}

/// `forward_to`: a port name or a port index. Negative indices are kept so
/// validation can name the key in its message.
pub(super) enum PortRef {
    Index(i64),
    Name(String),
}

impl<'de> Deserialize<'de> for PortRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortRefVisitor;
        impl Visitor<'_> for PortRefVisitor {
            type Value = PortRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port name (string) or a port index (integer)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRef, E> {
                Ok(PortRef::Index(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRef, E> {
                Ok(PortRef::Index(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRef, E> {
                Ok(PortRef::Name(v.to_string()))
            }
        }
        deserializer.deserialize_any(PortRefVisitor)
    }
}

/// serde helper: a MAC address from its text form (`MacAddr: FromStr`).
fn peer_mac<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<MacAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    match text.parse::<MacAddr>() {
        Ok(mac) => Ok(Some(mac)),
        Err(e) => Err(de::Error::custom(format!("peer_mac {text:?} is not valid: {e}"))),
    }
}
