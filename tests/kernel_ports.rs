//! The binary against real kernel interfaces (root only: it creates veth pairs).
mod common;

use std::process::Command;

use common::switch::RunningSwitch;
use common::*;

/// A veth pair without IPv6 that is deleted when the test ends, pass or fail.
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
            // No IPv6 chatter of the kernel's own: the frames on the pair are the test's.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
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

/// A burst larger than a `net_af_packet` port's ring, sent while its worker sleeps: the kernel drops what does
/// not fit (counted per socket, PACKET_STATISTICS) and the port's `imissed` reports it, so every frame that
/// reached the interface is received or counted.
#[test]
fn frames_the_kernel_drops_at_a_full_af_packet_ring_are_counted_as_imissed() {
    let veth = Veth::new("ring", 1500);
    let dir = scratch("frames_the_kernel_drops_at_a_full_af_packet_ring_are_counted_as_imissed");
    let burst = dir.join("burst.pcap");
    let frame = |i: u16| [&[0xff; 6][..], &[2, 0, 0, 0, 0, 1], &[0x88, 0xb5], &i.to_be_bytes(), &[0; 44]].concat();
    write_pcap(&burst, &(0..2000).map(frame).collect::<Vec<_>>());
    // A 64-frame ring, and a worker that sleeps a second as soon as it finds nothing.
    let toml = format!(
        "[eal]\nlcores = \"0-1\"\nmemory_mb = 256\n[mempool]\nmbufs = 4095\n\
         [dataplane]\nworkers = [1]\nidle_sleep_us = 1000000\nidle_polls_before_sleep = 1\n\
         [[port]]\nname = \"ring\"\ndevargs = \"net_af_packet0,iface={},framecnt=64\"\nrole = \"vm\"\nforward_to = \"out\"\n\
         [[port]]\nname = \"out\"\ndevargs = \"net_null0,no-rx=1\"\nrole = \"uplink\"\nforward_to = \"ring\"\n",
        veth.name
    );
    let switch = RunningSwitch::start_running(&dir, &toml);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let sent = Command::new("tcpreplay")
        .args(["--intf1", &veth.peer(), "--topspeed"])
        .arg(&burst)
        .output()
        .expect("tcpreplay is installed (make deps)");
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    std::thread::sleep(std::time::Duration::from_millis(2500)); // the worker wakes and empties the ring
    let stats = switch.stop().stats;
    let counter = std::fs::read_to_string(format!("/sys/class/net/{}/statistics/rx_packets", veth.name)).unwrap();
    let arrived: u64 = counter.trim().parse().unwrap();
    let (received, missed) = (stats["ports"][0]["rx_packets"].as_u64().unwrap(), stats["ports"][0]["nic"]["imissed"].as_u64().unwrap());
    assert!(missed > 0, "2000 frames into a 64-frame ring, none missed: {stats}");
    assert_eq!(arrived, received + missed, "{stats}");
    assert_eq!(stats["unaccounted"], 0);
}
