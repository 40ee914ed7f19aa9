//! Layer 3 for inter-cloud connectivity through gateways: two clouds in
//! network namespaces, the data path through the gateway and the control plane
//! as processes.
//!
//! Five switchyard vRouters meet with `net_af_packet` uplinks on one Linux
//! bridge (namespace `ul`, underlay 198.51.100.0/24: this machine's eth0 may
//! own 192.0.2.0/24 addresses): cloud A is compute node A1 (VTEP .11) and
//! gateway GA (.10), cloud B compute nodes B1 (.21), B2 (.22) and gateway GB
//! (.20). The gateways have the `[gateway]` role and no VM port; both clouds
//! call the network VNI 100 (no mapping: the coordinator hands table 1 over
//! with the VNI as announced). A coordinator, controllers A and B, switch
//! agents for A1, B1, B2 and gateway agents for GA and GB run as processes and
//! program every table: no flood list, no operator entry. VM a1 is a namespace
//! on a TAP port of A1; VM b1 is one namespace with two TAP NICs of the same
//! MAC, one on B1 and one on B2. A VM comes online the way an operator's hook
//! makes it: `switchyard ctl endpoint add` on the compute node it runs on.
//!
//! a1 pings b1, then sends b1 15 MB over TCP (20 Mbit/s, sha256 at both ends) while b1 moves from B1 to
//! B2. The underlay capture must show A1 -> GB and GB -> B1 (later GB -> B2)
//! and never A1 -> B1 or A1 -> B2; the move must change nothing in cloud A
//! (A1's and GA's remote tables, A1's config generation) and only GB's table 2
//! entry for b1; the transfer must complete. Every switch must account for
//! every packet at exit. Figures are printed (ping RTTs, TCP rate, the time
//! from `endpoint add` on B2 until GB's table 2 points at B2).
//!
//! Root only; namespaces, veths, processes and sockets are removed even when
//! the test fails. About 20 s.
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant, SystemTime};

use common::netns::{output, run, unique_name, Netns};
use common::roles::{controller, coordinator, gateway_agent, switch_agent};
use common::switch::{nonzero_drops, RunningSwitch, SwitchExit};
use common::tap::TapVm;
use common::underlay::{epoch, Capture, Checks, Underlay};
use common::*;
use serde_json::{json, Value};

const VNI: &str = "100";
const A1_MAC: &str = "02:00:00:0a:00:01";
const A1_IP: &str = "10.20.0.1";
const B1_MAC: &str = "02:00:00:0b:00:01";
const B1_IP: &str = "10.20.0.2";
const TCP_PORT: &str = "5201";
/// The transfer: 20 Mbit/s for 6 s, about 2 s before the move, the move, and
/// the rest after it (the sender catches up after a stall).
const TCP_BYTES: u64 = 15_000_000;
const TCP_RATE: u64 = 2_500_000;

/// a1's side of the transfer: `total` bytes paced at `rate` bytes/s (catching
/// up after a stall), a sha256 of what it sent; ends when b1 closes after
/// reading everything; prints JSON.
const TCP_SENDER: &str = r#"
import hashlib, json, os, socket, sys, time
host, port, total, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
BLOCK = 65536
pattern = os.urandom(BLOCK * 16)
digest = hashlib.sha256()
s = socket.create_connection((host, port), timeout=30)
start = time.perf_counter()
sent = i = 0
while sent < total:
    if sent >= (time.perf_counter() - start) * rate:
        time.sleep(0.002)
        continue
    chunk = pattern[(i % 16) * BLOCK:][:min(BLOCK, total - sent)]
    s.sendall(chunk)
    digest.update(chunk)
    sent += len(chunk)
    i += 1
s.shutdown(socket.SHUT_WR)
assert s.recv(1) == b""
print(json.dumps({"bytes": sent, "sha256": digest.hexdigest(), "seconds": time.perf_counter() - start}))
"#;

