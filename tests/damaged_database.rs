//! A damaged or empty database stops the process that opens it with one line
//! naming the file and what to do (exit 1): no panic inside redb, no abort,
//! and never a silent start over. Each damage is tried on the config database
//! (`switchyard run`), the board's (`board serve`), the coordinator's and a
//! controller's, against the debug binary and, when `make build` has made one
//! that knows the check, the release binary too (it aborts on a panic).
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use switchyard::board::model::{Record, VmState};
use switchyard::board::store::{Batch, BoardStore, RedbBoardStore, Write};
use switchyard::intercloud::store::{Batch as RowBatch, Write as RowWrite};
use switchyard::intercloud::{IntercloudStore, RedbIntercloudStore};
use switchyard::configdb::Store;
use switchyard::model::{Change, Network};

#[derive(Clone, Copy, Debug)]
enum Damage {
    Empty,
    TruncatedToHalf,
    TruncatedTo4096,
    JunkAppended,
    HeaderBytesFlipped,
    PageBytesFlipped,
}

const DAMAGES: [Damage; 6] = [
    Damage::Empty,
    Damage::TruncatedToHalf,
    Damage::TruncatedTo4096,
    Damage::JunkAppended,
    Damage::HeaderBytesFlipped,
    Damage::PageBytesFlipped,
];

fn damage(path: &Path, damage: Damage) {
    let mut bytes = std::fs::read(path).unwrap();
    match damage {
        Damage::Empty => bytes.clear(),
        Damage::TruncatedToHalf => bytes.truncate(bytes.len() / 2),
        Damage::TruncatedTo4096 => bytes.truncate(4096),
        Damage::JunkAppended => bytes.extend((0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)),
        Damage::HeaderBytesFlipped => bytes[..4096].iter_mut().step_by(7).for_each(|b| *b ^= 0xff),
        Damage::PageBytesFlipped => bytes[4096..].iter_mut().step_by(997).for_each(|b| *b ^= 0xff),
    }
    std::fs::write(path, bytes).unwrap();
}

/// The binaries to try: the debug one and, if present and new enough to know
/// `check-database`, the release one.
fn binaries() -> Vec<PathBuf> {
    let mut binaries = vec![PathBuf::from(env!("CARGO_BIN_EXE_switchyard"))];
    let release = repo().join("target/release/switchyard");
    let knows_the_check = || {
        Command::new(&release).args(["check-database", "--help"]).output().is_ok_and(|out| out.status.success())
    };
    if release.exists() && knows_the_check() {
        binaries.push(release);
    } else {
        eprintln!("{}: no release binary with the check (make build makes one); debug only", release.display());
    }
    binaries
}

/// Runs `args` with `binary` (from the repository root, quiet logs) and checks
/// that it ends with exit 1 and exactly one line, naming `database`, saying
/// `problem` and what to do; the file is left as it was.
fn refused(binary: &Path, args: &[&str], database: &Path, what: &str, damage: Damage) {
    let before = std::fs::read(database).unwrap();
    let child = Command::new(binary)
        .current_dir(repo())
        .env("RUST_LOG", "warn")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let context = format!("{} {args:?} on {damage:?}", binary.display());
    let Some(out) = Running(Some(child)).wait_at_most(Duration::from_secs(30)) else {
        panic!("{context}: still running after 30 s: it started on the damaged file");
    };
    let lines = stderr_lines(&out);
    let context = format!("{context}: {}: {lines:?}", out.status);
    assert_eq!(out.status.code(), Some(1), "{context}");
    assert_eq!(lines.len(), 1, "{context}");
    let line = &lines[0];
    assert!(line.contains(&format!("{what} {}:", database.display())), "{context}");
    let problem = match damage {
        Damage::Empty => "is empty (0 bytes)",
        _ => "cannot open: it is",
    };
    assert!(line.contains(problem), "{context}");
    assert!(line.contains("restore it from a backup"), "{context}");
    assert!(!line.contains("panicked"), "{context}");
    assert_eq!(std::fs::read(database).unwrap(), before, "{context}: the file was changed");
}

