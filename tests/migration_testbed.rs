//! Layer 3 for VM live migration without loss: three hosts, real
//! kernel stacks, a VM that moves while it is being sent to.
//!
//! Hosts A, B and C are switchyard processes whose `net_af_packet` uplinks
//! (VTEPs 192.0.2.1, .2, .3) meet on a Linux bridge in namespace `ul`. VM X is
//! one namespace with two TAP interfaces, one on a VM port of A and one on a VM
//! port of B, both with X's MAC: the A side runs first, the B side comes up
//! when X resumes at B. VM S, on C, streams numbered UDP datagrams (25,000 per
//! second) and an iperf3 TCP transfer to X; after a second X migrates from A to
//! B: start, paused, a 250 ms pause with no copy of X running, resumed,
//! completed. Every host registers its VMs on the bulletin board and follows
//! it (`[board]`): B locks X's record at start, so its "X at B" waits until
//! completed, and then C follows the record to B. Every datagram must arrive once and in
//! order, TCP must retransmit nothing, the underlay must show C sending to B
//! and no longer to A, and the stats must show A held X's packets and released
//! them all. The figures (pause window, largest buffer, rates) are printed.
//!
//! Root only; namespaces, veths and processes are removed even when the test
//! fails. About 12 s.
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use common::board::BoardProcess;
use common::netns::{run, unique_name, Netns};
use common::switch::{nonzero_drops, RunningSwitch, SwitchExit};
use common::tap::TapVm;
use common::underlay::{epoch, Capture, Checks, Seen, Underlay};
use common::*;
use serde_json::Value;

const VNI: &str = "100";
const X_MAC: &str = "02:00:00:0a:00:01";
const X_IP: &str = "10.10.0.1";
const S_MAC: &str = "02:00:00:0a:00:03";
const S_IP: &str = "10.10.0.3";
const UDP_PORT: &str = "9000";
const IPERF_PORT: &str = "5201";
/// Datagrams per second S sends; the test insists on at least `MIN_RATE`.
const RATE: u32 = 25_000;
const MIN_RATE: f64 = 20_000.0;
/// How long no copy of X runs: the A side is down, the B side not up yet.
const PAUSE: Duration = Duration::from_millis(250);
/// After `completed` (and C following the board to B), the time allowed for the last
/// datagrams C sent to A to drain before the underlay must show C -> A no more.
const SETTLE: Duration = Duration::from_millis(200);
/// How long the iperf3 transfer runs: about 1 s before the migration, the
/// migration itself, and 1.5 s after it.
const IPERF_SECONDS: &str = "4";

/// S's datagram stream: 64-byte payloads starting with a u64 sequence number,
/// paced with perf_counter in small bursts, until SIGTERM; then a few stop
/// markers (all ones, then the count sent) and a JSON line.
const UDP_SENDER: &str = r#"
import json, signal, socket, struct, sys, time
address, port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
MARK = (1 << 64) - 1
running = True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
target = (address, port)
pad = bytes(56)
pack = struct.Struct("!Q").pack
seq = 0
start = time.perf_counter()
while running:
    due = int((time.perf_counter() - start) * rate)
    while seq < due:
        s.sendto(pack(seq) + pad, target)
        seq += 1
    time.sleep(0.0005)
seconds = time.perf_counter() - start
for _ in range(5):
    s.sendto(struct.pack("!QQ", MARK, seq) + bytes(48), target)
    time.sleep(0.02)
print(json.dumps({"sent": seq, "seconds": seconds, "rate": seq / seconds}), flush=True)
"#;

/// X's side of the stream: records every sequence number; ends on a stop
/// marker (after a short grace for stragglers) or after `idle` seconds without
/// a datagram; prints what it saw as JSON.
const UDP_RECEIVER: &str = r#"
import json, socket, struct, sys, time
address, port, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
MARK = (1 << 64) - 1
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: a released buffer arrives at once
s.bind((address, port))
s.settimeout(idle)
seen = bytearray()
count = duplicates = out_of_order = 0
highest, total, last = -1, None, None
gap, gap_after = 0.0, None
late = []
while True:
    try:
        data = s.recv(2048)
    except socket.timeout:
        break
    now = time.monotonic()
    seq = struct.unpack_from("!Q", data)[0]
    if seq == MARK:
        total = struct.unpack_from("!Q", data, 8)[0]
        s.settimeout(0.3)
        continue
    if last is not None and now - last > gap:
        gap, gap_after = now - last, highest
    last = now
    count += 1
    if seq >= len(seen):
        seen.extend(bytes(seq + 1 - len(seen) + 65536))
    if seen[seq]:
        duplicates += 1
        continue
    seen[seq] = 1
    if seq < highest:
        out_of_order += 1
        if len(late) < 10:
            late.append([seq, highest])
    highest = max(highest, seq)
