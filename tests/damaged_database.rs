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
use switchyard::store::{Change, Network, Store};

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
            let args = ["board", "serve", "--listen", "127.0.0.1:0", "--database", database.to_str().unwrap()];
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
            let args = ["coordinator", "serve", "--listen", "127.0.0.1:0", "--database", database.to_str().unwrap()];
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
