//! A controller's two links to the coordinator, as tasks of its runtime:
//!
//! - `hand_over`: registers the cloud, then keeps the coordinator's record of
//!   this cloud's VMs (its gateway view) equal to the controller's `local`
//!   table: PUT what is missing or different, DELETE what is gone. A VM gone is
//!   withdrawn only after `hold` without a new announcement, so a VM that
//!   moves between compute nodes break-before-make (deleted here, created
//!   there) changes only the gateway's table 2, never the other clouds' table 1.
//!   It compares with the coordinator's own view each round, so it repairs
//!   whatever a restart of either side or a lost reply left behind.
//! - `follow`: long-polls the coordinator's table 1 for this cloud and stores it.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::{Outage, Peer, PeerError, CALL_TIMEOUT, POLL_GRACE};
use super::controller::Controller;
use super::http::Shared;
use super::model::{Announce, CloudRegistration, Entry, View, VmKey, Withdrawn};

/// After a failed call, the next try.
pub const RETRY: Duration = Duration::from_millis(250);
/// A full comparison with the coordinator at least this often.
const RESYNC: Duration = Duration::from_secs(5);
/// How long one long poll waits.
pub const POLL: Duration = Duration::from_secs(25);

pub async fn hand_over(
    shared: Arc<Shared<Controller>>,
    coordinator: Peer,
    hold: Duration,
    registered: watch::Sender<bool>,
) {
    let (cloud, gateway_vtep) = match shared.call(|c| (c.cloud().to_string(), c.gateway_vtep())).await {
        Ok(identity) => identity,
        Err(e) => return log::error!("controller: {}", e.body.error),
    };
    let mut changed = shared.subscribe();
    let mut gone_since: BTreeMap<VmKey, Instant> = BTreeMap::new();
    let mut outage = Outage::new(format!("controller {cloud}: handing VMs over to the coordinator {}", coordinator.target()));
    loop {
        changed.borrow_and_update();
        let round = async {
            if !*registered.borrow() {
                let body = CloudRegistration { gateway_vtep };
                let _: serde_json::Value =
                    coordinator.send(Method::PUT, &format!("/v1/coordinator/clouds/{cloud}"), Some(&body)).await?;
                log::info!("controller {cloud}: registered at {} with gateway {gateway_vtep}", coordinator.target());
                registered.send_replace(true);
            }
            let view: View = coordinator.get(&format!("/v1/coordinator/clouds/{cloud}/gateway"), CALL_TIMEOUT).await?;
            let local = shared.call(|c| c.local()).await.map_err(|e| PeerError {
                target: "controller".into(),
                status: None,
                message: e.body.error,
            })?;
            sync_round(&coordinator, &cloud, &view.entries, &local, &mut gone_since, hold).await
        };
        let wait = match round.await {
            Ok(next_due) => {
                outage.worked();
                next_due.map_or(RESYNC, |due| due.saturating_duration_since(Instant::now())).min(RESYNC)
            }
            Err(e) => {
                if e.status == Some(404) {
                    // The coordinator does not know the cloud (it lost its database): register again.
                    registered.send_replace(false);
                }
                outage.failed(&e.to_string());
                RETRY
            }
        };
        tokio::select! {
            _ = changed.changed() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One comparison: the calls that make the coordinator's record of this cloud
/// equal `local`. Returns when the next withdrawal held back is due.
async fn sync_round(
    coordinator: &Peer,
    cloud: &str,
    recorded: &[Entry],
    local: &[super::model::VmRecord],
    gone_since: &mut BTreeMap<VmKey, Instant>,
    hold: Duration,
) -> Result<Option<Instant>, PeerError> {
    let recorded: BTreeMap<VmKey, Entry> = recorded.iter().map(|e| (e.key(), *e)).collect();
    let path = |key: &VmKey| format!("/v1/coordinator/clouds/{cloud}/vms/{}/{}", key.vni, key.mac);
    for vm in local {
        let entry = Entry { vni: vm.vni, mac: vm.mac, ip: vm.ip, vtep: vm.vtep };
        gone_since.remove(&vm.key());
        if recorded.get(&vm.key()) != Some(&entry) {
            let announce = Announce { ip: vm.ip, vtep: vm.vtep };
            let _: serde_json::Value = coordinator.send(Method::PUT, &path(&vm.key()), Some(&announce)).await?;
        }
    }
    let now = Instant::now();
    let mut next_due: Option<Instant> = None;
    let is_local = |key: &VmKey| local.iter().any(|vm| vm.key() == *key);
    for key in recorded.keys().filter(|key| !is_local(key)) {
        let due = *gone_since.entry(*key).or_insert(now) + hold;
        if due <= now {
            let _: Withdrawn = coordinator.send::<(), _>(Method::DELETE, &path(key), None).await?;
            gone_since.remove(key);
        } else {
            next_due = Some(next_due.map_or(due, |d| d.min(due)));
        }
    }
    gone_since.retain(|key, _| recorded.contains_key(key));
    Ok(next_due)
}

pub async fn follow(shared: Arc<Shared<Controller>>, coordinator: Peer, mut registered: watch::Receiver<bool>) {
    let cloud = match shared.call(|c| c.cloud().to_string()).await {
        Ok(cloud) => cloud,
        Err(e) => return log::error!("controller: {}", e.body.error),
    };
    let mut outage = Outage::new(format!("controller {cloud}: following the coordinator {}", coordinator.target()));
    let mut since: Option<u64> = None;
    loop {
        if !*registered.borrow_and_update() {
            let _ = registered.changed().await;
            continue;
        }
        let timeout_ms = POLL.as_millis();
        let path = match since {
            Some(since) => format!("/v1/coordinator/clouds/{cloud}/forwarding?since={since}&timeout_ms={timeout_ms}"),
            None => format!("/v1/coordinator/clouds/{cloud}/forwarding"),
        };
        match coordinator.get::<View>(&path, POLL + POLL_GRACE).await {
            Ok(view) => {
                outage.worked();
                let revision = view.revision;
                match shared.call(move |c| c.follow(&view.entries)).await {
                    Ok(Ok(_)) => since = Some(revision),
                    Ok(Err(e)) => {
                        outage.failed(&format!("cannot store table 1: {e}"));
                        tokio::time::sleep(RETRY).await;
                    }
                    Err(e) => return log::error!("controller {cloud}: {}", e.body.error),
                }
            }
            Err(e) => {
                outage.failed(&e.to_string());
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The gateway VTEP argument, checked like the API checks it.
pub fn parse_vtep(flag: &str, text: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = text.parse().map_err(|_| format!("{flag} {text:?} is not an IPv4 address"))?;
    super::model::check_address("vtep", ip).map_err(|invalid| format!("{flag}: {}", invalid.problem))?;
    Ok(ip)
}