fn config_database(path: &Path) {
    let store = Store::open(path).unwrap();
    for vni in 1..=40 {
        let network = Network { vni, name: format!("net{vni}"), flood_vteps: Vec::new() };
        store.commit(&[Change::PutNetwork(network)]).unwrap();
    }
}

fn board_database(path: &Path) {
    let mut store = RedbBoardStore::open(path).unwrap();
    for revision in 1..=40u32 {
        let record = Record {
            vni: 100,
            mac: switchyard::wire::MacAddr([0x02, 0, 0, 0, 0, revision as u8]),
            ip: None,
            vtep: std::net::Ipv4Addr::new(192, 0, 2, 10),
            state: VmState::Running,
            revision: revision.into(),
            updated_by: "host-a".into(),
        };
        store.commit(&Batch { revision: revision.into(), writes: vec![Write::PutRecord(record)] }).unwrap();
    }
}

fn role_database(path: &Path, owner: &str) {
    let mut store = RedbIntercloudStore::open(path, owner).unwrap();
    for revision in 1..=40u64 {
        let write = RowWrite { table: "vms", key: format!("{revision:08}"), value: Some(format!("{{\"n\":{revision}}}")) };
        store.commit(&RowBatch { revision, writes: vec![write] }).unwrap();
    }
}

#[test]
fn a_damaged_config_database_stops_run_with_one_line() {
    let dir = scratch("damaged_config_database");
    for binary in binaries() {
        for kind in DAMAGES {
            let database = dir.join(format!("{kind:?}.redb"));
            let _ = std::fs::remove_file(&database);
            config_database(&database);
            damage(&database, kind);
            let config = dir.join(format!("{kind:?}.toml"));
            std::fs::write(
                &config,
                format!(
                    "{ONE_WORKER}[control]\nsocket = \"{}/{kind:?}.sock\"\ndatabase = \"{}\"\n\
                     [[port]]\nname = \"vm0\"\ndevargs = \"net_null0\"\nrole = \"vm\"\n",
                    dir.display(),
                    database.display()
                ),
            )
            .unwrap();
            refused(&binary, &["run", "--config", config.to_str().unwrap()], &database, "config database", kind);
        }
    }
}

#[test]
fn a_damaged_board_database_stops_board_serve_with_one_line() {
    let dir = scratch("damaged_board_database");
    for binary in binaries() {
        for kind in DAMAGES {
            let database = dir.join(format!("{kind:?}.redb"));
            let _ = std::fs::remove_file(&database);
            board_database(&database);
            damage(&database, kind);
            let token = dir.join("board.token");
            let args = ["board", "serve", "--listen", "127.0.0.1:0", "--token-file", token.to_str().unwrap(), "--database", database.to_str().unwrap()];
            refused(&binary, &args, &database, "board database", kind);
        }
    }
}

