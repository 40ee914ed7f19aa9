//! Overlay frames for the pcap tests: inner IPv4/UDP and ARP, VXLAN around them,
//! and what tshark and the stats say about the output.
use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::Value;
use switchyard::overlay::{encapsulate, Tunnel};
use switchyard::pipeline::{BytesPacket, PacketBuf};
use switchyard::wire::checksum::checksum;
use switchyard::wire::MacAddr;

/// The underlay next hop of the switch under test (its `next_hop_mac`), and the
/// outer source MAC of the VXLAN frames the tests send it.
pub(crate) const NEXT_HOP: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);

/// An IPv4/UDP frame 10.0.0.10 -> 10.0.0.20 with a valid IPv4 checksum.
pub(crate) fn udp_frame(dst: MacAddr, src: MacAddr, payload: usize, sport: u16) -> Vec<u8> {
    let mut f = [dst.0, src.0].concat();
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 28 + payload;
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 10, 10, 0, 0, 20];
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&[0x13, 0x88, ((8 + payload) >> 8) as u8, (8 + payload) as u8, 0, 0]);
    f.extend(std::iter::repeat_n(0x5a, payload));
    f
}

pub(crate) fn arp_request(sender: MacAddr, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = [MacAddr::BROADCAST.0, sender.0].concat();
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sender.0);
    f.extend_from_slice(&sender_ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip);
    f
}

/// `inner` as VXLAN from `src` to `dst` with the given flags and VNI.
pub(crate) fn vxlan(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr, flags: u8, vni: u32) -> Vec<u8> {
    let mut packet = BytesPacket::new(inner);
    let tunnel = Tunnel { vni, src_mac: NEXT_HOP, dst_mac: MacAddr([2, 0x70, 0x63, 0x61, 0x70, 2]), src_ip: src, dst_ip: dst, mtu: 9000 };
    encapsulate(&mut packet, &tunnel).unwrap();
    let mut frame = packet.data().to_vec();
    frame[42] = flags;
    frame
}

/// The fields tshark dissects from each VXLAN frame of `pcap`: "vni,src,dst,inner eth.dst".
pub(crate) fn tshark_vxlan(pcap: &Path) -> Vec<String> {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-T", "fields", "-E", "separator=,", "-e", "vxlan.vni", "-e", "ip.src", "-e", "ip.dst", "-e", "eth.dst"])
        .output()
        .expect("tshark");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

pub(crate) fn drops(stats: &Value, reason: &str) -> u64 {
    stats["drops"][reason].as_u64().unwrap_or_else(|| panic!("no drop reason {reason}"))
}
