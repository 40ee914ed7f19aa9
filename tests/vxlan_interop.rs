//! Layer 3: interoperability with a VTEP we did not write. A namespace "VM"
//! behind a switchyard VM port talks ping and TCP with a namespace behind the
//! Linux kernel's VXLAN device; switchyard's uplink faces the kernel VTEP over a
//! veth. Nothing is configured but the network and its flood list: MACs and the
//! kernel VTEP's underlay MAC are learned (ARP). Root only; cleans up on failure.
mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Deletes the namespaces (and with them their veth ends) on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(args);
    cmd
}

/// A veth pair with `inner` (MTU `mtu`) in `ns`, `outer` up in the root namespace.
/// Offloads are off inside: AF_PACKET hands the switch exactly what the kernel
/// sent, so checksums must be complete and frames no larger than the MTU.
fn veth(ns: &str, outer: &str, inner: &str, address: &str, mtu: &str) {
    sh(&["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns]);
    sh(&["ip", "link", "set", outer, "up"]);
    sh(&["ip", "-n", ns, "link", "set", inner, "mtu", mtu, "up"]);
    sh(&["ip", "-n", ns, "addr", "add", address, "dev", inner]);
    sh(&["ip", "netns", "exec", ns, "ethtool", "-K", inner, "tx", "off", "tso", "off", "gso", "off"]);
}

/// Kills a child process when dropped.
struct Running(Option<Child>);

impl Running {
    fn stop(mut self) -> Output {
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

#[test]
fn a_vm_talks_to_a_host_behind_the_kernel_vxlan_device() {
    assert!(nix::unistd::geteuid().is_root(), "this test creates network namespaces: run it as root (make test does)");
    let id = std::process::id() % 100_000;
    let (vm, kernel) = (format!("syvm{id}"), format!("sykv{id}"));
    let (vm_port, uplink_port) = (format!("syvm{id}o"), format!("syul{id}o"));
    sh(&["ip", "netns", "add", &vm]);
    let _cleanup = Namespaces(vec![vm.clone()]);
    sh(&["ip", "netns", "add", &kernel]);
    let _cleanup_kernel = Namespaces(vec![kernel.clone()]);
    // The VM's MTU leaves room for the 50 bytes of VXLAN encapsulation on a 1500-byte underlay.
    veth(&vm, &vm_port, "eth0", "10.20.0.1/24", "1450");
    veth(&kernel, &uplink_port, "ul0", "192.0.2.2/24", "1500");
    // The kernel VTEP: VNI 100 on UDP 4789, BUM traffic head-end replicated to switchyard.
    sh(&["ip", "-n", &kernel, "link", "add", "vx100", "type", "vxlan", "id", "100", "local", "192.0.2.2", "remote", "192.0.2.1", "dstport", "4789", "dev", "ul0"]);
    sh(&["ip", "-n", &kernel, "addr", "add", "10.20.0.2/24", "dev", "vx100"]);
    sh(&["ip", "-n", &kernel, "link", "set", "vx100", "up"]);
    sh(&["ip", "netns", "exec", &kernel, "ethtool", "-K", "vx100", "tx", "off", "tso", "off", "gso", "off"]);
    for ns in [&vm, &kernel] {
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    let dir = scratch("a_vm_talks_to_a_host_behind_the_kernel_vxlan_device");
    let (stats, config) = (dir.join("stats.json"), dir.join("testbed.toml"));
    std::fs::write(
        &config,
        format!(
            r#"{ONE_WORKER}[control]
socket = "{dir}/api.sock"
database = "{dir}/config.redb"
[[port]]
name = "vm0"
devargs = "net_af_packet0,iface={vm_port}"
role = "vm"
vni = 100
[[port]]
name = "uplink"
devargs = "net_af_packet1,iface={uplink_port}"
role = "uplink"
address = "192.0.2.1/24"
[[network]]
vni = 100
name = "interop"
flood_vteps = ["192.0.2.2"]
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    let switch = Running(Some(
        switchyard()
            .args(["run", "--config", config.to_str().unwrap(), "--stats-json", stats.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));

    // The first tries resolve the kernel VTEP's MAC by ARP; then no loss is allowed.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !in_ns(&vm, &["ping", "-c", "1", "-W", "1", "10.20.0.2"]).output().unwrap().status.success() {
        assert!(Instant::now() < deadline, "no ping got through in 15 s");
    }
    let ping = in_ns(&vm, &["ping", "-c", "20", "-i", "0.05", "-W", "1", "-s", "1400", "10.20.0.2"]).output().unwrap();
    let ping_text = String::from_utf8_lossy(&ping.stdout);
    assert!(ping_text.contains("20 packets transmitted, 20 received, 0% packet loss"), "{ping_text}");

    // TCP both ways through the tunnel: fetch 1 MiB from the kernel side.
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    let body: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(site.join("blob"), &body).unwrap();
    let server = Running(Some(
        in_ns(&kernel, &["python3", "-m", "http.server", "--bind", "10.20.0.2", "8080", "--directory", site.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let fetch = "import sys, time, urllib.request\n\
                 for _ in range(30):\n\
                 \ttry:\n\t\tsys.stdout.buffer.write(urllib.request.urlopen('http://10.20.0.2:8080/blob', timeout=3).read()); break\n\
                 \texcept OSError: time.sleep(0.1)\n";
    let got = in_ns(&vm, &["python3", "-c", fetch]).output().unwrap();
    drop(server);
    assert!(got.stdout == body, "fetched {} of {} bytes: {}", got.stdout.len(), body.len(), String::from_utf8_lossy(&got.stderr));

    // The kernel learned the VM behind switchyard's VTEP.
    let fdb = sh(&["bridge", "-n", &kernel, "fdb", "show", "dev", "vx100"]);
    assert!(fdb.lines().any(|l| l.contains("dst 192.0.2.1") && !l.starts_with("00:00:00:00:00:00")), "{fdb}");

    let out = switch.stop();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = json(&stats);
    assert_eq!(stats["unaccounted"], 0);
    // Only frames sent before the kernel VTEP's MAC was resolved, and the kernel's
    // IPv6 chatter on the underlay (router solicitations, MLD), may be dropped.
    let allowed = ["next_hop_unresolved", "uplink_not_overlay"];
    for (reason, count) in stats["drops"].as_object().unwrap() {
        assert!(count == 0 || allowed.contains(&reason.as_str()), "{reason}: {count}; {}", stats["drops"]);
    }
    assert!(stats["absorbed"].as_u64().unwrap() >= 1, "the kernel's ARP reply to the VTEP");
    assert!(stats["tx_packets"].as_u64().unwrap() > 700, "1 MiB is more than 700 full-size frames");
}
