//! Crash safety of the config database: `switchyard store-stress` commits numbered
//! two-record batches and prints each generation once `commit` has returned; the
//! test SIGKILLs it at random moments, reopens the file, and checks that every
//! acknowledged batch is there, whole, and nothing else is.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::KillTimes;
use switchyard::configdb::stress::stress_mac;
use switchyard::configdb::Store;
use switchyard::model::Vni;

const ITERATIONS: usize = 20;

#[test]
fn acknowledged_commits_survive_sigkill() {
    let mut rng = KillTimes::from_clock();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("crash.redb");
    let started = Instant::now();
    let mut acknowledged: u64 = 0;
    let mut killed_while_committing = 0;

    for iteration in 0..ITERATIONS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["store-stress", "--database"])
            .arg(&database)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (committing, first_commit) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            // Only whole lines count: a line cut by the kill was never acknowledged.
            let mut lines = Vec::new();
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(number) = line.strip_suffix('\n') {
                    lines.push(number.parse::<u64>().expect("a generation per line"));
                    let _ = committing.send(());
                }
                line.clear();
            }
            lines
        });
        // The kill lands while committing, not while the file is opened and
        // checked (a child process, slower on a loaded machine): from the first
        // acknowledged commit on.
        let _ = first_commit.recv_timeout(Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20 + rng.below(280)));
        let still_running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let lines = reader.join().unwrap();
        if !still_running {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            panic!("store-stress ended by itself ({status}): {stderr}");
        }
        if !lines.is_empty() {
            killed_while_committing += 1;
        }

        // Acknowledged generations continue where the database stood, one by one.
        let expected: Vec<u64> = (acknowledged + 1..).take(lines.len()).collect();
        assert_eq!(lines, expected, "iteration {iteration}: acknowledged generations");
        let last = lines.last().copied().unwrap_or(acknowledged);

        let store = Store::open(&database).unwrap_or_else(|e| panic!("iteration {iteration}: reopen: {e}"));
        let snapshot = store.snapshot().unwrap();
        let generation = snapshot.generation;
        // Every acknowledged batch survived; at most the one in flight at the kill
        // (committed but not yet printed) is there beyond it.
        assert!(
            generation >= last,
            "iteration {iteration}: generation {generation} < acknowledged {last} (seed {})",
            rng.seed()
        );
        assert!(generation <= last + 1, "iteration {iteration}: generation {generation} > acknowledged {last} + 1");
        // No partial batch: both records of every batch 1..=generation, nothing else.
        assert_eq!(snapshot.networks.len() as u64, generation, "iteration {iteration}: networks vs generation");
        assert_eq!(snapshot.remotes.len() as u64, generation, "iteration {iteration}: remotes vs generation");
        for (n, (network, remote)) in (1..=generation).zip(snapshot.networks.iter().zip(&snapshot.remotes)) {
            let vni = Vni::try_from(n).unwrap();
            assert_eq!((network.vni, network.name.as_str()), (vni, format!("stress-{n}").as_str()));
            assert_eq!((remote.vni, remote.mac), (vni, stress_mac(vni)));
        }
        acknowledged = generation;
        drop(store);
    }
    eprintln!(
        "{ITERATIONS} kills, {killed_while_committing} while committing, {acknowledged} batches in {:?}",
        started.elapsed()
    );
    assert!(
        killed_while_committing >= ITERATIONS / 2,
        "too few kills landed while committing: {killed_while_committing}"
    );
    assert!(acknowledged > ITERATIONS as u64, "too few commits to mean anything: {acknowledged}");
}
