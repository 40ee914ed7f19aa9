//! Layer 2 for address migration: pcaps into the VM's port, a peer's
//! port and the uplink (VXLAN), through the binary; every output frame must
//! equal the same frame built from scratch with the rewritten addresses, and
//! tshark, dissecting VXLAN and ICMP errors, must find every checksum valid
//! (IPv4, TCP, UDP, ICMP, and the headers quoted in ICMP errors; fragments
//! reassembled). Malformed input is counted under its named drop reason.
mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use common::frames::*;
use common::*;
use serde_json::Value;
use switchyard::overlay::{encapsulate, Tunnel};
use switchyard::pipeline::{BytesPacket, PacketBuf};
use switchyard::wire::address_report::{kind, REPORT_ADDRESS, REPORT_PORT};
use switchyard::wire::checksum::checksum;
use switchyard::wire::{AddressReport, MacAddr, ReportStatus};

const VM_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const VM_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
const REMOTE_VM: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x14]);
const NEXT_HOP: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);
const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// VM A's primary IP (what peers use) and where it lives now.
const PRIMARY: [u8; 4] = [10, 1, 0, 5];
const POST: [u8; 4] = [10, 2, 0, 5];
/// VM B on vm1, and the VM behind the remote VTEP.
const PEER: [u8; 4] = [10, 1, 0, 1];
const REMOTE: [u8; 4] = [10, 1, 0, 20];

fn icmp(msg_type: u8, code: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![msg_type, code, 0, 0, 0, 0, 0, 0];
    if msg_type == 8 {
        m[4..8].copy_from_slice(&[0x12, 0x34, 0, 1]);
    }
    m.extend_from_slice(payload);
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn frame(dst_mac: MacAddr, src_mac: MacAddr, ip: Vec<u8>) -> Vec<u8> {
    ethernet(dst_mac, src_mac, 0x0800, &ip)
}

fn arp(dst: MacAddr, operation: u16, sender: (MacAddr, [u8; 4]), target: (MacAddr, [u8; 4])) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0, 6, 4];
    a.extend_from_slice(&operation.to_be_bytes());
    a.extend_from_slice(&sender.0 .0);
    a.extend_from_slice(&sender.1);
    a.extend_from_slice(&target.0 .0);
    a.extend_from_slice(&target.1);
    ethernet(dst, sender.0, 0x0806, &a)
}

/// `inner` as VXLAN from the remote VTEP, as the remote vRouter sends it.
fn vxlan(inner: &[u8]) -> Vec<u8> {
    let mut packet = BytesPacket::new(inner);
    let tunnel = Tunnel { vni: 100, src_mac: NEXT_HOP, dst_mac: MacAddr([2, 0x70, 0x63, 0x61, 0x70, 2]), src_ip: REMOTE_VTEP, dst_ip: LOCAL_VTEP, mtu: 9000 };
    encapsulate(&mut packet, &tunnel).unwrap();
    packet.data().to_vec()
}

/// VM A's report "PRIMARY now at POST", sent from POST.
fn report(magic: &[u8; 4]) -> Vec<u8> {
    let mut message = [0u8; 20];
    AddressReport::new_unchecked(&mut message[..]).emit(kind::REPORT, 0, 77, PRIMARY.into(), POST.into());
    message[0..4].copy_from_slice(magic);
    let to = REPORT_ADDRESS.octets();
    frame(MacAddr::BROADCAST, VM_A, ipv4(POST, to, UDP, 0, &udp(POST, to, (40000, REPORT_PORT), &message, true)))
}

struct Outputs {
    vm0: Vec<Vec<u8>>,
    vm1: Vec<Vec<u8>>,
    uplink: Vec<Vec<u8>>,
    pcaps: [PathBuf; 3],
    stats: Value,
}

