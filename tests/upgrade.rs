//! Hitless upgrades of the switching unit on a running switch (docs/upgrade.md),
//! through the control API and `switchyard ctl upgrade`, with the unit
//! libraries `make units` builds.
//!
//! The generator is a net_pcap port replaying a capture of sequence-numbered
//! frames forever (`infinite_rx`): the switch pulls it at its full rate, so it
//! is loaded at every moment of every upgrade. The output goes to a capture on
//! tmpfs, compared frame by frame with the input afterwards.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::switch::{control_socket, vrouter_switch, RunningSwitch, SwitchPort};
use common::tap::TapVm;
use common::testpmd::Testpmd;
use common::*;
use serde_json::Value;

const FLOWS: u32 = 4;
const PER_FLOW: u32 = 4096;
const VM0_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const VM1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];

/// Frame `seq` of `flow`: VM0 to VM1 (a configured endpoint, so never
/// flooded), IPv4/UDP with the flow in the source port and (flow, seq) in the payload.
fn frame(flow: u32, seq: u32) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&flow.to_be_bytes());
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.resize(18, 0);
    let udp_len = 8 + payload.len() as u16;
    let mut f = Vec::new();
    f.extend_from_slice(&VM1_MAC);
    f.extend_from_slice(&VM0_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    let checksum = switchyard::wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&(1000 + flow as u16).to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&payload);
    f
}

fn generator() -> Vec<Vec<u8>> {
    (0..PER_FLOW).flat_map(|seq| (0..FLOWS).map(move |flow| frame(flow, seq))).collect()
}


/// The vRouter between a generator port and an output port (`vm1_devargs`),
/// loading unit libraries from where `make units` puts them.
fn config(dir: &Path, socket: &Path, input: &Path, vm1_devargs: &str) -> String {
    config_with_units(dir, socket, input, vm1_devargs, &units_dir())
}

/// `config` with unit libraries from `units`.
fn config_with_units(dir: &Path, socket: &Path, input: &Path, vm1_devargs: &str, units: &Path) -> String {
    format!(
        "[eal]\nlcores = \"0-1\"\nmemory_mb = 512\n[mempool]\nmbufs = 32767\n[dataplane]\nworkers = [1]\n{units}\
         [control]\nsocket = \"{socket}\"\ndatabase = \"{dir}/config.redb\"\n\
         [[port]]\nname = \"vm0\"\ndevargs = \"net_pcap0,rx_pcap={input},infinite_rx=1\"\nrole = \"vm\"\nvni = 100\n\
         [[port]]\nname = \"vm1\"\ndevargs = \"{vm1_devargs}\"\nrole = \"vm\"\nvni = 100\n\
         [[network]]\nvni = 100\nname = \"load\"\n\
         [[endpoint]]\nvni = 100\nmac = \"02:00:00:00:00:11\"\nport = \"vm1\"\n",
        socket = socket.display(),
        dir = dir.display(),
        input = input.display(),
        units = upgrade_section(units),
    )
}



