//! Table updates at a steady rate while the data plane forwards: each update
//! adds or removes one remote endpoint in a table of 1000, through the same
//! copy-on-write path the control API uses.
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchyard::dpdk::Mbuf;
use switchyard::overlay::UnitHost;
use switchyard::model::{Change, ConfigSnapshot, RemoteEndpoint};
use switchyard::unit::UnitCommand;
use switchyard::wire::MacAddr;

/// Remote endpoints in the table while it churns.
const TABLE_ENTRIES: u32 = 1000;

/// Applies `per_second` updates a second until `stop`; returns how many.
pub(super) fn run(host: &UnitHost<Mbuf>, base: &ConfigSnapshot, per_second: u32, stop: &AtomicBool) -> u64 {
    let mut config = base.clone();
    let vni = config.networks.first().map_or(1, |n| n.vni);
    let remote = |i: u32| RemoteEndpoint {
        vni,
        mac: MacAddr([0x02, 0xcc, (i >> 16) as u8, (i >> 8) as u8, i as u8, 0]),
        ip: None,
        vtep: Ipv4Addr::new(198, 51, 100, 1 + (i % 200) as u8),
        source: Default::default(),
    };
    config.remotes.extend((0..TABLE_ENTRIES).map(remote));
    config.generation += 1;
    apply(host, &UnitCommand::Replace(config.clone()));
    let interval = Duration::from_secs(1) / per_second;
    let start = Instant::now();
    let mut applied = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Toggle one extra entry: odd updates add it, even ones remove it.
        let toggled = remote(TABLE_ENTRIES);
        let change = if applied % 2 == 0 {
            Change::PutRemote(toggled)
        } else {
            Change::DeleteRemote { vni: toggled.vni, mac: toggled.mac }
        };
        config.generation += 1;
        apply(host, &UnitCommand::Apply { generation: config.generation, changes: vec![change] });
        applied += 1;
        let next = start + interval * u32::try_from(applied).unwrap_or(u32::MAX);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    applied
}

fn apply(host: &UnitHost<Mbuf>, command: &UnitCommand) {
    if let Err(e) = host.apply(command) {
        log::error!("churn: {e}");
    }
}