/// VM A on vm0 (endpoint at POST), VM B on vm1 (endpoint at PEER), REMOTE
/// behind the remote VTEP, all in network 100; PRIMARY migrated to POST on vm0.
fn run(test: &str, vm0: &[Vec<u8>], vm1: &[Vec<u8>], uplink: &[Vec<u8>]) -> Outputs {
    let dir = scratch(test);
    let port = |name: &str, index: usize, frames: &[Vec<u8>]| -> (String, PathBuf) {
        let (input, output) = (dir.join(format!("{name}-in.pcap")), dir.join(format!("{name}-out.pcap")));
        write_pcap(&input, frames);
        (format!("net_pcap{index},rx_pcap={},tx_pcap={}", input.display(), output.display()), output)
    };
    let (vm0_dev, vm0_out) = port("vm0", 0, vm0);
    let (vm1_dev, vm1_out) = port("vm1", 1, vm1);
    let (uplink_dev, uplink_out) = port("uplink", 2, uplink);
    let ip = |a: [u8; 4]| Ipv4Addr::from(a);
    let toml = format!(
        r#"{ONE_WORKER}[control]
socket = "{dir}/api.sock"
database = "{dir}/config.redb"
[[port]]
name = "vm0"
devargs = "{vm0_dev}"
role = "vm"
[[port]]
name = "vm1"
devargs = "{vm1_dev}"
role = "vm"
[[port]]
name = "uplink"
devargs = "{uplink_dev}"
role = "uplink"
address = "{LOCAL_VTEP}/24"
next_hop_mac = "{NEXT_HOP}"
[[network]]
vni = 100
name = "blue"
[[endpoint]]
vni = 100
mac = "{VM_A}"
ip = "{post}"
port = "vm0"
[[endpoint]]
vni = 100
mac = "{VM_B}"
ip = "{peer}"
port = "vm1"
[[remote]]
vni = 100
mac = "{REMOTE_VM}"
ip = "{remote}"
vtep = "{REMOTE_VTEP}"
[[address_migration]]
vni = 100
primary_ip = "{primary}"
post_migration_ip = "{post}"
port = "vm0"
"#,
        dir = dir.display(),
        post = ip(POST),
        peer = ip(PEER),
        remote = ip(REMOTE),
        primary = ip(PRIMARY),
    );
    let stats = dir.join("stats.json");
    let out = run_config(&dir, "run", &toml, &["--stats-json", stats.to_str().unwrap()]);
    assert!(out.status.success(), "switchyard failed: {}", String::from_utf8_lossy(&out.stderr));
    let stats = json(&stats);
    assert_eq!(stats["unaccounted"], 0, "{stats}");
    assert_eq!(stats["mempool_in_use"], 0);
    Outputs {
        vm0: read_pcap(&vm0_out),
        vm1: read_pcap(&vm1_out),
        uplink: read_pcap(&uplink_out),
        pcaps: [vm0_out, vm1_out, uplink_out],
        stats,
    }
}

/// Fields tshark dissects from every frame of `pcap` (with `-E occurrence=a`:
/// all occurrences, outer first, comma separated).
fn tshark_fields(pcap: &Path, fields: &[&str]) -> Vec<String> {
    let mut cmd = std::process::Command::new("tshark");
    cmd.arg("-r").arg(pcap).args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]);
    for field in fields {
        cmd.args(["-e", field]);
    }
    let out = cmd.output().expect("tshark");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

fn sorted(mut frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frames.sort();
    frames
}

