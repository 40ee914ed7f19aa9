//! Layer 2 for the inter-cloud gateway (issue 7): the other cloud's VXLAN in on
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
next_hop_mac = "{NEXT_HOP}"
[[network]]
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
"#,
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
}
