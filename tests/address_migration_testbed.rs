//! Layer 3 for address migration: real kernel stacks behind TAP ports.
//! VM A moved to another network: it lives at 10.2.0.5 now, but its peer keeps
//! talking to its primary IP 10.1.0.5. The network control system registers
//! the primary IP for A's port; A reports its new address itself (a UDP
//! datagram to the report address, as its agent would); from then on the peer
//! pings 10.1.0.5 and holds a TCP connection to it, data checked end to end.
//! VM B then tries to claim A's addresses, from its own port: both reports are
//! refused with a clear error, and the table does not change. Removing the
//! migration stops the rewrite. A second testbed does the same across VXLAN,
//! with the peer behind the Linux kernel's VXLAN device. Root only; namespaces
//! and the switch are removed even when the test fails.
mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::netns::{run, unique_name, veth, Netns};
use common::switch::RunningSwitch;
use common::tap::TapVm;
use common::*;
use serde_json::Value;

const PRIMARY: &str = "10.1.0.5";
const POST: &str = "10.2.0.5";

/// The VM's agent: sends "PRIMARY now at POST" from `source` to the report
/// address (docs/address-migration.md) until a reply comes; prints the status
/// code and text of the reply.
const REPORT_AGENT: &str = r#"
import socket, struct, sys
source, primary, post, request = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((source, 0))
s.settimeout(1)
message = b"SYAM" + bytes([1, 1, 0, 0]) + struct.pack("!I", request) + socket.inet_aton(primary) + socket.inet_aton(post)
for attempt in range(5):
    s.sendto(message, ("169.254.83.89", 5359))
    try:
        reply, sender = s.recvfrom(2048)
    except socket.timeout:
        continue
    if reply[:6] == b"SYAM\x01\x02" and struct.unpack("!I", reply[8:12])[0] == request:
        print(reply[6], reply[20:].decode())
        sys.exit(0)
sys.exit("no reply from the switch")
"#;

/// Echoes one TCP connection on port 7000; prints the addresses it saw.
const ECHO_SERVER: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000))
s.listen(1)
c, peer = s.accept()
print(c.getsockname()[0], peer[0], flush=True)
while True:
    data = c.recv(65536)
    if not data:
        break
    c.sendall(data)
"#;

/// One TCP connection to the primary IP held for about 2 s: 20 rounds of 64 KiB
/// sent and echoed back, compared; prints the address it is connected to and
/// the bytes echoed.
const ECHO_CLIENT: &str = r#"
import socket, sys, time
for _ in range(50):
    try:
        c = socket.create_connection((sys.argv[1], 7000), timeout=3)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("cannot connect")
total = 0
for i in range(20):
    chunk = bytes((i * 7 + j) % 251 for j in range(65536))
    c.sendall(chunk)
    got = b""
    while len(got) < len(chunk):
        data = c.recv(65536)
        if not data:
            sys.exit("closed after %d bytes" % total)
        got += data
    if got != chunk:
        sys.exit("round %d came back different" % i)
    total += len(got)
    time.sleep(0.1)
print(c.getpeername()[0], total)
"#;

fn python(netns: &Netns, script: &str, args: &[&str]) -> (bool, String) {
    let mut command = vec!["python3", "-c", script];
    command.extend_from_slice(args);
    let out = netns.exec(&command).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text.trim().to_string())
}

fn migrations(socket: &Path) -> Value {
    ctl_json(socket, &["address-migration", "list"])
}