/// b1's side: one connection, read to the end, sha256; prints JSON.
const TCP_RECEIVER: &str = r#"
import hashlib, json, socket, sys, time
address, port = sys.argv[1], int(sys.argv[2])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((address, port))
listener.listen(1)
listener.settimeout(30)
c, _ = listener.accept()
c.settimeout(30)
digest = hashlib.sha256()
count, start = 0, time.perf_counter()
while True:
    data = c.recv(1 << 20)
    if not data:
        break
    digest.update(data)
    count += len(data)
seconds = time.perf_counter() - start
c.close()
print(json.dumps({"bytes": count, "sha256": digest.hexdigest(), "seconds": seconds}))
"#;

const GA: &str = "198.51.100.10";
const A1: &str = "198.51.100.11";
const GB: &str = "198.51.100.20";
const B1: &str = "198.51.100.21";
const B2: &str = "198.51.100.22";

/// One switchyard process: a compute node (TAP VM port `vm0`) or a gateway
/// (uplink only, `[gateway]`).
struct Node {
    name: &'static str,
    vtep: &'static str,
    socket: SocketPath,
    switch: RunningSwitch,
}

impl Node {
    /// `switchyard ctl --json ARGS` on this node, which must succeed; its JSON reply.
    fn ctl(&self, args: &[&str]) -> Value {
        let out = ctl(&self.socket, &[&["--json"], args].concat());
        assert!(out.status.success(), "{}: ctl {args:?}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Value::Null; // a delete answers 204
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The VTEP of the remote entry (table 1 or 2) of `mac`, if there is one.
    fn remote(&self, mac: &str) -> Option<String> {
        let remotes = self.ctl(&["remote", "list"]);
        let entry = remotes.as_array()?.iter().find(|r| r["mac"] == mac)?;
        entry["vtep"].as_str().map(str::to_string)
    }

    /// The remote table, sorted by MAC: (MAC, IP, VTEP, source).
    fn remotes(&self) -> Vec<String> {
        let remotes = self.ctl(&["remote", "list"]);
        let mut all: Vec<String> = remotes
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {} {} {}", r["mac"], r["ip"], r["vtep"], r["source"]))
            .collect();
        all.sort();
        all
    }

    fn generation(&self) -> u64 {
        self.ctl(&["config"])["generation"].as_u64().unwrap()
    }

    /// Waits (at most 15 s) until the remote entry of `mac` points at `vtep`.
    fn until_remote(&self, mac: &str, vtep: Option<&str>) -> Duration {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(15);
        loop {
            let got = self.remote(mac);
            if got.as_deref() == vtep {
                return started.elapsed();
            }
            assert!(Instant::now() < deadline, "{}: the remote entry of {mac} is {got:?}, want {vtep:?}", self.name);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Packets this node dropped so far for `reason`.
    fn dropped(&self, reason: &str) -> u64 {
        self.ctl(&["stats"])["drops"][reason].as_u64().unwrap_or(0)
    }
}

/// A node's config: one worker (the five share lcore 1, backing off when idle),
/// no hugepages, the uplink on the underlay with a larger kernel ring (8192
/// frames: the worker waits for the shared core now and then), network 100
/// without a flood list: every destination comes from the agents.
fn node_config(dir: &Path, socket: &Path, vtep: &str, uplink: &str, tap: Option<&str>) -> String {
    let mut toml = format!(
        "[eal]\nlcores = \"0-1\"\nmemory_mb = 256\n[mempool]\nmbufs = 8191\n\
         [dataplane]\nworkers = [1]\nidle_sleep_us = 100\n\
         [control]\nsocket = \"{}\"\ndatabase = \"{}/config.redb\"\n",
        socket.display(),
        dir.display()
    );
    if let Some(tap) = tap {
        toml += &format!("[[port]]\nname = \"vm0\"\ndevargs = \"net_tap0,iface={tap}\"\nrole = \"vm\"\nvni = {VNI}\n");
    }
    toml += &format!(
        "[[port]]\nname = \"uplink\"\ndevargs = \"net_af_packet0,iface={uplink},framecnt=8192\"\nrole = \"uplink\"\n\
         address = \"{vtep}/24\"\n[[network]]\nvni = {VNI}\nname = \"blue\"\n"
    );
    if tap.is_none() {
        toml += "[gateway]\n";
    }
    toml
}

fn start_node(root: &Path, name: &'static str, vtep: &'static str, uplink: &str, tap: Option<&str>) -> Node {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = SocketPath::new(&format!("ict-{name}"));
    let switch = RunningSwitch::start_running(&dir, &node_config(&dir, &socket, vtep, uplink, tap));
    Node { name, vtep, socket, switch }
}


/// The first ping a1 sends to b1 brings up four tunnels on demand (A1 -> GB,
/// GB -> B1, B1 -> GA, GA -> A1): each node queues the frame while it resolves
/// the VTEP's underlay next hop (docs/tunnels.md). That first ping must be
/// answered, and no node may drop anything for a tunnel coming up.
fn warm_up_tunnels(from: &Netns, to: &str, nodes: &[&Node]) {
    let first = from.exec(&["ping", "-c", "1", "-W", "2", to]).output().unwrap();
    assert!(first.status.success(), "the first ping over new tunnels: {}", String::from_utf8_lossy(&first.stdout));
    for node in nodes {
        for reason in ["next_hop_unresolved", "tunnel_queue_full", "tunnel_unresolved"] {
            assert_eq!(node.dropped(reason), 0, "{}: {reason}", node.name);
        }
    }
    // Each tunnel on the way, as `ctl tunnel list` shows it (the housekeeping
    // thread adds the workers' reports every 10 ms): up, with the frames it
    // queued all handed on.
    let [ga, a1, gb, b1, ..] = nodes else { panic!("the five nodes") };
    for (node, vtep) in [(a1, GB), (gb, B1), (b1, GA), (ga, A1)] {
        let deadline = Instant::now() + Duration::from_secs(2);
        let tunnel = loop {
            let tunnels = node.ctl(&["tunnel", "list"]);
            let tunnel = tunnels.as_array().unwrap().iter().find(|t| t["vtep"] == vtep).cloned().unwrap_or_default();
            let queued = tunnel["packets_queued"].as_u64().unwrap_or(0);
            if (tunnel["state"] == "up" && queued >= 1 && tunnel["packets_released"] == queued) || Instant::now() > deadline {
                break tunnel;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(tunnel["state"], "up", "{}: the tunnel to {vtep}: {tunnel}", node.name);
        assert!(tunnel["packets_queued"].as_u64() >= Some(1), "{}: the first frame waited for the tunnel: {tunnel}", node.name);
        assert_eq!(tunnel["packets_released"], tunnel["packets_queued"], "{}: handed on: {tunnel}", node.name);
        assert_eq!((&tunnel["packets_dropped"], &tunnel["in_advance"]), (&json!(0), &json!(false)), "{}: {tunnel}", node.name);
    }
    eprintln!("the first ping brought the tunnels up; nothing dropped on the way");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn a_vm_of_cloud_b_is_reached_from_cloud_a_through_gb_and_moves_inside_cloud_b() {
    let started = Instant::now();
    let dir = scratch("intercloud_testbed");
    let mut underlay = Underlay::new("iu");
    let uplinks = [underlay.plug("ga"), underlay.plug("a1"), underlay.plug("gb"), underlay.plug("b1"), underlay.plug("b2")];
    let a1_vm = TapVm::new("ia", A1_MAC, &format!("{A1_IP}/24"));
    let b1_vm = Netns::new(&unique_name("ib"));
    for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
        b1_vm.sysctl(key);
    }
    // b1's NIC on B1 and its NIC on B2 (created by the switches' TAP ports).
    let (b1_on_b1, b1_on_b2) = (unique_name("ibx"), unique_name("iby"));

    let nodes = [
        start_node(&dir, "ga", GA, &uplinks[0], None),
        start_node(&dir, "a1", A1, &uplinks[1], Some(a1_vm.iface())),
        start_node(&dir, "gb", GB, &uplinks[2], None),
        start_node(&dir, "b1", B1, &uplinks[3], Some(&b1_on_b1)),
        start_node(&dir, "b2", B2, &uplinks[4], Some(&b1_on_b2)),
    ];
    let [ga, a1, gb, b1, b2] = &nodes;
    let all = [ga, a1, gb, b1, b2];

    // The control plane.
    let coordinator = coordinator(&dir);
    let controller_a = controller(&dir, "cloud-a", GA, &coordinator);
    let controller_b = controller(&dir, "cloud-b", GB, &coordinator);
    let roles = [
        gateway_agent(&dir, ga.name, &ga.socket, &coordinator, "cloud-a"),
        gateway_agent(&dir, gb.name, &gb.socket, &coordinator, "cloud-b"),
        switch_agent(&dir, a1.name, &a1.socket, a1.vtep, &controller_a),
        switch_agent(&dir, b1.name, &b1.socket, b1.vtep, &controller_b),
        switch_agent(&dir, b2.name, &b2.socket, b2.vtep, &controller_b),
    ];

    // The VMs: a1 on A1; b1 runs on B1, its B2 NIC is down with no address.
    for iface in [a1_vm.iface(), b1_on_b1.as_str(), b1_on_b2.as_str()] {
        run(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.{iface}.disable_ipv6=1")]);
    }
    a1_vm.attach();
    a1_vm.netns.ip(&["link", "set", a1_vm.iface(), "mtu", "1450"]);
    for iface in [&b1_on_b1, &b1_on_b2] {
        run(&["ip", "link", "set", iface, "netns", &b1_vm.name]);
        b1_vm.ip(&["link", "set", iface, "address", B1_MAC, "mtu", "1450"]);
    }
    b1_vm.ip(&["addr", "add", &format!("{B1_IP}/24"), "dev", &b1_on_b1]);
    b1_vm.ip(&["link", "set", &b1_on_b1, "up"]);
    // The first time a net_tap interface comes up takes about 300 ms; b1's B2
    // NIC pays that now, not in the middle of the move.
    b1_vm.ip(&["link", "set", &b1_on_b2, "up"]);
    b1_vm.ip(&["link", "set", &b1_on_b2, "down"]);

    // The VMs come online: their compute nodes' endpoints, which the agents announce.
    a1.ctl(&["endpoint", "add", "--vni", VNI, "--mac", A1_MAC, "--ip", A1_IP, "--port", "vm0"]);
    b1.ctl(&["endpoint", "add", "--vni", VNI, "--mac", B1_MAC, "--ip", B1_IP, "--port", "vm0"]);
    let tables = Instant::now();
    gb.until_remote(B1_MAC, Some(B1)); // table 2 of cloud B
    ga.until_remote(A1_MAC, Some(A1)); // table 2 of cloud A
    a1.until_remote(B1_MAC, Some(GB)); // table 1 of cloud A
    b1.until_remote(A1_MAC, Some(GA)); // table 1 of cloud B
    b2.until_remote(A1_MAC, Some(GA));
    eprintln!("tables 1 and 2 programmed by the agents {:.1} ms after the endpoints", ms(tables.elapsed()));
    let mut checks = Checks::default();
    checks.check(ga.remote(B1_MAC).is_none(), "GA has no entry for b1 (it relays cloud A's VMs only)");
    checks.check(b2.remote(B1_MAC).is_none(), "B2 has no entry for b1 (table 1 is the other cloud's VMs)");

    // Every VXLAN packet from here on is captured.
    let capture = Capture::start(&underlay, &dir);
    warm_up_tunnels(&a1_vm.netns, B1_IP, &all);
    let ping = a1_vm.netns.exec(&["ping", "-c", "20", "-i", "0.05", "-W", "1", B1_IP]).output().unwrap();
    let ping = String::from_utf8_lossy(&ping.stdout).into_owned();
    let rtt = ping.lines().find(|l| l.contains("min/avg/max")).unwrap_or("no rtt line").to_string();
    checks.check(ping.contains("20 received"), format!("a1 -> b1: 20 pings answered: {}", ping.lines().rev().nth(1).unwrap_or("")));

    // The transfer, for the whole rest of the test.
    let receiver = b1_vm.python(TCP_RECEIVER, &[B1_IP, TCP_PORT]);
    b1_vm.wait_listening("-t", TCP_PORT);
    let sender = a1_vm.netns.python(TCP_SENDER, &[B1_IP, TCP_PORT, &TCP_BYTES.to_string(), &TCP_RATE.to_string()]);
    std::thread::sleep(Duration::from_secs(2));

    // Cloud A before the move.
    let (a1_remotes, ga_remotes, a1_generation, ga_generation) = (a1.remotes(), ga.remotes(), a1.generation(), ga.generation());
    let (gb_remotes, gb_generation) = (gb.remotes(), gb.generation());

    // The move, as the VM and its hooks go through it: b1 stops on B1 and runs
    // on B2 (same MAC and address; its neighbour entry for a1 went with the B1
    // NIC and B2 answers the ARP from table 1), the destination's hook adds
    // the endpoint on B2, then the source's hook deletes it on B1. Make before
    // break for the control plane: the controller replaces B1 by B2 at once and
    // B1's withdrawal removes nothing, whatever the hooks' timing (break before
    // make relies on the 200 ms withdrawal hold instead: tests/intercloud.rs).
    let moved_at = SystemTime::now();
    let move_started = Instant::now();
    b1_vm.ip(&["link", "set", &b1_on_b1, "down"]);
    b1_vm.ip(&["addr", "flush", "dev", &b1_on_b1]);
    b1_vm.ip(&["link", "set", &b1_on_b2, "up"]);
    b1_vm.ip(&["addr", "add", &format!("{B1_IP}/24"), "dev", &b1_on_b2]);
    let vm_moved = move_started.elapsed();
    let add_started = Instant::now();
    b2.ctl(&["endpoint", "add", "--vni", VNI, "--mac", B1_MAC, "--ip", B1_IP, "--port", "vm0"]);
    let add_took = add_started.elapsed();
    gb.until_remote(B1_MAC, Some(B2));
    let table2_moved = add_started.elapsed();
    let repointed_at = SystemTime::now();
    b1.ctl(&["endpoint", "delete", VNI, B1_MAC]);
    // Past the controller's withdrawal hold: nothing more is coming.
    std::thread::sleep(Duration::from_millis(500));
    let (a1_remotes_after, ga_remotes_after) = (a1.remotes(), ga.remotes());
    let (a1_generation_after, ga_generation_after) = (a1.generation(), ga.generation());
    checks.check(a1_remotes_after == a1_remotes, format!("A1's remote table unchanged by the move: {a1_remotes_after:?}"));
    checks.check(ga_remotes_after == ga_remotes, format!("GA's remote table unchanged by the move: {ga_remotes_after:?}"));
    checks.check(a1_generation_after == a1_generation, format!("A1's config generation {a1_generation_after} == {a1_generation}"));
    checks.check(ga_generation_after == ga_generation, format!("GA's config generation {ga_generation_after} == {ga_generation}"));
    checks.check(gb.remote(B1_MAC).as_deref() == Some(B2), format!("GB's table 2: b1 at B2 ({:?})", gb.remote(B1_MAC)));
    // GB's table 2: b1's entry, and nothing else, now names B2.
    let b1_at = |vtep: &str| format!("\"{B1_MAC}\" \"{B1_IP}\" \"{vtep}\"");
    let gb_wanted: Vec<String> = gb_remotes.iter().map(|r| r.replace(&b1_at(B1), &b1_at(B2))).collect();
    let gb_remotes_after = gb.remotes();
    checks.check(
        gb_remotes.iter().any(|r| r.starts_with(&b1_at(B1))) && gb_remotes_after == gb_wanted,
        format!("GB's table 2: only b1's entry changed, B1 -> B2: {gb_remotes:?} -> {gb_remotes_after:?}"),
    );
    checks.check(gb.generation() > gb_generation, format!("GB's config generation moved on ({gb_generation} -> {})", gb.generation()));
    checks.check(b1.remote(A1_MAC).as_deref() == Some(GA), "B1 still has a1 -> GA");
    checks.check(b2.remote(A1_MAC).as_deref() == Some(GA), "B2 has a1 -> GA");

    let sender = sender.wait_at_most(Duration::from_secs(TCP_BYTES / TCP_RATE + 20));
    let receiver = receiver.wait_at_most(Duration::from_secs(5));
    // One more ping from b1's new place: the way back through GA.
    let ping_after = a1_vm.netns.exec(&["ping", "-c", "10", "-i", "0.05", "-W", "1", B1_IP]).output().unwrap();
    let ping_after = String::from_utf8_lossy(&ping_after.stdout).into_owned();
    let rtt_after = ping_after.lines().find(|l| l.contains("min/avg/max")).unwrap_or("no rtt line").to_string();
    let (seen, capture_summary) = capture.stop(&[]);

    // Stop everything; the switches' exit stats.
    let roles_and_logs: Vec<(String, PathBuf)> =
        [&coordinator, &controller_a, &controller_b].into_iter().chain(&roles).map(|r| (r.name.clone(), dir.join(format!("{}.log", r.name)))).collect();
    drop(roles);
    drop((controller_a, controller_b, coordinator));
    let exits: Vec<(&str, SwitchExit)> = nodes.into_iter().map(|n| (n.name, n.switch.stop())).collect();

    // The figures.
    let result = |out: &Option<Output>| -> Value { out.as_ref().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or_default() };
    let (sent, received) = (result(&sender), result(&receiver));
    let received_bytes = received["bytes"].as_u64().unwrap_or(0);
    let tcp_rate = received_bytes as f64 / 1e6 / received["seconds"].as_f64().unwrap_or(f64::INFINITY);
    let retransmits = output(&["ip", "netns", "exec", &a1_vm.netns.name, "nstat", "-az", "TcpRetransSegs"]);
    let retransmits = retransmits.lines().find_map(|l| l.strip_prefix("TcpRetransSegs")).and_then(|v| v.split_whitespace().next()).unwrap_or("?").to_string();
    let pair = |src: &str, dst: &str| seen.iter().filter(|p| p.src == src && p.dst == dst).count();
    let pair_after = |src: &str, dst: &str, t: f64| seen.iter().filter(|p| p.src == src && p.dst == dst && p.at >= t).count();
    let (moved, repointed) = (epoch(moved_at), epoch(repointed_at));
    eprintln!(
        "underlay ({capture_summary}): A1->GB {}, GB->B1 {} ({} after GB's table 2 moved to B2), GB->B2 {}, B1->GA {}, \
         B2->GA {}, GA->A1 {}, A1->B1 {}, A1->B2 {}",
        pair(A1, GB),
        pair(GB, B1),
        pair_after(GB, B1, repointed),
        pair(GB, B2),
        pair(B1, GA),
        pair(B2, GA),
        pair(GA, A1),
        pair(A1, B1),
        pair(A1, B2)
    );
    for (name, exit) in &exits {
        let ports: Vec<String> = exit.stats["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{} rx {} tx {} relayed {}", p["name"], p["rx_packets"], p["tx_packets"], p["rx_relayed"]))
            .collect();
        eprintln!("{name}: unaccounted {}; {}; drops: {}", exit.stats["unaccounted"], ports.join(", "), nonzero_drops(&exit.stats));
    }
    // The gap on the way to b1: its last frame to B1 (GB -> B1) and its first to B2.
    let last_to_b1 = seen.iter().filter(|p| p.src == GB && p.dst == B1).map(|p| p.at).fold(0.0, f64::max);
    let first_to_b2 = seen.iter().filter(|p| p.src == GB && p.dst == B2).map(|p| p.at).fold(f64::INFINITY, f64::min);
    eprintln!(
        "the move on the underlay: GB's last frame to B1 {:.1} ms, its first to B2 {:.1} ms after b1's B1 NIC went down",
        (last_to_b1 - moved) * 1000.0,
        (first_to_b2 - moved) * 1000.0
    );
    println!(
        "figures: ping a1 -> b1 before the move: {rtt}; after: {rtt_after}; \
         TCP {:.2} MB at {tcp_rate:.2} MB/s, retransmits (a1's TcpRetransSegs) {retransmits}; b1 moved (NICs) in {:.1} ms; `endpoint add` on B2 \
         {:.1} ms; from `endpoint add` on B2 until GB's table 2 shows B2: {:.1} ms; test {:.1} s",
        received_bytes as f64 / 1e6,
        ms(vm_moved),
        ms(add_took),
        ms(table2_moved),
        started.elapsed().as_secs_f64()
    );

    // The checks.
    checks.check(pair(A1, GB) > 0, format!("underlay: A1 -> GB ({})", pair(A1, GB)));
    checks.check(pair(GB, B1) > 0, format!("underlay: GB -> B1 ({})", pair(GB, B1)));
    // GB relays every frame from A1 (on to B1/B2, or an ARP answer back) and
    // counts it on its uplink, as GA does those from B1 and B2.
    let relayed = |name: &str| exits.iter().find(|(n, _)| *n == name).map_or(0, |(_, e)| e.stats["ports"][0]["rx_relayed"].as_u64().unwrap_or(0));
    let (gb_relayed, to_b) = (relayed("gb"), (pair(GB, B1) + pair(GB, B2)) as u64);
    checks.check(gb_relayed >= to_b && gb_relayed >= pair(A1, GB) as u64, format!("GB relayed {gb_relayed}, sent to B1/B2 {to_b}, got from A1 {}", pair(A1, GB)));
    checks.check(relayed("ga") >= pair(GA, A1) as u64, format!("GA relayed {}, sent to A1 {}", relayed("ga"), pair(GA, A1)));
    checks.check(pair(A1, B1) == 0, format!("underlay: never A1 -> B1 ({})", pair(A1, B1)));
    checks.check(pair(A1, B2) == 0, format!("underlay: never A1 -> B2 ({})", pair(A1, B2)));
    let (gb_b2, b2_ga) = (pair_after(GB, B2, moved), pair_after(B2, GA, moved));
    checks.check(gb_b2 > 0 && gb_b2 == pair(GB, B2), format!("underlay: GB -> B2 after the move ({gb_b2}), not before"));
    checks.check(b2_ga > 0, format!("underlay: B2 -> GA after the move ({b2_ga})"));
    checks.check(sender.as_ref().is_some_and(|o| o.status.success()), format!("TCP sender completed: {sent}"));
    checks.check(receiver.as_ref().is_some_and(|o| o.status.success()), format!("TCP receiver completed: {received}"));
    checks.check(
        received_bytes == TCP_BYTES && received["sha256"].is_string() && received["sha256"] == sent["sha256"],
        format!("TCP: b1 received the {TCP_BYTES} bytes a1 sent, sha256 equal ({received_bytes})"),
    );
    checks.check(ping_after.contains("10 received"), format!("a1 -> b1 after the move: {}", ping_after.lines().rev().nth(1).unwrap_or("")));
    for (name, exit) in &exits {
        checks.check(exit.stats["unaccounted"] == 0, format!("{name}: unaccounted {} == 0", exit.stats["unaccounted"]));
    }
    for (name, log) in &roles_and_logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        checks.check(!text.contains("ERROR"), format!("{name}: no ERROR in its log"));
    }
    if !checks.0.is_empty() {
        for (name, exit) in &exits {
            let lines: Vec<&str> = exit.log.lines().collect();
            eprintln!("--- {name}, the end of its log:\n{}", lines[lines.len().saturating_sub(15)..].join("\n"));
        }
        for (name, log) in &roles_and_logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- {name}, the end of its log:\n{}", lines[lines.len().saturating_sub(10)..].join("\n"));
        }
        let stderr = |o: &Option<Output>| o.as_ref().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default();
        panic!("{} checks failed:\n{}\n{}{}", checks.0.len(), checks.0.join("\n"), stderr(&sender), stderr(&receiver));
    }
}
