//! Layer 3: interoperability with a VTEP we did not write. A namespace "VM"
//! behind a switchyard VM port talks ping and TCP with a namespace behind the
//! Linux kernel's VXLAN device; switchyard's uplink faces the kernel VTEP over a
//! veth. Nothing is configured but the network and its flood list: MACs and the
//! kernel VTEP's underlay MAC are learned (ARP). Root only; cleans up on failure.
mod common;

use common::netns::{http_transfer, mebibyte, output, run, unique_name, veth, Netns};
use common::switch::RunningSwitch;
use common::*;

#[test]
fn a_vm_talks_to_a_host_behind_the_kernel_vxlan_device() {
    let (vm, kernel) = (Netns::new(&unique_name("vm")), Netns::new(&unique_name("kv")));
    let (vm_port, uplink_port) = (unique_name("vmo"), unique_name("ulo"));
    // The VM's MTU leaves room for the 50 bytes of VXLAN encapsulation on a 1500-byte underlay.
    veth(&vm, &vm_port, "eth0", "10.20.0.1/24", "1450");
    veth(&kernel, &uplink_port, "ul0", "192.0.2.2/24", "1500");
    // The kernel VTEP: VNI 100 on UDP 4789, BUM traffic head-end replicated to switchyard.
    kernel.ip(&["link", "add", "vx100", "type", "vxlan", "id", "100", "local", "192.0.2.2", "remote", "192.0.2.1", "dstport", "4789", "dev", "ul0"]);
    kernel.ip(&["addr", "add", "10.20.0.2/24", "dev", "vx100"]);
    kernel.ip(&["link", "set", "vx100", "up"]);
    run(&["ip", "netns", "exec", &kernel.name, "ethtool", "-K", "vx100", "tx", "off", "tso", "off", "gso", "off"]);

    let dir = scratch("a_vm_talks_to_a_host_behind_the_kernel_vxlan_device");
    let config = format!(
        r#"{ONE_WORKER}[control]
socket = "/tmp/{vm_port}.sock"
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
    );
    let switch = RunningSwitch::start(&dir, &config);

    // The first tries resolve the kernel VTEP's MAC by ARP; then no loss is allowed.
    let ping = vm.ping("10.20.0.2", 20);
    assert!(ping.contains("20 packets transmitted, 20 received, 0% packet loss"), "{ping}");
    let big = vm.exec(&["ping", "-c", "5", "-i", "0.05", "-W", "1", "-s", "1400", "10.20.0.2"]).output().unwrap();
    let big = String::from_utf8_lossy(&big.stdout);
    assert!(big.contains("5 packets transmitted, 5 received, 0% packet loss"), "1400-byte pings: {big}");

    // TCP through the tunnel: fetch 1 MiB from the kernel side.
    let body = mebibyte();
    let got = http_transfer(&kernel, &vm, "10.20.0.2", &dir.join("site"), &body);
    assert!(got == body, "fetched {} of {} bytes", got.len(), body.len());

    // The kernel learned the VM behind switchyard's VTEP.
    let fdb = output(&["bridge", "-n", &kernel.name, "fdb", "show", "dev", "vx100"]);
    assert!(fdb.lines().any(|l| l.contains("dst 192.0.2.1") && !l.starts_with("00:00:00:00:00:00")), "{fdb}");

    let exit = switch.stop();
    assert!(exit.status.success(), "{}", exit.log);
    let stats = exit.stats;
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
