//! Benchmark scenarios: the generator traffic, the stages under test, and what
//! testpmd mode they are judged against.
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapWriter};

use switchyard::dataplane::{Forwarding, DEFAULT_MAC_AGEING};
use switchyard::overlay::{encapsulate, Tunnel};
use switchyard::pipeline::{BytesPacket, PacketBuf};
use switchyard::model::{AddressMigration, ConfigSnapshot, AddressMigrationSource, Network, PortNetwork, RemoteEndpoint, VmEndpoint};
use switchyard::wire::ethernet::ethertype;
use switchyard::wire::{ipv4, EthernetFrame, Ipv4Packet, MacAddr, UdpDatagram};

/// Distinct flows in a generator pcap.
const FLOWS: u16 = 1000;
const VNI: u32 = 100;
/// The generator's inner frames go from SRC_MAC to DST_MAC.
const DST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const SRC_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const NEXT_HOP_MAC: &str = "02:00:00:00:00:fe";
/// Frame length on the wire without the FCS (a 64-byte Ethernet frame).
const FRAME_LEN: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Port to port, rewriting the Ethernet header (the cross-connect).
    Forward,
    /// The vRouter switching between two VM ports of one network.
    L2Switch,
    /// The vRouter encapsulating VM frames to a remote VTEP.
    VxlanEncap,
    /// The vRouter decapsulating VXLAN from the uplink to a VM port.
    VxlanDecap,
    /// L2Switch's traffic while the switching unit is upgraded again and again
    /// (measured by `upgrade.rs`, not against testpmd).
    Upgrade,
    /// No packets: how fast a record update on the bulletin board reaches every
    /// watcher (measured by `board.rs`, without EAL or testpmd).
    Board,
    /// L2Switch with every packet's source and destination rewritten by
    /// address migrations: each flow's source is a post-migration IP.
    MigrationRewrite,
    /// The vRouter as an inter-cloud gateway: VXLAN from the other
    /// cloud decapsulated, its VNI mapped, the inner destination looked up in
    /// forwarding table 2 and re-encapsulated to that compute node's VTEP.
    Gateway,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::Forward,
        Scenario::L2Switch,
        Scenario::VxlanEncap,
        Scenario::VxlanDecap,
        Scenario::Upgrade,
        Scenario::Board,
        Scenario::MigrationRewrite,
        Scenario::Gateway,
    ];

    pub fn named(name: &str) -> Result<Scenario, String> {
        Self::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|s| s.name()).collect();
            format!("unknown bench scenario \"{name}\" (known: {})", known.join(", "))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Forward => "forward",
            Scenario::L2Switch => "l2-switch",
            Scenario::VxlanEncap => "vxlan-encap",
            Scenario::VxlanDecap => "vxlan-decap",
            Scenario::Upgrade => "upgrade",
            Scenario::Board => "board",
            Scenario::MigrationRewrite => "migration-rewrite",
            Scenario::Gateway => "gateway",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Scenario::Forward => "64-byte IPv4/UDP frames, 1000 flows, port to port with Ethernet rewrite",
            Scenario::L2Switch => "64-byte IPv4/UDP frames, 1000 flows, vRouter L2 switching VM port to VM port in one VNI",
            Scenario::VxlanEncap => "64-byte IPv4/UDP frames, 1000 flows, vRouter VM port to uplink, VXLAN-encapsulated (114 bytes out)",
            Scenario::VxlanDecap => "114-byte VXLAN frames carrying 64-byte IPv4/UDP, 1000 flows, vRouter uplink to VM port",
            Scenario::Upgrade => "64-byte IPv4/UDP frames, 1000 flows, vRouter L2 switching VM port to VM port in one VNI while the switching unit is upgraded",
            Scenario::Board => "bulletin-board record updates, one after another, followed by long-polling watchers",
            Scenario::MigrationRewrite => "64-byte IPv4/UDP frames, 1000 flows, vRouter L2 switching VM port to VM port in one VNI, every packet's source (1000 address migrations) and destination rewritten, IPv4 and UDP checksums updated incrementally",
            Scenario::Gateway => "114-byte VXLAN frames (VNI 200) carrying 64-byte IPv4/UDP, 1000 flows to 1000 VMs, vRouter as inter-cloud gateway: decapsulated, VNI mapped to 100, table-2 lookup (1000 entries, 10 compute VTEPs), re-encapsulated out of the uplink",
        }
    }

    /// The scenario whose ports, generator and configuration this one uses.
    fn traffic(self) -> Scenario {
        match self {
            Scenario::Upgrade | Scenario::MigrationRewrite => Scenario::L2Switch,
            other => other,
        }
    }

    /// The upgrade scenario judges loss and output gaps, the board scenario
    /// propagation latency: not a rate ratio.
    pub fn testpmd_modes(self) -> &'static [&'static str] {
        match self {
            Scenario::Upgrade | Scenario::Board => &[],
            _ => &["io", "macswap"],
        }
    }

    /// The testpmd mode doing comparable work, and the ratio we aim for against it.
    pub fn reference_mode(self) -> &'static str {
        "macswap"
    }
    pub fn target_ratio(self) -> f64 {
        match self {
            Scenario::Forward => 0.8,
            // Upgrade runs no testpmd; the ratio is its traffic's.
            Scenario::L2Switch | Scenario::Upgrade => 0.5,
            Scenario::MigrationRewrite => 0.45,
            Scenario::VxlanEncap | Scenario::VxlanDecap => 0.4,
            Scenario::Gateway => 0.3,
            // No packets, no testpmd: nothing to compare.
            Scenario::Board => 0.0,
        }
    }

    /// The `[[port]]` tables: `generator` replays `generator_pcap`, `sink` frees.
    pub fn ports_toml(self, generator_pcap: &Path) -> String {
        let generator = format!("name = \"generator\"\ndevargs = \"net_pcap0,rx_pcap={},infinite_rx=1\"", generator_pcap.display());
        let sink = "name = \"sink\"\ndevargs = \"net_null0,no-rx=1\"";
        let vtep = format!("address = \"{LOCAL_VTEP}/24\"\nnext_hop_mac = \"{NEXT_HOP_MAC}\"");
        match self.traffic() {
            Scenario::Forward => format!("[[port]]\n{generator}\nrole = \"vm\"\nforward_to = \"sink\"\n[[port]]\n{sink}\nrole = \"uplink\"\n"),
            // `traffic()` maps Upgrade and MigrationRewrite to L2Switch.
            Scenario::L2Switch | Scenario::Upgrade | Scenario::MigrationRewrite => format!("[[port]]\n{generator}\nrole = \"vm\"\n[[port]]\n{sink}\nrole = \"vm\"\n"),
            Scenario::VxlanEncap => format!("[[port]]\n{generator}\nrole = \"vm\"\n[[port]]\n{sink}\nrole = \"uplink\"\n{vtep}\n"),
            Scenario::VxlanDecap => format!("[[port]]\n{generator}\nrole = \"uplink\"\n{vtep}\n[[port]]\n{sink}\nrole = \"vm\"\n"),
            // One uplink: it receives the other cloud's tunnels and sends to the compute
            // nodes; net_pcap without tx_pcap drops what it sends. The network is
            // declared for the VNI mapping's validation only (the bench's tables come
            // from `overlay_config`).
            Scenario::Gateway => format!(
                "[[port]]\n{generator}\nrole = \"uplink\"\n{vtep}\n[[network]]\nvni = {VNI}\nname = \"bench\"\n\
                 [gateway]\n[[gateway.vni_map]]\nremote_vni = {OTHER_CLOUD_VNI}\nlocal_vni = {VNI}\n"
            ),
            // The board bench starts no data plane.
            Scenario::Board => String::new(),
        }
    }

    /// The port whose transmitted packets are the measured rate.
    pub fn output_port(self) -> &'static str {
        match self {
            Scenario::Gateway => "generator",
            _ => "sink",
        }
    }

    pub fn forwarding(self) -> Forwarding {
        if self == Scenario::Forward {
            return Forwarding::CrossConnect;
        }
        Forwarding::Overlay { config: self.overlay_config(), ageing: DEFAULT_MAC_AGEING }
    }

    /// One network; DST_MAC lives on the sink (a VM port) or, for encap, behind REMOTE_VTEP.
    pub fn overlay_config(self) -> ConfigSnapshot {
        let mut config = ConfigSnapshot {
            generation: 1,
            networks: vec![Network { vni: VNI, name: "bench".into(), flood_vteps: Vec::new() }],
            ..ConfigSnapshot::default()
        };
        let port = |name: &str| PortNetwork { port: name.into(), vni: VNI };
        match self.traffic() {
            Scenario::Forward | Scenario::Board => {}
            Scenario::L2Switch | Scenario::Upgrade | Scenario::MigrationRewrite => {
                config.ports = vec![port("generator"), port("sink")];
                config.endpoints = vec![VmEndpoint { vni: VNI, mac: DST_MAC, ip: None, port: "sink".into() }];
            }
            Scenario::VxlanEncap => {
                config.ports = vec![port("generator")];
                config.remotes = vec![RemoteEndpoint { vni: VNI, mac: DST_MAC, ip: None, vtep: REMOTE_VTEP, source: Default::default() }];
            }
            Scenario::VxlanDecap => {
                config.ports = vec![port("sink")];
                config.endpoints = vec![VmEndpoint { vni: VNI, mac: DST_MAC, ip: None, port: "sink".into() }];
            }
            Scenario::Gateway => {
                config.remotes = (0..FLOWS)
                    .map(|flow| RemoteEndpoint { vni: VNI, mac: flow_vm(flow), ip: None, vtep: compute_vtep(flow), source: Default::default() })
                    .collect();
                config.remotes.sort_by_key(|r| r.mac.0);
            }
        }
        if self == Scenario::MigrationRewrite {
            config.address_migrations = migrations();
        }
        config
    }

    /// Writes the generator pcap that net_pcap replays with infinite_rx=1.
    pub fn write_generator(self, path: &Path) -> io::Result<()> {
        let mut writer = PcapWriter::new(BufWriter::new(File::create(path)?)).map_err(io::Error::other)?;
        for flow in 0..FLOWS {
            let mut frame = udp_frame(flow);
            if self.traffic() == Scenario::VxlanDecap {
                frame = vxlan_frame(&frame, VNI);
            }
            if self == Scenario::Gateway {
                frame[0..6].copy_from_slice(&flow_vm(flow).0);
                frame = vxlan_frame(&frame, OTHER_CLOUD_VNI);
            }
            let packet = PcapPacket::new(Duration::ZERO, frame.len() as u32, &frame);
            writer.write_packet(&packet).map_err(io::Error::other)?;
        }
        Ok(())
    }
}

