//! Layer 3 with VM ports: two network namespaces stand in for VMs, each with the
//! TAP interface that a `net_tap` port of switchyard creates. The switch starts
//! first (it creates the interfaces); then each interface is moved into its
//! namespace, given the VM's MAC and address, and brought up, as a VM's NIC would
//! be. The kernels ping each other and move 1 MiB over TCP through the switch.
//! Root only; the namespaces (and with them the interfaces) are removed when the
//! test ends, pass or fail.
mod common;

use common::netns::{http_transfer, mebibyte};
use common::tap::TapVm;
use common::switch::{vrouter_switch, RunningSwitch};
use common::*;

#[test]
fn namespaces_on_tap_ports_ping_and_talk_tcp_through_the_switch() {
    let a = TapVm::new("ta", "02:00:00:0a:00:01", "10.10.0.1/24");
    let b = TapVm::new("tb", "02:00:00:0a:00:02", "10.10.0.2/24");
    let dir = scratch("namespaces_on_tap_ports_ping_and_talk_tcp_through_the_switch");
    let config = vrouter_switch(&dir, &[&a.switch_port("a", 0), &b.switch_port("b", 1)]);
    let mut switch = RunningSwitch::start(&dir, &config);
    // net_tap brings the interface up when the port starts, in switchyard's own
    // namespace: move it only after that.
    switch.wait_until_running();
    a.quiet();
    b.quiet();
    std::thread::sleep(std::time::Duration::from_millis(50)); // the switch forwards what was already sent
    a.attach();
    b.attach();

    let ping = a.netns.ping("10.10.0.2", 20);
    assert!(ping.contains("20 packets transmitted, 20 received, 0% packet loss"), "{ping}");

    let body = mebibyte();
    let got = http_transfer(&b.netns, &a.netns, "10.10.0.2", &dir.join("site"), &body);
    assert!(got == body, "fetched {} of {} bytes", got.len(), body.len());

    let exit = switch.stop();
    let stats = exit.stats;
    assert_eq!(stats["unaccounted"], 0);
    assert_eq!(stats["dropped"], 0, "nothing to drop between two healthy VMs: {stats}");
    assert!(stats["tx_packets"].as_u64().unwrap() > 700, "1 MiB is more than 700 full-size frames");
    for port in stats["ports"].as_array().unwrap() {
        assert_eq!(port["driver"], "net_tap");
    }
}
