//! The inter-cloud agents, each beside one switch and talking to it through
//! its control API (unix socket):
//!
//! - the *switch agent* of a compute node announces the VM endpoints of its
//!   switch to its cloud's controller ("VM online at this VTEP"), withdraws
//!   them when they go, and programs table 1 (the controller's `remotes`: the
//!   other clouds' VMs at their gateway) into the switch's remote table;
//! - the *gateway agent* programs table 2 (the coordinator's gateway view of
//!   its cloud: each VM at its compute node) into the gateway switch.
//!
//! Both follow their source by long poll and look at the switch's
//! configuration every `TICK`; changes go through `reconcile::plan`, so they
//! only touch entries they made (kept in `--state`, a JSON file, across restarts).
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Method;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::client::{Outage, Peer, CALL_TIMEOUT, POLL_GRACE};
use super::model::{Announce, Entry, View, VmKey, VmRecord, Withdrawn};
use super::reconcile::{plan, Action, Skip};
use super::tasks::{POLL, RETRY};
use crate::model::ConfigSnapshot;

/// How often the switch's configuration is read (its API has no watch).
pub const TICK: Duration = Duration::from_millis(10);

/// Where an agent's wanted entries come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A switch agent: the controller's table 1; the agent also announces the
    /// switch's VMs at `vtep`.
    Controller { controller: Peer, vtep: Ipv4Addr },
    /// A gateway agent: the coordinator's table 2 of `cloud`.
    Gateway { coordinator: Peer, cloud: String },
}

impl Source {
    fn role(&self) -> &'static str {
        match self {
            Source::Controller { .. } => "switch agent",
            Source::Gateway { .. } => "gateway agent",
        }
    }

    fn view_path(&self) -> String {
        match self {
            Source::Controller { .. } => "/v1/controller/remotes".into(),
            Source::Gateway { cloud, .. } => format!("/v1/coordinator/clouds/{cloud}/gateway"),
        }
    }

    fn peer(&self) -> &Peer {
        match self {
            Source::Controller { controller, .. } => controller,
            Source::Gateway { coordinator, .. } => coordinator,
        }
    }
}

/// The entries an agent made, as its state file keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StateFile {
    made: Vec<Entry>,
}

fn load_state(path: Option<&Path>) -> Result<BTreeMap<VmKey, Entry>, String> {
    let Some(path) = path else { return Ok(BTreeMap::new()) };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read the state file {}: {e}", path.display())),
    };
    let state: StateFile =
        serde_json::from_str(&text).map_err(|e| format!("the state file {} is not an agent's: {e}", path.display()))?;
    Ok(state.made.into_iter().map(|e| (e.key(), e)).collect())
}

/// Written whole (a temporary file renamed into place).
fn save_state(path: &Path, made: &BTreeMap<VmKey, Entry>) -> Result<(), String> {
    let state = StateFile { made: made.values().copied().collect() };
    let mut staging = path.as_os_str().to_owned();
    staging.push(".new");
    let staging = PathBuf::from(staging);
    let text = serde_json::to_string_pretty(&state).map_err(|e| e.to_string())?;
    std::fs::write(&staging, text + "\n")
        .and_then(|()| std::fs::rename(&staging, path))
        .map_err(|e| format!("cannot write the state file {}: {e}", path.display()))
}

pub struct Agent {
    switch: Peer,
    source: Source,
    state: Option<PathBuf>,
    made: BTreeMap<VmKey, Entry>,
    /// A switch agent's VMs as the controller has them from this VTEP; None until read.
    announced: Option<BTreeMap<VmKey, Announce>>,
    /// (switch generation, view revision) last brought fully in line.
    done: Option<(u64, u64)>,
    skipped: BTreeMap<VmKey, Skip>,
    outage: Outage,
}

impl Agent {
    pub fn new(switch_socket: &Path, source: Source, state: Option<PathBuf>) -> Result<Agent, String> {
        let made = load_state(state.as_deref())?;
        let outage = Outage::new(format!("{} of {}", source.role(), switch_socket.display()));
        Ok(Agent { switch: Peer::unix(switch_socket), source, state, made, announced: None, done: None, skipped: BTreeMap::new(), outage })
    }

