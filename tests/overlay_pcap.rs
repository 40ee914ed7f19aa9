//! Layer 2 for the vRouter: pcaps in on VM ports and the uplink, pcaps out,
//! tshark dissecting the output as VXLAN with valid checksums, and the stats
//! naming every drop.
mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use common::overlay::*;
use common::*;
use serde_json::Value;
use switchyard::wire::MacAddr;

const VM_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const VM_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
const REMOTE_VM: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x14]);
const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const FLOOD_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

/// Input pcaps per port (missing = the port receives nothing).
struct Inputs<'a> {
    vm0: &'a [Vec<u8>],
    vm1: &'a [Vec<u8>],
    uplink: &'a [Vec<u8>],
}

struct Outputs {
    vm0: Vec<Vec<u8>>,
    vm1: Vec<Vec<u8>>,
    uplink: Vec<Vec<u8>>,
    uplink_pcap: PathBuf,
    stats: Value,
}

/// vm0 (endpoint VM_A 10.0.0.10) and vm1 (VM_B) in VNI 100, a remote endpoint
/// REMOTE_VM at REMOTE_VTEP, flood list [FLOOD_VTEP], the uplink VTEP
/// 192.0.2.1/24 with a fixed next-hop MAC and MTU `mtu`.
fn run_vrouter(test: &str, inputs: Inputs, mtu: u16) -> Outputs {
    let dir = scratch(test);
    let port = |name: &str, index: usize, frames: &[Vec<u8>]| -> (String, PathBuf) {
        let (input, output) = (dir.join(format!("{name}-in.pcap")), dir.join(format!("{name}-out.pcap")));
        write_pcap(&input, frames);
        (format!("net_pcap{index},rx_pcap={},tx_pcap={}", input.display(), output.display()), output)
    };
    let (vm0, vm0_out) = port("vm0", 0, inputs.vm0);
    let (vm1, vm1_out) = port("vm1", 1, inputs.vm1);
    let (uplink, uplink_out) = port("uplink", 2, inputs.uplink);
    let toml = format!(
        r#"{ONE_WORKER}[control]
socket = "{dir}/api.sock"
database = "{dir}/config.redb"
[[port]]
name = "vm0"
devargs = "{vm0}"
role = "vm"
[[port]]
name = "vm1"
devargs = "{vm1}"
role = "vm"
vni = 100
[[port]]
name = "uplink"
devargs = "{uplink}"
role = "uplink"
address = "{LOCAL_VTEP}/24"
next_hop_mac = "{NEXT_HOP}"
mtu = {mtu}
[[network]]
vni = 100
name = "blue"
flood_vteps = ["{FLOOD_VTEP}"]
[[endpoint]]
vni = 100
mac = "{VM_A}"
ip = "10.0.0.10"
port = "vm0"
[[remote]]
vni = 100
mac = "{REMOTE_VM}"
ip = "10.0.0.20"
vtep = "{REMOTE_VTEP}"
"#,
        dir = dir.display()
    );
    let stats = dir.join("stats.json");
    let out = run_config(&dir, "run", &toml, &["--stats-json", stats.to_str().unwrap()]);
    assert!(out.status.success(), "switchyard failed: {}", String::from_utf8_lossy(&out.stderr));
    let stats = json(&stats);
    assert_eq!(stats["unaccounted"], 0, "{stats}");
    assert_eq!(stats["mempool_in_use"], 0);
    Outputs { vm0: read_pcap(&vm0_out), vm1: read_pcap(&vm1_out), uplink: read_pcap(&uplink_out), uplink_pcap: uplink_out, stats }
}

#[test]
fn vm_frames_to_a_remote_endpoint_leave_vxlan_encapsulated() {
    let frames: Vec<Vec<u8>> = (0..4).map(|i| udp_frame(REMOTE_VM, VM_A, 100, 1000 + i)).collect();
    let too_big = udp_frame(REMOTE_VM, VM_A, 600 - 36 - 42 + 1, 1);
    let fits = udp_frame(REMOTE_VM, VM_A, 600 - 36 - 42, 1);
    let input = [frames.clone(), vec![too_big, fits.clone()]].concat();
    let out = run_vrouter("vm_frames_to_a_remote_endpoint", Inputs { vm0: &input, vm1: &[], uplink: &[] }, 600);
    assert_eq!(out.uplink.len(), 5);
    for (got, inner) in out.uplink.iter().zip(frames.iter().chain([&fits])) {
        assert_eq!(&got[50..], &inner[..], "the inner frame is carried unchanged");
        assert_eq!(&got[0..6], &NEXT_HOP.0);
    }
    assert_eq!(out.uplink[4].len() - 14, 600, "the largest packet fitting the MTU");
    assert_eq!(tshark_problems(&out.uplink_pcap), Vec::<String>::new());
    let dissected = tshark_vxlan(&out.uplink_pcap);
    assert_eq!(dissected.len(), 5);
    for line in dissected {
        // Outer then inner addresses, as tshark lists them after dissecting the VXLAN payload.
        assert_eq!(line, format!("100,{LOCAL_VTEP},10.0.0.10,{REMOTE_VTEP},10.0.0.20,{NEXT_HOP},{REMOTE_VM}"), "tshark reads VXLAN");
    }
    assert_eq!(drops(&out.stats, "exceeds_uplink_mtu"), 1);
    assert!(out.vm0.is_empty() && out.vm1.is_empty());
}

