use std::net::Ipv4Addr;

use super::*;
use crate::wire::MacAddr;

fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}

fn network(vni: Vni, name: &str) -> Network {
    Network { vni, name: name.into(), flood_vteps: vec![Ipv4Addr::new(192, 0, 2, 2)] }
}

fn endpoint(vni: Vni, last: u8) -> VmEndpoint {
    VmEndpoint { vni, mac: mac(last), ip: Some(Ipv4Addr::new(10, 1, 0, last)), port: "vm0".into() }
}

fn remote(vni: Vni, last: u8) -> RemoteEndpoint {
    RemoteEndpoint { vni, mac: mac(last), ip: None, vtep: Ipv4Addr::new(192, 0, 2, 3) }
}

fn temp() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sub/dir/config.redb");
    (dir, path)
}

#[test]
fn new_database_is_empty_generation_zero() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    assert!(path.exists(), "open creates the directory and the file");
    assert_eq!(store.snapshot().unwrap(), ConfigSnapshot::default());
    assert_eq!(store.generation().unwrap(), 0);
    assert_eq!(store.path(), path);
}

#[test]
fn round_trip_in_key_order_and_in_memory_apply_agrees() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let mut memory = ConfigSnapshot::default();
    let batches = [
        vec![Change::PutNetwork(network(200, "red")), Change::PutNetwork(network(100, "blue"))],
        vec![
            Change::PutEndpoint(endpoint(100, 9)),
            Change::PutEndpoint(endpoint(100, 1)),
            Change::PutRemote(remote(200, 5)),
        ],
        vec![Change::PutPortNetwork(PortNetwork { port: "vm1".into(), vni: 100 })],
        vec![Change::PutPortNetwork(PortNetwork { port: "vm0".into(), vni: 200 })],
        // Replace: same key, new value.
        vec![Change::PutNetwork(Network { vni: 100, name: "blue2".into(), flood_vteps: vec![] })],
        vec![Change::DeleteEndpoint { vni: 100, mac: mac(9) }, Change::DeletePortNetwork { port: "vm1".into() }],
        // Larger than 9 digits of order would break a non-padded key: 9 < 10 < 100.
        vec![Change::PutNetwork(network(9, "nine")), Change::PutNetwork(network(10, "ten"))],
    ];
    for (i, batch) in batches.iter().enumerate() {
        let generation = store.commit(batch).unwrap();
        assert_eq!(generation, i as u64 + 1);
        memory.apply(batch);
        memory.generation = generation;
        assert_eq!(store.snapshot().unwrap(), memory, "after batch {i}");
    }
    let snapshot = store.snapshot().unwrap();
    assert_eq!(snapshot.networks.iter().map(|n| n.vni).collect::<Vec<_>>(), [9, 10, 100, 200]);
    assert_eq!(snapshot.networks[2].name, "blue2");
    assert_eq!(snapshot.endpoints, [endpoint(100, 1)]);
    assert_eq!(snapshot.remotes, [remote(200, 5)]);
    assert_eq!(snapshot.ports, [PortNetwork { port: "vm0".into(), vni: 200 }]);
}

#[test]
fn a_failing_batch_applies_nothing() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    store.commit(&[Change::PutNetwork(network(100, "blue"))]).unwrap();
    let before = store.snapshot().unwrap();

    // The third change deletes a record that does not exist: the first two must not stick.
    let err = store
        .commit(&[
            Change::PutNetwork(network(200, "red")),
            Change::DeleteNetwork { vni: 100 },
            Change::DeleteRemote { vni: 100, mac: mac(1) },
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot delete remote endpoint 02:00:00:00:00:01 in VNI 100"), "{err}");
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    assert_eq!(store.snapshot().unwrap(), before);

    // A failure after every change is staged (at commit time) applies nothing either.
    store.fail_next_commit();
    assert!(store.commit(&[Change::PutNetwork(network(300, "green"))]).is_err());
    assert_eq!(store.snapshot().unwrap(), before);
    assert_eq!(store.commit(&[Change::PutNetwork(network(300, "green"))]).unwrap(), 2);
}

#[test]
fn empty_commit_changes_nothing() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.commit(&[]).unwrap(), 0);
    store.commit(&[Change::PutNetwork(network(1, "a"))]).unwrap();
    assert_eq!(store.commit(&[]).unwrap(), 1);
}