    pub fn role(&self) -> &'static str {
        self.source.role()
    }

    /// Runs until the task is dropped.
    pub async fn run(mut self) {
        let (views, mut view) = watch::channel::<Option<View>>(None);
        let follower = tokio::spawn(follow_source(self.source.clone(), views));
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = view.changed() => {}
            }
            let current = view.borrow_and_update().clone();
            match self.round(current).await {
                Ok(()) => self.outage.worked(),
                Err(message) => {
                    self.done = None;
                    self.outage.failed(&message);
                    tokio::time::sleep(RETRY).await;
                }
            }
            if follower.is_finished() {
                return;
            }
        }
    }

    /// One look at the switch; announcements and table changes when something changed.
    async fn round(&mut self, view: Option<View>) -> Result<(), String> {
        let config: ConfigSnapshot = self.switch.get("/v1/config", CALL_TIMEOUT).await.map_err(|e| e.to_string())?;
        let now = (config.generation, view.as_ref().map_or(0, |v| v.revision));
        if self.done == Some(now) {
            return Ok(());
        }
        if let Source::Controller { controller, vtep } = &self.source {
            let (controller, vtep) = (controller.clone(), *vtep);
            self.announce(&controller, vtep, &config).await?;
        }
        let Some(view) = view else { return Ok(()) };
        let changed = self.reconcile(&view.entries, &config).await;
        if let Some(path) = &self.state {
            if changed {
                save_state(path, &self.made)?;
            }
        }
        // Our own changes made a new generation: look again next tick, which then finds nothing to do.
        self.done = Some(now);
        Ok(())
    }

    /// Seed 002: the switch agent notifies the controller of VMs that came
    /// online here, and of the ones that went.
    async fn announce(&mut self, controller: &Peer, vtep: Ipv4Addr, config: &ConfigSnapshot) -> Result<(), String> {
        let announced = match self.announced.take() {
            Some(announced) => announced,
            None => {
                let vms: Vec<VmRecord> = controller.get("/v1/controller/vms", CALL_TIMEOUT).await.map_err(|e| e.to_string())?;
                vms.into_iter().filter(|vm| vm.vtep == vtep).map(|vm| (vm.key(), Announce { ip: vm.ip, vtep })).collect()
            }
        };
        let mut announced = announced;
        let wanted: BTreeMap<VmKey, Announce> =
            config.endpoints.iter().map(|e| (VmKey::new(e.vni, e.mac), Announce { ip: e.ip, vtep })).collect();
        let path = |key: &VmKey| format!("/v1/controller/vms/{}/{}", key.vni, key.mac);
        let mut failure = None;
        for (key, announce) in &wanted {
            if announced.get(key) != Some(announce) {
                match controller.send::<_, VmRecord>(Method::PUT, &path(key), Some(announce)).await {
                    Ok(_) => {
                        announced.insert(*key, *announce);
                    }
                    Err(e) => failure = Some(e.to_string()),
                }
            }
        }
        let gone: Vec<VmKey> = announced.keys().filter(|key| !wanted.contains_key(key)).copied().collect();
        for key in gone {
            let withdraw = format!("{}?vtep={vtep}", path(&key));
            match controller.send::<(), Withdrawn>(Method::DELETE, &withdraw, None).await {
                Ok(_) => {
                    announced.remove(&key);
                }
                Err(e) => failure = Some(e.to_string()),
            }
        }
        self.announced = Some(announced);
        failure.map_or(Ok(()), Err)
    }

    /// Brings the switch's remote table in line with `wanted`; true when `made` changed.
    async fn reconcile(&mut self, wanted: &[Entry], config: &ConfigSnapshot) -> bool {
        let plan = plan(wanted, config, &self.made);
        let mut changed = !plan.forget.is_empty();
        for key in &plan.forget {
            self.made.remove(key);
        }
        let skipped: BTreeMap<VmKey, Skip> = plan.skipped.iter().copied().collect();
        for (key, skip) in &skipped {
            if self.skipped.get(key) != Some(skip) {
                let why = match skip {
                    Skip::NoNetwork => "the switch has no network with that VNI",
                    Skip::AttachedHere => "the VM is attached to this switch",
                    Skip::NotMine => "the switch has another entry for it that this agent did not make",
                };
                log::info!("{}: not programming {key}: {why}", self.role());
            }
        }
        self.skipped = skipped;
        for action in plan.actions {
            let result = match action {
                Action::Add(entry) => self.add(entry).await,
                Action::Remove(entry) => self.remove(entry).await,
                Action::Replace { old, new } => match self.remove(old).await {
                    Ok(()) => self.add(new).await,
                    Err(e) => Err(e),
                },
            };
            changed = true;
            if let Err(message) = result {
                log::warn!("{}: {message}", self.role());
            }
        }
        changed
    }

    async fn add(&mut self, entry: Entry) -> Result<(), String> {
        let _: serde_json::Value = self.switch.send(Method::POST, "/v1/remotes", Some(&entry)).await.map_err(|e| e.to_string())?;
        self.made.insert(entry.key(), entry);
        Ok(())
    }

    async fn remove(&mut self, entry: Entry) -> Result<(), String> {
        let path = format!("/v1/remotes/{}/{}", entry.vni, entry.mac);
        match self.switch.send::<(), serde_json::Value>(Method::DELETE, &path, None).await {
            Ok(_) => {}
            Err(e) if e.status == Some(404) => {}
            Err(e) => return Err(e.to_string()),
        }
        self.made.remove(&entry.key());
        Ok(())
    }
}

/// Long-polls the source's view into `views`; ends when the agent is gone.
async fn follow_source(source: Source, views: watch::Sender<Option<View>>) {
    let peer = source.peer().clone();
    let mut outage = Outage::new(format!("{}: following {}", source.role(), peer.target()));
    let mut since: Option<u64> = None;
    while !views.is_closed() {
        let path = match since {
            Some(since) => format!("{}?since={since}&timeout_ms={}", source.view_path(), POLL.as_millis()),
            None => source.view_path(),
        };
        match peer.get::<View>(&path, POLL + POLL_GRACE).await {
            Ok(view) => {
                outage.worked();
                since = Some(view.revision);
                views.send_if_modified(|current| {
                    let newer = current.as_ref() != Some(&view);
                    *current = Some(view);
                    newer
                });
            }
            Err(e) => {
                outage.failed(&e.to_string());
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
