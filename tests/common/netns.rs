//! Network namespaces as hosts or VM stand-ins (root only), removed even when a test fails.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::Running;

/// A name unique to this test process and call: `sy<tag><pid><n>`, at most 15
/// characters (so it also fits an interface name) for tags of up to 3.
pub(crate) fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("sy{tag}{}{n}", std::process::id() % 100_000);
    assert!(name.len() <= 15, "{name} is too long for an interface name");
    name
}

/// A network namespace with its loopback up. Deleted on drop, with every
/// interface in it (a TAP interface moved in goes with it).
pub(crate) struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates namespace `name`, first deleting a leftover of the same name.
    pub(crate) fn new(name: &str) -> Netns {
        assert!(nix::unistd::geteuid().is_root(), "this test creates network namespaces: run it as root (make test does)");
        let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
        run(&["ip", "netns", "add", name]);
        let netns = Netns { name: name.to_string() };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// `ip -n <netns> args...`, which must succeed.
    pub(crate) fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }

    /// `sysctl -w key=value` inside the namespace, which must succeed.
    pub(crate) fn sysctl(&self, key: &str) {
        assert!(self.exec(&["sysctl", "-q", "-w", key]).status().unwrap().success(), "{}: {key}", self.name);
    }

    /// `python3 -u -c script args...` inside the namespace, stdout and stderr piped.
    pub(crate) fn python(&self, script: &str, args: &[&str]) -> Running {
        let mut command = vec!["python3", "-u", "-c", script];
        command.extend_from_slice(args);
        Running(Some(self.exec(&command).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()))
    }

    /// Waits (at most 5 s) until something in the namespace listens on `port`
    /// (`proto`: "-u" or "-t", as `ss` takes them).
    pub(crate) fn wait_listening(&self, proto: &str, port: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self.exec(&["ss", "-Hl", "-n", proto, "sport", "=", &format!(":{port}")]).output().unwrap();
            if !out.stdout.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "nothing listens on {port} in {}", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A command run inside the namespace.
    pub(crate) fn exec(&self, command: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(command);
        cmd
    }

    /// Pings `address` until one answer comes back (the path may need a moment),
    /// then sends `count` more quickly and returns ping's report.
    pub(crate) fn ping(&self, address: &str, count: u32) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.exec(&["ping", "-c", "1", "-W", "1", address]).output().unwrap().status.success() {
            assert!(Instant::now() < deadline, "{}: no ping to {address} got through in 10 s", self.name);
        }
        let out = self.exec(&["ping", "-c", &count.to_string(), "-i", "0.05", "-W", "1", address]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// TCP through the testbed: `server` serves `body` over HTTP on `address`:8080
/// (python3 http.server), `client` fetches it; returns what the client got.
pub(crate) fn http_transfer(server: &Netns, client: &Netns, address: &str, site: &Path, body: &[u8]) -> Vec<u8> {
    std::fs::create_dir_all(site).unwrap();
    std::fs::write(site.join("blob"), body).unwrap();
    let _server = Running(Some(
        server
            .exec(&["python3", "-m", "http.server", "--bind", address, "8080", "--directory", site.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    // The server needs a moment to listen: retry refused connections.
    let fetch = format!(
        "import sys, time, urllib.request\n\
         for _ in range(20):\n\
         \ttry:\n\t\tsys.stdout.buffer.write(urllib.request.urlopen('http://{address}:8080/blob', timeout=3).read()); break\n\
         \texcept OSError: time.sleep(0.1)\n"
    );
    let got = client.exec(&["python3", "-c", &fetch]).output().unwrap();
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    got.stdout
}

/// 1 MiB of a fixed, non-repeating-looking pattern (compressible by nobody on the way).
pub(crate) fn mebibyte() -> Vec<u8> {
    (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}

/// A veth pair with `inner` (MTU `mtu`, `address`) in `netns`, `outer` up in the
/// root namespace. Offloads are off inside: AF_PACKET hands the switch exactly
/// what the kernel sent, so checksums must be complete and frames no larger
/// than the MTU.
pub(crate) fn veth(netns: &Netns, outer: &str, inner: &str, address: &str, mtu: &str) {
    run(&["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", &netns.name]);
    run(&["ip", "link", "set", outer, "up"]);
    netns.ip(&["link", "set", inner, "mtu", mtu, "up"]);
    netns.ip(&["addr", "add", address, "dev", inner]);
    run(&["ip", "netns", "exec", &netns.name, "ethtool", "-K", inner, "tx", "off", "tso", "off", "gso", "off"]);
}

pub(crate) fn run(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{}", args.join(" "));
}

pub(crate) fn output(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{}", args.join(" "));
    String::from_utf8(out.stdout).unwrap()
}