expected = total if total is not None else highest + 1
missing = [i for i in range(expected) if i >= len(seen) or not seen[i]]
ranges = []
for i in missing:
    if ranges and ranges[-1][1] == i - 1:
        ranges[-1][1] = i
    else:
        ranges.append([i, i])
print(json.dumps({"count": count, "expected": expected, "stop_marker": total is not None,
                  "missing": len(missing), "missing_ranges": ranges[:20], "duplicates": duplicates,
                  "out_of_order": out_of_order, "first_late": late,
                  "longest_gap_ms": gap * 1000.0, "longest_gap_after_seq": gap_after}))
"#;

/// One host: a switchyard process with a VM port and an uplink on the underlay.
struct Host {
    name: &'static str,
    vtep: &'static str,
    socket: PathBuf,
    switch: RunningSwitch,
}

impl Host {
    /// `switchyard ctl ARGS` on this host, which must succeed; its JSON reply.
    fn ctl(&self, args: &[&str]) -> Value {
        let out = ctl(&self.socket, &[&["--json"], args].concat());
        assert!(out.status.success(), "host {}: ctl {args:?}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Value::Null; // a delete answers 204
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// One migration event for X; it must move X's migration on.
    fn event(&self, event: &str, extra: &[&str]) -> Value {
        let reply = self.ctl(&[&["migration", "event", event, "--vni", VNI, "--mac", X_MAC][..], extra].concat());
        assert_eq!(reply["outcome"], "moved", "host {}: {event}: {reply}", self.name);
        reply
    }

    /// The underlay neighbours (VTEP next hops) this host has resolved.
    fn neighbours(&self) -> Vec<String> {
        let learned = self.ctl(&["learned"]);
        learned["neighbors"].as_array().unwrap().iter().map(|n| n["ip"].as_str().unwrap().to_string()).collect()
    }
}

/// A host's config: one worker (all three hosts' workers share lcore 1), a
/// mempool and migration buffer large enough for a 300 ms pause at 25,000
/// datagrams per second, a TAP VM port, and the uplink, whose kernel ring
/// (8192 frames, the default is 512) rides out the moments its worker waits for
/// the shared core; network 100 floods to the other two hosts.
fn host_config(dir: &Path, socket: &Path, tap: &str, uplink: &str, vtep: &str, others: [&str; 2], board: &str) -> String {
    format!(
        "[eal]\nlcores = \"0-1\"\nmemory_mb = 256\n[mempool]\nmbufs = 32767\n\
         [dataplane]\nworkers = [1]\nidle_sleep_us = 100\n\
         [migration]\nbuffer_packets = 16383\nbuffer_bytes = 33554432\n\
         [control]\nsocket = \"{}\"\ndatabase = \"{}/config.redb\"\n\
         [[port]]\nname = \"vm0\"\ndevargs = \"net_tap0,iface={tap}\"\nrole = \"vm\"\nvni = {VNI}\n\
         [[port]]\nname = \"uplink\"\ndevargs = \"net_af_packet0,iface={uplink},framecnt=8192\"\nrole = \"uplink\"\n\
         address = \"{vtep}/24\"\n\
         [[network]]\nvni = {VNI}\nname = \"testbed\"\nflood_vteps = [\"{}\", \"{}\"]\n\
         [board]\n{board}",
        socket.display(),
        dir.display(),
        others[0],
        others[1]
    )
}

/// The control socket of host `name` (unix socket paths are short: /tmp).
fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sy-mt{}-{name}.sock", std::process::id()))
}

/// Removes the control sockets a switch killed by a failing test leaves behind.
struct Sockets;

impl Drop for Sockets {
    fn drop(&mut self) {
        for name in ["a", "b", "c"] {
            let _ = std::fs::remove_file(socket_path(name));
        }
    }
}

fn start_host(name: &'static str, vtep: &'static str, root: &Path, tap: &str, uplink: &str, others: [&str; 2], board: &str) -> Host {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = socket_path(name);
    let switch = RunningSwitch::start_running(&dir, &host_config(&dir, &socket, tap, uplink, vtep, others, board));
    Host { name, vtep, socket, switch }
}

impl Host {
    /// The VTEP this host's remote entry of `mac` points at, if it follows the board there.
    fn followed(&self, mac: &str) -> Option<String> {
        let remotes = self.ctl(&["remote", "list"]);
        let entry = remotes.as_array()?.iter().find(|r| r["mac"] == mac && r["source"] == "board")?;
        entry["vtep"].as_str().map(str::to_string)
    }

