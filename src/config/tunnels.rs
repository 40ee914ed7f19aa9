//! `[tunnels]`: whether a tunnel to a VTEP comes up on its first frame or when
//! the configuration names the VTEP, and how much a worker queues for a tunnel
//! coming up (docs/tunnels.md).
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Problems;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelsMode {
    /// The first frame to a VTEP starts next-hop resolution and waits for it.
    OnDemand,
    /// Every VTEP the configuration names is resolved (and kept resolved) ahead of traffic.
    InAdvance,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TunnelsConfig {
    pub mode: TunnelsMode,
    /// Frames one worker queues for one tunnel coming up (taken from the mempool).
    pub queue_packets: usize,
    /// Bytes one worker queues for one tunnel coming up.
    pub queue_bytes: usize,
    /// How long a tunnel may take to come up before its queued frames are dropped.
    pub resolve_timeout_ms: u64,
}

impl Default for TunnelsConfig {
    fn default() -> Self {
        TunnelsConfig { mode: TunnelsMode::OnDemand, queue_packets: 256, queue_bytes: 1 << 20, resolve_timeout_ms: 3000 }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnels {
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
    #[serde(default)]
    pub queue_packets: Option<Spanned<i64>>,
    #[serde(default)]
    pub queue_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub resolve_timeout_ms: Option<Spanned<i64>>,
}

pub(super) fn validate(p: &mut Problems, raw: Option<Spanned<RawTunnels>>, mbufs: Option<u32>) -> TunnelsConfig {
    let raw = raw.map(Spanned::into_inner).unwrap_or_default();
    let defaults = TunnelsConfig::default();
    let mode = match raw.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span().start)) {
        None | Some(("on-demand", _)) => TunnelsMode::OnDemand,
        Some(("in-advance", _)) => TunnelsMode::InAdvance,
        Some((other, at)) => {
            p.at(at, "tunnels.mode", format!("{other:?} is neither \"on-demand\" nor \"in-advance\""));
            defaults.mode
        }
    };
    // Half the pool at most, as for [migration]: queued frames stay in the pool.
    let max_packets = mbufs.map_or(i64::from(u32::MAX), |m| i64::from(m / 2)).max(1);
    let default_packets = defaults.queue_packets.min(max_packets as usize);
    let hint = " (at most half of mempool.mbufs: queued frames stay in the pool)";
    let queue_packets = p.int(&raw.queue_packets, "tunnels.queue_packets", default_packets, 1..=max_packets, hint);
    let queue_bytes = p.int(&raw.queue_bytes, "tunnels.queue_bytes", defaults.queue_bytes, 64..=1 << 32, "");
    let resolve_timeout_ms =
        p.int(&raw.resolve_timeout_ms, "tunnels.resolve_timeout_ms", defaults.resolve_timeout_ms, 100..=600_000, "");
    TunnelsConfig {
        mode,
        queue_packets: queue_packets.unwrap_or(default_packets),
        queue_bytes: queue_bytes.unwrap_or(defaults.queue_bytes),
        resolve_timeout_ms: resolve_timeout_ms.unwrap_or(defaults.resolve_timeout_ms),
    }
}
