//! The switch under test, for testbeds that put real peers (namespaces, testpmd)
//! on switchyard ports: its config and its running process.
//!
//! The forwarding part of the config is one function: `cross_connect` (the
//! patch panel: `forward_to`) or `vrouter_switch` (the switching unit).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{json, switchyard, ONE_WORKER};

/// A switchyard port as a testbed sees it: where it is plugged and who is behind it.
#[derive(Debug, Clone)]
pub(crate) struct SwitchPort {
    pub name: String,
    pub devargs: String,
    pub role: &'static str,
    /// The MAC of the machine behind the port, when it matters (kernel stacks
    /// drop frames not addressed to them; testpmd takes anything).
    pub peer_mac: Option<String>,
}

/// The forwarding between two ports: the cross-connect
/// (`forward_to` both ways, Ethernet addresses rewritten towards `peer_mac`).
pub(crate) fn cross_connect(a: &SwitchPort, b: &SwitchPort) -> String {
    let table = |port: &SwitchPort, to: &SwitchPort| {
        let mut t = format!(
            "[[port]]\nname = \"{}\"\ndevargs = \"{}\"\nrole = \"{}\"\nforward_to = \"{}\"\n",
            port.name, port.devargs, port.role, to.name
        );
        if let Some(mac) = &port.peer_mac {
            t += &format!("peer_mac = \"{mac}\"\n");
        }
        t
    };
    table(a, b) + &table(b, a)
}

/// The whole config of a two-port testbed: one worker that sleeps when idle
/// (so peers on the other core are not starved), and the forwarding.
pub(crate) fn two_port_switch(a: &SwitchPort, b: &SwitchPort) -> String {
    format!("{ONE_WORKER}{}", cross_connect(a, b))
}

/// The vRouter with VM-role `ports` all in network 100 (learning, flooding),
/// its config database in `dir` and its control socket in /tmp (unix socket
/// paths are short).
pub(crate) fn vrouter_switch(dir: &Path, ports: &[&SwitchPort]) -> String {
    static SWITCHES: AtomicU32 = AtomicU32::new(0);
    let socket = std::env::temp_dir().join(format!("sy{}-{}.sock", std::process::id(), SWITCHES.fetch_add(1, Ordering::Relaxed)));
    let mut toml = format!(
        "{ONE_WORKER}{}[control]\nsocket = \"{}\"\ndatabase = \"{}/config.redb\"\n",
        super::upgrade_section(&super::units_dir()),
        socket.display(),
        dir.display()
    );
    for port in ports {
        toml += &format!("[[port]]\nname = \"{}\"\ndevargs = \"{}\"\nrole = \"vm\"\nvni = 100\n", port.name, port.devargs);
    }
    toml + "[[network]]\nvni = 100\nname = \"testbed\"\n"
}

/// The control socket a config from `vrouter_switch` serves the API on.
pub(crate) fn control_socket(toml: &str) -> PathBuf {
    let line = toml.lines().find(|l| l.starts_with("socket = ")).expect("a [control] socket line");
    PathBuf::from(line.trim_start_matches("socket = ").trim_matches('"'))
}

/// A running `switchyard run`, killed on drop (a failed assertion must not
/// leave it running). Its log (stderr, at info level) is collected as it comes.
pub(crate) struct RunningSwitch {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    stats: PathBuf,
    /// The control socket, if the config has one: a killed switch leaves it behind.
    socket: Option<PathBuf>,
}

/// How a switch run ended.
pub(crate) struct SwitchExit {
    pub status: ExitStatus,
    pub stdout: String,
    pub log: String,
    /// The `--stats-json` summary.
    pub stats: serde_json::Value,
}

impl RunningSwitch {
    /// Writes `toml` to `dir/switch.toml` and starts the switch on it.
    pub(crate) fn start(dir: &Path, toml: &str) -> RunningSwitch {
        let config = dir.join("switch.toml");
        std::fs::write(&config, toml).unwrap();
        let stats = dir.join("stats.json");
        let _ = std::fs::remove_file(&stats);
        let mut child = switchyard()
            .env("RUST_LOG", "info")
            .args(["run", "--config", config.to_str().unwrap(), "--stats-json", stats.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let socket = toml.lines().any(|l| l.starts_with("socket = ")).then(|| control_socket(toml));
        RunningSwitch { child: Some(child), log, reader: Some(reader), stats, socket }
    }

    /// The daemon's process id (for /proc/PID/status).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the log has a line containing `needle`; panics with the log
    /// if the switch exits or `timeout` passes first.
    pub(crate) fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_log_lines(needle, 1, timeout);
    }

    /// Waits until `count` lines of the log contain `needle` (e.g. the second
    /// "link up" of a port); panics with the log if the switch exits or
    /// `timeout` passes first.
    pub(crate) fn wait_for_log_lines(&mut self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().lines().filter(|line| line.contains(needle)).count() >= count {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "the switch exited ({exited:?}) before logging {needle:?}:\n{}", self.log());
            assert!(
                Instant::now() < deadline,
                "not {count} lines with {needle:?} in the switch log within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a switch and waits until it polls. The kernel refuses a
    /// `net_af_packet` port whose fanout group id is another process's (DPDK
    /// 22.11 derives it from pid ^ ifindex, and the ids are global to the network
    /// namespace): such a start is tried again, by a process with another pid.
    pub(crate) fn start_running(dir: &Path, toml: &str) -> RunningSwitch {
        const FANOUT_CLASH: &str = "the net_af_packet driver refused these devargs (Operation not permitted";
        for _ in 0..3 {
            let mut switch = RunningSwitch::start(dir, toml);
            let deadline = Instant::now() + Duration::from_secs(15);
            while !switch.log().contains("polling") {
                if let Some(status) = switch.child.as_mut().unwrap().try_wait().unwrap() {
                    // The whole log: stderr is read to its end.
                    if let Some(reader) = switch.reader.take() {
                        let _ = reader.join();
                    }
                    let log = switch.log();
                    assert!(log.contains(FANOUT_CLASH), "the switch exited ({status}) before polling:\n{log}");
                    eprintln!("switch start tried again: an af_packet fanout group id clashed with another process's");
                    break;
                }
                assert!(Instant::now() < deadline, "the switch does not poll within 15 s:\n{}", switch.log());
                std::thread::sleep(Duration::from_millis(20));
            }
            if switch.log().contains("polling") {
                return switch;
            }
        }
        panic!("three starts in a row clashed with another process's af_packet fanout group");
    }

    /// Waits until the workers poll: every port is started.
    pub(crate) fn wait_until_running(&mut self) {
        self.wait_for_log("polling", Duration::from_secs(15));
    }

    /// SIGTERM, then the exit status, output and stats summary.
    pub(crate) fn stop(mut self) -> SwitchExit {
        let mut child = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the switch did not stop within 10 s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let log = self.log();
        assert!(status.success(), "switch failed ({status}):\n{log}\n{stdout}");
        let stats = json(&self.stats);
        SwitchExit { status, stdout, log, stats }
    }
}

impl Drop for RunningSwitch {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
            if let Some(socket) = &self.socket {
                let _ = std::fs::remove_file(socket);
            }
        }
    }
}

/// The drop reasons of an exit's stats that counted something: "reason n, ...", or "none".
pub(crate) fn nonzero_drops(stats: &serde_json::Value) -> String {
    let drops = stats["drops"].as_object().unwrap();
    let listed: Vec<String> = drops.iter().filter(|(_, n)| **n != 0).map(|(reason, n)| format!("{reason} {n}")).collect();
    if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
}