#[test]
fn a_peer_keeps_talking_to_the_primary_ip_and_other_vms_cannot_claim_it() {
    let a = TapVm::new("ma", "02:00:00:0a:00:01", &format!("{POST}/24"));
    let peer = TapVm::new("mp", "02:00:00:0a:00:02", "10.1.0.1/24");
    let b = TapVm::new("mb", "02:00:00:0a:00:03", "10.2.0.6/24");
    let dir = scratch("address_migration_testbed");
    let socket = std::env::temp_dir().join(format!("sy-am-{}.sock", std::process::id()));
    let mut config = format!(
        "[eal]\nlcores = \"0-1\"\nmemory_mb = 512\n[mempool]\nmbufs = 8191\n[dataplane]\nworkers = [1]\nidle_sleep_us = 100\n\
         [control]\nsocket = \"{}\"\ndatabase = \"{}/config.redb\"\n[[network]]\nvni = 100\nname = \"testbed\"\n",
        socket.display(),
        dir.display()
    );
    for (i, (vm, name)) in [(&a, "vm0"), (&peer, "vm1"), (&b, "vm2")].into_iter().enumerate() {
        let port = vm.switch_port(name, i);
        config += &format!("[[port]]\nname = \"{name}\"\ndevargs = \"{}\"\nrole = \"vm\"\nvni = 100\n", port.devargs);
    }
    let mut switch = RunningSwitch::start(&dir, &config);
    switch.wait_until_running();
    for vm in [&a, &peer, &b] {
        vm.quiet();
    }
    std::thread::sleep(Duration::from_millis(50));
    for vm in [&a, &peer, &b] {
        vm.attach();
    }
    // A and B live in the new network: the old one is on-link, and so is the
    // link-local range of the report address (as cloud images route it).
    for vm in [&a, &b] {
        for route in ["10.1.0.0/24", "169.254.0.0/16"] {
            vm.netns.ip(&["route", "add", route, "dev", vm.iface()]);
        }
    }

    // The orchestrator's records: the VMs' endpoints at their new addresses, and
    // A's primary IP registered for A's port (no post-migration IP yet).
    let ok = |args: &[&str]| ctl_json(&socket, args);
    ok(&["endpoint", "add", "--vni", "100", "--mac", "02:00:00:0a:00:01", "--ip", POST, "--port", "vm0"]);
    ok(&["endpoint", "add", "--vni", "100", "--mac", "02:00:00:0a:00:03", "--ip", "10.2.0.6", "--port", "vm2"]);
    let registered = ok(&["address-migration", "add", "--vni", "100", "--primary", PRIMARY, "--port", "vm0"]);
    assert_eq!(registered["post_migration_ip"], Value::Null);

    // A reports where it lives; the switch answers and applies it.
    let (sent, reply) = python(&a.netns, REPORT_AGENT, &[POST, PRIMARY, POST, "1"]);
    assert!(sent, "{reply}\n{}", switch.log());
    assert_eq!(reply, "0 accepted: the switch is applying it");
    let deadline = Instant::now() + Duration::from_secs(5);
    while migrations(&socket)[0]["post_migration_ip"] != POST {
        assert!(Instant::now() < deadline, "the report was not applied: {}", migrations(&socket));
        std::thread::sleep(Duration::from_millis(20));
    }
    let table = migrations(&socket);
    assert_eq!(table[0]["source"], "vm_report", "{table}");
    let (_, again) = python(&a.netns, REPORT_AGENT, &[POST, PRIMARY, POST, "2"]);
    assert_eq!(again, "1 in effect: the switch already rewrites this primary IP to this post-migration IP for this port");

    // The peer talks to the primary IP: pings while it holds a TCP connection.
    let server = Running(Some(
        a.netns.exec(&["python3", "-u", "-c", ECHO_SERVER]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap(),
    ));
    let pings = Running(Some(
        peer.netns.exec(&["ping", "-c", "40", "-i", "0.05", "-W", "1", PRIMARY]).stdout(Stdio::piped()).spawn().unwrap(),
    ));
    let (connected, client) = python(&peer.netns, ECHO_CLIENT, &[PRIMARY]);
    assert!(connected, "TCP to the primary IP: {client}");
    assert_eq!(client, format!("{PRIMARY} {}", 20 * 65536), "the peer is connected to the primary IP, every byte echoed");
    let server = server.wait_with_output();
    assert_eq!(String::from_utf8_lossy(&server.stdout).trim(), format!("{POST} 10.1.0.1"), "A sees the peer connect to its own address");
    let pings = pings.wait_with_output();
    let pings = String::from_utf8_lossy(&pings.stdout);
    assert!(pings.contains("40 packets transmitted, 40 received, 0% packet loss"), "{pings}");
    let arp = peer.netns.exec(&["ip", "neigh", "show", PRIMARY]).output().unwrap();
    assert!(String::from_utf8_lossy(&arp.stdout).contains("02:00:00:0a:00:01"), "the primary IP resolves to A's MAC");

    // B claims A's addresses from its own port: refused, nothing changes.
    let generation = ok(&["config"])["generation"].clone();
    b.netns.ip(&["addr", "add", &format!("{POST}/32"), "dev", b.iface()]);
    let (_, wrong_port) = python(&b.netns, REPORT_AGENT, &[POST, PRIMARY, POST, "3"]);
    b.netns.ip(&["addr", "del", &format!("{POST}/32"), "dev", b.iface()]);
    assert_eq!(wrong_port, "18 refused: the post-migration IP is bound to another VM port");
    let (_, foreign) = python(&b.netns, REPORT_AGENT, &["10.2.0.6", PRIMARY, "10.2.0.6", "4"]);
    assert_eq!(foreign, "20 refused: the primary IP is registered for another VM port");
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let log = ctl_json(&socket, &["address-migration", "reports"]);
        let refused: Vec<Value> = log.as_array().unwrap().iter().filter(|r| r["outcome"] == "refused").cloned().collect();
        if refused.len() == 2 {
            break refused;
        }
        assert!(Instant::now() < deadline, "the refusals are not in the report log: {log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refused[0]["error"], "the post-migration IP 10.2.0.5 is bound to port vm0, not vm2");
    assert_eq!(refused[1]["error"], "the primary IP 10.1.0.5 is registered for port vm0, not vm2");
    assert_eq!(migrations(&socket), table, "the table is unchanged");
    assert_eq!(ok(&["config"])["generation"], generation, "nothing was committed");
    let shown = ctl(&socket, &["address-migration", "reports"]);
    println!("$ switchyard ctl address-migration list\n{}", String::from_utf8_lossy(&ctl(&socket, &["address-migration", "list"]).stdout));
    println!("$ switchyard ctl address-migration reports\n{}", String::from_utf8_lossy(&shown.stdout));
    let metrics = String::from_utf8(ctl(&socket, &["metrics"]).stdout).unwrap();
    for line in [
        "switchyard_address_reports_total{status=\"accepted\"} 1",
        "switchyard_address_reports_total{status=\"post_migration_ip_on_other_port\"} 1",
        "switchyard_address_reports_total{status=\"primary_ip_of_other_port\"} 1",
        "switchyard_address_migrations{state=\"active\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    let ping = peer.netns.ping(PRIMARY, 5);
    assert!(ping.contains("5 received"), "A is still reached at its primary IP: {ping}");

    // Removed: the primary IP is nobody's any more.
    let removed = ctl(&socket, &["address-migration", "delete", "100", PRIMARY]);
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    peer.netns.exec(&["ip", "neigh", "flush", "all"]).status().unwrap();
    let gone = peer.netns.exec(&["ping", "-c", "2", "-W", "1", PRIMARY]).output().unwrap();
    assert!(!gone.status.success(), "{}", String::from_utf8_lossy(&gone.stdout));

    let exit = switch.stop();
    let stats = exit.stats;
    assert_eq!(stats["unaccounted"], 0);
    assert!(stats["address_rewrite"]["to_vm"].as_u64().unwrap() > 100, "{}", stats["address_rewrite"]);
    assert!(stats["address_rewrite"]["from_vm"].as_u64().unwrap() > 100, "{}", stats["address_rewrite"]);
    for (reason, count) in stats["drops"].as_object().unwrap() {
        assert!(count == 0 || reason == "tx_refused", "{reason}: {count}; {}", stats["drops"]);
    }
}

#[test]
fn a_peer_behind_the_kernel_vxlan_device_reaches_the_primary_ip() {
    let (vm, kernel) = (Netns::new(&unique_name("mv")), Netns::new(&unique_name("mk")));
    let (vm_port, uplink_port) = (unique_name("mvo"), unique_name("muo"));
    // The VM lives at its post-migration IP; the old network stays on-link.
    veth(&vm, &vm_port, "eth0", &format!("{POST}/24"), "1450");
    vm.ip(&["link", "set", "eth0", "address", "02:00:00:0a:00:01"]);
    vm.ip(&["route", "add", "10.1.0.0/24", "dev", "eth0"]);
    // The peer, in the VM's old network, behind the kernel VTEP.
    veth(&kernel, &uplink_port, "ul0", "192.0.2.2/24", "1500");
    kernel.ip(&["link", "add", "vx100", "type", "vxlan", "id", "100", "local", "192.0.2.2", "remote", "192.0.2.1", "dstport", "4789", "dev", "ul0"]);
    kernel.ip(&["addr", "add", "10.1.0.1/24", "dev", "vx100"]);
    kernel.ip(&["link", "set", "vx100", "up"]);
    run(&["ip", "netns", "exec", &kernel.name, "ethtool", "-K", "vx100", "tx", "off", "tso", "off", "gso", "off"]);

    let dir = scratch("address_migration_vxlan_testbed");
    let socket = std::env::temp_dir().join(format!("{vm_port}.sock"));
    let config = format!(
        "{ONE_WORKER}[control]\nsocket = \"{}\"\ndatabase = \"{}/config.redb\"\n\
         [[port]]\nname = \"vm0\"\ndevargs = \"net_af_packet0,iface={vm_port}\"\nrole = \"vm\"\nvni = 100\n\
         [[port]]\nname = \"uplink\"\ndevargs = \"net_af_packet1,iface={uplink_port}\"\nrole = \"uplink\"\naddress = \"192.0.2.1/24\"\n\
         [[network]]\nvni = 100\nname = \"interop\"\nflood_vteps = [\"192.0.2.2\"]\n\
         [[endpoint]]\nvni = 100\nmac = \"02:00:00:0a:00:01\"\nip = \"{POST}\"\nport = \"vm0\"\n",
        socket.display(),
        dir.display()
    );
    let mut switch = RunningSwitch::start(&dir, &config);
    switch.wait_until_running();
    // The network control system's notification.
    let entry = ctl_json(&socket, &["address-migration", "add", "--vni", "100", "--primary", PRIMARY, "--post", POST, "--port", "vm0"]);
    assert_eq!(entry["source"], "notification");

    // The kernel's ARP for the primary IP crosses the tunnel, reaches the VM as
    // one for its own address, and its answer comes back for the primary IP.
    let ping = kernel.ping(PRIMARY, 20);
    assert!(ping.contains("20 packets transmitted, 20 received, 0% packet loss"), "{ping}");
    let big = kernel.exec(&["ping", "-c", "5", "-i", "0.05", "-W", "1", "-s", "1372", PRIMARY]).output().unwrap();
    assert!(String::from_utf8_lossy(&big.stdout).contains("5 received"), "{}", String::from_utf8_lossy(&big.stdout));
    let server = Running(Some(
        vm.exec(&["python3", "-u", "-c", ECHO_SERVER]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap(),
    ));
    let (connected, client) = python(&kernel, ECHO_CLIENT, &[PRIMARY]);
    assert!(connected, "TCP over VXLAN to the primary IP: {client}");
    assert_eq!(client, format!("{PRIMARY} {}", 20 * 65536));
    let server = server.wait_with_output();
    assert_eq!(String::from_utf8_lossy(&server.stdout).trim(), format!("{POST} 10.1.0.1"));
    let neighbours = kernel.exec(&["ip", "neigh", "show", PRIMARY]).output().unwrap();
    assert!(String::from_utf8_lossy(&neighbours.stdout).contains("02:00:00:0a:00:01"), "answered by the VM itself");

    let exit = switch.stop();
    let stats = exit.stats;
    assert_eq!(stats["unaccounted"], 0);
    assert!(stats["address_rewrite"]["to_vm"].as_u64().unwrap() > 100, "{}", stats["address_rewrite"]);
    // As in tests/vxlan_interop.rs: frames sent before the kernel VTEP's MAC was
    // resolved, and the kernel's IPv6 chatter on the underlay.
    let allowed = ["next_hop_unresolved", "uplink_not_overlay"];
    for (reason, count) in stats["drops"].as_object().unwrap() {
        assert!(count == 0 || allowed.contains(&reason.as_str()), "{reason}: {count}; {}", stats["drops"]);
    }
}
