//! Stages on a burst of byte-vector packets, without EAL: ns per packet of the
//! work a stage adds (`cargo bench --bench stages`).
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use switchyard::pipeline::{Burst, BytesPacket, PortId, Stage, BURST_SIZE};
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

criterion_group!(benches, cross_connect);
criterion_main!(benches);
