//! Crash safety of the daemon: `switchyard run` is SIGKILLed again and again while config changes,
//! upgrades of the switching unit (with the config requests they queue) and VM migration events are in flight.
//! After every restart each acknowledged change must be in the configuration, and none half applied:
//! - a network or endpoint that was acknowledged (201, or 202 while an upgrade ran) is there;
//! - a VM whose `resumed` was acknowledged has left its port and has a relay entry to the destination;
//! - a VM that started migrating is on its port or behind the relay entry, never both and never neither;
//! - a change in doubt (killed before its answer) is there whole or not at all.
//!
//! The kill lands at a random moment, right after a request was answered 202 (an upgrade was running, so the
//! kill lands inside it), or a few milliseconds into a `resumed` event (inside its commit), in turn.
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::switch::{control_socket, vrouter_switch, RunningSwitch, SwitchPort};
use common::*;

const ROUNDS: usize = 15;
const HOST_VTEP: &str = "192.0.2.1";
const DESTINATION_VTEP: &str = "192.0.2.2";

/// What the clients were told (acknowledged) and what they asked without an answer (in doubt).
#[derive(Default)]
struct Ledger {
    networks: BTreeSet<u32>,
    endpoints: BTreeSet<String>,
    /// VMs whose `start` was acknowledged.
    migrating: BTreeSet<String>,
    /// VMs whose `resumed` was acknowledged.
    moved: BTreeSet<String>,
    in_doubt: Vec<String>,
    /// Requests answered 202 (queued during an upgrade).
    queued: usize,
    upgrades: usize,
}

#[derive(Clone, Copy, Debug)]
enum KillAt {
    RandomMoment,
    AfterQueuedRequest,
    InsideResumed,
}

/// How a change was answered: not at all (the switch was killed), applied, or queued (202, an upgrade runs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    None,
    Applied,
    Queued,
}

/// What a client thread tells the killer.
enum Signal {
    Queued,
    ResumedSent,
}

struct Round {
    socket: std::path::PathBuf,
    ledger: Arc<Mutex<Ledger>>,
    killed: Arc<AtomicBool>,
    signals: mpsc::Sender<Signal>,
}

impl Round {
    /// `ctl ARGS`: `Some(stdout)` when answered with success, `None` once the switch was killed (the change is in
    /// doubt); a refusal while the switch runs fails the test.
    fn ctl(&self, args: &[&str]) -> Option<String> {
        let out = ctl(&self.socket, args);
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(self.killed.load(Ordering::SeqCst), "ctl {args:?} refused: {stdout}{stderr}");
        None
    }

    /// A change: recorded in the ledger when acknowledged, as in doubt otherwise.
    fn change(&self, what: &str, args: &[&str], record: impl FnOnce(&mut Ledger)) -> Answer {
        let Some(stdout) = self.ctl(args) else {
            self.ledger.lock().unwrap().in_doubt.push(what.to_string());
            return Answer::None;
        };
        let mut ledger = self.ledger.lock().unwrap();
        record(&mut ledger);
        if !stdout.contains("queued as request") {
            return Answer::Applied;
        }
        ledger.queued += 1;
        drop(ledger);
        let _ = self.signals.send(Signal::Queued);
        Answer::Queued
    }

    /// Config writes and migrations, each numbered anew across rounds, until the switch is killed.
    fn write_config(&self) {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        while !self.killed.load(Ordering::SeqCst) {
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let vni = 1000 + n;
            let (vni_text, name) = (vni.to_string(), format!("n{vni}"));
            let create = ["network", "create", "--vni", &vni_text, "--name", &name];
            let created = self.change(&format!("network {vni}"), &create, |l| {
                l.networks.insert(vni);
            }) != Answer::None;
            let mac = vm_mac(n);
            let ip = format!("10.20.{}.{}", n / 250, n % 250 + 1);
            let args = ["endpoint", "add", "--vni", "100", "--mac", &mac, "--ip", &ip, "--port", "x"];
            let added = created && self.change(&format!("endpoint {mac}"), &args, |l| {
                l.endpoints.insert(mac.clone());
            }) == Answer::Applied;
            // A VM whose endpoint is only queued (an upgrade runs) is not on this host yet: it cannot leave.
            if !added || n % 3 != 0 {
                continue;
            }
            // The VM leaves for the destination host; this host is its source.
            let vm = ["--vni", "100", "--mac", &mac];
            let start = [&["migration", "event", "start", "--source", HOST_VTEP, "--destination", DESTINATION_VTEP][..], &vm];
            if self.change(&format!("start {mac}"), &start.concat(), |l| {
                l.migrating.insert(mac.clone());
            }) == Answer::None
            {
                return;
            }
            if self.ctl(&[&["migration", "event", "paused"][..], &vm].concat()).is_none() {
                return;
            }
            let _ = self.signals.send(Signal::ResumedSent);
            if self.change(&format!("resumed {mac}"), &[&["migration", "event", "resumed"][..], &vm].concat(), |l| {
                l.moved.insert(mac.clone());
            }) == Answer::None
            {
                return;
            }
            if self.ctl(&[&["migration", "event", "completed"][..], &vm].concat()).is_none() {
                return;
            }
        }
    }