#[test]
fn broadcast_floods_locally_and_to_the_flood_list_and_known_arp_is_answered() {
    let unknown_arp = arp_request(VM_A, [10, 0, 0, 10], [10, 0, 0, 99]);
    let known_arp = arp_request(VM_A, [10, 0, 0, 10], [10, 0, 0, 20]);
    let b_to_a = udp_frame(VM_A, VM_B, 30, 9);
    let vm1_input = [b_to_a.clone()];
    let out = run_vrouter("broadcast_floods", Inputs { vm0: &[unknown_arp.clone(), known_arp], vm1: &vm1_input, uplink: &[] }, 1500);
    assert_eq!(out.vm1, vec![unknown_arp.clone()], "flooded to the other VM port only once");
    assert_eq!(out.uplink.len(), 1, "one head-end replica");
    assert_eq!(&out.uplink[0][50..], &unknown_arp[..]);
    assert_eq!(tshark_vxlan(&out.uplink_pcap), vec![format!("100,{LOCAL_VTEP},{FLOOD_VTEP},{NEXT_HOP},ff:ff:ff:ff:ff:ff")]);
    assert_eq!(tshark_problems(&out.uplink_pcap), Vec::<String>::new());
    assert_eq!(out.vm0.len(), 2, "the ARP reply and vm1's frame");
    assert!(out.vm0.contains(&b_to_a), "switched from vm1 to the endpoint's port");
    let reply = out.vm0.iter().find(|f| f[12..14] == [0x08, 0x06]).expect("the known target is answered on the asking port");
    assert_eq!(&reply[0..6], &VM_A.0);
    assert_eq!(&reply[20..22], &[0, 2], "an ARP reply");
    assert_eq!(&reply[22..28], &REMOTE_VM.0, "REMOTE_VM is at 10.0.0.20");
    assert_eq!(out.stats["made"], 1, "one copy made for the flood");
    // Per network (vm1 is bound to VNI 100, vm0 to no network): vm1 sent b_to_a and got the flood copy.
    let networks = &out.stats["features"]["vni-counters"]["networks"];
    let expected = serde_json::json!([{
        "vni": 100,
        "from_vms_packets": 1, "from_vms_bytes": b_to_a.len(),
        "to_vms_packets": 1, "to_vms_bytes": unknown_arp.len(),
    }]);
    assert_eq!(networks, &expected, "{}", out.stats["features"]);
}

#[test]
fn vxlan_from_the_uplink_is_delivered_and_every_bad_packet_is_named() {
    let to_a = udp_frame(VM_A, REMOTE_VM, 20, 7);
    let broadcast = udp_frame(MacAddr::BROADCAST, REMOTE_VM, 20, 7);
    let good = vxlan(&to_a, REMOTE_VTEP, LOCAL_VTEP, 0x08, 100);
    let mut truncated_outer = good[..14 + 10].to_vec();
    truncated_outer.resize(14 + 10, 0);
    let mut truncated_inner = vxlan(&to_a[..10], REMOTE_VTEP, LOCAL_VTEP, 0x08, 100);
    truncated_inner.truncate(14 + 20 + 8 + 8 + 10);
    let input = vec![
        good.clone(),
        vxlan(&broadcast, REMOTE_VTEP, LOCAL_VTEP, 0x08, 100),
        vxlan(&to_a, REMOTE_VTEP, LOCAL_VTEP, 0x00, 100),
        vxlan(&to_a, REMOTE_VTEP, LOCAL_VTEP, 0x08, 4242),
        vxlan(&to_a, REMOTE_VTEP, Ipv4Addr::new(192, 0, 2, 99), 0x08, 100),
        truncated_outer,
        truncated_inner,
    ];
    let out = run_vrouter("vxlan_from_the_uplink", Inputs { vm0: &[], vm1: &[], uplink: &input }, 1500);
    assert_eq!(out.vm0, vec![to_a, broadcast.clone()], "decapsulated, to the endpoint's port");
    assert_eq!(out.vm1, vec![broadcast], "broadcast to every VM port of the VNI, never back to a VTEP");
    assert!(out.uplink.is_empty(), "split horizon");
    for reason in ["vxlan_flag_not_set", "unknown_vni", "vxlan_wrong_destination", "malformed_outer_ipv4", "truncated_inner_ethernet"] {
        assert_eq!(drops(&out.stats, reason), 1, "{reason}: {}", out.stats["drops"]);
    }
    assert_eq!(out.stats["dropped"], 5);
}

/// `frame` (VXLAN from `vxlan`) with outer TTL `ttl` and the IPv4 checksum refilled.
fn with_outer_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    frame[14 + 8] = ttl;
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = switchyard::wire::checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    frame
}

#[test]
fn vxlan_from_martian_sources_or_with_ttl_zero_is_dropped_by_name() {
    let to_a = udp_frame(VM_A, MacAddr([2, 0, 0, 0, 0, 0x66]), 20, 7);
    let martians = [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(224, 0, 0, 5),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(240, 0, 0, 1),
        LOCAL_VTEP,
    ];
    let mut input: Vec<Vec<u8>> = martians.iter().map(|&source| vxlan(&to_a, source, LOCAL_VTEP, 0x08, 100)).collect();
    input.push(with_outer_ttl(vxlan(&to_a, REMOTE_VTEP, LOCAL_VTEP, 0x08, 100), 0));
    input.push(with_outer_ttl(vxlan(&to_a, REMOTE_VTEP, LOCAL_VTEP, 0x08, 100), 1));
    let out = run_vrouter("vxlan_from_martian_sources", Inputs { vm0: &[], vm1: &[], uplink: &input }, 1500);
    assert_eq!(out.vm0, vec![to_a], "only the frame from a real VTEP is delivered");
    assert!(out.vm1.is_empty() && out.uplink.is_empty());
    assert_eq!(drops(&out.stats, "martian_outer_source"), martians.len() as u64, "{}", out.stats["drops"]);
    assert_eq!(drops(&out.stats, "outer_ttl_zero"), 1);
    assert_eq!(out.stats["dropped"], martians.len() as u64 + 1);
}
