use std::net::Ipv4Addr;

use super::*;
use switchyard_model::*;
use switchyard_wire::MacAddr;

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
    RemoteEndpoint { vni, mac: mac(last), ip: None, vtep: Ipv4Addr::new(192, 0, 2, 3), source: Default::default() }
}

fn migration(vni: Vni, primary: [u8; 4], post: Option<[u8; 4]>) -> AddressMigration {
    AddressMigration {
        vni,
        primary_ip: Ipv4Addr::from(primary),
        post_migration_ip: post.map(Ipv4Addr::from),
        port: "vm0".into(),
        source: AddressMigrationSource::Notification,
    }
}

fn temp() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sub/dir/config.redb");
    (dir, path)
}

#[test]
fn a_new_database_appears_whole_even_after_a_crash_while_creating_one() {
    let (_dir, path) = temp();
    // What a crash while creating leaves: a half-written staging file, nothing at `path`.
    let staging = path.with_file_name(format!("{}.creating", path.file_name().unwrap().to_str().unwrap()));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&staging, b"redb header cut short").unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.snapshot().unwrap().generation, 0);
    assert!(!staging.exists(), "the staging file became the database");
    drop(store);
    assert_eq!(Store::open(&path).unwrap().snapshot().unwrap().generation, 0);
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
        address_migrations: vec![migration(100, [10, 1, 0, 5], Some([10, 2, 0, 5]))],
        storage: Default::default(),
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
            "config database {}: schema version 99 is not supported (this switchyard reads version 5); \
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
        format!(
            "config database {}: cannot open: it is not a redb database file, or it is damaged: restore it from a \
             backup, or move it away to start with a new, empty database",
            text.display()
        )
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

fn applied(reply: serde_json::Value) -> RequestOutcome {
    RequestOutcome::Applied { status: 201, reply }
}

#[test]
fn queued_requests_keep_arrival_order_and_rising_ids_across_reopen() {
    let (_dir, path) = temp();
    {
        let store = Store::open(&path).unwrap();
        assert!(store.queued_requests().unwrap().is_empty());
        let request = serde_json::json!({"create_network": {"vni": 5}});
        let first = store.queue_request("POST", "/v1/networks", request).unwrap();
        assert_eq!((first.id, first.state, first.status, first.generation), (1, RequestState::Queued, None, None));
        assert!(first.queued_unix_us > 0);
        store.queue_request("DELETE", "/v1/networks/5", serde_json::json!({"delete_network": {"vni": "5"}})).unwrap();
        // Queueing is not a configuration change.
        assert_eq!(store.generation().unwrap(), 0);
    }
    let store = Store::open(&path).unwrap();
    let queued = store.queued_requests().unwrap();
    let listed: Vec<_> = queued.iter().map(|r| (r.id, r.method.as_str(), r.path.as_str())).collect();
    assert_eq!(listed, [(1, "POST", "/v1/networks"), (2, "DELETE", "/v1/networks/5")]);
    assert_eq!(queued[0].request, serde_json::json!({"create_network": {"vni": 5}}));
    assert_eq!(store.request(2).unwrap().unwrap(), queued[1]);
    assert_eq!(store.request(3).unwrap(), None);
    assert_eq!(store.queue_request("PUT", "/v1/ports/vm0/network", serde_json::Value::Null).unwrap().id, 3);
}

