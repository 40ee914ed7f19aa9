//! `dpdk-testpmd` as a VM stand-in on vhost-user ports: one virtio-user port per
//! socket, driven interactively (commands on stdin, answers up to the next prompt).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PROMPT: &str = "testpmd> ";

/// A port's counters as testpmd's `show port stats` reports them (the ethdev's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PortCounts {
    pub rx: u64,
    pub tx: u64,
}

/// A running interactive testpmd, killed on drop.
pub(crate) struct Testpmd {
    child: Child,
    stdin: ChildStdin,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    /// EAL's runtime directory for `--file-prefix`, which EAL leaves behind (empty).
    runtime_dir: PathBuf,
}

impl Testpmd {
    /// Starts testpmd with `net_virtio_user<i>` on `sockets[i]` in `forward_mode`.
    ///
    /// EAL: forwarding on lcore 0 (`--main-lcore 1`; switchyard's worker has lcore 1);
    /// `--no-huge`: EAL then backs its memory with one memfd, which the vhost-user
    /// backend can map (hugepages would need `--single-file-segments`: with one file
    /// per page, virtio-user exceeds vhost-user's 8 memory regions).
    pub(crate) fn on_vhost_sockets(sockets: &[&Path], forward_mode: &str) -> Testpmd {
        Testpmd::start(sockets, "", forward_mode)
    }

    /// Like `on_vhost_sockets`, but testpmd creates and listens on the sockets
    /// (virtio-user `server=1`, as QEMU with `server=on`) and the switch's
    /// `net_vhost ... client=1` ports connect to it. Returns once they have.
    pub(crate) fn serving_vhost_sockets(sockets: &[&Path], forward_mode: &str) -> Testpmd {
        Testpmd::start(sockets, ",server=1", forward_mode)
    }

    /// Starts testpmd and waits for its prompt. Now and then (about one start in
    /// ten here, cause not found) virtio-user's start hangs after reading the
    /// MAC, before the prompt: that testpmd is killed and started once more.
    fn start(sockets: &[&Path], extra_devargs: &str, forward_mode: &str) -> Testpmd {
        for _ in 0..2 {
            let mut testpmd = Testpmd::spawn(sockets, extra_devargs, forward_mode);
            if testpmd.prompt_within(0, Duration::from_secs(20)).is_some() {
                return testpmd;
            }
            eprintln!("testpmd gave no prompt within 20 s; starting it again. Its output:\n{}", testpmd.output());
        }
        panic!("testpmd gave no prompt within 20 s, twice");
    }

    fn spawn(sockets: &[&Path], extra_devargs: &str, forward_mode: &str) -> Testpmd {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!("switchyard-test-testpmd-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        // stdbuf: testpmd prints answers with stdio, which a pipe would hold back until exit.
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-o0", "dpdk-testpmd", "-l", "0,1", "--main-lcore", "1", "--no-huge", "--no-shconf", "-m", "128"]);
        cmd.args(["--no-pci", "--file-prefix", &prefix, "--log-level=*:warning"]);
        for (i, socket) in sockets.iter().enumerate() {
            cmd.arg("--vdev").arg(format!("net_virtio_user{i},path={},queues=1{extra_devargs}", socket.display()));
        }
        cmd.args(["--", "-i", &format!("--forward-mode={forward_mode}"), "--nb-cores=1"]);
        cmd.args(["--total-num-mbufs=2048", "--no-mlockall"]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dpdk-testpmd is installed (package dpdk-dev, make deps)");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let streams: [Box<dyn Read + Send>; 2] =
            [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for mut stream in streams {
            let sink = output.clone();
            readers.push(std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut chunk) {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }));
        }
        let stdin = child.stdin.take().unwrap();
        let runtime_dir = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !nix::unistd::geteuid().is_root() => PathBuf::from(dir).join("dpdk").join(&prefix),
            _ => PathBuf::from("/var/run/dpdk").join(&prefix),
        };
        Testpmd { child, stdin, output, readers, runtime_dir }
    }

    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for a prompt after byte `from` of the output; returns the text before it.
    fn wait_for_prompt(&mut self, from: usize, timeout: Duration) -> String {
        let answer = self.prompt_within(from, timeout);
        answer.unwrap_or_else(|| panic!("testpmd gave no prompt within {timeout:?}:\n{}", self.output()))
    }

    /// The text before the first prompt after byte `from`, if one comes within `timeout`.
    fn prompt_within(&mut self, from: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let output = self.output();
            if let Some(at) = output.get(from..).and_then(|new| new.find(PROMPT)) {
                return Some(output[from..from + at].to_string());
            }
            let exited = self.child.try_wait().unwrap();
            assert!(exited.is_none(), "testpmd exited ({exited:?}):\n{output}");
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Runs one command and returns its answer.
    pub(crate) fn command(&mut self, line: &str) -> String {
        let from = self.output().len();
        writeln!(self.stdin, "{line}").unwrap();
        self.wait_for_prompt(from, Duration::from_secs(20))
    }

    /// The ethdev counters of every port (`show port stats all`).
    pub(crate) fn port_counts(&mut self) -> Vec<PortCounts> {
        parse_port_stats(&self.command("show port stats all"))
    }

    /// `quit`: testpmd stops and closes its ports (the vhost-user peers see them go).
    pub(crate) fn quit(mut self) {
        writeln!(self.stdin, "quit").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "testpmd did not quit within 10 s:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.runtime_dir); // only if empty
    }
}

/// Reads `RX-packets` and `TX-packets` per port out of `show port stats all`.
pub(crate) fn parse_port_stats(text: &str) -> Vec<PortCounts> {
    let mut ports: Vec<PortCounts> = Vec::new();
    let number = |line: &str, key: &str| -> Option<u64> { line.split(key).nth(1)?.split_whitespace().next()?.parse().ok() };
    for line in text.lines() {
        if line.contains("NIC statistics for port") {
            ports.push(PortCounts::default());
        } else if let Some(port) = ports.last_mut() {
            if let Some(rx) = number(line, "RX-packets:") {
                port.rx = rx;
            }
            if let Some(tx) = number(line, "TX-packets:") {
                port.tx = tx;
            }
        }
    }
    ports
}