    /// Waits (at most 5 s) until this host follows the board's record of `mac` to `vtep`.
    fn until_followed(&self, mac: &str, vtep: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.followed(mac).as_deref() != Some(vtep) {
            assert!(Instant::now() < deadline, "host {}: {mac} is not followed to {vtep}: {:?}", self.name, self.followed(mac));
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Until every host has resolved the other two VTEPs: S and X send broadcasts,
/// which their hosts flood to both others (ARP requests go out; the hosts
/// asked learn the asker too).
fn resolve_underlay(hosts: &[Host; 3], vms: [&Netns; 2]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut missing = Vec::new();
        for host in hosts {
            let known = host.neighbours();
            for other in hosts.iter().filter(|o| o.vtep != host.vtep && !known.iter().any(|k| k == o.vtep)) {
                missing.push(format!("{} -> {}", host.name, other.name));
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "underlay neighbours not resolved: {missing:?}");
        for vm in vms {
            let ping = vm.exec(&["ping", "-b", "-c", "1", "-W", "0.1", "10.10.0.255"]);
            let _ = { ping }.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// The sequence number of S's datagram a captured VXLAN packet carries, if it
/// carries one (`more`: udp.dstport "4789,inner", data.data).
fn seq(seen: &Seen) -> Option<u64> {
    let to_receiver = seen.more.first()?.split(',').nth(1) == Some(UDP_PORT);
    seen.more.get(1).filter(|_| to_receiver).and_then(|d| u64::from_str_radix(d.get(..16)?, 16).ok())
}

#[test]
fn a_vm_migrates_between_hosts_while_udp_and_tcp_streams_lose_nothing() {
    let dir = scratch("migration_testbed");
    let mut underlay = Underlay::new("mu");
    let uplinks = [underlay.plug("a"), underlay.plug("b"), underlay.plug("c")];
    let x = Netns::new(&unique_name("mx"));
    for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
        x.sysctl(key);
    }
    let (xa, xb) = (unique_name("xa"), unique_name("xb"));
    let s = TapVm::new("ms", S_MAC, &format!("{S_IP}/24"));

    let (va, vb, vc) = ("192.0.2.1", "192.0.2.2", "192.0.2.3");
    let board = BoardProcess::start(&dir.join("board.redb"));
    let _sockets = Sockets;
    let hosts = [
        start_host("a", va, &dir, &xa, &uplinks[0], [vb, vc], &board.switch_keys()),
        start_host("b", vb, &dir, &xb, &uplinks[1], [va, vc], &board.switch_keys()),
        start_host("c", vc, &dir, s.iface(), &uplinks[2], [va, vb], &board.switch_keys()),
    ];
    let [a, b, c] = &hosts;

    // Plug the VMs in. X's A side runs; its B side is down, with no address.
    for iface in [xa.as_str(), xb.as_str(), s.iface()] {
        run(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.{iface}.disable_ipv6=1")]);
    }
    for iface in [&xa, &xb] {
        run(&["ip", "link", "set", iface, "netns", &x.name]);
        x.ip(&["link", "set", iface, "address", X_MAC, "mtu", "1450", "txqueuelen", "10000"]);
    }
    x.ip(&["addr", "add", &format!("{X_IP}/24"), "dev", &xa]);
    x.ip(&["link", "set", &xa, "up"]);
    x.ip(&["neigh", "replace", S_IP, "lladdr", S_MAC, "dev", &xa, "nud", "permanent"]);
    s.attach();
    // A longer queue to the TAP port: no datagram is dropped in S's kernel while
    // C's worker waits for the core it shares with A's and B's.
    s.netns.ip(&["link", "set", s.iface(), "mtu", "1450", "txqueuelen", "10000"]);
    s.netns.ip(&["neigh", "replace", X_IP, "lladdr", X_MAC, "dev", s.iface(), "nud", "permanent"]);
    // A segment held (delayed, not lost) for the pause must not time out...
    let route = ["route", "replace", "10.10.0.0/24", "dev", s.iface(), "proto", "kernel", "scope", "link", "src", S_IP];
    s.netns.ip(&[&route[..], &["rto_min", "1000ms"]].concat());
    // ... nor be probed: a tail loss probe fires after about two round trips of
    // silence and resends the last segment, which counts as a retransmit (one
    // per run with it on, measured), though nothing was lost.
    s.netns.sysctl("net.ipv4.tcp_early_retrans=0");

    a.ctl(&["endpoint", "add", "--vni", VNI, "--mac", X_MAC, "--ip", X_IP, "--port", "vm0"]);
    c.ctl(&["endpoint", "add", "--vni", VNI, "--mac", S_MAC, "--ip", S_IP, "--port", "vm0"]);
    // Each host registers its VM on the board; the others follow.
    c.until_followed(X_MAC, va);
    a.until_followed(S_MAC, vc);
    b.until_followed(S_MAC, vc);

    // Warm up: X answers S, and no frame will wait for ARP on the underlay.
    let ping = s.netns.ping(X_IP, 5);
    assert!(ping.contains("5 received"), "{ping}");
    resolve_underlay(&hosts, [&s.netns, &x]);
    // The first time a net_tap interface comes up takes about 300 ms here (later
    // ones 2 to 4 ms). A VM's NIC exists at the destination before the VM
    // resumes there, so X's B side pays that now, not inside the pause window.
    let primed = Instant::now();
    x.ip(&["link", "set", &xb, "up"]);
    x.ip(&["link", "set", &xb, "down"]);
    eprintln!("X's B side brought up and down once beforehand: {:.1} ms", ms(primed.elapsed()));

    // The streams: the underlay capture first, then the receivers in X, then the
    // senders in S.
    let capture = Capture::start(&underlay, &dir);
    let receiver = x.python(UDP_RECEIVER, &[X_IP, UDP_PORT, "3"]);
    let iperf_server = x.exec(&["iperf3", "-s", "-1", "-J", "-p", IPERF_PORT]);
    let iperf_server = Running(Some({ iperf_server }.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()));
    x.wait_listening("-u", UDP_PORT);
    x.wait_listening("-t", IPERF_PORT);
    let sender = s.netns.python(UDP_SENDER, &[X_IP, UDP_PORT, &RATE.to_string()]);
    let iperf_client = s.netns.exec(&["iperf3", "-c", X_IP, "-p", IPERF_PORT, "-b", "20M", "-t", IPERF_SECONDS, "-J"]);
    let iperf_client = Running(Some({ iperf_client }.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()));
    std::thread::sleep(Duration::from_secs(1));

    // The migration, as a VM monitor hook and the VM itself would go through it.
    let started_at = SystemTime::now();
    let t0 = Instant::now();
    a.event("start", &["--source", va, "--destination", vb]);
    b.event("start", &["--source", va, "--destination", vb, "--port", "vm0"]);
    let paused = Instant::now();
    a.event("paused", &[]);
    b.event("paused", &[]);
    // X stops at A...
    let down = Instant::now();
    x.ip(&["link", "set", &xa, "down"]);
    x.ip(&["addr", "flush", "dev", &xa]);
    std::thread::sleep(PAUSE);
    // ... and runs at B: same MAC and address (its routes follow), its
    // neighbour entry for S again (the one on the A side went with the link).
    x.ip(&["link", "set", &xb, "up"]);
    x.ip(&["addr", "add", &format!("{X_IP}/24"), "dev", &xb]);
    x.ip(&["neigh", "replace", S_IP, "lladdr", S_MAC, "dev", &xb, "nud", "permanent"]);
    let up = Instant::now();
    a.event("resumed", &[]);
    let resumed_a = Instant::now();
    b.event("resumed", &[]);
    a.event("completed", &[]);
    b.event("completed", &[]);
    let completed_at = SystemTime::now();
    let completed = Instant::now();
    // B unlocked X's record: the board publishes "X at B", C follows.
    c.until_followed(X_MAC, vb);
    let repointed = Instant::now();

    std::thread::sleep(Duration::from_millis(1500));
    let sent = sender.stop();
    let iperf_client = iperf_client.wait_at_most(Duration::from_secs(15));
    let iperf_server = iperf_server.wait_at_most(Duration::from_secs(5));
    let received = receiver.wait_at_most(Duration::from_secs(10));
    let (seen, capture_summary) = capture.stop(&["udp.dstport", "data.data"]);
    let links = x.exec(&["ip", "-s", "link"]).output().unwrap().stdout;
    let links = String::from_utf8_lossy(&links).into_owned();
    let [a, b, c] = hosts;
    let exits: Vec<(&str, SwitchExit)> = [a, b, c].into_iter().map(|h| (h.name, h.switch.stop())).collect();

    // What happened, in figures.
    let window = up - down;
    eprintln!(
        "timeline (ms after start): paused {:.1}, X down at A {:.1}, X up at B {:.1}, A resumed {:.1}, \
         completed {:.1}, C pointed at B {:.1}",
        ms(paused - t0),
        ms(down - t0),
        ms(up - t0),
        ms(resumed_a - t0),
        ms(completed - t0),
        ms(repointed - t0)
    );
    let sent: Value = serde_json::from_slice(&sent.stdout)
        .unwrap_or_else(|e| panic!("UDP sender: {e}: {}", String::from_utf8_lossy(&sent.stderr)));
    let received: Value = received.map_or(Value::Null, |out| {
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("UDP receiver: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    });
    eprintln!("UDP sender: {sent}");
    eprintln!("UDP receiver: {received}");
    let iperf: Value = iperf_client.as_ref().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or_default();
    let tcp = &iperf["end"]["sum_sent"];
    let tcp_mb = tcp["bytes"].as_f64().unwrap_or(0.0) / 1e6;
    let tcp_rate = tcp_mb / tcp["seconds"].as_f64().unwrap_or(f64::INFINITY);
    if iperf_server.is_none() {
        eprintln!("the iperf3 server did not end");
    }
    for (name, exit) in &exits {
        let m = &exit.stats["migration"];
        eprintln!(
            "host {name}: migration held {} released {} holding {}; unaccounted {}; drops: {}",
            m["held"],
            m["released"],
            m["holding"],
            exit.stats["unaccounted"],
            nonzero_drops(&exit.stats)
        );
        for port in exit.stats["ports"].as_array().unwrap() {
            eprintln!("  port {}: rx {} tx {}", port["name"], port["rx_packets"], port["tx_packets"]);
        }
    }
    let pair = |src: &'static str, dst: &'static str| seen.iter().filter(move |p| p.src == src && p.dst == dst);
    let (start_epoch, settled) = (epoch(started_at), epoch(completed_at) + SETTLE.as_secs_f64());
    let c_to_a_before = pair(vc, va).filter(|p| p.at < start_epoch).count();
    let c_to_b_after = pair(vc, vb).filter(|p| p.at >= settled).count();
    let c_to_a_after = pair(vc, va).filter(|p| p.at >= settled).count();
    let last_c_to_a = pair(vc, va).map(|p| p.at).fold(0.0, f64::max);
    eprintln!(
        "underlay ({capture_summary}): C->A {} ({c_to_a_before} before the migration, the last {:.1} ms after \
         completed), A->B {}, C->B {} ({c_to_b_after} from completed + {} ms), B->C {}",
        pair(vc, va).count(),
        (last_c_to_a - epoch(completed_at)) * 1000.0,
        pair(va, vb).count(),
        pair(vc, vb).count(),
        SETTLE.as_millis(),
        pair(vb, vc).count()
    );
    // Did datagrams A relayed cross the bridge after C's first direct one to B?
    if let Some(first_direct) = pair(vc, vb).find(|p| seq(p).is_some()) {
        let late: Vec<&Seen> = pair(va, vb).filter(|p| seq(p).is_some() && p.at > first_direct.at).collect();
        if let Some(last) = late.last() {
            eprintln!(
                "C's first datagram straight to B (seq {}) crossed the bridge before {} that A relayed (up to \
                 seq {}, the last {:.1} ms later)",
                seq(first_direct).unwrap(),
                late.len(),
                seq(last).unwrap(),
                (last.at - first_direct.at) * 1000.0
            );
        }
    }
    let (peak_a, peak_b) = (&exits[0].1.stats["migration"], &exits[1].1.stats["migration"]);
    println!(
        "figures: pause window {:.1} ms (A held X's packets for {:.1} ms, paused to resumed); largest buffer: \
         A {} packets {} bytes, B {} packets {} bytes; UDP {:.0} datagrams/s; TCP {tcp_mb:.2} MB at {tcp_rate:.2} MB/s, \
         {} retransmits",
        ms(window),
        ms(resumed_a - paused),
        peak_a["peak_packets"],
        peak_a["peak_bytes"],
        peak_b["peak_packets"],
        peak_b["peak_bytes"],
        sent["rate"].as_f64().unwrap_or(0.0),
        tcp["retransmits"]
    );

    // The checks.
    let mut checks = Checks::default();
    let (rate, count) = (sent["rate"].as_f64().unwrap_or(0.0), sent["sent"].as_u64().unwrap_or(0));
    checks.check(rate >= MIN_RATE, format!("UDP sender rate {rate:.0}/s >= {MIN_RATE}/s"));
    let got = &received["count"];
    checks.check(got.as_u64() == Some(count), format!("UDP received {got} == sent {count}"));
    checks.check(received["expected"].as_u64() == Some(count), format!("UDP receiver saw the stop marker for {count}"));
    for key in ["missing", "duplicates", "out_of_order"] {
        checks.check(received[key] == 0, format!("UDP {key} {} == 0", received[key]));
    }
    let iperf_ok = iperf_client.as_ref().is_some_and(|o| o.status.success());
    checks.check(iperf_ok, format!("iperf3 completed (error {})", iperf["error"]));
    checks.check(tcp["retransmits"] == 0, format!("TCP retransmits {} == 0", tcp["retransmits"]));
    checks.check(tcp_mb >= 1.0, format!("TCP transferred {tcp_mb:.2} MB >= 1 MB"));
    checks.check(c_to_a_before > 0, format!("underlay: C -> A before the migration ({c_to_a_before})"));
    checks.check(c_to_b_after > 0, format!("underlay: C -> B from completed + settle ({c_to_b_after})"));
    checks.check(c_to_a_after == 0, format!("underlay: no C -> A from completed + settle ({c_to_a_after})"));
    checks.check(window >= Duration::from_millis(200), format!("pause window {:.1} ms >= 200 ms", ms(window)));
    checks.check(peak_a["held"].as_u64().unwrap_or(0) > 0, format!("A held {} > 0", peak_a["held"]));
    for (name, exit) in &exits[..2] {
        let m = &exit.stats["migration"];
        checks.check(m["released"] == m["held"], format!("{name}: released {} == held {}", m["released"], m["held"]));
        checks.check(m["holding"] == 0, format!("{name}: holding {} == 0", m["holding"]));
    }
    for (name, exit) in &exits {
        let full = &exit.stats["drops"]["migration_buffer_full"];
        checks.check(*full == 0, format!("{name}: migration_buffer_full {full} == 0"));
        checks.check(exit.stats["unaccounted"] == 0, format!("{name}: unaccounted {} == 0", exit.stats["unaccounted"]));
    }
    if !checks.0.is_empty() {
        eprintln!("X's interfaces:\n{links}");
        for (name, exit) in &exits {
            let lines: Vec<&str> = exit.log.lines().collect();
            eprintln!("--- host {name}, the end of its log:\n{}", lines[lines.len().saturating_sub(20)..].join("\n"));
        }
        let iperf_stderr = iperf_client.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default();
        panic!("{} checks failed:\n{}\n{iperf_stderr}", checks.0.len(), checks.0.join("\n"));
    }
}
