//! Layer 3 for the network block device: a switchyard storage server (its block-I/O stage on an
//! `net_af_packet` uplink) and `switchyard vbd` in a client namespace, with real NBD clients (qemu-img,
//! qemu-io, nbdinfo, fio) on the vbd's unix socket: data in and out, 2% datagram loss on both directions, and
//! a server killed with SIGKILL after a FLUSH. Root only; the namespace, processes and sockets are removed
//! even when a check fails.
mod common;

use std::process::Command;
use std::time::Instant;

use common::ctl_json;
use common::storage::{run_ok, server_config, sha256, Testbed};
use common::switch::RunningSwitch;

/// `size` of random data into the export and back out with qemu-img; the two equal. Returns the seconds each way.
fn convert_round_trip(testbed: &Testbed, size_mib: u32) -> (f64, f64) {
    let input = testbed.dir.path().join("random.raw");
    let count = format!("count={size_mib}");
    run_ok(Command::new("dd").args(["if=/dev/urandom", &format!("of={}", input.display()), "bs=1M", &count, "status=none"]));
    let started = Instant::now();
    run_ok(Command::new("qemu-img").args(["convert", "-n", "-f", "raw", "-O", "raw"]).arg(&input).arg(testbed.uri()));
    let wrote = started.elapsed().as_secs_f64();
    let output = testbed.dir.path().join("back.raw");
    let started = Instant::now();
    let size = format!("{size_mib}M");
    // Only the first `size` of the 64 MiB image: read it whole, compare that much.
    run_ok(Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "raw"]).arg(testbed.uri()).arg(&output));
    let read = started.elapsed().as_secs_f64();
    run_ok(Command::new("truncate").args(["-s", &size]).arg(&output));
    assert_eq!(sha256(&output), sha256(&input), "the image read back equals what was written");
    (wrote, read)
}

fn fio_verify(testbed: &Testbed, rw: &str, size: &str) -> String {
    run_ok(Command::new("fio").current_dir(testbed.dir.path()).args([
        "--name=vbd",
        "--ioengine=nbd",
        &format!("--uri={}", testbed.uri()),
        &format!("--rw={rw}"),
        "--bs=4k",
        "--iodepth=32",
        &format!("--size={size}"),
        "--verify=crc32c",
        "--verify_fatal=1",
        "--do_verify=1",
        "--verify_state_save=0",
    ]))
}

fn qemu_io(uri: &str, commands: &[&str]) -> String {
    let mut command = Command::new("qemu-io");
    command.args(["-f", "raw"]);
    for c in commands {
        command.args(["-c", c]);
    }
    let out = run_ok(command.arg(uri));
    assert!(!out.contains("Pattern verification failed"), "{out}");
    out
}

#[test]
fn real_nbd_clients_use_an_image_through_vbd_and_the_block_io_stage() {
    let testbed = Testbed::new("bc");
    let info = run_ok(Command::new("nbdinfo").args(["--json", &testbed.uri()]));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["exports"][0]["export-size"], 64 << 20, "{info}");

    let (wrote, read) = convert_round_trip(&testbed, 64);
    eprintln!("qemu-img convert 64 MiB: in {wrote:.2} s, out {read:.2} s");
    qemu_io(&testbed.uri(), &["write -P 0xab 1M 192k", "write -z 1056k 64k", "discard 2M 64k", "flush"]);
    qemu_io(&testbed.uri(), &["read -P 0xab 1M 32k", "read -P 0 1056k 64k", "read -P 0 2M 64k", "read -P 0xab 1120k 64k"]);
    fio_verify(&testbed, "randwrite", "16M");
    fio_verify(&testbed, "randrw", "16M");

    let stats = ctl_json(&testbed.socket, &["stats"]);
    for reason in ["storage_malformed", "storage_unknown_user", "storage_bad_mac", "storage_wrong_source"] {
        assert_eq!(stats["drops"][reason], 0, "{reason}: {}", stats["drops"]);
    }
    let served = &stats["storage"];
    assert!(served["bytes_written"].as_u64() >= Some(64 << 20), "the stage counted the writes: {served}");
    assert!(served["bytes_read"].as_u64() >= Some(64 << 20), "and the reads: {served}");
    assert_eq!(served["error_replies"], 0, "{served}");
    let images = ctl_json(&testbed.socket, &["storage", "image", "list"]);
    assert_eq!(images[0]["attached"], true, "the image counts as attached while vbd uses it: {images}");
    testbed.finish();
}

/// 2% of the UDP datagrams are dropped each way, at random, in the client namespace (the client's
/// requests on output, the server's replies on input): every I/O still completes, by retransmission, and
/// the data verifies. This kernel has no netem (CONFIG_NET_SCH_NETEM is not set), so the loss is an
/// nftables rule (`numgen random mod 100 < 2 drop`), which drops in the same place a netem qdisc would.
#[test]
fn every_io_completes_and_verifies_with_two_percent_loss_each_way() {
    let testbed = Testbed::new("bl");
    let rules = "table inet loss {\n\
        chain out { type filter hook output priority 0; meta l4proto udp numgen random mod 100 < 2 counter drop; }\n\
        chain in { type filter hook input priority 0; meta l4proto udp numgen random mod 100 < 2 counter drop; }\n}\n";
    let rules_file = testbed.dir.path().join("loss.nft");
    std::fs::write(&rules_file, rules).unwrap();
    run_ok(&mut testbed.client.exec(&["nft", "-f", rules_file.to_str().unwrap()]));
    let (wrote, read) = convert_round_trip(&testbed, 16);
    eprintln!("with 2% loss each way, qemu-img convert 16 MiB: in {wrote:.2} s, out {read:.2} s");
    fio_verify(&testbed, "randrw", "8M");
    let counters = run_ok(&mut testbed.client.exec(&["nft", "list", "table", "inet", "loss"]));
    let dropped: Vec<u64> =
        counters.split("packets ").skip(1).filter_map(|c| c.split_whitespace().next()?.parse().ok()).collect();
    assert!(dropped.len() == 2 && dropped.iter().all(|&n| n > 0), "datagrams were dropped each way: {counters}");
    eprintln!("dropped: {} requests, {} replies", dropped[0], dropped[1]);
    testbed.finish();
}

/// Data a FLUSH acknowledged survives a SIGKILL of the server: after a restart on the same database and
/// images it reads back.
#[test]
fn flushed_data_is_there_after_the_server_is_killed_and_restarted() {
    let mut testbed = Testbed::new("bd");
    qemu_io(&testbed.uri(), &["write -P 0x5c 3M 256k", "flush"]);
    drop(testbed.server.take()); // SIGKILL
    let dir = testbed.dir.path().to_path_buf();
    testbed.server = Some(RunningSwitch::start_running(&dir, &server_config(&dir, &testbed.socket, &testbed.uplink)));
    testbed.start_vbd();
    qemu_io(&testbed.uri(), &["read -P 0x5c 3M 256k"]);
    testbed.finish();
}
