//! One small switch for the data-path bodies, built as `dataplane` builds a worker's stages, on
//! `BytesPacket`s (no EAL): VM ports vm0 and vm1, the uplink with VTEP 192.0.2.1, network 100 with a remote
//! VTEP and a flood list, and an address migration on vm0.
use std::net::Ipv4Addr;
use std::sync::Arc;

use switchyard::config::{GatewayConfig, VniMapping, VtepConfig};
use switchyard::dataplane::{overlay_features, pipeline_of, Tunnels, WorkerCounters, WorkerSetup};
use switchyard::vm_migration::{Handling, HoldEntry, HoldLimits, HoldShared, Role, VmKey};
use switchyard::overlay::{TunnelControl, TunnelLimits, TunnelShared, Underlay, UnitHost, UnitSetup, VmPort};
use switchyard::pipeline::{Allocator, Burst, BytesPacket, PacketBuf, PortId, Side, Stage, Verdict, BURST_SIZE};
use switchyard::address_migration::{AddressMigrations, RewritePort};
use switchyard::model::{AddressMigration, AddressMigrationSource, ConfigSnapshot, Network, PortNetwork, RemoteEndpoint, VmEndpoint};
use switchyard::unit::UnitState;
use switchyard::wire::{ethernet, ipv4, Ipv4Packet, MacAddr};

pub(super) const VM0: PortId = PortId(0);
pub(super) const VM1: PortId = PortId(1);
pub(super) const UPLINK: PortId = PortId(2);
pub(super) const PORTS: usize = 3;
pub(super) const VNI: u32 = 100;
/// The VNI the other cloud uses for network 100 (gateway role).
pub(super) const OTHER_CLOUD_VNI: u32 = 300;
pub(super) const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub(super) const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub(super) const FLOOD_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
pub(super) const PRIMARY_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
pub(super) const POST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
pub(super) const UPLINK_MAC: MacAddr = MacAddr([2, 0xee, 0, 0, 0, 1]);
pub(super) const ROUTER_MAC: MacAddr = MacAddr([2, 0xee, 0, 0, 0, 2]);
/// The VM on vm0, whose frames the migration stage may hold.
pub(super) const MIGRATING: VmKey = VmKey { vni: VNI, mac: mac(10) };
const TSC_HZ: u64 = 1_000_000;

pub(super) const fn mac(last: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, last])
}

/// What a body varies, from its input's first byte.
#[derive(Clone, Copy, Debug)]
pub(super) struct Options {
    /// The frame comes in on this port (`control % 4`, 3 taken as the uplink).
    pub in_port: PortId,
    /// The VTEP is its cloud's inter-cloud gateway.
    pub gateway: bool,
    /// The underlay's next-hop MAC is configured (otherwise tunnels resolve it by ARP).
    pub next_hop_known: bool,
    /// What the migration stage does with frames of `MIGRATING`.
    pub handling: Handling,
    /// Fill the outer IPv4 checksum and aim it at the local VTEP, so random frames reach decapsulation.
    pub fix_outer: bool,
}

impl Options {
    pub(super) fn from_byte(control: u8) -> Options {
        let handling = match (control >> 3) & 3 {
            0 | 1 => Handling::Pass,
            2 => Handling::Hold,
            _ => Handling::HoldDirect { relay: REMOTE_VTEP },
        };
        Options {
            in_port: PortId(u16::from(control % 4).min(2)),
            gateway: control & 0x20 != 0,
            next_hop_known: control & 0x40 != 0,
            handling,
            fix_outer: control & 0x80 != 0,
        }
    }
}

fn config() -> ConfigSnapshot {
    ConfigSnapshot {
        generation: 1,
        networks: vec![Network { vni: VNI, name: "blue".into(), flood_vteps: vec![FLOOD_VTEP] }],
        endpoints: vec![
            VmEndpoint { vni: VNI, mac: mac(10), ip: Some(POST_IP), port: "vm0".into() },
            VmEndpoint { vni: VNI, mac: mac(11), ip: Some(Ipv4Addr::new(10, 0, 0, 11)), port: "vm1".into() },
        ],
        remotes: vec![RemoteEndpoint {
            vni: VNI,
            mac: mac(20),
            ip: Some(Ipv4Addr::new(10, 0, 0, 20)),
            vtep: REMOTE_VTEP,
            source: Default::default(),
        }],
        ports: vec![PortNetwork { port: "vm1".into(), vni: VNI }],
        address_migrations: vec![AddressMigration {
            vni: VNI,
            primary_ip: PRIMARY_IP,
            post_migration_ip: Some(POST_IP),
            port: "vm0".into(),
            source: AddressMigrationSource::Notification,
        }],
        storage: Default::default(),
    }
}

fn underlay(options: Options) -> Underlay {
    let next_hop_mac = options.next_hop_known.then_some(ROUTER_MAC);
    let vtep = VtepConfig { address: LOCAL_VTEP, prefix_len: 24, gateway: None, next_hop_mac, mtu: 1500 };
    let vni_map = vec![VniMapping { remote_vni: OTHER_CLOUD_VNI, local_vni: VNI }];
    let gateway_role = options.gateway.then_some(GatewayConfig { vni_map });
    Underlay { port: UPLINK, mac: UPLINK_MAC, vtep, gateway_role }
}

