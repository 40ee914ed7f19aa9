//! VM ports over vhost-user: `net_vhost` ports on switchyard, `dpdk-testpmd` with
//! `net_virtio_user` ports as the VM (the same virtio rings a QEMU guest uses).
//!
//! Memory: a virtio-user peer shares its memory with the vhost-user backend, so
//! it must be file-backed. testpmd runs `--no-huge` (EAL then backs it with one
//! memfd); switchyard, the backend, maps what the peer sends and needs no
//! hugepages itself (`eal.hugepages = false`). Cores: testpmd forwards on lcore
//! 0, switchyard's worker polls lcore 1. The tests take turns (`serial`), so two
//! busy-polling testpmds never share a core.
mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::switch::{vrouter_switch, RunningSwitch, SwitchPort};
use common::testpmd::Testpmd;
use common::*;

/// One test at a time in this file (each runs a busy-polling testpmd).
fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A short directory for vhost-user sockets (a socket path has at most 107
/// bytes, so not under the possibly deep target directory); removed on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new(test: &str) -> SocketDir {
        let dir = std::env::temp_dir().join(format!("sy-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        SocketDir(dir)
    }

    fn socket(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn vhost_port(name: &str, index: usize, socket: &Path, devargs: &str) -> SwitchPort {
    SwitchPort {
        name: name.into(),
        devargs: format!("net_vhost{index},iface={},queues=1{devargs}", socket.display()),
        role: "vm",
        peer_mac: None,
    }
}

fn port_stat(stats: &serde_json::Value, port: usize, key: &str) -> u64 {
    stats["ports"][port][key].as_u64().unwrap_or_else(|| panic!("ports[{port}].{key} in {stats}"))
}

const LINK_TIMEOUT: Duration = Duration::from_secs(10);

/// A VM forwarding between its two virtio NICs (testpmd `io`) on two vhost-user
/// ports of one virtual network on the vRouter: the 64 frames testpmd starts with
/// circle through VM and switch for two seconds. Every frame the VM sent the
/// switch received, and nothing is dropped: with 64 frames in flight no ring ever fills.
#[test]
fn a_vm_forwarding_between_two_vhost_user_ports_loops_frames_through_the_switch() {
    let _turn = serial();
    let sockets = SocketDir::new("vhost-loop");
    let (s0, s1) = (sockets.socket("vm0.sock"), sockets.socket("vm1.sock"));
    let dir = scratch("a_vm_forwarding_between_two_vhost_user_ports_loops_frames_through_the_switch");
    let config = vrouter_switch(&dir, &[&vhost_port("v0", 0, &s0, ""), &vhost_port("v1", 1, &s1, "")]);
    let mut switch = RunningSwitch::start(&dir, &config);
    switch.wait_until_running();

    let mut vm = Testpmd::on_vhost_sockets(&[&s0, &s1], "io");
    switch.wait_for_log("port[0] \"v0\": link up", LINK_TIMEOUT);
    switch.wait_for_log("port[1] \"v1\": link up", LINK_TIMEOUT);
    vm.command("start tx_first"); // one burst of 32 on each port, then io forwarding 0 <-> 1
    std::thread::sleep(Duration::from_secs(2));
    vm.command("stop");
    let vm_counts = vm.port_counts();
    vm.quit();
    switch.wait_for_log("port[1] \"v1\": link down", LINK_TIMEOUT);
    let exit = switch.stop();
    let stats = exit.stats;

    assert_eq!(vm_counts.len(), 2, "{vm_counts:?}");
    assert_eq!(stats["unaccounted"], 0, "{stats}");
    assert_eq!(stats["dropped"], 0, "{stats}");
    assert_eq!(stats["mempool_in_use"], 0, "every mbuf went back to the pool: {stats}");
    for (port, vm_port) in vm_counts.iter().enumerate() {
        assert_eq!(port_stat(&stats, port, "rx_packets"), vm_port.tx, "port {port}: the switch got all the VM sent");
    }
    // What the switch sent the VM, the VM received, except frames still in its
    // receive rings when it stopped polling (at most the 64 in flight).
    let sent_to_vm = port_stat(&stats, 0, "tx_packets") + port_stat(&stats, 1, "tx_packets");
    let vm_received = vm_counts[0].rx + vm_counts[1].rx;
    assert!((vm_received..=vm_received + 64).contains(&sent_to_vm), "switch sent {sent_to_vm}, VM got {vm_received}");
    assert!(vm_received > 64 * 100, "the frames went round many times: {vm_received}");
    eprintln!("loop: the VM sent {vm_counts:?}; the switch forwarded {} frames in both directions", stats["tx_packets"]);
}

/// A vhost-user port is down until its VM connects. Frames the switch has for
/// a port without a VM are refused by the driver, counted as `tx_refused` and
/// freed; the switch carries on, and a VM that leaves and comes back (a reboot)
/// is served again.
#[test]
fn frames_for_a_vhost_user_port_without_a_vm_are_counted_and_the_switch_carries_on() {
    let _turn = serial();
    let sockets = SocketDir::new("vhost-novm");
    let (s0, s1) = (sockets.socket("vm0.sock"), sockets.socket("vm1.sock"));
    let dir = scratch("frames_for_a_vhost_user_port_without_a_vm_are_counted_and_the_switch_carries_on");
    let config = vrouter_switch(&dir, &[&vhost_port("v0", 0, &s0, ""), &vhost_port("with_no_vm", 1, &s1, "")]);
    let mut switch = RunningSwitch::start(&dir, &config);
    switch.wait_until_running();

    let mut sent = 0;
    for boot in 1..=2 {
        let mut vm = Testpmd::on_vhost_sockets(&[&s0], "rxonly");
        switch.wait_for_log_lines("port[0] \"v0\": link up", boot, LINK_TIMEOUT);
        vm.command("start tx_first 4"); // 4 bursts of 32 (they fit the 256-slot ring)
        std::thread::sleep(Duration::from_millis(300));
        vm.command("stop");
        sent += vm.port_counts()[0].tx;
        vm.quit();
        switch.wait_for_log_lines("port[0] \"v0\": link down", boot, LINK_TIMEOUT);
    }
    let exit = switch.stop();
    let stats = exit.stats;

    assert_eq!(sent, 2 * 128);
    assert_eq!(port_stat(&stats, 0, "rx_packets"), sent);
    assert_eq!(port_stat(&stats, 1, "tx_packets"), 0);
    assert_eq!(port_stat(&stats, 1, "tx_dropped"), sent);
    assert_eq!(stats["drops"]["tx_refused"], sent, "{stats}");
    assert_eq!(stats["ports"][1]["link"]["up"], false);
    assert_eq!(stats["unaccounted"], 0);
    assert_eq!(stats["mempool_in_use"], 0, "refused frames were freed: {stats}");
    assert!(exit.log.contains("port[1] \"with_no_vm\": link down (until a VM connects to"), "{}", exit.log);
}

/// `client=1`: the VM side owns the sockets (QEMU `server=on`; here virtio-user
/// `server=1`) and the switch connects, retrying until they exist. Both
/// directions carry exactly what was sent.
#[test]
fn vhost_user_ports_in_client_mode_connect_to_a_vm_that_serves_the_sockets() {
    let _turn = serial();
    let sockets = SocketDir::new("vhost-client");
    let (s0, s1) = (sockets.socket("vm0.sock"), sockets.socket("vm1.sock"));
    let dir = scratch("vhost_user_ports_in_client_mode_connect_to_a_vm_that_serves_the_sockets");
    let config = vrouter_switch(&dir, &[&vhost_port("v0", 0, &s0, ",client=1"), &vhost_port("v1", 1, &s1, ",client=1")]);
    let mut switch = RunningSwitch::start(&dir, &config);
    switch.wait_until_running();

    let mut vm = Testpmd::serving_vhost_sockets(&[&s0, &s1], "rxonly");
    switch.wait_for_log("port[0] \"v0\": link up", LINK_TIMEOUT);
    switch.wait_for_log("port[1] \"v1\": link up", LINK_TIMEOUT);
    vm.command("start tx_first 4");
    std::thread::sleep(Duration::from_millis(300));
    vm.command("stop");
    let vm_counts = vm.port_counts();
    vm.quit();
    let stats = switch.stop().stats;

    assert_eq!(vm_counts.iter().map(|c| (c.rx, c.tx)).collect::<Vec<_>>(), [(128, 128), (128, 128)]);
    for port in 0..2 {
        assert_eq!((port_stat(&stats, port, "rx_packets"), port_stat(&stats, port, "tx_packets")), (128, 128));
    }
    assert_eq!(stats["dropped"], 0, "{stats}");
    assert_eq!(stats["unaccounted"], 0);
}
