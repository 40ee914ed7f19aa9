//! The binary against real kernel interfaces (root only: it creates veth pairs).
mod common;

use std::process::Command;

use common::*;

/// A veth pair that is deleted when the test ends, pass or fail.
struct Veth {
    name: String,
}

impl Veth {
    fn new(tag: &str, mtu: u16) -> Veth {
        assert!(nix::unistd::geteuid().is_root(), "this test creates veth interfaces: run it as root (make test does)");
        let name = format!("sy{tag}{}", std::process::id() % 100_000);
        let veth = Veth { name };
        ip(&["link", "add", &veth.name, "type", "veth", "peer", "name", &veth.peer()]);
        for dev in [veth.name.clone(), veth.peer()] {
            ip(&["link", "set", &dev, "mtu", &mtu.to_string(), "up"]);
        }
        veth
    }

    fn peer(&self) -> String {
        format!("{}p", self.name)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.name]).status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("iproute2 is installed");
    assert!(status.success(), "ip {}", args.join(" "));
}

/// A frame larger than the interface MTU makes the kernel refuse the send
/// (EMSGSIZE); net_pcap then returns a short tx burst. The unsent tail is counted
/// as `tx_refused` and freed: nothing is lost silently, nothing leaks.
#[test]
fn the_unsent_tail_of_a_partial_tx_is_counted_and_freed() {
    let veth = Veth::new("mtu", 68);
    let dir = scratch("the_unsent_tail_of_a_partial_tx_is_counted_and_freed");
    let stats = dir.join("stats.json");
    let sample = repo().join("conf/samples/default-in.pcap");
    let toml = format!(
        r#"{ONE_WORKER}[[port]]
name = "in"
devargs = "net_pcap0,rx_pcap={}"
role = "vm"
forward_to = "small_mtu"
[[port]]
name = "small_mtu"
devargs = "net_pcap1,tx_iface={}"
role = "uplink"
"#,
        sample.display(),
        veth.name
    );
    let out = run_config(&dir, "run", &toml, &["--stats-json", stats.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = json(&stats);
    let forwarded = read_pcap(&sample).iter().filter(|f| f.len() >= 14).count() as u64;
    // The first frame (a 60-byte ARP request) fits the MTU; the 98-byte ICMP after it does not.
    let refused = stats["drops"]["tx_refused"].as_u64().unwrap();
    assert!(refused > 0, "{stats}");
    assert_eq!(stats["tx_packets"].as_u64().unwrap() + refused, forwarded);
    assert_eq!(stats["ports"][1]["tx_dropped"].as_u64().unwrap(), refused);
    assert_eq!(stats["unaccounted"], 0);
    assert_eq!(stats["mempool_in_use"], 0, "the refused mbufs were freed");
}
