//! The io_uring wrapper's per-op cost: 4 KiB random reads at depth 32 from a 64 MiB file in
//! the page cache, one submit and completion polling per batch, as the block stage does per
//! burst; `pread` of the same blocks, one syscall each, is the baseline
//! (`cargo bench --bench io_ring`).
use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard_io_ring::{FileSlot, IoRing, IoRingConfig, IoRingError};

const DEPTH: usize = 32;
const BLOCK: usize = 4096;
const FILE_BLOCKS: u64 = 16 * 1024;

/// A 64 MiB file, written so its pages are cached, and a fixed sequence of random block
/// offsets (xorshift: the same every run, no rand dependency).
fn cached_file() -> (tempfile::NamedTempFile, Vec<u64>) {
    let file = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).expect("temp file");
    let chunk = vec![0x3cu8; 1 << 20];
    for mib in 0..(FILE_BLOCKS * BLOCK as u64) >> 20 {
        file.as_file().write_all_at(&chunk, mib << 20).expect("fill");
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let offsets = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % FILE_BLOCKS) * BLOCK as u64
        })
        .collect();
    (file, offsets)
}

fn random_reads(c: &mut Criterion) {
    let (file, offsets) = cached_file();
    let config = IoRingConfig { queue_depth: DEPTH as u32, buffers: DEPTH as u32, buffer_size: BLOCK, file_slots: 1 };
    let mut ring = IoRing::new(config).expect("ring");
    ring.attach_file(FileSlot(0), file.as_file()).expect("attach");
    let mut group = c.benchmark_group("io_ring");
    group.throughput(Throughput::Elements(DEPTH as u64));
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));

    let mut next = offsets.iter().copied().cycle();
    group.bench_function("read_4k_random_depth_32", |b| {
        b.iter(|| {
            for tag in 0..DEPTH as u64 {
                let lease = ring.take_buffer().expect("a buffer per op");
                ring.read(FileSlot(0), next.next().unwrap_or(0), lease, BLOCK as u32, tag).expect("room for the batch");
            }
            let mut done = 0;
            while done < DEPTH {
                match ring.submit() {
                    Ok(_) | Err(IoRingError::SubmitBusy) => {}
                    Err(e) => panic!("submit: {e}"),
                }
                done += ring.poll_completions(|tag, result, buffer| {
                    assert_eq!(result, Ok(BLOCK as u32), "read {tag}");
                    black_box(buffer.map(|bytes| bytes[0]));
                });
            }
        })
    });

    let plain: &File = file.as_file();
    let mut buffer = vec![0u8; BLOCK];
    let mut next = offsets.iter().copied().cycle();
    group.bench_function("pread_4k_random_32_baseline", |b| {
        b.iter(|| {
            for _ in 0..DEPTH {
                black_box(plain.read_at(&mut buffer, next.next().unwrap_or(0)).expect("pread"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, random_reads);
criterion_main!(benches);