#[test]
fn every_direction_and_case_is_rewritten_with_valid_checksums() {
    // What VM A once sent from its primary IP, quoted in errors coming back.
    let a_udp = |from: [u8; 4]| ipv4(from, REMOTE, UDP, 0x4000, &udp(from, REMOTE, (5000, 6000), b"question", true));
    let a_tcp = |from: [u8; 4]| {
        let mut packet = ipv4(from, REMOTE, TCP, 0x4000, &tcp(from, REMOTE, b"GET / HTTP/1.1\r\n"));
        packet.truncate(28); // IPv4 header + 64 bits (RFC 792)
        packet
    };
    // A 200-byte UDP datagram to the VM in two fragments (the first carries the UDP header).
    let big: Vec<u8> = (0..200).map(|i| i as u8).collect();
    let fragments = |to: [u8; 4]| {
        let datagram = udp(REMOTE, to, (7000, 7001), &big, true);
        (ipv4(REMOTE, to, UDP, 0x2000, &datagram[..104]), ipv4(REMOTE, to, UDP, 104 / 8, &datagram[104..]))
    };
    // From the peer on vm1, to VM A at its primary IP.
    let peer_in = |to: [u8; 4]| {
        vec![
            frame(VM_A, VM_B, ipv4(PEER, to, UDP, 0x4000, &udp(PEER, to, (1000, 2000), b"hello VM A", true))),
            frame(VM_A, VM_B, ipv4(PEER, to, TCP, 0x4000, &tcp(PEER, to, b"some bytes of a stream"))),
            frame(VM_A, VM_B, ipv4(PEER, to, ICMP, 0x4000, &icmp(8, 0, b"ping payload"))),
            frame(VM_A, VM_B, ipv4(PEER, to, UDP, 0x4000, &udp(PEER, to, (1000, 2001), b"no checksum", false))),
        ]
    };
    // From the remote VM over VXLAN: a datagram, two ICMP errors about what
    // VM A sent (quoted whole, and cut after 64 bits of TCP), two fragments.
    let remote_in = |to: [u8; 4]| {
        let (first, second) = fragments(to);
        vec![
            frame(VM_A, REMOTE_VM, ipv4(REMOTE, to, UDP, 0, &udp(REMOTE, to, (6000, 5000), b"answer", true))),
            frame(VM_A, REMOTE_VM, ipv4(REMOTE, to, ICMP, 0, &icmp(3, 3, &a_udp(to)))),
            frame(VM_A, REMOTE_VM, ipv4(REMOTE, to, ICMP, 0, &icmp(11, 0, &a_tcp(to)))),
            frame(VM_A, REMOTE_VM, first),
            frame(VM_A, REMOTE_VM, second),
        ]
    };
    // From VM A at its post-migration IP: to the peer, to the remote VM
    // (encapsulated), a port unreachable about what the remote VM sent it.
    let a_out = |from: [u8; 4]| {
        let quoted = ipv4(REMOTE, from, UDP, 0, &udp(REMOTE, from, (9, 10), b"to A", true));
        vec![
            frame(VM_B, VM_A, ipv4(from, PEER, UDP, 0x4000, &udp(from, PEER, (2000, 1000), b"hello B", true))),
            frame(REMOTE_VM, VM_A, ipv4(from, REMOTE, TCP, 0x4000, &tcp(from, REMOTE, b"to the remote VM"))),
            frame(REMOTE_VM, VM_A, ipv4(from, REMOTE, ICMP, 0, &icmp(3, 3, &quoted))),
        ]
    };

    let mut truncated_udp = ipv4(PEER, PRIMARY, UDP, 0, &udp(PEER, PRIMARY, (1, 2), b"", true)[..4]);
    truncated_udp.truncate(24);
    let mut ihl_4 = ipv4(PEER, PRIMARY, UDP, 0, &udp(PEER, PRIMARY, (1, 2), b"x", true));
    ihl_4[0] = 0x44;
    let short_quote = ipv4(PEER, PRIMARY, ICMP, 0, &icmp(3, 1, &a_udp(PRIMARY)[..10]));
    // A first fragment too short to hold the TCP checksum (RFC 1858).
    let tiny_fragment = ipv4(PEER, PRIMARY, TCP, 0x2000, &tcp(PEER, PRIMARY, &[0; 32])[..8]);
    let mut vm1_in = peer_in(PRIMARY);
    vm1_in.push(arp(MacAddr::BROADCAST, 1, (VM_B, PEER), (MacAddr::ZERO, PRIMARY)));
    vm1_in.extend([truncated_udp, ihl_4, short_quote, tiny_fragment].map(|ip| frame(VM_A, VM_B, ip)));
    let uplink_in: Vec<Vec<u8>> = remote_in(PRIMARY).iter().map(|f| vxlan(f)).collect();
    let mut vm0_in = a_out(POST);
    vm0_in.extend([
        arp(MacAddr::BROADCAST, 1, (VM_A, POST), (MacAddr::ZERO, PEER)),
        arp(MacAddr::BROADCAST, 1, (VM_A, POST), (MacAddr::ZERO, REPORT_ADDRESS.octets())),
        report(b"SYAM"),
        report(b"SYAX"),
    ]);

    let out = run("address_migration_every_case", &vm0_in, &vm1_in, &uplink_in);

    // Into VM A: everything addressed to its primary IP now to POST, byte for
    // byte as if sent there; its ARP for the peer answered (the target being
    // POST); the report address's ARP reply and the report's reply.
    let mut expected_vm0 = peer_in(POST);
    expected_vm0.extend(remote_in(POST));
    expected_vm0.push(arp(VM_A, 2, (VM_B, PEER), (VM_A, POST)));
    let (replies, rewritten): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
        out.vm0.iter().cloned().partition(|f| f[6..12] != VM_B.0 && f[6..12] != REMOTE_VM.0);
    assert_eq!(sorted(rewritten), sorted(expected_vm0), "into VM A");
    assert_eq!(replies.len(), 2, "the report address's ARP reply and the report's reply: {replies:02x?}");
    let arp_reply = replies.iter().find(|f| f[12..14] == [0x08, 0x06]).expect("ARP reply for the report address");
    assert_eq!((&arp_reply[0..6], &arp_reply[20..22], &arp_reply[28..32]), (&VM_A.0[..], &[0, 2][..], &REPORT_ADDRESS.octets()[..]));
    let reply = replies.iter().find(|f| f[12..14] == [0x08, 0x00]).expect("the report's reply");
    let message = AddressReport::new_checked(&reply[14 + 20 + 8..]).unwrap();
    assert_eq!((message.kind(), message.request_id()), (kind::REPLY, 77));
    assert_eq!(ReportStatus::from_code(message.status()), Some(ReportStatus::InEffect));
    assert_eq!(&reply[14 + 16..14 + 20], &POST, "sent back to the VM's address");

    // Out of VM A: its primary IP as the source, to the peer and (inside VXLAN) to the remote VM.
    let expected_out = a_out(PRIMARY);
    assert_eq!(out.vm1.len(), 2);
    assert!(out.vm1.contains(&expected_out[0]), "to the peer, from the primary IP");
    assert!(
        out.vm1.contains(&arp(VM_B, 2, (VM_A, PRIMARY), (VM_B, PEER))),
        "the switch answers ARP for the primary IP with VM A's MAC: {:02x?}",
        out.vm1
    );
    assert_eq!(out.uplink.len(), 2);
    assert_eq!(sorted(out.uplink.iter().map(|f| f[50..].to_vec()).collect()), sorted(expected_out[1..].to_vec()));

    // tshark: every checksum valid, including the headers quoted in ICMP errors
    // and the UDP datagram reassembled from its fragments.
    for pcap in &out.pcaps {
        assert_eq!(tshark_problems(pcap), Vec::<String>::new(), "{}", pcap.display());
    }
    let ip = |a: [u8; 4]| Ipv4Addr::from(a).to_string();
    for line in tshark_fields(&out.pcaps[0], &["ip.dst", "ip.src", "icmp.type"]) {
        let [dst, src, icmp_type]: [&str; 3] = line.split('|').collect::<Vec<_>>().try_into().unwrap();
        if dst.is_empty() {
            continue; // ARP
        }
        assert!(dst.starts_with(&ip(POST)), "into VM A, to its post-migration IP: {line}");
        if icmp_type == "3" || icmp_type == "11" {
            assert_eq!(src.split(',').nth(1), Some(ip(POST).as_str()), "the quoted packet's source translated: {line}");
        }
    }
    for line in tshark_fields(&out.pcaps[2], &["vxlan.vni", "ip.src", "ip.dst"]) {
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields[0], "100");
        assert_eq!(fields[1].split(',').nth(1), Some(ip(PRIMARY).as_str()), "VM A's packets leave from its primary IP: {line}");
        if fields[2].split(',').count() == 3 {
            assert_eq!(fields[2].split(',').nth(2), Some(ip(PRIMARY).as_str()), "the quoted destination translated: {line}");
        }
    }

    let stats = &out.stats;
    for (reason, count) in [
        ("rewrite_truncated_l4", 2),
        ("rewrite_malformed_ipv4", 1),
        ("rewrite_malformed_icmp_error", 1),
        ("malformed_address_report", 1),
    ] {
        assert_eq!(stats["drops"][reason], count, "{reason}: {}", stats["drops"]);
    }
    assert_eq!(stats["dropped"], 5, "{}", stats["drops"]);
    assert_eq!((stats["made"].as_u64(), stats["absorbed"].as_u64()), (Some(2), Some(2)), "replies made, report and ARP absorbed");
    let rewrite = &stats["address_rewrite"];
    assert_eq!(rewrite["to_vm"], 10, "{rewrite}"); // 4 from the peer, 5 over VXLAN, the ARP reply
    assert_eq!(rewrite["from_vm"], 4, "{rewrite}"); // 3 packets, the ARP request
    assert_eq!(rewrite["icmp_errors"], 3, "{rewrite}");
    assert_eq!((rewrite["reports"]["in_effect"].as_u64(), rewrite["report_arp_replies"].as_u64()), (Some(1), Some(1)));
}

