//! A multi-host testbed's underlay: a bridge in its own namespace that the
//! hosts' `net_af_packet` uplinks plug into, a tshark capture of the VXLAN on
//! it, and checks collected so one run reports all that failed.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::netns::{output, run, unique_name, Netns};
use super::Running;

/// A bridge in namespace `ul` and one veth pair per host, the host's end (its
/// uplink) in the root namespace. Dropping it deletes the root ends (and with
/// them the pairs), then the namespace with the bridge.
pub(crate) struct Underlay {
    uplinks: Vec<String>,
    pub ul: Netns,
}

impl Underlay {
    pub(crate) fn new(tag: &str) -> Underlay {
        let ul = Netns::new(&unique_name(tag));
        ul.sysctl("net.ipv6.conf.all.disable_ipv6=1");
        ul.sysctl("net.ipv6.conf.default.disable_ipv6=1");
        ul.ip(&["link", "add", "br0", "type", "bridge"]);
        ul.ip(&["link", "set", "br0", "up"]);
        Underlay { uplinks: Vec::new(), ul }
    }

    /// A veth pair for one host: the uplink in the root namespace, `p<tag>` on
    /// the bridge; offloads off on both ends (AF_PACKET sees frames exactly as
    /// they cross the wire). The root namespace's kernel must stay out of the
    /// underlay: this machine's eth0 may hold an address of the underlay's
    /// subnet (192.0.2.2 on the machine this was written on), and the kernel
    /// answers ARP for its addresses on every interface with that interface's
    /// MAC, and takes frames sent to an af_packet port's MAC (its interface's)
    /// for its own. No ARP, no IPv6, and strict reverse-path filtering (the
    /// sources are routed via eth0) keep it out; the af_packet port still sees
    /// everything (packet taps come first).
    pub(crate) fn plug(&mut self, tag: &str) -> String {
        let uplink = unique_name(&format!("u{tag}"));
        let peer = format!("p{tag}");
        run(&["ip", "link", "add", &uplink, "type", "veth", "peer", "name", &peer, "netns", &self.ul.name]);
        self.uplinks.push(uplink.clone());
        run(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.{uplink}.disable_ipv6=1")]);
        output(&["ethtool", "-K", &uplink, "tx", "off", "tso", "off", "gso", "off", "gro", "off"]); // quiet: it lists what changed
        run(&["sysctl", "-q", "-w", &format!("net.ipv4.conf.{uplink}.rp_filter=1")]);
        run(&["ip", "link", "set", &uplink, "arp", "off", "up"]);
        let offloads = ["-K", &peer, "tx", "off", "tso", "off", "gso", "off", "gro", "off"];
        output(&[&["ip", "netns", "exec", &self.ul.name, "ethtool"][..], &offloads].concat());
        self.ul.ip(&["link", "set", &peer, "master", "br0", "up"]);
        uplink
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        for uplink in &self.uplinks {
            let _ = std::process::Command::new("ip").args(["link", "del", uplink]).stderr(Stdio::null()).status();
        }
    }
}

/// One VXLAN packet seen on the underlay bridge: when (epoch seconds, to
/// compare with the times events were sent), its outer addresses, and the
/// further tshark fields asked for, as tshark prints them.
pub(crate) struct Seen {
    pub at: f64,
    pub src: String,
    pub dst: String,
    pub more: Vec<String>,
}

/// tshark capturing VXLAN on the underlay bridge into a file, dissected after
/// the run (so the capture keeps up with the traffic).
pub(crate) struct Capture {
    tshark: Running,
    file: PathBuf,
    log: PathBuf,
}

impl Capture {
    pub(crate) fn start(underlay: &Underlay, dir: &Path) -> Capture {
        let (file, log) = (dir.join("underlay.pcapng"), dir.join("tshark.log"));
        let _ = std::fs::remove_file(&file);
        let stderr = std::fs::File::create(&log).unwrap();
        let path = file.to_str().unwrap();
        let tshark = underlay
            .ul
            .exec(&["tshark", "-i", "br0", "-f", "udp port 4789", "-s", "128", "-B", "64", "-q", "-w", path])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let tshark = Running(Some(tshark));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).unwrap().contains("Capturing on") {
            assert!(Instant::now() < deadline, "tshark did not start: {}", std::fs::read_to_string(&log).unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
        Capture { tshark, file, log }
    }

    /// Stops the capture; the packets with the fields `more`, and tshark's own
    /// count (and drops, if any).
    pub(crate) fn stop(self, more: &[&str]) -> (Vec<Seen>, String) {
        self.tshark.stop();
        let summary = std::fs::read_to_string(&self.log).unwrap();
        let summary: Vec<&str> = summary.lines().filter(|l| l.contains("captured") || l.contains("dropped")).collect();
        let mut args = vec!["tshark", "-n", "-r", self.file.to_str().unwrap(), "-T", "fields"];
        for field in ["frame.time_epoch", "ip.src", "ip.dst"].iter().chain(more) {
            args.extend(["-e", field]);
        }
        let seen = output(&args)
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                // Outer header first: ip.src is "outer,inner".
                let first = |s: &str| s.split(',').next().unwrap().to_string();
                let more = f.iter().skip(3).map(|s| s.to_string()).collect();
                Some(Seen { at: f.first()?.parse().ok()?, src: first(f.get(1)?), dst: first(f.get(2)?), more })
            })
            .collect();
        (seen, summary.join("; "))
    }
}

/// `t` in seconds since the Unix epoch, as tshark gives `frame.time_epoch`.
pub(crate) fn epoch(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Checks that may fail, collected so one run reports all of them.
#[derive(Default)]
pub(crate) struct Checks(pub Vec<String>);

impl Checks {
    pub(crate) fn check(&mut self, ok: bool, what: impl Into<String>) {
        let what = what.into();
        eprintln!("{} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            self.0.push(what);
        }
    }
}
