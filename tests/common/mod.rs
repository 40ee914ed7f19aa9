//! Shared helpers for the integration tests: run the binary, read and write pcaps, ask tshark.
#![allow(dead_code)] // each test binary uses a different subset

pub(crate) mod board;
pub(crate) mod small_disk;
pub(crate) mod frames;
pub(crate) mod netns;
pub(crate) mod roles;
pub(crate) mod storage;
pub(crate) mod overlay;
pub(crate) mod switch;
pub(crate) mod tap;
pub(crate) mod testpmd;
pub(crate) mod tls;
pub(crate) mod underlay;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

/// The tables every test config starts with: one worker on lcore 1 that backs
/// off when idle, so tests running in parallel share the two cores.
pub(crate) const ONE_WORKER: &str = "[eal]\nlcores = \"0-1\"\nmemory_mb = 256\n[mempool]\nmbufs = 4095\n\
                              [dataplane]\nworkers = [1]\nidle_sleep_us = 100\n";

/// The repository root (where conf/ lives).
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty directory for one test.
pub(crate) fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The switchyard binary, with quiet logs, run from the repository root.
pub(crate) fn switchyard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.current_dir(repo()).env("RUST_LOG", "warn");
    cmd
}

/// `switchyard run --config <dir>/<name>.toml` with `toml` written there first.
pub(crate) fn run_config(dir: &Path, name: &str, toml: &str, extra: &[&str]) -> Output {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    switchyard().arg("run").arg("--config").arg(&path).args(extra).output().unwrap()
}

pub(crate) fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let mut reader = PcapReader::new(File::open(path).unwrap()).unwrap();
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet() {
        frames.push(packet.unwrap().data.into_owned());
    }
    frames
}

pub(crate) fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    std::fs::write(path, pcap_bytes(frames)).unwrap();
}

/// The pcap file of `frames`, as bytes (timestamps 0, 1, 2 ... ms: the same every time).
pub(crate) fn pcap_bytes(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut writer = PcapWriter::new(Vec::new()).unwrap();
    for (i, frame) in frames.iter().enumerate() {
        writer.write_packet(&PcapPacket::new(Duration::from_millis(i as u64), frame.len() as u32, frame)).unwrap();
    }
    writer.into_writer()
}

/// Lines tshark flags in `pcap`: malformed packets and bad IPv4/UDP/TCP/ICMP checksums.
/// Also fails the test if tshark itself cannot read the file.
pub(crate) fn tshark_problems(pcap: &Path) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"])
        .args(["-Y", "_ws.malformed or ip.checksum.status == 0 or udp.checksum.status == 0 or tcp.checksum.status == 0 or icmp.checksum.status == 0"])
        .output()
        .expect("tshark is installed (make deps)");
    assert!(out.status.success(), "tshark cannot read {}: {}", pcap.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

pub(crate) fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().map(str::to_owned).collect()
}

pub(crate) fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A test switch's control socket path in /tmp (`sy-<tag>-<pid>.sock`: unix
/// socket paths are short), removed when dropped: a switch killed with SIGKILL
/// cannot remove its own.
pub(crate) struct SocketPath(PathBuf);

impl SocketPath {
    pub(crate) fn new(tag: &str) -> SocketPath {
        SocketPath(std::env::temp_dir().join(format!("sy-{tag}-{}.sock", std::process::id())))
    }
}

impl std::ops::Deref for SocketPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Kills a child process when dropped (a failed assertion must not leave it running).
pub(crate) struct Running(pub Option<Child>);

impl Running {
    /// Waits for it to end by itself, then its output.
    pub(crate) fn wait_with_output(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }

    /// Waits up to `timeout` for it to end by itself: its output, or `None`
    /// (and killed on drop) if it did not.
    pub(crate) fn wait_at_most(mut self, timeout: std::time::Duration) -> Option<Output> {
        let deadline = std::time::Instant::now() + timeout;
        while self.0.as_mut().unwrap().try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(self.wait_with_output())
    }

    /// SIGTERM, then its output.
    pub(crate) fn stop(mut self) -> Output {
        let child = self.0.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where `make units` puts the unit libraries (root's, mode 0755 in a 0755 directory).
pub(crate) fn units_dir() -> PathBuf {
    repo().join("target/units")
}

/// `[upgrade]` with `library_dir` = `dir`: the switch loads unit libraries from there only.
pub(crate) fn upgrade_section(dir: &Path) -> String {
    format!("[upgrade]\nlibrary_dir = \"{}\"\n", dir.display())
}

/// A unit library `make units` built (`basic-v1`, `faulty-unhealthy`, ...).
pub(crate) fn unit_library(name: &str) -> PathBuf {
    let path = units_dir().join(format!("{name}.so"));
    assert!(path.exists(), "{} is missing: run `make units` first", path.display());
    path
}

/// `switchyard ctl --socket SOCKET ARGS...`.
pub(crate) fn ctl(socket: &Path, args: &[&str]) -> Output {
    switchyard().arg("ctl").arg("--socket").arg(socket).args(args).output().unwrap()
}

/// `ctl --json ARGS...`, which must succeed, as JSON.
pub(crate) fn ctl_json(socket: &Path, args: &[&str]) -> serde_json::Value {
    let out = ctl(socket, &[&["--json"], args].concat());
    assert!(out.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Random kill times for the crash tests: xorshift64 seeded from the clock, with the seed printed so a failing
/// run can be read back.
pub(crate) struct KillTimes {
    seed: u64,
    state: u64,
}

impl KillTimes {
    pub(crate) fn from_clock() -> KillTimes {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let seed = since.as_nanos() as u64 | 1;
        eprintln!("kill-time seed {seed}");
        KillTimes { seed, state: seed }
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % n
    }
}
