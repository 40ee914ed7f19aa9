//! Layer 2 for the inter-cloud gateway: the other cloud's VXLAN in on
//! the uplink, re-encapsulated VXLAN out to the compute node of forwarding table
//! 2, tshark reading the output, and the stats naming every drop.
mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use common::overlay::*;
use common::*;
use serde_json::Value;
use switchyard::wire::MacAddr;

const GATEWAY_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The other cloud's gateway (or a compute node there): the sender of every input frame.
const OTHER_CLOUD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// A compute node of the gateway's cloud.
const COMPUTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
/// A VM of this cloud on COMPUTE_VTEP (table 2), 10.0.0.20.
const VM_C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0c]);
/// Table 2 says this VM is at OTHER_CLOUD: frames for it must not go back there.
const VM_LOOP: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0d]);
/// The sending VM in the other cloud, 10.0.0.10.
const VM_R: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);

struct Outputs {
    uplink: Vec<Vec<u8>>,
    uplink_pcap: PathBuf,
    stats: Value,
}

/// A gateway with one uplink (VTEP 192.0.2.1/24, fixed next hop), network 100
/// (the other cloud's VNI 200 mapped to it), table 2: VM_C at COMPUTE_VTEP and
/// VM_LOOP at OTHER_CLOUD.
fn run_gateway(test: &str, input: &[Vec<u8>]) -> Outputs {
    run_gateway_with(test, input, &format!("next_hop_mac = \"{NEXT_HOP}\"\n"), "")
}

/// `uplink_lines` go into the uplink's `[[port]]` (the next hop's MAC, or not),
/// `more` at the end of the config.
fn run_gateway_with(test: &str, input: &[Vec<u8>], uplink_lines: &str, more: &str) -> Outputs {
    let dir = scratch(test);
    let (input_pcap, uplink_pcap) = (dir.join("uplink-in.pcap"), dir.join("uplink-out.pcap"));
    write_pcap(&input_pcap, input);
    let toml = format!(
        r#"{ONE_WORKER}[control]
socket = "{dir}/api.sock"
database = "{dir}/config.redb"
[[port]]
name = "uplink"
devargs = "net_pcap0,rx_pcap={input},tx_pcap={output}"
role = "uplink"
address = "{GATEWAY_VTEP}/24"
{uplink_lines}[[network]]
vni = 100
name = "blue"
[[remote]]
vni = 100
mac = "{VM_C}"
ip = "10.0.0.20"
vtep = "{COMPUTE_VTEP}"
[[remote]]
vni = 100
mac = "{VM_LOOP}"
vtep = "{OTHER_CLOUD}"
[gateway]
[[gateway.vni_map]]
remote_vni = 200
local_vni = 100
{more}"#,
        dir = dir.display(),
        input = input_pcap.display(),
        output = uplink_pcap.display(),
    );
    let stats = dir.join("stats.json");
    let out = run_config(&dir, "gateway", &toml, &["--stats-json", stats.to_str().unwrap()]);
    assert!(out.status.success(), "switchyard failed: {}", String::from_utf8_lossy(&out.stderr));
    let stats = json(&stats);
    assert_eq!(stats["unaccounted"], 0, "{stats}");
    assert_eq!(stats["mempool_in_use"], 0);
    Outputs { uplink: read_pcap(&uplink_pcap), uplink_pcap, stats }
}

fn from_other_cloud(inner: &[u8], flags: u8, vni: u32) -> Vec<u8> {
    vxlan(inner, OTHER_CLOUD, GATEWAY_VTEP, flags, vni)
}

