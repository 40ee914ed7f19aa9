//! Layer 3: real kernel stacks talk through switchyard. Two network namespaces,
//! each behind a veth pair whose root end is a `net_af_packet` port; the ports
//! are cross-connected both ways. Root only; the namespaces are removed when the
//! test ends, pass or fail.
mod common;

use common::netns::{http_transfer, mebibyte, output, run, unique_name, Netns};
use common::switch::{two_port_switch, RunningSwitch, SwitchPort};
use common::*;

/// A network namespace with a veth pair: `outer` in the root namespace, `inner`
/// (with `address`) inside. Deleting the namespace (on drop) deletes the inner
/// veth end, and with it the outer one.
struct Host {
    netns: Netns,
    outer: String,
    inner_mac: String,
}

impl Host {
    fn new(tag: &str, address: &str) -> Host {
        let netns = Netns::new(&unique_name(tag));
        let (outer, inner) = (format!("{}o", netns.name), format!("{}i", netns.name));
        run(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &netns.name]);
        run(&["ip", "link", "set", &outer, "up"]);
        netns.ip(&["addr", "add", address, "dev", &inner]);
        netns.ip(&["link", "set", &inner, "up"]);
        // AF_PACKET hands the switch what the kernel sent; with tx checksum offload
        // that is a TCP/UDP checksum covering only the pseudo-header, which the
        // receiving host would drop. Hosts behind af_packet ports compute checksums.
        run(&["ip", "netns", "exec", &netns.name, "ethtool", "-K", &inner, "tx", "off"]);
        let link = output(&["ip", "-n", &netns.name, "-br", "link", "show", &inner]);
        let inner_mac = link.split_whitespace().nth(2).expect("ip -br link prints the MAC").to_string();
        Host { netns, outer, inner_mac }
    }

    fn switch_port(&self, name: &str, index: usize, role: &'static str) -> SwitchPort {
        SwitchPort {
            name: name.into(),
            devargs: format!("net_af_packet{index},iface={}", self.outer),
            role,
            peer_mac: Some(self.inner_mac.clone()),
        }
    }
}

#[test]
fn kernel_hosts_ping_and_talk_tcp_through_the_switch() {
    let (a, b) = (Host::new("a", "10.9.0.1/24"), Host::new("b", "10.9.0.2/24"));
    let dir = scratch("kernel_hosts_ping_and_talk_tcp_through_the_switch");
    let config = two_port_switch(&a.switch_port("a", 0, "vm"), &b.switch_port("b", 1, "uplink"));
    let switch = RunningSwitch::start(&dir, &config);

    // Ping until the switch forwards (it needs a moment to start), then count losses.
    let ping = a.netns.ping("10.9.0.2", 20);
    assert!(ping.contains("20 packets transmitted, 20 received, 0% packet loss"), "{ping}");

    // TCP: fetch 1 MiB over HTTP from b (full-size frames both ways).
    let body = mebibyte();
    let got = http_transfer(&b.netns, &a.netns, "10.9.0.2", &dir.join("site"), &body);
    assert!(got == body, "fetched {} of {} bytes", got.len(), body.len());

    let stats = switch.stop().stats;
    assert_eq!(stats["unaccounted"], 0);
    assert_eq!(stats["dropped"], 0, "nothing to drop between two healthy hosts: {stats}");
    assert!(stats["tx_packets"].as_u64().unwrap() > 700, "1 MiB is more than 700 full-size frames");
}