#[test]
fn a_damaged_coordinator_or_controller_database_stops_it_with_one_line() {
    let dir = scratch("damaged_role_database");
    for binary in binaries() {
        for kind in DAMAGES {
            let database = dir.join(format!("coordinator-{kind:?}.redb"));
            let _ = std::fs::remove_file(&database);
            role_database(&database, "coordinator");
            damage(&database, kind);
            let token = dir.join("roles.token");
            let token = token.to_str().unwrap();
            let args = ["coordinator", "serve", "--listen", "127.0.0.1:0", "--token-file", token, "--database", database.to_str().unwrap()];
            refused(&binary, &args, &database, "coordinator: database", kind);

            let database = dir.join(format!("controller-{kind:?}.redb"));
            let _ = std::fs::remove_file(&database);
            role_database(&database, "controller:c1");
            damage(&database, kind);
            let args = [
                "controller",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--token-file",
                token,
                "--database",
                database.to_str().unwrap(),
                "--cloud",
                "c1",
                "--gateway-vtep",
                "192.0.2.1",
                "--coordinator",
                "http://127.0.0.1:9",
            ];
            refused(&binary, &args, &database, "controller: database", kind);
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o7777
}

/// A new database is 0600 in a 0700 directory; an existing one others can read
/// is set to 0600 with one WARN naming it; a directory others can write stops
/// the start, naming it.
#[test]
fn database_files_are_private() {
    let dir = scratch("database_files_are_private");
    let fresh = dir.join("state");
    let database = fresh.join("board.redb");
    common::board::BoardProcess::start(&database).terminate();
    assert_eq!((mode(&fresh), mode(&database)), (0o700, 0o600));

    std::fs::set_permissions(&database, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = common::board::BoardProcess::start(&database).terminate();
    let warnings: Vec<String> = stderr_lines(&out).into_iter().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].ends_with(&format!(
            "database {}: was readable by group or others (mode 644); set to 0600",
            database.display()
        )),
        "{warnings:?}"
    );
    assert_eq!(mode(&database), 0o600);

    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let database = shared.join("board.redb");
    let out = switchyard()
        .args(["board", "serve", "--listen", "127.0.0.1:0", "--database", database.to_str().unwrap()])
        .arg("--token-file")
        .arg(dir.join("board.token"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&out),
        [format!(
            "switchyard: board database {}: its directory {} is writable by group or others (mode 777), so another \
             user could replace the file: chmod go-w {}",
            database.display(),
            shared.display(),
            shared.display()
        )]
    );
    assert!(!database.exists());
}

/// The umask is 077: what the switch writes (a pcap output, the stats JSON, the
/// config database) is its owner's alone.
#[test]
fn what_the_switch_writes_is_its_owners_alone() {
    let dir = scratch("what_the_switch_writes_is_its_owners_alone");
    let (output, stats, database) = (dir.join("out.pcap"), dir.join("stats.json"), dir.join("config.redb"));
    let toml = format!(
        "{ONE_WORKER}[control]\nsocket = \"{}/api.sock\"\ndatabase = \"{}\"\n\
         [[port]]\nname = \"vm0\"\ndevargs = \"net_pcap0,rx_pcap={}\"\nrole = \"vm\"\n\
         [[port]]\nname = \"uplink0\"\ndevargs = \"net_pcap1,tx_pcap={}\"\nrole = \"uplink\"\n",
        dir.display(),
        database.display(),
        repo().join("conf/samples/default-in.pcap").display(),
        output.display()
    );
    let out = run_config(&dir, "run", &toml, &["--stats-json", stats.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for file in [&output, &stats, &database] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert!(json(&stats)["ports"].is_array(), "still readable by its owner");
}

/// A real ENOSPC: a small tmpfs, filled up. redb refuses every write after one
/// failed write ("Previous I/O error occurred") until the database is opened
/// again; the store does so itself, so once space is freed the next change
/// succeeds, and nothing acknowledged before is lost.
#[test]
fn after_a_full_disk_frees_up_the_next_change_succeeds_without_a_restart() {
    let Some(disk) = common::small_disk::SmallDisk::mount("6m") else { return };
    let store = Store::open(disk.path().join("config.redb")).unwrap();
    disk.fill();
    let network = |vni: u32| Network { vni, name: format!("{vni}-{}", "x".repeat(8000)), flood_vteps: Vec::new() };
    let mut acknowledged = 0;
    let full = loop {
        match store.commit(&[Change::PutNetwork(network(acknowledged + 1))]) {
            Ok(_) => acknowledged += 1,
            Err(e) => break e.to_string(),
        }
        assert!(acknowledged < 10_000, "the disk never filled up");
    };
    assert!(full.contains("No space left on device"), "{full}");

    disk.free();
    let vni = acknowledged + 1;
    store.commit(&[Change::PutNetwork(network(vni))]).unwrap_or_else(|e| panic!("the disk has space again, yet: {e}"));
    let snapshot = store.snapshot().unwrap();
    assert_eq!(snapshot.networks.len() as u32, vni, "every acknowledged change and the new one");
    assert_eq!(snapshot.generation, u64::from(vni));
}