/// The address migrations of `migration-rewrite`: each flow's source address
/// is the post-migration IP of a VM on the generator port (primary
/// 10.9.x.y), and the destination 10.1.0.1 the primary IP of one on the sink
/// (living at 10.3.0.1), so every packet is rewritten in both directions.
fn migrations() -> Vec<AddressMigration> {
    let migration = |primary: Ipv4Addr, post: Ipv4Addr, port: &str| AddressMigration {
        vni: VNI,
        primary_ip: primary,
        post_migration_ip: Some(post),
        port: port.into(),
        source: AddressMigrationSource::Notification,
    };
    let mut all: Vec<AddressMigration> = (0..FLOWS)
        .map(|flow| {
            let [hi, lo] = flow.to_be_bytes();
            migration(Ipv4Addr::new(10, 9, hi, lo), flow_source(flow), "generator")
        })
        .collect();
    all.push(migration(FLOW_DESTINATION, Ipv4Addr::new(10, 3, 0, 1), "sink"));
    all.sort_by_key(|m| m.primary_ip);
    all
}

/// The VNI the other cloud sends the gateway scenario's network with.
const OTHER_CLOUD_VNI: u32 = 200;

/// The gateway scenario's destination VM of `flow`, one per flow.
fn flow_vm(flow: u16) -> MacAddr {
    let [hi, lo] = flow.to_be_bytes();
    MacAddr([2, 0, 0, 1, hi, lo])
}