#[test]
fn the_other_clouds_vxlan_is_re_encapsulated_to_the_compute_node_with_the_local_vni() {
    let frames: Vec<Vec<u8>> = (0..4).map(|i| udp_frame(VM_C, VM_R, 100, 1000 + i)).collect();
    let input: Vec<Vec<u8>> = frames.iter().enumerate().map(|(i, f)| from_other_cloud(f, 0x08, [100, 200][i % 2])).collect();
    let out = run_gateway("re_encapsulated_to_the_compute_node", &input);
    assert_eq!(out.uplink.len(), 4);
    for (got, inner) in out.uplink.iter().zip(&frames) {
        assert_eq!(&got[50..], &inner[..], "the inner frame is carried unchanged");
        assert_eq!(&got[0..6], &NEXT_HOP.0);
    }
    assert_eq!(tshark_problems(&out.uplink_pcap), Vec::<String>::new(), "valid checksums");
    for line in tshark_vxlan(&out.uplink_pcap) {
        // Outer then inner addresses; VNI 200 became 100.
        assert_eq!(line, format!("100,{GATEWAY_VTEP},10.0.0.10,{COMPUTE_VTEP},10.0.0.20,{NEXT_HOP},{VM_C}"), "tshark reads VXLAN");
    }
    assert_eq!(out.stats["dropped"], 0);
    assert_eq!(out.stats["ports"][0]["rx_relayed"], 4, "hop 2 counted on the uplink: {}", out.stats["ports"]);
}

#[test]
fn arp_for_a_table_2_vm_is_answered_back_through_the_tunnel_and_every_drop_is_named() {
    let to_c = udp_frame(VM_C, VM_R, 20, 7);
    let known_arp = arp_request(VM_R, [10, 0, 0, 10], [10, 0, 0, 20]);
    let mut truncated_inner = from_other_cloud(&to_c[..10], 0x08, 100);
    truncated_inner.truncate(14 + 20 + 8 + 8 + 10);
    let input = vec![
        from_other_cloud(&known_arp, 0x08, 200),
        from_other_cloud(&udp_frame(MacAddr([2, 0, 0, 0, 0, 0x99]), VM_R, 20, 7), 0x08, 100),
        from_other_cloud(&udp_frame(VM_LOOP, VM_R, 20, 7), 0x08, 200),
        from_other_cloud(&to_c, 0x08, 4242),
        from_other_cloud(&to_c, 0x00, 100),
        truncated_inner,
        from_other_cloud(&arp_request(VM_R, [10, 0, 0, 10], [10, 0, 0, 99]), 0x08, 100),
        from_other_cloud(&udp_frame(MacAddr::BROADCAST, VM_R, 20, 7), 0x08, 100),
    ];
    let out = run_gateway("arp_answered_and_drops_named", &input);
    assert_eq!(out.uplink.len(), 1, "only the ARP reply leaves");
    let reply = &out.uplink[0][50..];
    assert_eq!((&reply[0..6], &reply[6..12], &reply[20..22]), (&VM_R.0[..], &VM_C.0[..], &[0, 2][..]), "VM_C's reply to VM_R");
    assert_eq!(&reply[28..32], &[10, 0, 0, 20]);
    assert_eq!(tshark_problems(&out.uplink_pcap), Vec::<String>::new());
    assert_eq!(
        tshark_vxlan(&out.uplink_pcap),
        vec![format!("200,{GATEWAY_VTEP},{OTHER_CLOUD},{NEXT_HOP},{VM_R}")],
        "back to the asker's VTEP with the VNI it asked in"
    );
    for (reason, count) in [
        ("gateway_unknown_destination", 1),
        ("relay_loop", 1),
        ("unknown_vni", 1),
        ("vxlan_flag_not_set", 1),
        ("truncated_inner_ethernet", 1),
        ("gateway_broadcast", 2),
    ] {
        assert_eq!(drops(&out.stats, reason), count, "{reason}: {}", out.stats["drops"]);
    }
    assert_eq!(out.stats["dropped"], 7);
    assert_eq!(out.stats["ports"][0]["rx_relayed"], 1, "the ARP reply went back out the uplink");
}

/// The compute node's VTEP answers the gateway's ARP request with this MAC.
const COMPUTE_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x55]);