    /// Upgrades to basic-v2 and back to basic-v1 until the switch is killed.
    fn upgrade(&self) {
        let libraries = [unit_library("basic-v2"), unit_library("basic-v1")];
        for library in libraries.iter().cycle() {
            if self.killed.load(Ordering::SeqCst) || self.ctl(&["upgrade", library.to_str().unwrap()]).is_none() {
                return;
            }
            self.ledger.lock().unwrap().upgrades += 1;
        }
    }
}

fn vm_mac(n: u32) -> String {
    format!("02:00:00:{:02x}:{:02x}:{:02x}", (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// The switch's configuration against the ledger (see the module comment).
fn check(socket: &Path, ledger: &Ledger, round: usize) {
    let config = ctl_json(socket, &["config"]);
    let vnis: BTreeSet<u32> = config["networks"].as_array().unwrap().iter().map(|n| n["vni"].as_u64().unwrap() as u32).collect();
    let list = |table: &str| -> BTreeSet<String> {
        config[table].as_array().unwrap().iter().map(|e| e["mac"].as_str().unwrap().to_string()).collect()
    };
    let (endpoints, remotes) = (list("endpoints"), list("remotes"));
    for vni in &ledger.networks {
        assert!(vnis.contains(vni), "round {round}: acknowledged network {vni} is missing");
    }
    for mac in &ledger.endpoints {
        let here = endpoints.contains(mac);
        assert!(here || ledger.migrating.contains(mac), "round {round}: acknowledged endpoint {mac} is missing");
    }
    for mac in &ledger.moved {
        assert!(!endpoints.contains(mac), "round {round}: {mac} resumed at the destination but is still on its port");
        let relay = config["remotes"].as_array().unwrap().iter().find(|r| r["mac"] == mac.as_str());
        let relay = relay.unwrap_or_else(|| panic!("round {round}: {mac} resumed but has no relay entry"));
        assert_eq!(relay["vtep"], DESTINATION_VTEP, "round {round}: {mac}'s relay entry");
    }
    for mac in &ledger.migrating {
        assert!(
            endpoints.contains(mac) != remotes.contains(mac),
            "round {round}: {mac} is half moved: on its port {}, behind a relay entry {}",
            endpoints.contains(mac),
            remotes.contains(mac)
        );
    }
}

fn config(dir: &Path) -> String {
    let port = |name: &str, n: u32| SwitchPort {
        name: name.to_string(),
        devargs: format!("net_null{n},no-rx=1"),
        role: "vm",
        peer_mac: None,
    };
    // An uplink with a VTEP address makes this switch a migration source.
    vrouter_switch(dir, &[&port("x", 0), &port("y", 1)])
        + &format!("[[port]]\nname = \"uplink\"\ndevargs = \"net_null2,no-rx=1\"\nrole = \"uplink\"\naddress = \"{HOST_VTEP}/24\"\n")
}

#[test]
fn acknowledged_changes_survive_sigkill_during_config_writes_upgrades_and_migrations() {
    let mut rng = KillTimes::from_clock();
    let dir = scratch("crash_restart");
    let toml = config(&dir);
    let socket = control_socket(&toml);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for round in 0..ROUNDS {
        let mut switch = RunningSwitch::start(&dir, &toml);
        switch.wait_until_running();
        check(&socket, &ledger.lock().unwrap(), round);
        let kill_at = [KillAt::RandomMoment, KillAt::AfterQueuedRequest, KillAt::InsideResumed][round % 3];
        let (signals, heard) = mpsc::channel();
        let round_state =
            Arc::new(Round { socket: socket.clone(), ledger: Arc::clone(&ledger), killed: Arc::new(AtomicBool::new(false)), signals });
        let writer = {
            let round_state = Arc::clone(&round_state);
            std::thread::spawn(move || round_state.write_config())
        };
        let upgrader = {
            let round_state = Arc::clone(&round_state);
            std::thread::spawn(move || round_state.upgrade())
        };
        let deadline = Instant::now() + Duration::from_millis(300 + rng.below(1200));
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match (kill_at, heard.recv_timeout(wait)) {
                (_, Err(_)) => break,
                (KillAt::AfterQueuedRequest, Ok(Signal::Queued)) => break,
                (KillAt::InsideResumed, Ok(Signal::ResumedSent)) => {
                    // ctl takes a few milliseconds to start and connect: this lands around the event's commit.
                    std::thread::sleep(Duration::from_micros(2000 + rng.below(6000)));
                    break;
                }
                _ => {}
            }
        }
        round_state.killed.store(true, Ordering::SeqCst);
        drop(switch); // SIGKILL
        writer.join().unwrap();
        upgrader.join().unwrap();
        let ledger = ledger.lock().unwrap();
        eprintln!(
            "round {round}: killed ({kill_at:?}); so far {} networks, {} endpoints, {} moved VMs acknowledged, \
             {} queued during upgrades, {} upgrades, in doubt: {:?}",
            ledger.networks.len(),
            ledger.endpoints.len(),
            ledger.moved.len(),
            ledger.queued,
            ledger.upgrades,
            ledger.in_doubt.last()
        );
    }
    let mut switch = RunningSwitch::start(&dir, &toml);
    switch.wait_until_running();
    let ledger = ledger.lock().unwrap();
    check(&socket, &ledger, ROUNDS);
    assert!(ledger.queued > 0, "no request was queued during an upgrade, so no kill landed in one");
    assert!(!ledger.moved.is_empty(), "no migration reached resumed");
    switch.stop();
}