#[test]
fn a_queued_request_is_finished_in_the_transaction_of_its_change() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let id = store.queue_request("POST", "/v1/networks", serde_json::Value::Null).unwrap().id;
    let reply = serde_json::json!({"vni": 100, "name": "blue", "flood_vteps": []});
    let put = [Change::PutNetwork(network(100, "blue"))];

    // A failed commit leaves the request queued and the configuration as it was.
    store.fail_next_commit();
    store.commit_and_finish(&put, Some((id, applied(reply.clone())))).unwrap_err();
    assert_eq!(store.queued_requests().unwrap().len(), 1);
    assert_eq!(store.snapshot().unwrap(), ConfigSnapshot::default());

    assert_eq!(store.commit_and_finish(&put, Some((id, applied(reply.clone())))).unwrap(), 1);
    assert!(store.queued_requests().unwrap().is_empty());
    let record = store.request(id).unwrap().unwrap();
    assert_eq!((record.state, record.status, record.generation), (RequestState::Applied, Some(201), Some(1)));
    assert_eq!(record.reply, Some(reply));
    assert!(record.finished_unix_us.unwrap() >= record.queued_unix_us);
    assert_eq!(store.snapshot().unwrap().networks.len(), 1);

    // Finishing it again, or one that never was, is refused naming it, and the
    // change that came with it is not made.
    let err = store.finish_request(id, applied(serde_json::Value::Null)).unwrap_err().to_string();
    assert!(err.ends_with("cannot delete queued request 1: there is no such record"), "{err}");
    let red = [Change::PutNetwork(network(200, "red"))];
    assert!(store.commit_and_finish(&red, Some((9, applied(serde_json::Value::Null)))).is_err());
    assert_eq!(store.generation().unwrap(), 1);

    // A refused one records why, at the current generation, without a new one.
    let id = store.queue_request("POST", "/v1/networks", serde_json::Value::Null).unwrap().id;
    let error = "network 100 already exists".to_string();
    store.finish_request(id, RequestOutcome::Failed { status: 409, error, field: Some("vni".into()) }).unwrap();
    let record = store.request(id).unwrap().unwrap();
    assert_eq!(record.state, RequestState::Failed);
    assert_eq!(
        (record.status, record.error.as_deref(), record.field.as_deref()),
        (Some(409), Some("network 100 already exists"), Some("vni"))
    );
    assert_eq!((record.generation, record.reply), (None, None));
    assert_eq!(store.generation().unwrap(), 1);
}

#[test]
fn only_the_last_finished_requests_are_kept() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    store.keep_finished(3);
    for _ in 0..5 {
        let id = store.queue_request("DELETE", "/v1/networks/1", serde_json::Value::Null).unwrap().id;
        store.finish_request(id, applied(serde_json::Value::Null)).unwrap();
    }
    let still_queued = store.queue_request("DELETE", "/v1/networks/1", serde_json::Value::Null).unwrap().id;
    let kept: Vec<u64> = (1..=6).filter(|id| store.request(*id).unwrap().is_some()).collect();
    assert_eq!(kept, [3, 4, 5, still_queued], "queued requests are never dropped");
}

#[test]
fn a_version_1_database_gains_the_request_tables_and_keeps_its_records() {
    let (_dir, path) = temp();
    old_layout(&path, 1, 7);
    let store = Store::open(&path).unwrap();
    let snapshot = store.snapshot().unwrap();
    assert_eq!((snapshot.generation, snapshot.networks[0].name.as_str()), (7, "blue"));
    assert_eq!(store.queue_request("POST", "/v1/networks", serde_json::Value::Null).unwrap().id, 1);
    drop(store);
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap();
    assert_eq!(meta.get("schema_version").unwrap().unwrap().value(), SCHEMA_VERSION);
}

#[test]
fn corrupt_queued_requests_name_table_and_key() {
    let (_dir, path) = temp();
    drop(Store::open(&path).unwrap());
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut queued = txn.open_table(redb::TableDefinition::<u64, &str>::new("queued_requests")).unwrap();
            queued.insert(4, "{\"id\": 4}").unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap().queued_requests().unwrap_err().to_string();
    assert!(err.contains("table queued_requests, key \"4\": cannot decode the record"), "{err}");
}

