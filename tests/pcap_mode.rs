//! Layer 2: the binary in pcap software-NIC mode. A known pcap goes in, the
//! output pcap is read back and compared frame by frame, tshark checks it, and
//! the stats account for every packet.
mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];

fn sample() -> std::path::PathBuf {
    repo().join("conf/samples/default-in.pcap")
}

/// Two pcap ports cross-connected in one direction, one worker.
fn pcap_config(input: &Path, output: &Path, extra_port_keys: &str) -> String {
    format!(
        r#"{ONE_WORKER}[[port]]
name = "vm0"
devargs = "net_pcap0,rx_pcap={input}"
role = "vm"
{extra_port_keys}
[[port]]
name = "uplink0"
devargs = "net_pcap1,tx_pcap={output}"
role = "uplink"
peer_mac = "02:00:00:00:0b:01"
"#,
        input = input.display(),
        output = output.display(),
    )
}

fn port<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
}

#[test]
fn sample_is_cross_connected_frame_by_frame() {
    let dir = scratch("sample_is_cross_connected_frame_by_frame");
    let (output, stats) = (dir.join("out.pcap"), dir.join("stats.json"));
    let out = run_config(&dir, "run", &pcap_config(&sample(), &output, r#"forward_to = "uplink0""#), &[
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "switchyard failed: {}", String::from_utf8_lossy(&out.stderr));

    let input = read_pcap(&sample());
    let written = read_pcap(&output);
    let stats = json(&stats);
    let uplink_mac: Vec<u8> =
        port(&stats, "uplink0")["mac"].as_str().unwrap().split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    // Every frame but the runt comes out, in order, with only its addresses rewritten.
    let expected: Vec<Vec<u8>> = input
        .iter()
        .filter(|f| f.len() >= 14)
        .map(|f| [&PEER_MAC[..], &uplink_mac, &f[12..]].concat())
        .collect();
    assert_eq!(written.len(), expected.len());
    for (i, (got, want)) in written.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "frame {i}");
    }
    assert_eq!(tshark_problems(&output), Vec::<String>::new());

    // rx = tx + counted drops, per port and in total.
    assert_eq!(stats["rx_packets"], input.len() as u64);
    assert_eq!(stats["tx_packets"], expected.len() as u64);
    assert_eq!(stats["dropped"], 1);
    assert_eq!(stats["unaccounted"], 0);
    assert_eq!(stats["drops"]["truncated_ethernet"], 1);
    assert_eq!(port(&stats, "vm0")["rx_packets"], input.len() as u64);
    assert_eq!(port(&stats, "vm0")["rx_dropped"], 1);
    assert_eq!(port(&stats, "uplink0")["tx_packets"], expected.len() as u64);
    assert_eq!(port(&stats, "uplink0")["nic"]["opackets"], expected.len() as u64);
    assert_eq!(stats["mempool_in_use"], 0, "every mbuf went back to the pool");

    // The text summary says the same.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("total rx {} = tx {} + dropped 1", input.len(), expected.len())), "{text}");
    assert!(text.contains("drop truncated_ethernet"), "{text}");
}

/// Without `forward_to` the vRouter forwards; a VM port in no network has
/// nowhere to send anything.
#[test]
fn vm_port_in_no_network_drops_by_name() {
    let dir = scratch("vm_port_in_no_network_drops_by_name");
    let (output, stats) = (dir.join("out.pcap"), dir.join("stats.json"));
    let control = format!("[control]\ndatabase = \"{}\"\n", dir.join("config.redb").display());
    let out = run_config(&dir, "run", &(pcap_config(&sample(), &output, "") + &control), &["--stats-json", stats.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = json(&stats);
    let frames = read_pcap(&sample()).len() as u64;
    assert_eq!(stats["drops"]["port_not_in_network"], frames);
    assert_eq!(stats["tx_packets"], 0);
    assert_eq!(read_pcap(&output).len(), 0, "the output pcap exists and is empty");
}

#[test]
fn multi_segment_mbufs_are_dropped_by_name() {
    let dir = scratch("multi_segment_mbufs_are_dropped_by_name");
    let (input, output, stats) = (dir.join("in.pcap"), dir.join("out.pcap"), dir.join("stats.json"));
    // A 9000-byte jumbo frame does not fit one 2048-byte mbuf: net_pcap chains segments.
    let mut jumbo = vec![0u8; 9000];
    jumbo[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    let small = read_pcap(&sample())[1].clone();
    write_pcap(&input, &[small.clone(), jumbo, small]);
    let out = run_config(&dir, "run", &pcap_config(&input, &output, r#"forward_to = 1"#), &["--stats-json", stats.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = json(&stats);
    assert_eq!(stats["drops"]["multi_segment_mbuf"], 1);
    assert_eq!(stats["tx_packets"], 2);
    assert_eq!(read_pcap(&output).len(), 2);
}

#[test]
fn sigterm_stops_cleanly_and_completes_the_output() {
    let dir = scratch("sigterm_stops_cleanly_and_completes_the_output");
    let output = dir.join("out.pcap");
    // A live port (net_null receives forever) keeps the run going until a signal.
    let toml = pcap_config(&sample(), &output, r#"forward_to = "uplink0""#)
        + "[[port]]\nname = \"live\"\ndevargs = \"net_null0\"\nrole = \"vm\"\n";
    let path = dir.join("run.toml");
    std::fs::write(&path, toml).unwrap();
    let stats = dir.join("stats.json");
    let child = switchyard()
        .args(["run", "--config", path.to_str().unwrap(), "--stats-json", stats.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = json(&stats);
    assert_eq!(stats["unaccounted"], 0);
    assert!(port(&stats, "live")["rx_packets"].as_u64().unwrap() > 0);
    assert_eq!(port(&stats, "live")["rx_dropped"], port(&stats, "live")["rx_packets"], "no route for the live port");
    // The pcap port finished its input long before the signal; its file is complete.
    assert_eq!(read_pcap(&output).len(), read_pcap(&sample()).len() - 1);
    assert_eq!(tshark_problems(&output), Vec::<String>::new());
}