/// The shared tables of one switch and a worker's stages on them.
pub(super) struct Switch {
    pub options: Options,
    stages: Vec<Box<dyn Stage<BytesPacket> + Send>>,
}

impl Switch {
    pub(super) fn new(options: Options) -> Switch {
        let vm_ports = vec![VmPort { name: "vm0".into(), id: VM0 }, VmPort { name: "vm1".into(), id: VM1 }];
        let underlay = underlay(options);
        let state = UnitState { config: config(), ..UnitState::default() };
        let setup = UnitSetup { vm_ports, underlay: Some(underlay.clone()), ageing_ms: 300_000, state };
        let host = Arc::new(UnitHost::<BytesPacket>::new(setup));
        let holding = Arc::new(HoldShared::new(HoldLimits { packets: 8, bytes: 16 * 1024 }));
        holding.publish([(MIGRATING, HoldEntry { handling: options.handling, role: Role::Source })], vec![Some(VNI); 2]);
        let limits = TunnelLimits { packets: 4, bytes: 8 * 1024, resolve_timeout_ms: 1000 };
        let tunnels = Arc::new(TunnelShared::new(limits));
        let rewrite_ports = vec![
            RewritePort { name: "vm0".into(), id: VM0, mac: mac(0xa0) },
            RewritePort { name: "vm1".into(), id: VM1, mac: mac(0xa1) },
        ];
        let migrations = Arc::new(AddressMigrations::new(&config(), rewrite_ports));
        let sides = vec![Side::Vm, Side::Vm, Side::Uplink];
        let alloc = || -> Allocator<BytesPacket> { Box::new(|| Some(BytesPacket::new(&[]))) };
        // A worker's pipeline as the data plane makes it (without the block-I/O stage, which needs io_uring).
        let control = TunnelControl::new(tunnels.clone(), Some(underlay), false);
        let features = overlay_features(&host, None, &holding, &migrations, Tunnels::new(tunnels, host.clone(), control, None));
        let counters = WorkerCounters::new(PORTS);
        let worker = WorkerSetup { sides: &sides, tsc_hz: TSC_HZ, counters: &counters, alloc: &alloc };
        let stages = pipeline_of(&features, &worker);
        Switch { options, stages }
    }

    /// Runs `frame` through every stage as a worker does (quiescent state, the burst, then whatever a stage
    /// released after it ran) and returns every packet that came out, with its verdict.
    pub(super) fn run(&mut self, frame: &[u8]) -> Vec<(Verdict, Vec<u8>)> {
        let mut out = Vec::new();
        let mut burst = Burst::new(self.options.in_port);
        // One run-loop iteration: every stage sees the same clock, as on a worker.
        for stage in &mut self.stages {
            stage.quiescent(0);
        }
        let _ = burst.push(BytesPacket::new(frame));
        self.run_from(0, &mut burst, &mut out);
        // The held frames go on once the VM is released: only a few bursts, never a loop without end.
        for at in 0..self.stages.len() {
            for _ in 0..BURST_SIZE {
                if !self.stages[at].release(&mut burst) {
                    break;
                }
                self.run_from(at + 1, &mut burst, &mut out);
            }
        }
        out
    }

    fn run_from(&mut self, first: usize, burst: &mut Burst<BytesPacket>, out: &mut Vec<(Verdict, Vec<u8>)>) {
        for stage in &mut self.stages[first..] {
            stage.process(burst);
        }
        burst.drain(|packet, verdict| out.push((verdict, packet.data().to_vec())));
    }
}

/// Makes a random frame look like VXLAN to the local VTEP where it is long enough: IPv4 ethertype, the
/// local VTEP as destination, unfragmented, and a correct header checksum.
pub(super) fn aim_at_vtep(frame: &mut [u8]) {
    if frame.len() < ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN {
        return;
    }
    frame[12..14].copy_from_slice(&ethernet::ethertype::IPV4.to_be_bytes());
    frame[14] = 0x40 | (frame[14] & 0x0f).max(5);
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..]);
    ip.set_dst_addr(LOCAL_VTEP);
    ip.set_frag_offset(0);
    ip.set_more_frags(false);
    if ip.into_inner().len() >= header_len {
        Ipv4Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..]).fill_checksum();
    }
}

/// What every packet out of the pipeline must satisfy: a known output port, and a frame that parses; an
/// IPv4 frame to the uplink (VXLAN made here) with a correct header checksum.
pub(super) fn check_output(out: &[(Verdict, Vec<u8>)]) {
    for (verdict, frame) in out {
        if let Verdict::Forward(port) = verdict {
            assert!(port.index() < PORTS, "forwarded to {port:?}, not a port of the switch");
            assert!(frame.len() >= ethernet::HEADER_LEN, "a forwarded frame of {} bytes", frame.len());
        }
        if *verdict == Verdict::Forward(UPLINK) && frame[12..14] == ethernet::ethertype::IPV4.to_be_bytes() {
            let made_here = frame[6..12] == UPLINK_MAC.0;
            if made_here {
                let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).expect("an encapsulated frame parses");
                assert!(ip.verify_checksum(), "outer IPv4 checksum of a frame sent to the uplink");
            }
        }
    }
}