#[test]
fn address_migrations_round_trip_in_address_order() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let mut memory = ConfigSnapshot::default();
    // 10.1.0.20 sorts after 10.1.0.5 as an address, before it as decimal text.
    let batches = [
        vec![
            Change::PutAddressMigration(migration(100, [10, 1, 0, 20], Some([10, 2, 0, 20]))),
            Change::PutAddressMigration(migration(100, [10, 1, 0, 5], None)),
            Change::PutAddressMigration(migration(7, [10, 9, 0, 1], Some([10, 8, 0, 1]))),
        ],
        vec![Change::PutAddressMigration(AddressMigration {
            source: AddressMigrationSource::VmReport,
            ..migration(100, [10, 1, 0, 5], Some([10, 2, 0, 5]))
        })],
        vec![Change::DeleteAddressMigration { vni: 7, primary_ip: Ipv4Addr::new(10, 9, 0, 1) }],
    ];
    for batch in &batches {
        let generation = store.commit(batch).unwrap();
        memory.apply(batch);
        memory.generation = generation;
        assert_eq!(store.snapshot().unwrap(), memory);
    }
    let primaries: Vec<Ipv4Addr> = memory.address_migrations.iter().map(|m| m.primary_ip).collect();
    assert_eq!(primaries, [Ipv4Addr::new(10, 1, 0, 5), Ipv4Addr::new(10, 1, 0, 20)]);
    assert_eq!(memory.address_migrations[0].source, AddressMigrationSource::VmReport);
    let gone = store.commit(&[Change::DeleteAddressMigration { vni: 7, primary_ip: Ipv4Addr::new(10, 9, 0, 1) }]);
    assert_eq!(
        gone.unwrap_err().to_string(),
        format!(
            "config database {}: cannot delete the address migration of 10.9.0.1 in VNI 7: there is no such record",
            path.display()
        )
    );
    drop(store);
    assert_eq!(Store::open(&path).unwrap().snapshot().unwrap(), memory, "kept across a reopen");
}

#[test]
fn a_version_2_database_gains_the_address_migration_table_and_keeps_its_records() {
    let (_dir, path) = temp();
    old_layout(&path, 2, 4);
    let store = Store::open(&path).unwrap();
    let snapshot = store.snapshot().unwrap();
    assert_eq!((snapshot.generation, snapshot.networks.len()), (4, 1));
    assert!(snapshot.address_migrations.is_empty());
    let entry = migration(100, [10, 1, 0, 5], Some([10, 2, 0, 5]));
    assert_eq!(store.commit(&[Change::PutAddressMigration(entry.clone())]).unwrap(), 5);
    assert_eq!(store.snapshot().unwrap().address_migrations, [entry]);
    drop(store);
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap();
    assert_eq!(meta.get("schema_version").unwrap().unwrap().value(), SCHEMA_VERSION);
}

fn storage_user(name: &str, id: UserId, ip: [u8; 4], secret: u8) -> StorageUser {
    StorageUser { name: name.into(), id, ips: vec![Ipv4Addr::from(ip)], quota_bytes: 1 << 30, secret: Secret([secret; 32]) }
}

fn storage_image(name: &str, id: ImageId, owner: &str) -> StorageImage {
    StorageImage { name: name.into(), id, owner: owner.into(), size: 1 << 20, read_only: false }
}

#[test]
fn storage_users_and_images_round_trip_with_secrets_and_rising_ids() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let mut memory = ConfigSnapshot::default();
    let batches = [
        vec![
            Change::PutStorageUser(storage_user("bob", 2, [10, 0, 0, 6], 0xbb)),
            Change::PutStorageUser(storage_user("alice", 1, [10, 0, 0, 5], 0xaa)),
        ],
        vec![Change::PutStorageImage(storage_image("disk", 1, "alice")), Change::PutStorageImage(storage_image("boot", 2, "bob"))],
        // A rotation replaces the record, secret included.
        vec![Change::PutStorageUser(storage_user("alice", 1, [10, 0, 0, 5], 0xa2))],
        // Deleting the newest records does not lower the last ids: they are never given out again.
        vec![Change::DeleteStorageImage { name: "boot".into() }, Change::DeleteStorageUser { name: "bob".into() }],
    ];
    for batch in &batches {
        let generation = store.commit(batch).unwrap();
        memory.apply(batch);
        memory.generation = generation;
        assert_eq!(store.snapshot().unwrap(), memory);
    }
    let storage = &memory.storage;
    assert_eq!((storage.last_user_id, storage.last_image_id), (2, 2));
    assert_eq!(storage.users, [storage_user("alice", 1, [10, 0, 0, 5], 0xa2)]);
    assert_eq!(storage.images, [storage_image("disk", 1, "alice")]);
    let gone = store.commit(&[Change::DeleteStorageUser { name: "bob".into() }]).unwrap_err().to_string();
    assert!(gone.ends_with("cannot delete storage user bob: there is no such record"), "{gone}");
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.snapshot().unwrap(), memory, "kept across a reopen, secrets included");

    // The secret is in the database, and in no JSON of the snapshot.
    let json = serde_json::to_string(&memory).unwrap();
    assert!(!json.contains("secret") && !json.contains(&"a2".repeat(32)), "{json}");
    // What a unit in a shared library gets back (the upgrade's health check compares it).
    let through_json: ConfigSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(through_json, memory.without_secrets());
    assert_ne!(through_json, memory);
    assert!(json.contains("\"last_user_id\":2"), "{json}");
}

