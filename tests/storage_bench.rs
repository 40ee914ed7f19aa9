//! The block device's benchmark: `fio --ioengine=nbd`, 4 KiB random reads and random writes at
//! iodepth 32, through `switchyard vbd` and the server's block-I/O stage, side by side in the same run with
//! `nbdkit file` serving the same image file on a unix socket. Ignored by `make test`; `make bench-storage`
//! runs it on a release build (target: each >= 0.8 x nbdkit's IOPS).
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::storage::{run_ok, Testbed};

/// Seconds per fio run.
const SECONDS: u32 = 10;

struct Nbdkit(Child);

impl Drop for Nbdkit {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// fio's IOPS for `rw` (randread or randwrite) on `uri`.
fn fio_iops(testbed: &Testbed, uri: &str, rw: &str) -> f64 {
    let out = run_ok(Command::new("fio").current_dir(testbed.dir.path()).args([
        "--name=bench",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        &format!("--rw={rw}"),
        "--bs=4k",
        "--iodepth=32",
        "--size=64M",
        "--time_based",
        &format!("--runtime={SECONDS}"),
        "--ramp_time=2",
        "--output-format=json",
    ]));
    let report: serde_json::Value = serde_json::from_str(&out[out.find('{').unwrap_or(0)..]).unwrap();
    let side = if rw == "randread" { "read" } else { "write" };
    report["jobs"][0][side]["iops"].as_f64().unwrap_or(0.0)
}

#[test]
#[ignore = "a benchmark: make bench-storage"]
fn fio_4k_random_io_through_vbd_against_nbdkit_file_on_the_same_image() {
    // The server's worker sleeps 100 us when idle, as in the tests: on this 2-core machine a worker that
    // never sleeps takes a core from fio and vbd and halves the read IOPS (measured).
    let testbed = Testbed::new("bb");
    // Real data in the whole image, so that reads read it.
    run_ok(Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 0x3c 0 64M", &testbed.uri()]));
    let image = testbed.dir.path().join("images").join(format!("{}.img", testbed.image));
    let socket = testbed.dir.path().join("nbdkit.sock");
    let nbdkit = Command::new("nbdkit")
        .args(["--foreground", "--exit-with-parent", "--unix"])
        .arg(&socket)
        .arg("file")
        .arg(&image)
        .stdout(Stdio::null())
        .spawn()
        .expect("nbdkit (Debian package nbdkit)");
    let _nbdkit = Nbdkit(nbdkit);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "nbdkit made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let nbdkit_uri = format!("nbd+unix:///?socket={}", socket.display());
    println!("bench storage: fio --ioengine=nbd, 4 KiB, iodepth 32, {SECONDS} s per run after 2 s ramp, 64 MiB image");
    for rw in ["randread", "randwrite"] {
        let reference = fio_iops(&testbed, &nbdkit_uri, rw);
        let ours = fio_iops(&testbed, &testbed.uri(), rw);
        println!("  {rw:<10} nbdkit file     {reference:>9.0} IOPS");
        println!("  {rw:<10} switchyard vbd  {ours:>9.0} IOPS");
        let met = if ours >= 0.8 * reference { "met" } else { "NOT met" };
        println!("  {rw:<10} ratio vbd/nbdkit {:.2}  (target >= 0.80: {met})", ours / reference.max(1.0));
    }
    let stats = testbed.finish();
    println!("  server: {}", stats["storage"]);
}