fn upgrade(socket: &Path, library: &Path) -> Output {
    ctl(socket, &["upgrade", library.to_str().unwrap()])
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_hundred_upgrades_under_full_load_lose_no_packet_reorder_none_and_apply_every_config_request() {
    let dir = scratch("a_hundred_upgrades_under_full_load");
    let input = dir.join("generator.pcap");
    let frames = generator();
    write_pcap(&input, &frames);
    let output = PathBuf::from(format!("/dev/shm/switchyard-upgrade-{}.pcap", std::process::id()));
    let _cleanup = RemoveOnDrop(output.clone());
    let socket = SocketPath::new("load");
    let toml = config(&dir, &socket, &input, &format!("net_pcap1,tx_pcap={}", output.display()));
    let mut switch = RunningSwitch::start(&dir, &toml);
    switch.wait_until_running();
    let (v1, v2) = (unit_library("basic-v1"), unit_library("basic-v2"));

    // Config requests keep coming during the upgrades: a network renamed again
    // and again (order), and new networks (none lost).
    ctl_json(&socket, &["network", "create", "--vni", "500", "--name", "rename-0"]);
    let upgrading = AtomicBool::new(true);
    let requests = std::thread::scope(|scope| {
        let requester = scope.spawn(|| {
            let mut sent = 0u32;
            let mut queued = 0u32;
            while upgrading.load(Ordering::Relaxed) || sent < 10 {
                sent += 1;
                for args in [
                    vec!["network".to_string(), "set".into(), "500".into(), "--name".into(), format!("rename-{sent}")],
                    vec!["network".into(), "create".into(), "--vni".into(), (1000 + sent).to_string(), "--name".into(), format!("n-{sent}")],
                ] {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let out = ctl(&socket, &args);
                    assert!(out.status.success(), "ctl {args:?}: {}", text(&out));
                    queued += u32::from(String::from_utf8_lossy(&out.stdout).contains("queued as request"));
                }
            }
            (sent, queued)
        });
        for i in 0..100 {
            let library = if i % 2 == 0 { &v2 } else { &v1 };
            let out = upgrade(&socket, library);
            assert!(out.status.success(), "upgrade {i} to {}: {}", library.display(), text(&out));
        }
        upgrading.store(false, Ordering::Relaxed);
        requester.join().unwrap()
    });
    let (sent, queued) = requests;
    eprintln!("{sent} rounds of config requests during the upgrades, {queued} of them queued (HTTP 202)");

    let status = ctl_json(&socket, &["upgrade", "--status"]);
    let history = status["history"].as_array().unwrap();
    assert_eq!(history.len(), 100, "{status}");
    for record in history {
        assert_eq!(record["outcome"], "upgraded", "{record}");
        let steps: Vec<u64> = record["steps"].as_array().unwrap().iter().map(|s| s["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, (1..=8).collect::<Vec<u64>>(), "{record}");
    }
    assert_eq!(status["vm"]["version"], "1.0.0", "the 100th upgrade went to v1: {status}");
    assert_eq!(status["uplink"]["library"], v1.display().to_string());

    let networks = ctl_json(&socket, &["network", "list"]);
    let name_of = |vni: u32| networks.as_array().unwrap().iter().find(|n| n["vni"] == vni).map(|n| n["name"].clone());
    assert_eq!(name_of(500), Some(Value::from(format!("rename-{sent}"))), "renames applied in order");
    for k in 1..=sent {
        assert_eq!(name_of(1000 + k), Some(Value::from(format!("n-{k}"))), "network {} lost", 1000 + k);
    }
    let unit = ctl_json(&socket, &["unit"]);
    assert_eq!(unit["vm"]["generation"], ctl_json(&socket, &["config"])["generation"], "the unit runs the last generation: {unit}");

    let exit = switch.stop();
    assert!(exit.status.success(), "{}", exit.log);
    let stats = &exit.stats;
    let port = |i: usize, key: &str| stats["ports"][i][key].as_u64().unwrap();
    let nic = |i: usize, key: &str| stats["ports"][i]["nic"][key].as_u64().unwrap();
    assert_eq!(stats["dropped"], 0, "{stats}");
    assert_eq!(stats["unaccounted"], 0, "{stats}");
    assert_eq!(port(0, "rx_packets"), port(1, "tx_packets"), "rx = tx exactly: {stats}");
    assert_eq!((nic(0, "imissed"), nic(0, "rx_nombuf")), (0, 0), "{stats}");

    let out = read_pcap(&output);
    assert_eq!(out.len() as u64, port(1, "tx_packets"));
    assert!(out.len() > 10 * frames.len(), "the generator went round many times: {}", out.len());
    for (i, got) in out.iter().enumerate() {
        let want = &frames[i % frames.len()];
        assert!(got == want, "output frame {i} is not input frame {}: a packet was lost, reordered or changed", i % frames.len());
    }
    eprintln!("100 upgrades under load: {} frames out, all in order", out.len());
}

#[test]
fn refused_libraries_roll_back_to_the_previous_unit_and_traffic_keeps_flowing() {
    let dir = scratch("refused_libraries_roll_back");
    let input = dir.join("generator.pcap");
    write_pcap(&input, &generator());
    let socket = SocketPath::new("refused");
    // A unit directory of its own: the libraries that fail at step 5 must pass the file checks first.
    let units = dir.join("units");
    std::fs::create_dir(&units).unwrap();
    std::fs::set_permissions(&units, std::fs::Permissions::from_mode(0o755)).unwrap();
    let install = |from: &Path, name: &str| {
        let to = units.join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    let mut switch = RunningSwitch::start(&dir, &config_with_units(&dir, &socket, &input, "net_null0,no-rx=1", &units));
    switch.wait_until_running();
    let tx = || ctl_json(&socket, &["stats"])["ports"][1]["tx_packets"].as_u64().unwrap();

    let not_a_library = dir.join("not-a-library.so");
    std::fs::write(&not_a_library, "plain text").unwrap();
    let not_a_library = install(&not_a_library, "not-a-library.so");
    // A library that is not there is refused before anything moves; the others
    // fail at step 5, on the intermediate unit, and are rolled back.
    let missing = ctl(&socket, &["upgrade", "/nonexistent/unit.so"]);
    assert!(!missing.status.success() && text(&missing).contains("/nonexistent/unit.so"), "{}", text(&missing));
    let missing = ctl(&socket, &["upgrade", "absent.so"]);
    assert!(text(&missing).contains(&format!("{}/absent.so does not exist", units.display())), "{}", text(&missing));
    let bad: [(PathBuf, &str); 5] = [
        (not_a_library.clone(), "cannot load"),
        (install(Path::new("/lib/x86_64-linux-gnu/libz.so.1"), "libz.so.1"), "is not a switchyard unit: it exports no switchyard_unit_abi"),
        (install(&unit_library("faulty-abi-mismatch"), "faulty-abi-mismatch.so"), "was built for another unit ABI"),
        (install(&unit_library("faulty-reject-config"), "faulty-reject-config.so"), "refused configuration generation"),
        (install(&unit_library("faulty-unhealthy"), "faulty-unhealthy.so"), "health check failed"),
    ];
    let basic_v1 = install(&unit_library("basic-v1"), "basic-v1.so");
    // From the embedded unit, then from a library unit (restored by loading it again).
    for previous in [None, Some(basic_v1)] {
        if let Some(library) = &previous {
            let out = upgrade(&socket, library);
            assert!(out.status.success(), "{}", text(&out));
        }
        let before = ctl_json(&socket, &["unit"]);
        for (library, reason) in &bad {
            let sent = tx();
            let out = upgrade(&socket, library);
            assert!(!out.status.success(), "{} must be refused", library.display());
            let said = text(&out);
            assert!(said.contains("rolled back") && said.contains(reason), "{}: {said}", library.display());
            let after = ctl_json(&socket, &["unit"]);
            assert_eq!(after["vm"], before["vm"], "the previous unit is back: {said}");
            assert_eq!(after["uplink"], before["uplink"]);
            std::thread::sleep(Duration::from_millis(50));
            assert!(tx() > sent, "traffic flows after rolling back from {}", library.display());
        }
    }
    let status = ctl_json(&socket, &["upgrade", "--status"]);
    let outcomes: Vec<&str> = status["history"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "rolled_back").count(), 10, "{outcomes:?}");
    let record = &status["history"][0];
    assert!(record["error"].as_str().unwrap().starts_with("step 5: "), "{record}");
    assert!(record["steps"].as_array().unwrap().iter().any(|s| s["step"] == 0), "rollback steps recorded: {record}");

    let exit = switch.stop();
    assert!(exit.status.success(), "{}", exit.log);
    assert_eq!(exit.stats["dropped"], 0, "{}", exit.stats);
    assert_eq!(exit.stats["unaccounted"], 0, "{}", exit.stats);
    assert_eq!(exit.stats["ports"][0]["rx_packets"], exit.stats["ports"][1]["tx_packets"], "{}", exit.stats);
}

/// `POST /v1/upgrade {"library": library}` on the unix socket: (status, JSON body).
fn post_upgrade(socket: &Path, library: &str) -> (u16, Value) {
    let body = serde_json::json!({ "library": library }).to_string();
    let out = std::process::Command::new("curl")
        .args(["-s", "--unix-socket", socket.to_str().unwrap(), "-H", "content-type: application/json"])
        .args(["-d", &body, "-w", "\n%{http_code}", "http://switch/v1/upgrade"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (reply, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), serde_json::from_str(reply).unwrap_or(Value::Null))
}

/// A shared library whose ELF constructor writes `marker` when it is loaded (it is no unit).
fn marker_library(dir: &Path, marker: &Path) -> PathBuf {
    let source = dir.join("evil.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n__attribute__((constructor)) static void evil(void) {\n\
         FILE *f = fopen(MARKER, \"w\"); if (f) { fputs(\"loaded\\n\", f); fclose(f); }\n}\n",
    )
    .unwrap();
    let library = dir.join("evil.so");
    let define = format!("-DMARKER=\"{}\"", marker.display());
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&define)
        .arg(&source)
        .output()
        .unwrap();
    assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
    library
}

#[test]
fn only_root_owned_libraries_in_the_unit_directory_are_ever_loaded() {
    let dir = scratch("only_root_owned_libraries_are_loaded");
    let input = dir.join("generator.pcap");
    write_pcap(&input, &generator());
    let (units, outside) = (dir.join("units"), dir.join("outside"));
    for d in [&units, &outside] {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let marker = dir.join("constructor-ran");
    let evil = marker_library(&outside, &marker);
    let copy = |name: &str, mode: u32| {
        let to = units.join(name);
        std::fs::copy(&evil, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    copy("nobody.so", 0o755);
    std::os::unix::fs::chown(units.join("nobody.so"), Some(65534), Some(65534)).unwrap();
    copy("writable.so", 0o666);
    copy("evil.so", 0o755);
    std::os::unix::fs::symlink(&evil, units.join("link.so")).unwrap();

    let socket = SocketPath::new("unitdir");
    let mut switch = RunningSwitch::start(&dir, &config_with_units(&dir, &socket, &input, "net_null0,no-rx=1", &units));
    switch.wait_until_running();
    let (u, o) = (units.display(), outside.display());
    let cases: Vec<(String, String)> = vec![
        (format!("{o}/evil.so"), format!("{o}/evil.so is outside the unit directory {u}; unit libraries load only from there")),
        ("../outside/evil.so".into(), format!("../outside/evil.so contains `..`; unit libraries load only from files directly in {u}")),
        (format!("{u}/../outside/evil.so"), "contains `..`".into()),
        ("link.so".into(), format!("{u}/link.so is a symbolic link; unit libraries load only from the file itself")),
        ("nobody.so".into(), format!("the unit library {u}/nobody.so is owned by uid 65534, not root")),
        ("writable.so".into(), format!("the unit library {u}/writable.so is writable by group or others (mode 0666)")),
    ];
    for (library, rule) in &cases {
        let (status, body) = post_upgrade(&socket, library);
        assert_eq!((status, &body["field"]), (400, &Value::from("library")), "{library}: {body}");
        assert!(body["error"].as_str().unwrap().contains(rule.as_str()), "{library}: {body}");
    }
    // A unit directory others may write to: even a root-owned file in it is refused.
    std::fs::set_permissions(&units, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (status, body) = post_upgrade(&socket, "evil.so");
    std::fs::set_permissions(&units, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains(&format!("the unit directory {u} is writable by group or others (mode 0777)")), "{body}");
    // `ctl upgrade` says the same and fails.
    let out = ctl(&socket, &["upgrade", evil.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("is outside the unit directory"), "{}", text(&out));
    assert!(!marker.exists(), "a refused library was loaded: its constructor ran");
    let status = ctl_json(&socket, &["upgrade", "--status"]);
    assert_eq!(status["history"], serde_json::json!([]), "no upgrade started: {status}");

    // The rules met, the same file is loaded (its constructor runs; it is no unit, so the upgrade rolls back).
    let (status, body) = post_upgrade(&socket, "evil.so");
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("rolled back"), "{body}");
    assert!(marker.exists(), "the marker library's constructor writes the marker when it is loaded");
    let exit = switch.stop();
    assert!(exit.status.success(), "{}", exit.log);
}

#[test]
fn a_tcp_transfer_between_tap_vms_rides_through_upgrades_with_a_vhost_user_vm_attached() {
    let a = TapVm::new("ua", "02:00:00:0b:00:01", "10.11.0.1/24");
    let b = TapVm::new("ub", "02:00:00:0b:00:02", "10.11.0.2/24");
    let sockets = std::env::temp_dir().join(format!("sy-upv-{}", std::process::id()));
    std::fs::create_dir_all(&sockets).unwrap();
    let vhost_socket = sockets.join("vm.sock");
    let vhost = SwitchPort {
        name: "v".into(),
        devargs: format!("net_vhost2,iface={},queues=1", vhost_socket.display()),
        role: "vm",
        peer_mac: None,
    };
    let dir = scratch("a_tcp_transfer_between_tap_vms_rides_through_upgrades");
    let config = vrouter_switch(&dir, &[&a.switch_port("a", 0), &b.switch_port("b", 1), &vhost]);
    let socket = control_socket(&config);
    let mut switch = RunningSwitch::start(&dir, &config);
    switch.wait_until_running();
    a.quiet();
    b.quiet();
    std::thread::sleep(Duration::from_millis(50));
    a.attach();
    b.attach();
    let mut vm = Testpmd::on_vhost_sockets(&[&vhost_socket], "rxonly");
    switch.wait_for_log("port[2] \"v\": link up", Duration::from_secs(10));
    vm.command("start");

    // A rate-limited transfer (the two cores are shared with testpmd and the
    // kernels): any retransmission would be a loss, not congestion.
    let mut server = b.netns.exec(&["iperf3", "-s", "-1"]).stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let client = a.netns.exec(&["iperf3", "-c", "10.11.0.2", "-t", "4", "-b", "50M", "-J"]).output_in_background();
    std::thread::sleep(Duration::from_millis(700));
    let (v1, v2) = (unit_library("basic-v1"), unit_library("basic-v2"));
    for i in 0..10 {
        let library = if i % 2 == 0 { &v2 } else { &v1 };
        let out = upgrade(&socket, library);
        assert!(out.status.success(), "upgrade {i}: {}", text(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = client.join().unwrap();
    let _ = server.wait();
    assert!(report.status.success(), "iperf3: {}", text(&report));
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let sent = &report["end"]["sum_sent"];
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap();
    eprintln!("iperf3 across 10 upgrades: {} bytes, {} retransmits", received, sent["retransmits"]);
    assert!(received > 10_000_000, "the transfer ran: {report}");
    // Two busy pollers share the two cores with the kernels, so a delayed ACK
    // can make the sender retransmit spuriously; such a retransmission reaches a
    // receiver that already has the data, which says so with a D-SACK (RFC 2883).
    // A retransmission caused by loss gets none.
    let retransmitted = counter(&a, "TcpRetransSegs");
    let duplicates = counter(&b, "TcpExtTCPDSACKOldSent") + counter(&b, "TcpExtTCPDSACKOfoSent");
    assert!(
        retransmitted <= duplicates,
        "{retransmitted} segments retransmitted, only {duplicates} of them arrived twice: a segment was lost"
    );
    let status = ctl_json(&socket, &["upgrade", "--status"]);
    assert!(status["history"].as_array().unwrap().iter().all(|r| r["outcome"] == "upgraded"), "{status}");

    let exit = switch.stop();
    vm.command("stop");
    vm.quit();
    let _ = std::fs::remove_dir_all(&sockets);
    assert_eq!(exit.stats["unaccounted"], 0, "{}", exit.stats);
    // Between the two TAP VMs nothing was dropped. (Flood copies for the vhost
    // VM may meet its rings before testpmd polls them: tx_refused, counted.)
    for port in &exit.stats["ports"].as_array().unwrap()[..2] {
        assert_eq!((&port["rx_dropped"], &port["tx_dropped"]), (&Value::from(0), &Value::from(0)), "{port}");
    }
}

/// Removes a file when the test ends, pass or fail (the capture lives in RAM).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A counter of the network namespace's stack (`nstat`).
fn counter(vm: &TapVm, name: &str) -> u64 {
    let out = vm.netns.exec(&["nstat", "-az", name]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix(name)?.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// `Command::output` on a thread, so the test can act while it runs.
trait OutputInBackground {
    fn output_in_background(self) -> std::thread::JoinHandle<Output>;
}

impl OutputInBackground for std::process::Command {
    fn output_in_background(mut self) -> std::thread::JoinHandle<Output> {
        std::thread::spawn(move || self.output().unwrap())
    }
}
