//! The workload of the crash test (`switchyard store-stress`): numbered two-record
//! batches, each generation printed only after its commit returned.
use std::io::Write;
use std::net::Ipv4Addr;

use switchyard_model::{Change, Network, RemoteEndpoint, Vni};

use crate::{Store, StoreError};
use switchyard_wire::MacAddr;

/// The two records of batch `n` (generation `n`): network `n` and remote endpoint
/// (`n`, [`stress_mac`]`(n)`).
pub fn stress_batch(n: Vni) -> [Change; 2] {
    [
        Change::PutNetwork(Network { vni: n, name: format!("stress-{n}"), flood_vteps: Vec::new() }),
        Change::PutRemote(RemoteEndpoint { vni: n, mac: stress_mac(n), ip: None, vtep: Ipv4Addr::new(192, 0, 2, 1), source: Default::default() }),
    ]
}

pub fn stress_mac(n: Vni) -> MacAddr {
    let b = n.to_be_bytes();
    MacAddr([0x02, 0x5e, b[0], b[1], b[2], b[3]])
}

/// Commits `batches` batches (forever when None), continuing the numbering from the
/// store's generation, and writes each acknowledged generation as a line to `out`,
/// flushed, after `commit` has returned.
pub fn stress(store: &Store, batches: Option<u64>, out: &mut dyn Write) -> Result<(), String> {
    let start = store.generation().map_err(|e| e.to_string())?;
    let mut n = start;
    while batches.is_none_or(|b| n - start < b) {
        n += 1;
        let vni = Vni::try_from(n).map_err(|_| format!("generation {n} is past the last VNI"))?;
        let generation = store.commit(&stress_batch(vni)).map_err(|e: StoreError| e.to_string())?;
        if generation != n {
            return Err(format!("commit returned generation {generation}, expected {n}"));
        }
        writeln!(out, "{generation}").and_then(|()| out.flush()).map_err(|e| format!("cannot write: {e}"))?;
    }
    Ok(())
}