/// The compute node (of ten) hosting `flow_vm(flow)`.
fn compute_vtep(flow: u16) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 10 + (flow % 10) as u8)
}

/// The destination of every generator flow.
const FLOW_DESTINATION: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

fn flow_source(flow: u16) -> Ipv4Addr {
    let [hi, lo] = flow.to_be_bytes();
    Ipv4Addr::new(10, 0, hi, lo)
}

/// A minimal IPv4/UDP frame of flow `flow` (distinct source address and port).
fn udp_frame(flow: u16) -> Vec<u8> {
    let mut frame = vec![0u8; FRAME_LEN];
    let (src, dst) = (flow_source(flow), FLOW_DESTINATION);
    {
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.set_dst(DST_MAC);
        eth.set_src(SRC_MAC);
        eth.set_ethertype(ethertype::IPV4);
    }
    let ip_len = FRAME_LEN - 14;
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len(ip_len as u16);
    ip.set_ttl(64);
    ip.set_protocol(ipv4::protocol::UDP);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    let mut udp = UdpDatagram::new_unchecked(ip.payload_mut());
    udp.set_src_port(1024 + flow);
    udp.set_dst_port(4000);
    udp.set_len((ip_len - 20) as u16);
    udp.fill_checksum(src, dst);
    frame
}