#[test]
fn a_damaged_storage_secret_names_table_and_key() {
    let (_dir, path) = temp();
    {
        let store = Store::open(&path).unwrap();
        store.commit(&[Change::PutStorageUser(storage_user("alice", 1, [10, 0, 0, 5], 1))]).unwrap();
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut users = txn.open_table(redb::TableDefinition::<&str, &str>::new("storage_users")).unwrap();
            users
                .insert("alice", r#"{"name":"alice","id":1,"ips":["10.0.0.5"],"quota_bytes":5,"secret":"xyz"}"#)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap().snapshot().unwrap_err().to_string();
    assert!(err.contains("table storage_users, key \"alice\": cannot decode the record: the secret is not 64 hex"), "{err}");
}

#[test]
fn a_version_3_database_gains_the_storage_tables_and_keeps_its_records() {
    let (_dir, path) = temp();
    old_layout(&path, 3, 4);
    let store = Store::open(&path).unwrap();
    let snapshot = store.snapshot().unwrap();
    assert_eq!((snapshot.generation, snapshot.networks.len()), (4, 1));
    assert_eq!(snapshot.storage, StorageRecords::default());
    let user = storage_user("alice", 1, [10, 0, 0, 5], 7);
    assert_eq!(store.commit(&[Change::PutStorageUser(user.clone())]).unwrap(), 5);
    assert_eq!(store.snapshot().unwrap().storage.users, [user]);
}

#[test]
fn a_version_4_database_gains_the_image_intents_and_keeps_its_records() {
    let (_dir, path) = temp();
    old_layout(&path, 4, 4);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.snapshot().unwrap().networks.len(), 1);
    assert_eq!(store.image_intents().unwrap(), []);
    let intent = ImageIntent::create(3, None).unwrap();
    store.record_image_intent(&intent).unwrap();
    store.commit_with_intent(&[Change::PutStorageUser(storage_user("alice", 1, [10, 0, 0, 5], 7))], &ImageIntent::Delete { id: 2 }).unwrap();
    assert_eq!(store.image_intents().unwrap(), [ImageIntent::Delete { id: 2 }, intent]);
    store.clear_image_intent(2).unwrap();
    store.clear_image_intent(3).unwrap();
    assert_eq!(store.image_intents().unwrap(), []);
    drop(store);
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap();
    assert_eq!(meta.get("schema_version").unwrap().unwrap().value(), SCHEMA_VERSION);
}

/// A database file of schema `version` (1 to 4) as the switchyard of that
/// version wrote it: generation `generation`, network 100 "blue", and the
/// tables that version had.
fn old_layout(path: &std::path::Path, version: u64, generation: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap();
        meta.insert("schema_version", version).unwrap();
        meta.insert("generation", generation).unwrap();
        let mut networks = txn.open_table(redb::TableDefinition::<&str, &str>::new("networks")).unwrap();
        networks.insert("00000100", r#"{"vni":100,"name":"blue","flood_vteps":[]}"#).unwrap();
        let mut tables = vec!["endpoints", "remotes", "port_networks"];
        if version >= 3 {
            tables.push("address_migrations");
        }
        if version >= 4 {
            tables.extend(["storage_users", "storage_images"]);
        }
        for table in tables {
            txn.open_table(redb::TableDefinition::<&str, &str>::new(table)).unwrap();
        }
        if version >= 2 {
            txn.open_table(redb::TableDefinition::<u64, &str>::new("queued_requests")).unwrap();
            txn.open_table(redb::TableDefinition::<u64, &str>::new("finished_requests")).unwrap();
        }
    }
    txn.commit().unwrap();
}
