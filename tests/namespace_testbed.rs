//! Layer 3: real kernel stacks talk through switchyard. Two network namespaces,
//! each behind a veth pair whose root end is a `net_af_packet` port; the ports
//! are cross-connected both ways. Root only; the namespaces are removed when the
//! test ends, pass or fail.
mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A network namespace with a veth pair: `outer` in the root namespace, `inner`
/// (with `address`) inside. Deleted on drop.
struct Host {
    netns: String,
    outer: String,
    inner_mac: String,
}

impl Host {
    fn new(tag: &str, address: &str) -> Host {
        assert!(nix::unistd::geteuid().is_root(), "this test creates network namespaces: run it as root (make test does)");
        let id = std::process::id() % 100_000;
        let mut host = Host { netns: format!("sy{tag}{id}"), outer: format!("sy{tag}{id}o"), inner_mac: String::new() };
        let inner = format!("sy{tag}{id}i");
        run(&["ip", "netns", "add", &host.netns]);
        run(&["ip", "link", "add", &host.outer, "type", "veth", "peer", "name", &inner, "netns", &host.netns]);
        run(&["ip", "link", "set", &host.outer, "up"]);
        run(&["ip", "-n", &host.netns, "addr", "add", address, "dev", &inner]);
        run(&["ip", "-n", &host.netns, "link", "set", &inner, "up"]);
        // AF_PACKET hands the switch what the kernel sent; with tx checksum offload
        // that is a TCP/UDP checksum covering only the pseudo-header, which the
        // receiving host would drop. Hosts behind af_packet ports compute checksums.
        run(&["ip", "netns", "exec", &host.netns, "ethtool", "-K", &inner, "tx", "off"]);
        run(&["ip", "-n", &host.netns, "link", "set", "lo", "up"]);
        let link = output(&["ip", "-n", &host.netns, "-br", "link", "show", &inner]);
        host.inner_mac = link.split_whitespace().nth(2).expect("ip -br link prints the MAC").to_string();
        host
    }

    fn exec(&self, command: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).args(command);
        cmd
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes the inner veth end, and with it the outer one.
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

fn run(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{}", args.join(" "));
}

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{}", args.join(" "));
    String::from_utf8(out.stdout).unwrap()
}

/// Kills a child process when dropped (a failed assertion must not leave it running).
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
fn kernel_hosts_ping_and_talk_tcp_through_the_switch() {
    let (a, b) = (Host::new("a", "10.9.0.1/24"), Host::new("b", "10.9.0.2/24"));
    let dir = scratch("kernel_hosts_ping_and_talk_tcp_through_the_switch");
    let stats = dir.join("stats.json");
    let config = dir.join("testbed.toml");
    std::fs::write(
        &config,
        format!(
            r#"{ONE_WORKER}[[port]]
name = "a"
devargs = "net_af_packet0,iface={}"
role = "vm"
forward_to = "b"
peer_mac = "{}"
[[port]]
name = "b"
devargs = "net_af_packet1,iface={}"
role = "uplink"
forward_to = "a"
peer_mac = "{}"
"#,
            a.outer, a.inner_mac, b.outer, b.inner_mac
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

    // Ping until the switch forwards (it needs a moment to start), then count losses.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.exec(&["ping", "-c", "1", "-W", "1", "10.9.0.2"]).output().unwrap().status.success() {
        assert!(Instant::now() < deadline, "no ping got through in 10 s");
    }
    let ping = a.exec(&["ping", "-c", "20", "-i", "0.05", "-W", "1", "10.9.0.2"]).output().unwrap();
    let ping_text = String::from_utf8_lossy(&ping.stdout);
    assert!(ping_text.contains("20 packets transmitted, 20 received, 0% packet loss"), "{ping_text}");

    // TCP: fetch 1 MiB over HTTP from b (full-size frames both ways).
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    let body: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(site.join("blob"), &body).unwrap();
    let server = Running(Some(
        b.exec(&["python3", "-m", "http.server", "--bind", "10.9.0.2", "8080", "--directory", site.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let fetch = "import sys, time, urllib.request\n\
                 for _ in range(20):\n\
                 \ttry:\n\t\tsys.stdout.buffer.write(urllib.request.urlopen('http://10.9.0.2:8080/blob', timeout=3).read()); break\n\
                 \texcept OSError: time.sleep(0.1)\n";
    let got = a.exec(&["python3", "-c", fetch]).output().unwrap();
    drop(server);
    assert!(got.stdout == body, "fetched {} of {} bytes: {}", got.stdout.len(), body.len(), String::from_utf8_lossy(&got.stderr));

    let out = switch.stop();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = json(&stats);
    assert_eq!(stats["unaccounted"], 0);
    assert_eq!(stats["dropped"], 0, "nothing to drop between two healthy hosts: {stats}");
    assert!(stats["tx_packets"].as_u64().unwrap() > 700, "1 MiB is more than 700 full-size frames");
}