#[test]
fn without_address_migrations_nothing_is_rewritten_or_intercepted() {
    let dir = scratch("address_migration_none");
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let to_primary = frame(VM_A, VM_B, ipv4(PEER, PRIMARY, UDP, 0, &udp(PEER, PRIMARY, (1, 2), b"x", true)));
    let report = report(b"SYAM");
    write_pcap(&input, &[to_primary.clone(), report.clone()]);
    let toml = format!(
        "{ONE_WORKER}[control]\nsocket = \"{d}/api.sock\"\ndatabase = \"{d}/config.redb\"\n\
         [[port]]\nname = \"vm1\"\ndevargs = \"net_pcap0,rx_pcap={i}\"\nrole = \"vm\"\nvni = 100\n\
         [[port]]\nname = \"vm0\"\ndevargs = \"net_pcap1,tx_pcap={o}\"\nrole = \"vm\"\nvni = 100\n\
         [[network]]\nvni = 100\nname = \"blue\"\n",
        d = dir.display(),
        i = input.display(),
        o = output.display()
    );
    let stats = dir.join("stats.json");
    let out = run_config(&dir, "run", &toml, &["--stats-json", stats.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_pcap(&output), vec![to_primary, report], "flooded as they came");
    let stats = json(&stats);
    assert_eq!((stats["address_rewrite"]["to_vm"].as_u64(), stats["absorbed"].as_u64()), (Some(0), Some(0)));
}