#[test]
fn reopen_keeps_data() {
    let (_dir, path) = temp();
    let expected = {
        let store = Store::open(&path).unwrap();
        store.commit(&[Change::PutNetwork(network(100, "blue")), Change::PutEndpoint(endpoint(100, 1))]).unwrap();
        store.commit(&[Change::PutRemote(remote(100, 2))]).unwrap();
        store.snapshot().unwrap()
    };
    let store = Store::open(&path).unwrap();
    assert_eq!(store.snapshot().unwrap(), expected);
    assert_eq!(expected.generation, 2);
    assert_eq!(store.commit(&[Change::DeleteRemote { vni: 100, mac: mac(2) }]).unwrap(), 3);
}

#[test]
fn one_open_at_a_time() {
    let (_dir, path) = temp();
    let _store = Store::open(&path).unwrap();
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(err.contains(path.to_str().unwrap()) && err.contains("already open"), "{err}");
}

#[test]
fn bootstrap_seeds_only_a_never_written_database() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    assert!(!store.bootstrap_if_empty(&ConfigSnapshot::default()).unwrap(), "an empty seed writes nothing");
    assert_eq!(store.generation().unwrap(), 0);

    let seed = ConfigSnapshot {
        generation: 0,
        networks: vec![network(100, "blue")],
        endpoints: vec![endpoint(100, 1)],
        remotes: vec![remote(100, 2)],
        ports: vec![PortNetwork { port: "vm0".into(), vni: 100 }],
    };
    assert!(store.bootstrap_if_empty(&seed).unwrap());
    assert_eq!(store.snapshot().unwrap(), ConfigSnapshot { generation: 1, ..seed.clone() });

    // Later starts leave the database alone, even when the TOML changed.
    let other = ConfigSnapshot { networks: vec![network(7, "seven")], ..ConfigSnapshot::default() };
    assert!(!store.bootstrap_if_empty(&other).unwrap());
    store.commit(&[Change::DeleteRemote { vni: 100, mac: mac(2) }]).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert!(!store.bootstrap_if_empty(&seed).unwrap());
    assert!(store.snapshot().unwrap().remotes.is_empty());
}

#[test]
fn unknown_schema_version_is_refused_naming_the_file() {
    let (_dir, path) = temp();
    drop(Store::open(&path).unwrap());
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap();
            meta.insert("schema_version", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "config database {}: schema version 99 is not supported (this switchyard reads version 1); \
             use the switchyard that wrote it, or move the file away to bootstrap again from the TOML config",
            path.display()
        )
    );
}

#[test]
fn foreign_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photos.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, &str>::new("photos")).unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(err.contains(path.to_str().unwrap()) && err.contains("not a switchyard config database"), "{err}");

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "this is not a database, just some text that is long enough to look like a header\n".repeat(100),
    )
    .unwrap();
    let err = Store::open(&text).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("config database {}: cannot open: it is not a redb database file, or it is damaged", text.display())
    );
}

#[test]
fn corrupt_records_name_table_and_key() {
    let (_dir, path) = temp();
    {
        let store = Store::open(&path).unwrap();
        store.commit(&[Change::PutNetwork(network(100, "blue"))]).unwrap();
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut networks = txn.open_table(redb::TableDefinition::<&str, &str>::new("networks")).unwrap();
            networks.insert("00000100", "{\"vni\": \"x\"}").unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap().snapshot().unwrap_err().to_string();
    assert!(err.contains("table networks, key \"00000100\": cannot decode the record"), "{err}");
}

#[test]
fn stress_prints_each_generation() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let mut out = Vec::new();
    stress::stress(&store, Some(3), &mut out).unwrap();
    stress::stress(&store, Some(2), &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "1\n2\n3\n4\n5\n");
    let snapshot = store.snapshot().unwrap();
    assert_eq!(snapshot.networks.len(), 5);
    assert_eq!(snapshot.remotes[4].mac, stress::stress_mac(5));
}