fn arp_reply_from_compute_node() -> Vec<u8> {
    let mut f = [MacAddr([2, 0x70, 0x63, 0x61, 0x70, 0]).0, COMPUTE_MAC.0].concat();
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&COMPUTE_MAC.0);
    f.extend_from_slice(&COMPUTE_VTEP.octets());
    f.extend_from_slice(&[2, 0x70, 0x63, 0x61, 0x70, 0]);
    f.extend_from_slice(&GATEWAY_VTEP.octets());
    f
}

/// Hop 2 to a compute node whose MAC nobody configured (docs/tunnels.md): the
/// first frame brings the tunnel up, it and the frames after it wait while the
/// gateway asks ARP for the VTEP, then go out in order with the MAC the reply
/// taught; none is lost.
#[test]
fn a_tunnel_comes_up_on_the_first_frame_and_the_frames_that_waited_go_out_in_order() {
    let frames: Vec<Vec<u8>> = (0..8).map(|i| udp_frame(VM_C, VM_R, 40, 2000 + i)).collect();
    let mut input: Vec<Vec<u8>> = frames[..5].iter().map(|f| from_other_cloud(f, 0x08, 100)).collect();
    input.push(arp_reply_from_compute_node());
    input.extend(frames[5..].iter().map(|f| from_other_cloud(f, 0x08, 100)));
    let out = run_gateway_with("tunnel_comes_up", &input, "", "");

    let arp_request = |f: &Vec<u8>| f[12..14] == [0x08, 0x06] && f[21] == 1 && f[38..42] == COMPUTE_VTEP.octets();
    let first_vxlan = out.uplink.iter().position(|f| f[12..14] == [0x08, 0x00]).expect("VXLAN out");
    assert!(out.uplink[..first_vxlan].iter().any(arp_request), "an ARP request for the compute node's VTEP first");
    let sent: Vec<&Vec<u8>> = out.uplink.iter().filter(|f| f[12..14] == [0x08, 0x00]).collect();
    assert_eq!(sent.len(), 8, "every frame went out");
    for (got, inner) in sent.iter().zip(&frames) {
        assert_eq!(&got[0..6], &COMPUTE_MAC.0, "to the MAC the ARP reply taught");
        assert_eq!(&got[50..], &inner[..], "in the order they came");
    }
    assert_eq!(tshark_problems(&out.uplink_pcap), Vec::<String>::new());
    let tunnels = &out.stats["tunnels"];
    assert!(tunnels["queued"].as_u64() >= Some(5), "the first five waited at least: {tunnels}");
    assert_eq!((&tunnels["released"], &tunnels["dropped"], &tunnels["waiting"]), (&tunnels["queued"], &0.into(), &0.into()));
    assert_eq!(out.stats["dropped"], 0, "{}", out.stats["drops"]);
}

/// Nobody answers: after `resolve_timeout_ms` the waiting frames are dropped
/// under their name, and the ARP request was repeated meanwhile.
#[test]
fn frames_for_a_tunnel_that_never_comes_up_are_dropped_as_tunnel_unresolved() {
    let input: Vec<Vec<u8>> = (0..3).map(|i| from_other_cloud(&udp_frame(VM_C, VM_R, 40, 3000 + i), 0x08, 100)).collect();
    let out = run_gateway_with("tunnel_never_comes_up", &input, "", "[tunnels]\nresolve_timeout_ms = 300\n");
    let requests = out.uplink.iter().filter(|f| f[12..14] == [0x08, 0x06]).count();
    assert!(requests >= 2, "the ARP request is repeated (every 100 ms): {requests}");
    assert_eq!(out.uplink.len(), requests, "nothing but ARP requests left");
    assert_eq!(drops(&out.stats, "tunnel_unresolved"), 3);
    assert_eq!((&out.stats["tunnels"]["queued"], &out.stats["tunnels"]["dropped"]), (&3.into(), &3.into()));
}
