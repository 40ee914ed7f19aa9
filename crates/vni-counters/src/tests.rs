//! The counters on byte-vector packets, without EAL.
use switchyard_model::{ConfigSnapshot, PortNetwork};
use switchyard_pipeline::{Burst, BytesPacket, PortId, Stage, Verdict};

use super::*;

const VM0: PortId = PortId(0);
const VM1: PortId = PortId(1);
const UPLINK: PortId = PortId(2);

fn bound(bindings: &[(&str, Vni)]) -> ConfigSnapshot {
    let port_networks = bindings.iter().map(|(port, vni)| PortNetwork { port: port.to_string(), vni: *vni }).collect();
    ConfigSnapshot { ports: port_networks, generation: 1, ..ConfigSnapshot::default() }
}

fn counters() -> VniCounters {
    VniCounters::new(vec![("vm0".into(), VM0), ("vm1".into(), VM1)])
}

fn burst(port: PortId, sizes: &[usize]) -> Burst<BytesPacket> {
    let mut burst = Burst::new(port);
    for &size in sizes {
        let _ = burst.push(BytesPacket::new(&vec![0u8; size]));
    }
    burst
}

fn run(stage: &mut VniCountStage, burst: &mut Burst<BytesPacket>) {
    Stage::<BytesPacket>::quiescent(stage, 0);
    stage.process(burst);
}

#[test]
fn each_vm_port_counts_under_its_network_in_both_directions() {
    let vnis = counters();
    vnis.apply(&bound(&[("vm0", 100), ("vm1", 200)]));
    let (mut from_vms, mut to_vms) = (vnis.stage(Direction::FromVms), vnis.stage(Direction::ToVms));
    run(&mut from_vms, &mut burst(VM0, &[60, 100]));
    run(&mut from_vms, &mut burst(UPLINK, &[1000]));
    let mut switched = burst(UPLINK, &[70, 80, 90]);
    let verdicts = [Verdict::Forward(VM1), Verdict::Forward(UPLINK), Verdict::Drop(switchyard_pipeline::DropReason::NoVerdict)];
    for (i, verdict) in verdicts.into_iter().enumerate() {
        *switched.get_mut(i).unwrap().1 = verdict;
    }
    switched.add_made(BytesPacket::new(&[0; 64]), Verdict::Forward(VM0));
    run(&mut to_vms, &mut switched);
    assert_eq!(
        vnis.totals(),
        [
            VniTotals { vni: 100, from_vms_packets: 2, from_vms_bytes: 160, to_vms_packets: 1, to_vms_bytes: 64 },
            VniTotals { vni: 200, from_vms_packets: 0, from_vms_bytes: 0, to_vms_packets: 1, to_vms_bytes: 70 },
        ],
        "the uplink's burst and the packets to the uplink or dropped count nowhere"
    );
}

#[test]
fn a_rebound_port_counts_under_its_new_network_and_the_old_counts_stay() {
    let vnis = counters();
    vnis.apply(&bound(&[("vm0", 100)]));
    let mut from_vms = vnis.stage(Direction::FromVms);
    run(&mut from_vms, &mut burst(VM0, &[60]));
    vnis.apply(&ConfigSnapshot { generation: 2, ..bound(&[("vm0", 300), ("no-such-port", 400)]) });
    run(&mut from_vms, &mut burst(VM0, &[60, 60]));
    let packets: Vec<(Vni, u64)> = vnis.totals().iter().map(|t| (t.vni, t.from_vms_packets)).collect();
    assert_eq!(packets, [(100, 1), (300, 2)]);
}

#[test]
fn an_unbound_port_and_networks_past_the_limit_are_not_counted() {
    let vnis = VniCounters::new((0..=MAX_NETWORKS as u16).map(|p| (format!("vm{p}"), PortId(p))).collect());
    let bindings: Vec<(String, Vni)> = (0..=MAX_NETWORKS as u16).map(|p| (format!("vm{p}"), 1 + u32::from(p))).collect();
    let bindings: Vec<(&str, Vni)> = bindings.iter().map(|(p, v)| (p.as_str(), *v)).collect();
    vnis.apply(&bound(&bindings));
    let mut from_vms = vnis.stage(Direction::FromVms);
    run(&mut from_vms, &mut burst(PortId(MAX_NETWORKS as u16), &[60]));
    run(&mut from_vms, &mut burst(PortId(MAX_NETWORKS as u16 + 1), &[60]));
    let totals = vnis.totals();
    assert_eq!(totals.len(), MAX_NETWORKS);
    assert_eq!(totals.iter().map(|t| t.from_vms_packets).sum::<u64>(), 0);
}
