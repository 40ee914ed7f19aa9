//! Stages on a burst of byte-vector packets, without EAL: ns per packet of the
//! work a stage adds (`cargo bench --bench stages`).
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::sync::Arc;

use crossbeam::utils::CachePadded;
use switchyard_bench::Scenario;
use switchyard::vm_migration::{Handling, HoldEntry, HoldLimits, HoldShared, MigrationStage, Role, VmKey};
use switchyard::pipeline::{Burst, BytesPacket, PortId, Side, Stage, Verdict, BURST_SIZE};
use switchyard::address_migration::{AddressMigrations, Direction, RewritePort};
use switchyard::wire::MacAddr;
use switchyard::xconnect::{CrossConnect, Route};

fn burst_of_frames() -> Burst<BytesPacket> {
    let mut frame = vec![0u8; 60];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    let mut burst = Burst::new(PortId(0));
    for _ in 0..BURST_SIZE {
        let _ = burst.push(BytesPacket::new(&frame));
    }
    burst
}

fn cross_connect(c: &mut Criterion) {
    let route = Route { out: PortId(1), src: MacAddr([2, 0, 0, 0, 0, 1]), dst: MacAddr([2, 0, 0, 0, 0, 2]) };
    let mut stage = CrossConnect::new([(PortId(0), route)]);
    let mut group = c.benchmark_group("stage");
    group.throughput(Throughput::Elements(BURST_SIZE as u64));
    group.bench_function("cross_connect_burst_of_32", |b| {
        b.iter_batched_ref(burst_of_frames, |burst| stage.process(black_box(burst)), BatchSize::SmallInput)
    });
    group.finish();
}

/// The `migration-rewrite` bench's table (1001 address migrations): a burst
/// from the generator port, each packet's source a post-migration IP, through
/// the from-VM stage, then forwarded to the sink and through the to-VM stage.
fn address_rewrite(c: &mut Criterion) {
    let ports = vec![
        RewritePort { name: "generator".into(), id: PortId(0), mac: MacAddr([2, 0, 0, 0, 0, 1]) },
        RewritePort { name: "sink".into(), id: PortId(1), mac: MacAddr([2, 0, 0, 0, 0, 2]) },
    ];
    let migrations = AddressMigrations::new(&Scenario::MigrationRewrite.overlay_config(), ports);
    let counters = Arc::default();
    let mut from_vm = migrations.stage(Direction::FromVm, Arc::clone(&counters));
    let mut to_vm = migrations.stage(Direction::ToVm, counters);
    let burst = || {
        let mut burst = Burst::new(PortId(0));
        for i in 0..BURST_SIZE as u8 {
            let mut frame = vec![0u8; 60];
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
            frame[14..24].copy_from_slice(&[0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17]);
            frame[26..30].copy_from_slice(&[10, 0, 0, i]);
            frame[30..34].copy_from_slice(&[10, 1, 0, 1]);
            frame[34..42].copy_from_slice(&[4, 0, 15, 160, 0, 26, 0x12, 0x34]);
            let _ = burst.push(BytesPacket::new(&frame));
        }
        burst
    };
    let mut group = c.benchmark_group("stage");
    group.throughput(Throughput::Elements(BURST_SIZE as u64));
    group.bench_function("address_rewrite_both_directions_burst_of_32", |b| {
        b.iter_batched_ref(
            burst,
            |burst| {
                from_vm.process(black_box(&mut *burst));
                burst.decide_all(Verdict::Forward(PortId(1)));
                to_vm.process(burst);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Buffer-and-flush (VM live migration): 2048 frames for a paused VM taken out of 64
/// bursts into its buffer, then the VM resumes and the buffer is handed back
/// burst by burst (the worker runs each through the unit). Per packet: one hold
/// and one release, plus a share of the two table versions published.
fn migration_hold_and_flush(c: &mut Criterion) {
    const HELD: usize = 2048;
    let x = VmKey { vni: 100, mac: MacAddr([2, 0, 0, 0, 0, 0x0a]) };
    let shared = Arc::new(HoldShared::new(HoldLimits { packets: HELD, bytes: 1 << 20 }));
    let mut stage = MigrationStage::new(shared.clone(), vec![Side::Vm], Arc::new(CachePadded::default()));
    let publish = |handling| shared.publish([(x, HoldEntry { handling, role: Role::Source })], vec![Some(100)]);
    let bursts = || {
        let mut frame = vec![0u8; 60];
        frame[0..6].copy_from_slice(&x.mac.0);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        (0..HELD / BURST_SIZE)
            .map(|_| {
                let mut burst = Burst::new(PortId(0));
                for _ in 0..BURST_SIZE {
                    let _ = burst.push(BytesPacket::new(&frame));
                }
                burst
            })
            .collect::<Vec<_>>()
    };
    let mut group = c.benchmark_group("stage");
    group.throughput(Throughput::Elements(HELD as u64));
    group.bench_function("migration_hold_and_flush_2048", |b| {
        b.iter_batched_ref(
            bursts,
            |bursts| {
                publish(Handling::Hold);
                stage.quiescent(0);
                for burst in bursts.iter_mut() {
                    stage.process(burst);
                }
                publish(Handling::Pass);
                stage.quiescent(0);
                let mut released = 0;
                for burst in bursts.iter_mut() {
                    if !stage.release(burst) {
                        break;
                    }
                    released += burst.len();
                }
                assert_eq!(released, HELD, "every held frame is released");
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, cross_connect, address_rewrite, migration_hold_and_flush);
criterion_main!(benches);