/// `inner` as VXLAN from REMOTE_VTEP to LOCAL_VTEP, as a remote vRouter sends it.
fn vxlan_frame(inner: &[u8], vni: u32) -> Vec<u8> {
    let mut packet = BytesPacket::new(inner);
    let tunnel = Tunnel {
        vni,
        src_mac: MacAddr([2, 0, 0, 0, 0, 0xfe]),
        dst_mac: MacAddr([2, 0, 0, 0, 0, 0xfd]),
        src_ip: REMOTE_VTEP,
        dst_ip: LOCAL_VTEP,
        mtu: 1500,
    };
    // Cannot fail: a 60-byte frame fits any MTU and the headroom.
    let _ = encapsulate(&mut packet, &tunnel);
    packet.data().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_frames_are_valid_and_distinct() {
        let a = udp_frame(0);
        let b = udp_frame(300);
        assert_ne!(a, b);
        for frame in [a, b] {
            assert_eq!(frame.len(), FRAME_LEN);
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum());
            let udp = UdpDatagram::new_checked(ip.payload()).unwrap();
            assert!(udp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        }
    }

    #[test]
    fn upgrade_runs_on_the_l2_switch_traffic() {
        let pcap = Path::new("/tmp/g.pcap");
        assert_eq!(Scenario::Upgrade.ports_toml(pcap), Scenario::L2Switch.ports_toml(pcap));
        assert_eq!(Scenario::Upgrade.overlay_config(), Scenario::L2Switch.overlay_config());
        assert!(Scenario::Upgrade.testpmd_modes().is_empty());
    }

    #[test]
    fn migration_rewrite_rewrites_every_generator_packet_both_ways() {
        let config = Scenario::MigrationRewrite.overlay_config();
        let ports = [
            switchyard::address_migration::RewritePort { name: "generator".into(), id: switchyard::pipeline::PortId(0), mac: SRC_MAC },
            switchyard::address_migration::RewritePort { name: "sink".into(), id: switchyard::pipeline::PortId(1), mac: DST_MAC },
        ];
        let table = switchyard::address_migration::build(&config, &ports);
        assert_eq!(table.sizes(), (1001, 0));
        let (from_vm, to_vm) = (switchyard::address_migration::Direction::FromVm, switchyard::address_migration::Direction::ToVm);
        for flow in [0, 1, 999] {
            let mut frame = udp_frame(flow);
            let out = |port: u16| table.port(switchyard::pipeline::PortId(port)).unwrap();
            let done = Ok(switchyard::address_migration::Rewritten::Address { icmp_error: false });
            assert_eq!(switchyard::address_migration::rewrite_frame(&mut frame, from_vm, &out(0).from_vm), done);
            assert_eq!(switchyard::address_migration::rewrite_frame(&mut frame, to_vm, &out(1).to_vm), done);
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 3, 0, 1));
            assert_eq!(ip.src_addr().octets()[..2], [10, 9]);
            assert!(UdpDatagram::new_checked(ip.payload()).unwrap().verify_checksum(ip.src_addr(), ip.dst_addr()));
        }
        let mut sorted = config.address_migrations.clone();
        sorted.sort_by_key(|m| (m.vni, m.primary_ip));
        assert_eq!(config.address_migrations, sorted, "in the database's order");
    }

    #[test]
    fn gateway_relays_every_generator_frame_to_its_compute_node_with_the_local_vni() {
        use switchyard::overlay::{Learned, Underlay, VRouter, VRouterTables};
        use switchyard::pipeline::{Burst, PortId, Verdict};
        use switchyard::unit::{LearnQueue, Side, WorkerLocal};
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("gateway.pcap");
        Scenario::Gateway.write_generator(&pcap).unwrap();
        let config = switchyard::config::Config::parse(&Scenario::Gateway.ports_toml(&pcap), "bench").unwrap();
        let uplink = &config.ports[0];
        let underlay = Underlay { port: PortId(0), mac: SRC_MAC, vtep: uplink.vtep.clone().unwrap(), gateway_role: config.gateway.clone() };
        let tables = VRouterTables::build(&Scenario::Gateway.overlay_config(), &Learned::default(), &[], Some(underlay));
        assert_eq!(tables.sizes()[1], ("macs", usize::from(FLOWS)), "table 2: one VM per flow");
        let gateway = VRouter::new(tables);
        let mut local = WorkerLocal::new(std::sync::Arc::new(LearnQueue::new(64)), 1_000_000, 10);
        let file = File::open(&pcap).unwrap();
        let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
        let mut flow = 0;
        while let Some(packet) = reader.next_packet() {
            let mut burst = Burst::new(PortId(0));
            burst.push(BytesPacket::new(&packet.unwrap().data)).unwrap();
            gateway.switch(Side::Uplink, &mut burst, &mut local);
            burst.drain(|p, verdict| {
                assert_eq!(verdict, Verdict::Forward(PortId(0)));
                let ip = Ipv4Packet::new_checked(&p.data()[14..]).unwrap();
                assert_eq!((ip.src_addr(), ip.dst_addr()), (LOCAL_VTEP, compute_vtep(flow)));
                assert_eq!(&p.data()[46..49], &VNI.to_be_bytes()[1..4], "re-encapsulated as the local VNI");
                assert_eq!(&p.data()[50..56], &flow_vm(flow).0);
            });
            flow += 1;
        }
        assert_eq!(flow, FLOWS);
    }

    #[test]
    fn unknown_scenario_names_the_known_ones() {
        assert_eq!(Scenario::named("forward"), Ok(Scenario::Forward));
        assert_eq!(
            Scenario::named("fwd").unwrap_err(),
            "unknown bench scenario \"fwd\" (known: forward, l2-switch, vxlan-encap, vxlan-decap, upgrade, board, migration-rewrite, gateway)"
        );
    }
}
