//! Storage users and images through the control core with the fake data plane:
//! every refusal changes nothing (records, files, what the runtime got), and
//! file work is ordered around the commit (docs/storage-management.md).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::testing::FakeRuntime;
use super::*;
use crate::config::StorageConfig;
use crate::configdb::Store;
use crate::model::{unix_ms, Change, ImageIntent, StorageImage};
use crate::upgrade::ConfigGate;

struct Setup {
    dir: tempfile::TempDir,
    control: Control,
    fake: Arc<FakeRuntime>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(FakeRuntime::new());
        let control = Setup::open(dir.path(), &fake);
        Setup { dir, control, fake }
    }

    fn open(dir: &Path, fake: &Arc<FakeRuntime>) -> Control {
        let store = Store::open(dir.join("config.redb")).unwrap();
        std::fs::create_dir_all(dir.join("import")).unwrap();
        let config = StorageConfig { import_dir: Some(dir.join("import")), ..StorageConfig::new(dir.join("images")) };
        Control::with_storage(store, fake.clone(), config).unwrap()
    }

    /// `storage.import_dir`.
    fn import_dir(&self) -> PathBuf {
        self.dir.path().join("import")
    }

    /// Stops and starts again on the same database and directory.
    fn restart(self) -> Setup {
        let Setup { dir, control, fake } = self;
        drop(control);
        let control = Setup::open(dir.path(), &fake);
        Setup { dir, control, fake }
    }

    fn images(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    /// The images directory: (file name, length), sorted.
    fn files(&self) -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(self.images())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().into_string().unwrap(), e.metadata().unwrap().len())
            })
            .collect();
        files.sort();
        files
    }

    /// Alice (10.0.0.5, quota 1 MiB) and her image "disk" of 64 KiB.
    fn populated() -> Setup {
        let setup = Setup::new();
        setup.control.create_storage_user(user("alice", &["10.0.0.5"], 1 << 20)).unwrap();
        setup.control.create_storage_image(sparse("disk", "alice", 64 << 10)).unwrap();
        setup
    }

    /// Runs `op`, expects the error, and checks nothing moved: the snapshot,
    /// the database, the files and what the runtime was given.
    fn refused<T: std::fmt::Debug>(
        &self,
        op: impl FnOnce(&Control) -> Result<T, ApiError>,
        status: u16,
        field: Option<&str>,
    ) -> String {
        let before = self.control.snapshot();
        let files = self.files();
        let (applied, catalogs) = (self.fake.applied().len(), self.fake.catalogs_applied());
        let err = op(&self.control).expect_err("expected a refusal");
        assert_eq!((err.status(), err.field()), (status, field), "{err}");
        assert!(!err.message().is_empty() && !err.message().contains('\n'), "{err}");
        assert_eq!(self.control.snapshot(), before, "snapshot changed by a refused request: {err}");
        assert_eq!(self.control.store().snapshot().unwrap(), *before, "database changed by a refused request: {err}");
        assert_eq!(self.files(), files, "files changed by a refused request: {err}");
        assert_eq!(self.fake.applied().len(), applied, "runtime applied a refused request: {err}");
        assert_eq!(self.fake.catalogs_applied(), catalogs, "a catalog was handed over for a refused request: {err}");
        err.message().to_string()
    }

    /// A client used image `name` just now.
    fn attach(&self, name: &str) {
        let id = self.control.storage_image(name).unwrap().id;
        self.fake.image_uses().set_last_used(id, unix_ms(SystemTime::now()));
    }
}

fn user(name: &str, ips: &[&str], quota_bytes: u64) -> StorageUserCreate {
    StorageUserCreate { name: name.into(), ips: ips.iter().map(|s| s.to_string()).collect(), quota_bytes }
}

fn sparse(name: &str, owner: &str, size: u64) -> StorageImageCreate {
    StorageImageCreate { name: name.into(), owner: owner.into(), size: Some(size), import_from: None, read_only: false }
}

/// An import of `from`, relative to `storage.import_dir`.
fn import(name: &str, owner: &str, from: &str) -> StorageImageCreate {
    let from = Some(from.to_string());
    StorageImageCreate { name: name.into(), owner: owner.into(), size: None, import_from: from, read_only: false }
}

fn ips(list: &[&str]) -> StorageUserIps {
    StorageUserIps { ips: list.iter().map(|s| s.to_string()).collect() }
}

#[test]
fn users_are_created_changed_rotated_and_deleted_and_ids_are_never_reused() {
    let s = Setup::new();
    let c = &s.control;
    let created = c.create_storage_user(user("alice", &["10.0.0.5", "10.0.0.6"], 10 << 30)).unwrap();
    assert_eq!(created.user.id, 1);
    assert_eq!(created.user.ips, ["10.0.0.5".parse::<std::net::Ipv4Addr>().unwrap(), "10.0.0.6".parse().unwrap()]);
    assert_eq!((created.user.quota_bytes, created.user.used_bytes), (10 << 30, 0));
    assert!(created.secret.len() == 64 && created.secret.bytes().all(|b| b.is_ascii_hexdigit()), "{}", created.secret);

    // The data plane gets the secret; the API's views and the config JSON never show it.
    let catalog = s.fake.last_catalog().unwrap();
    let alice = catalog.user(1).unwrap();
    assert_eq!(alice.secret.to_hex(), created.secret);
    assert_eq!(catalog.user_by_ip("10.0.0.6".parse().unwrap()).unwrap().name, "alice");
    assert_eq!(c.storage_user("alice").unwrap(), created.user);
    let config = serde_json::to_string(&*c.snapshot()).unwrap();
    assert!(!config.contains(&created.secret) && !config.contains("secret"), "{config}");

    let changed = c.set_storage_user_ips("alice", ips(&["10.0.0.7"])).unwrap();
    assert_eq!(changed.ips, ["10.0.0.7".parse::<std::net::Ipv4Addr>().unwrap()]);
    assert!(s.fake.last_catalog().unwrap().user_by_ip("10.0.0.5".parse().unwrap()).is_none());
    assert_eq!(c.set_storage_user_quota("alice", StorageUserQuota { quota_bytes: 512 }).unwrap().quota_bytes, 512);
    let rotated = c.rotate_storage_user_secret("alice").unwrap();
    assert_ne!(rotated.secret, created.secret);
    assert_eq!(s.fake.last_catalog().unwrap().user(1).unwrap().secret.to_hex(), rotated.secret);

    // Asking for what already is commits nothing.
    let generation = c.snapshot().generation;
    c.set_storage_user_ips("alice", ips(&["10.0.0.7"])).unwrap();
    c.set_storage_user_quota("alice", StorageUserQuota { quota_bytes: 512 }).unwrap();
    assert_eq!(c.snapshot().generation, generation);

    c.delete_storage_user("alice").unwrap();
    assert!(c.storage_users().unwrap().is_empty());
    assert!(s.fake.last_catalog().unwrap().user(1).is_none());
    // The address is free again, the id is not.
    let bob = c.create_storage_user(user("bob", &["10.0.0.7"], 0)).unwrap();
    assert_eq!(bob.user.id, 2);
    let s = s.restart();
    let carol = s.control.create_storage_user(user("carol", &["10.0.0.8"], 0)).unwrap();
    assert_eq!(carol.user.id, 3, "ids keep rising across restarts");
    assert_eq!(s.fake.last_catalog().unwrap().user(2).unwrap().secret.to_hex(), bob.secret, "kept across a restart");
}

#[test]
fn bad_users_are_refused_naming_the_field() {
    let s = Setup::populated();
    s.control.create_storage_user(user("bob", &["10.0.0.6"], 1 << 20)).unwrap();
    let create = |name: &str, list: &[&str], quota: u64| {
        let body = user(name, list, quota);
        move |c: &Control| c.create_storage_user(body)
    };
    let e = s.refused(create("a b", &["10.0.0.9"], 0), 400, Some("name"));
    assert_eq!(e, "\"a b\" is not a valid user name: use 1 to 64 characters of A-Z a-z 0-9 . _ -");
    s.refused(create("", &["10.0.0.9"], 0), 400, Some("name"));
    s.refused(create(&"x".repeat(65), &["10.0.0.9"], 0), 400, Some("name"));
    let e = s.refused(create("carol", &["10.0.0"], 0), 400, Some("ips"));
    assert_eq!(e, "\"10.0.0\" is not an IPv4 address such as 192.0.2.1");
    let e = s.refused(create("carol", &[], 0), 400, Some("ips"));
    assert_eq!(e, "no address given: a user needs at least one IP its packets come from");
    s.refused(create("carol", &["10.0.0.9", "10.0.0.9"], 0), 400, Some("ips"));
    s.refused(create("carol", &["127.0.0.1"], 0), 400, Some("ips"));
    s.refused(create("carol", &["224.0.0.5"], 0), 400, Some("ips"));
    let e = s.refused(create("alice", &["10.0.0.9"], 0), 409, Some("name"));
    assert_eq!(e, "there is already a storage user named alice");
    let e = s.refused(create("carol", &["10.0.0.9", "10.0.0.5"], 0), 409, Some("ips"));
    assert_eq!(e, "10.0.0.5 is already assigned to storage user alice");
    let e = s.refused(|c| c.set_storage_user_ips("bob", ips(&["10.0.0.5"])), 409, Some("ips"));
    assert_eq!(e, "10.0.0.5 is already assigned to storage user alice");
    s.refused(|c| c.set_storage_user_ips("bob", ips(&[])), 400, Some("ips"));

    let e = s.refused(|c| c.storage_user("carol"), 404, Some("name"));
    assert_eq!(e, "there is no storage user named \"carol\"");
    s.refused(|c| c.delete_storage_user("carol"), 404, Some("name"));
    s.refused(|c| c.set_storage_user_ips("carol", ips(&["10.0.0.9"])), 404, Some("name"));
    s.refused(|c| c.set_storage_user_quota("carol", StorageUserQuota { quota_bytes: 1 }), 404, Some("name"));
    s.refused(|c| c.rotate_storage_user_secret("carol"), 404, Some("name"));

    let e = s.refused(|c| c.set_storage_user_quota("alice", StorageUserQuota { quota_bytes: 1024 }), 409, Some("quota_bytes"));
    assert_eq!(e, "1024 bytes is less than the 65536 bytes storage user alice's images already take; delete images first");
    let e = s.refused(|c| c.delete_storage_user("alice"), 409, Some("name"));
    assert_eq!(e, "storage user alice still owns 1 image (disk); delete them first");
}

#[test]
fn images_are_created_imported_grown_cloned_flagged_and_deleted() {
    let s = Setup::new();
    let c = &s.control;
    c.create_storage_user(user("alice", &["10.0.0.5"], 1 << 30)).unwrap();
    c.create_storage_user(user("bob", &["10.0.0.6"], 1 << 30)).unwrap();

    let disk = c.create_storage_image(sparse("disk", "alice", 64 << 20)).unwrap();
    assert_eq!((disk.id, disk.owner.as_str(), disk.size, disk.read_only, disk.attached), (1, "alice", 64 << 20, false, false));
    assert_eq!(disk.file, s.images().join("1.img"));
    assert!(disk.usage.unwrap() < 1 << 20, "a new image is sparse: {:?}", disk.usage);
    assert_eq!(s.files(), [("1.img".to_string(), 64 << 20)]);

    // An import copies the file and pads it to whole sectors.
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8 + 1).collect();
    std::fs::create_dir(s.import_dir().join("sub")).unwrap();
    std::fs::write(s.import_dir().join("sub/golden.raw"), &data).unwrap();
    let golden = c.create_storage_image(StorageImageCreate { read_only: true, ..import("golden", "alice", "sub/golden.raw") }).unwrap();
    assert_eq!((golden.id, golden.size, golden.read_only), (2, 1024, true));
    let copied = std::fs::read(s.images().join("2.img")).unwrap();
    assert_eq!((&copied[..1000], &copied[1000..]), (&data[..], &[0u8; 24][..]));

    // A clone is writable, owned by whom it says, with the same data.
    let clone = c.clone_storage_image("golden", StorageImageClone { name: "vm1".into(), owner: Some("bob".into()) }).unwrap();
    assert_eq!((clone.id, clone.owner.as_str(), clone.size, clone.read_only), (3, "bob", 1024, false));
    assert_eq!(std::fs::read(s.images().join("3.img")).unwrap(), copied);
    let same_owner = c.clone_storage_image("disk", StorageImageClone { name: "disk2".into(), owner: None }).unwrap();
    assert_eq!(same_owner.owner, "alice");
    assert!(same_owner.usage.unwrap() < 1 << 20, "a clone of a sparse image stays sparse: {:?}", same_owner.usage);

    let grown = c.grow_storage_image("disk", StorageImageGrow { size: 128 << 20 }).unwrap();
    assert_eq!(grown.size, 128 << 20);
    assert_eq!(std::fs::metadata(s.images().join("1.img")).unwrap().len(), 128 << 20);
    assert!(c.set_storage_image_read_only("disk", StorageImageReadOnly { read_only: true }).unwrap().read_only);
    assert!(!c.set_storage_image_read_only("disk", StorageImageReadOnly { read_only: false }).unwrap().read_only);

    let catalog = s.fake.last_catalog().unwrap();
    let vm1 = catalog.image(3).unwrap();
    assert_eq!((vm1.owner, vm1.size, vm1.file.clone()), (2, 1024, s.images().join("3.img")));
    assert_eq!(catalog.user(1).unwrap().images, [1, 2, 4]);
    assert_eq!(c.storage_user("alice").unwrap().used_bytes, (128 << 20) + 1024 + (64 << 20));

    c.delete_storage_image("vm1").unwrap();
    assert!(!s.images().join("3.img").exists());
    assert!(s.fake.last_catalog().unwrap().image(3).is_none());
    let names: Vec<String> = c.storage_images().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["disk", "disk2", "golden"]);
    assert_eq!(c.create_storage_image(sparse("vm1", "bob", 512)).unwrap().id, 5, "image ids are never reused");
}

#[test]
fn bad_images_are_refused_naming_the_field() {
    let s = Setup::populated();
    let c = &s.control;
    c.create_storage_user(user("bob", &["10.0.0.6"], 4096)).unwrap();
    let create = |body: StorageImageCreate| move |c: &Control| c.create_storage_image(body);

    let e = s.refused(create(sparse("my disk", "alice", 512)), 400, Some("name"));
    assert_eq!(e, "\"my disk\" is not a valid image name: use 1 to 64 characters of A-Z a-z 0-9 . _ -");
    let e = s.refused(create(sparse("d2", "alice", 0)), 400, Some("size"));
    assert_eq!(e, "0 bytes is not an image size: an image has at least one 512-byte sector");
    let e = s.refused(create(sparse("d2", "alice", 1000)), 400, Some("size"));
    assert_eq!(e, "1000 bytes is not a multiple of the 512-byte sector");
    s.refused(create(sparse("d2", "alice", 1 << 51)), 400, Some("size"));
    let both = StorageImageCreate { import_from: Some("/etc/hostname".into()), ..sparse("d2", "alice", 512) };
    s.refused(create(both), 400, Some("import_from"));
    s.refused(create(StorageImageCreate { size: None, ..sparse("d2", "alice", 512) }), 400, Some("size"));
    let e = s.refused(create(sparse("d2", "carol", 512)), 400, Some("owner"));
    assert_eq!(e, "there is no storage user named \"carol\"; create it first");
    let e = s.refused(create(sparse("disk", "alice", 512)), 409, Some("name"));
    assert_eq!(e, "there is already a storage image named disk");

    // Quotas: alice has 1 MiB and uses 64 KiB; bob has 4 KiB.
    let e = s.refused(create(sparse("big", "alice", 1 << 20)), 409, Some("size"));
    assert_eq!(
        e,
        "storage user alice's quota of 1048576 bytes would be exceeded: its images take 65536 bytes, and 1048576 more do not fit"
    );
    s.refused(|c| c.grow_storage_image("disk", StorageImageGrow { size: 2 << 20 }), 409, Some("size"));
    let clone = |owner: &str| StorageImageClone { name: "copy".into(), owner: Some(owner.into()) };
    s.refused(|c| c.clone_storage_image("disk", clone("bob")), 409, Some("owner"));
    s.refused(|c| c.clone_storage_image("disk", clone("carol")), 400, Some("owner"));
    s.refused(|c| c.clone_storage_image("disk", StorageImageClone { name: "disk".into(), owner: None }), 409, Some("name"));
    s.refused(|c| c.clone_storage_image("disk", StorageImageClone { name: "a/b".into(), owner: None }), 400, Some("name"));
    std::fs::write(s.import_dir().join("big.raw"), vec![1u8; 5000]).unwrap();
    let e = s.refused(create(import("big", "bob", "big.raw")), 409, Some("import_from"));
    assert!(e.contains("its images take 0 bytes, and 5120 more do not fit"), "{e}");

    // Import sources.
    let dir = s.import_dir();
    let e = s.refused(create(import("d2", "alice", "missing.raw")), 400, Some("import_from"));
    assert_eq!(e, format!("cannot read {}: No such file or directory (os error 2)", dir.join("missing.raw").display()));
    std::fs::create_dir(dir.join("sub")).unwrap();
    let e = s.refused(create(import("d2", "alice", "sub")), 400, Some("import_from"));
    assert_eq!(e, format!("{} is a directory, not a file", dir.join("sub").display()));
    std::fs::write(dir.join("empty.raw"), b"").unwrap();
    let e = s.refused(create(import("d2", "alice", "empty.raw")), 400, Some("import_from"));
    assert_eq!(e, format!("{} is empty; an image has at least one 512-byte sector", dir.join("empty.raw").display()));
    nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let e = s.refused(create(import("d2", "alice", "fifo")), 400, Some("import_from"));
    assert_eq!(e, format!("{} is not a regular file", dir.join("fifo").display()));

    // Growing, unknown images.
    let e = s.refused(|c| c.grow_storage_image("disk", StorageImageGrow { size: 512 }), 400, Some("size"));
    assert_eq!(e, "512 bytes is less than image disk's size of 65536 bytes; images only grow");
    s.refused(|c| c.grow_storage_image("disk", StorageImageGrow { size: 70_000 }), 400, Some("size"));
    let e = s.refused(|c| c.storage_image("nope"), 404, Some("name"));
    assert_eq!(e, "there is no storage image named \"nope\"");
    s.refused(|c| c.delete_storage_image("nope"), 404, Some("name"));
    s.refused(|c| c.grow_storage_image("nope", StorageImageGrow { size: 1 << 20 }), 404, Some("name"));
    s.refused(|c| c.clone_storage_image("nope", clone("alice")), 404, Some("name"));
    s.refused(|c| c.set_storage_image_read_only("nope", StorageImageReadOnly { read_only: true }), 404, Some("name"));
}

#[test]
fn attached_images_are_not_deleted_or_cloned_while_writable() {
    let s = Setup::populated();
    let c = &s.control;
    s.attach("disk");
    let view = c.storage_image("disk").unwrap();
    assert!(view.attached && view.last_used_unix_ms.is_some());
    let e = s.refused(|c| c.delete_storage_image("disk"), 409, Some("name"));
    assert!(e.starts_with("image disk is attached: a client used it ") && e.ends_with(" ms ago (within storage.attach_lease_ms = 15000); delete it once no client uses it"), "{e}");
    let copy = || StorageImageClone { name: "copy".into(), owner: None };
    let e = s.refused(|c| c.clone_storage_image("disk", copy()), 409, Some("name"));
    assert!(e.contains("a copy taken while a client writes could be torn"), "{e}");
    // Growing is fine; a read-only image can be cloned while in use.
    c.grow_storage_image("disk", StorageImageGrow { size: 128 << 10 }).unwrap();
    c.set_storage_image_read_only("disk", StorageImageReadOnly { read_only: true }).unwrap();
    c.clone_storage_image("disk", copy()).unwrap();

    // Once the lease ran out it is detached.
    let id = view.id;
    s.fake.image_uses().set_last_used(id, unix_ms(SystemTime::now()) - 15_001);
    assert!(!c.storage_image("disk").unwrap().attached);
    c.delete_storage_image("disk").unwrap();
    assert_eq!(s.fake.image_uses().last_used_ms(id), None, "a deleted image's use record is dropped");
}

#[test]
fn a_failed_commit_leaves_no_file_behind_and_a_failed_delete_keeps_the_file() {
    let s = Setup::populated();
    let before = s.files();
    s.control.store().fail_next_commit();
    let err = s.control.create_storage_image(sparse("d2", "alice", 4096)).unwrap_err();
    assert_eq!(err.status(), 500, "{err}");
    assert!(err.message().starts_with("the change was not made: "), "{err}");
    assert_eq!(s.files(), before, "the staging file was removed");
    assert!(s.control.snapshot().storage.image("d2").is_none());

    s.control.store().fail_next_commit();
    s.control.delete_storage_image("disk").unwrap_err();
    assert_eq!(s.files(), before, "the file of an image still committed stays");
    assert!(s.control.storage_image("disk").is_ok());
}

#[test]
fn a_restart_finishes_or_undoes_file_work_a_crash_interrupted() {
    let s = Setup::populated();
    let c = &s.control;
    c.create_storage_image(sparse("grown", "alice", 8192)).unwrap();
    c.create_storage_image(sparse("created", "alice", 4096)).unwrap();
    c.create_storage_image(sparse("deleted", "alice", 512)).unwrap();
    let images = s.images();
    let store = c.store();
    let image = |name: &str, id: u32| StorageImage { name: name.into(), id, owner: "alice".into(), size: 512, read_only: false };
    let nonce = |intent: &ImageIntent| match intent {
        ImageIntent::Create { nonce, .. } => nonce.clone(),
        ImageIntent::Delete { .. } => unreachable!(),
    };
    // A crash after the commit of a grow, before set_len: the file is short.
    std::fs::OpenOptions::new().write(true).open(images.join("2.img")).unwrap().set_len(512).unwrap();
    // After the commit of a create, before the rename, as older versions named the staging file.
    std::fs::rename(images.join("3.img"), images.join("3.img.creating")).unwrap();
    // After the commit of a delete, before the unlink.
    store
        .commit_with_intent(&[Change::DeleteStorageImage { name: "deleted".into() }], &ImageIntent::Delete { id: 4 })
        .unwrap();
    // Before the commit of a create: its intent and a half-written staging file.
    let uncommitted = ImageIntent::create(10, None).unwrap();
    store.record_image_intent(&uncommitted).unwrap();
    std::fs::write(images.join(format!("10.{}.img.creating", nonce(&uncommitted))), b"half").unwrap();
    // After the commit of a create, before the rename.
    let committed = ImageIntent::create(11, None).unwrap();
    store.record_image_intent(&committed).unwrap();
    std::fs::write(images.join(format!("11.{}.img.creating", nonce(&committed))), vec![3u8; 512]).unwrap();
    store.commit(&[Change::PutStorageImage(image("eleven", 11))]).unwrap();
    // Before the commit of an adoption: the unknown file is under the staging name.
    let adoption = ImageIntent::create(12, Some("8.img".into())).unwrap();
    store.record_image_intent(&adoption).unwrap();
    std::fs::write(images.join(format!("12.{}.img.creating", nonce(&adoption))), b"adopted").unwrap();
    // Files no image or intent of this database accounts for: left alone.
    std::fs::write(images.join("9.img.creating"), b"half").unwrap();
    std::fs::write(images.join("7.img"), b"old").unwrap();
    std::fs::write(images.join("13.0123456789abcdef.img.creating"), b"other").unwrap();
    // Not named like an image's file: left alone, not even reported.
    std::fs::write(images.join("notes.txt"), b"keep").unwrap();
    std::fs::write(images.join("007.img"), b"keep").unwrap();

    let s = s.restart();
    assert_eq!(
        s.files(),
        [
            ("007.img".to_string(), 4),
            ("1.img".to_string(), 64 << 10),
            ("11.img".to_string(), 512),
            ("13.0123456789abcdef.img.creating".to_string(), 5),
            ("2.img".to_string(), 8192),
            ("3.img".to_string(), 4096),
            ("7.img".to_string(), 3),
            ("8.img".to_string(), 7),
            ("9.img.creating".to_string(), 4),
            ("notes.txt".to_string(), 4)
        ]
    );
    assert_eq!(s.control.store().image_intents().unwrap(), [], "every intent was settled");
    let orphans: Vec<String> = s.control.storage_orphans().unwrap().into_iter().map(|o| o.file).collect();
    assert_eq!(orphans, ["13.0123456789abcdef.img.creating", "7.img", "8.img", "9.img.creating"]);
    // The images are usable again.
    s.control.grow_storage_image("created", StorageImageGrow { size: 8192 }).unwrap();
    assert_eq!(std::fs::metadata(s.images().join("3.img")).unwrap().len(), 8192);
    assert_eq!(std::fs::read(s.images().join("11.img")).unwrap(), vec![3u8; 512]);
    assert_eq!(s.fake.last_catalog().unwrap().images().count(), 4);
}

#[test]
fn a_missing_image_file_is_shown_without_usage_and_the_switch_still_starts() {
    let s = Setup::populated();
    std::fs::remove_file(s.images().join("1.img")).unwrap();
    let s = s.restart();
    let view = s.control.storage_image("disk").unwrap();
    assert_eq!(view.usage, None);
    // Deleting it is still possible.
    s.control.delete_storage_image("disk").unwrap();
}

#[test]
fn without_storage_every_storage_call_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::new(Store::open(dir.path().join("config.redb")).unwrap(), Arc::new(FakeRuntime::new())).unwrap();
    let message = "storage is not configured on this switch: its config has no [storage] table (images = \"<dir>\")";
    let check = |err: ApiError| assert_eq!((err.status(), err.field(), err.message()), (409, None, message));
    check(control.storage_users().unwrap_err());
    check(control.storage_user("alice").unwrap_err());
    check(control.create_storage_user(user("a b", &[], 0)).unwrap_err());
    check(control.set_storage_user_ips("alice", ips(&[])).unwrap_err());
    check(control.delete_storage_user("alice").unwrap_err());
    check(control.storage_images().unwrap_err());
    check(control.create_storage_image(sparse("d", "alice", 0)).unwrap_err());
    check(control.grow_storage_image("d", StorageImageGrow { size: 0 }).unwrap_err());
    check(control.clone_storage_image("d", StorageImageClone { name: "a b".into(), owner: None }).unwrap_err());
    check(control.delete_storage_image("d").unwrap_err());
}

#[test]
fn storage_changes_are_refused_while_an_upgrade_runs() {
    let s = Setup::populated();
    s.control.pause();
    let e = s.refused(|c| c.create_storage_user(user("bob", &["10.0.0.6"], 0)), 409, None);
    assert!(e.starts_with("an upgrade of the switching unit is running; storage changes are not queued"), "{e}");
    s.refused(|c| c.delete_storage_image("disk"), 409, None);
    s.refused(|c| c.rotate_storage_user_secret("alice"), 409, None);
    // Reads go on.
    assert_eq!(s.control.storage_images().unwrap().len(), 1);
    s.control.resume();
    s.control.create_storage_user(user("bob", &["10.0.0.6"], 0)).unwrap();
}

#[test]
fn the_storage_directory_must_be_usable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let store = Store::open(dir.path().join("config.redb")).unwrap();
    let err = Control::with_storage(store, Arc::new(FakeRuntime::new()), StorageConfig::new(file.join("images")))
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with(&format!("storage: storage.images {}: cannot create it: ", file.join("images").display())), "{err}");
}

/// Every file in the images directory with its length and a hash of its bytes, sorted by name.
fn contents(dir: &Path) -> Vec<(String, usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut files: Vec<(String, usize, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut hasher);
            (e.file_name().into_string().unwrap(), bytes.len(), hasher.finish())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_new_database_leaves_every_image_file_alone() {
    let s = Setup::populated();
    s.control.create_storage_image(sparse("second", "alice", 4096)).unwrap();
    std::fs::write(s.images().join("2.img"), vec![7u8; 4096]).unwrap();
    // A creation of another database, never committed there.
    std::fs::write(s.images().join("9.img.creating"), b"half").unwrap();
    let before = contents(&s.images());
    let Setup { dir, control, fake } = s;
    drop(control);
    // "Start over": the database is moved away, the images directory stays.
    std::fs::rename(dir.path().join("config.redb"), dir.path().join("config.redb.old")).unwrap();
    let control = Setup::open(dir.path(), &fake);
    let images = dir.path().join("images");
    assert_eq!(contents(&images), before, "every image file is still there, byte for byte");
    let orphans: Vec<(String, u64)> = control.storage_orphans().unwrap().into_iter().map(|o| (o.file, o.bytes)).collect();
    assert_eq!(orphans, [("1.img".into(), 64 << 10), ("2.img".into(), 4096), ("9.img.creating".into(), 4)]);

    // The operator acts on them one by one. An id this database never gave out is kept.
    control.create_storage_user(user("alice", &["10.0.0.5"], 1 << 20)).unwrap();
    let adopt = |name: &str| StorageOrphanAdopt { name: name.into(), owner: "alice".into(), read_only: false };
    let first = control.adopt_storage_orphan("1", adopt("disk")).unwrap();
    assert_eq!((first.id, first.size, first.file.clone()), (1, 64 << 10, images.join("1.img")));
    // A new image never takes the name of an unknown file.
    assert_eq!(control.create_storage_image(sparse("new", "alice", 512)).unwrap().id, 3);
    // An id already given out is not: the file gets a new one.
    let second = control.adopt_storage_orphan("2.img", adopt("second")).unwrap();
    assert_eq!((second.id, second.size), (4, 4096));
    assert_eq!(std::fs::read(images.join("4.img")).unwrap(), vec![7u8; 4096], "adopted byte for byte");
    let e = control.adopt_storage_orphan("3.img", adopt("x")).unwrap_err();
    assert_eq!((e.status(), e.field()), (404, Some("file")), "{e}");
    let e = control.remove_storage_orphan("1.img").unwrap_err();
    assert_eq!((e.status(), e.field()), (404, Some("file")), "an image's file is no unknown file: {e}");
    control.remove_storage_orphan("9.img.creating").unwrap();
    assert_eq!(control.storage_orphans().unwrap(), []);
    assert!(!images.join("9.img.creating").exists());
    assert_eq!(fake.last_catalog().unwrap().images().count(), 3);
    drop(control);
}

#[test]
fn an_adoption_that_is_not_committed_puts_the_file_back() {
    let s = Setup::populated();
    std::fs::write(s.images().join("5.img"), vec![1u8; 1000]).unwrap();
    let before = s.files();
    s.control.store().fail_next_commit();
    let body = StorageOrphanAdopt { name: "five".into(), owner: "alice".into(), read_only: true };
    let e = s.control.adopt_storage_orphan("5.img", body.clone()).unwrap_err();
    assert_eq!(e.status(), 500, "{e}");
    assert_eq!(s.files(), before, "the file is back under its name");
    assert_eq!(s.control.store().image_intents().unwrap(), []);
    // Adopted, it is padded to whole sectors and counts against the quota.
    let image = s.control.adopt_storage_orphan("5.img", body).unwrap();
    assert_eq!((image.id, image.size, image.read_only), (5, 1024, true));
    assert_eq!(s.control.storage_user("alice").unwrap().used_bytes, (64 << 10) + 1024);
    let s = s.restart();
    assert_eq!(s.control.storage_image("five").unwrap().size, 1024);
}

#[test]
fn image_directories_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let s = Setup::populated();
    assert_eq!(mode(&s.images()), 0o700, "the images directory");
    assert_eq!(mode(&s.images().join("1.img")), 0o600, "an image file");
    // An image file readable by others is made private at start.
    std::fs::set_permissions(s.images().join("1.img"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = s.restart();
    assert_eq!(mode(&s.images().join("1.img")), 0o600, "an image file readable by others");
    // A directory others can write to stops the start.
    std::fs::set_permissions(s.images(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let Setup { dir, control, fake } = s;
    drop(control);
    let store = Store::open(dir.path().join("config.redb")).unwrap();
    let err = Control::with_storage(store, fake, StorageConfig::new(dir.path().join("images"))).err().unwrap().to_string();
    assert!(err.contains("writable by group or others"), "{err}");
}

#[test]
fn with_an_image_group_files_are_readable_by_that_group_only() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let gid = nix::unistd::Group::from_name("disk").unwrap().map_or(0, |g| g.gid.as_raw());
    let group = crate::config::ImageGroup { name: "disk".into(), gid };
    let config = StorageConfig { image_group: Some(group), ..StorageConfig::new(dir.path().join("images")) };
    let open = |config: StorageConfig| {
        let store = Store::open(dir.path().join("config.redb")).unwrap();
        Control::with_storage(store, Arc::new(FakeRuntime::new()), config).unwrap()
    };
    let control = open(config.clone());
    control.create_storage_user(user("alice", &["10.0.0.5"], 1 << 20)).unwrap();
    let image = control.create_storage_image(sparse("disk", "alice", 4096)).unwrap();
    let meta = |path: &Path| std::fs::metadata(path).map(|m| (m.permissions().mode() & 0o7777, m.gid())).unwrap();
    assert_eq!(meta(&dir.path().join("images")), (0o750, gid));
    assert_eq!(meta(&image.file), (0o640, gid));
    // Others may not read; group write is beyond what the group is given.
    std::fs::set_permissions(&image.file, std::fs::Permissions::from_mode(0o664)).unwrap();
    drop(control);
    let control = open(config);
    assert_eq!(meta(&image.file), (0o640, gid));
    // Without the group the file is the switch's user's only.
    drop(control);
    let control = open(StorageConfig::new(dir.path().join("images")));
    assert_eq!(meta(&image.file).0, 0o600);
    drop(control);
}

#[test]
fn imports_of_files_outside_the_import_directory_are_refused() {
    let s = Setup::populated();
    let dir = s.import_dir();
    let refused = |from: &str| s.refused(|c| c.create_storage_image(import("shadow", "alice", from)), 400, Some("import_from"));
    let e = refused("/etc/shadow");
    assert!(e.starts_with("\"/etc/shadow\" is an absolute path; give the path relative to storage.import_dir"), "{e}");
    let e = refused("../../etc/shadow");
    assert!(e.starts_with("\"../../etc/shadow\" contains \"..\"; files are imported only from beneath"), "{e}");
    std::os::unix::fs::symlink("/etc/shadow", dir.join("link")).unwrap();
    let e = refused("link");
    assert!(e.starts_with("\"link\": a symbolic link or a path out of storage.import_dir"), "{e}");
    // A link on the way counts as much as the last one.
    std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap();
    let e = refused("etc/shadow");
    assert!(e.starts_with("\"etc/shadow\": a symbolic link or a path out of storage.import_dir"), "{e}");
    refused("");
    // A file inside is imported.
    std::fs::write(dir.join("disk.raw"), vec![5u8; 700]).unwrap();
    let image = s.control.create_storage_image(import("inside", "alice", "./disk.raw")).unwrap();
    assert_eq!(image.size, 1024);
    assert_eq!(&std::fs::read(&image.file).unwrap()[..700], &[5u8; 700][..]);
    // An import directory others could put links in is not read from.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = s.refused(|c| c.create_storage_image(import("again", "alice", "disk.raw")), 400, Some("import_from"));
    assert!(e.contains("must be owned by the switch's user (uid 0) and not writable by group or others"), "{e}");
}

#[test]
fn without_an_import_directory_imports_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("config.redb")).unwrap();
    let control = Control::with_storage(store, Arc::new(FakeRuntime::new()), StorageConfig::new(dir.path().join("images"))).unwrap();
    control.create_storage_user(user("alice", &["10.0.0.5"], 1 << 20)).unwrap();
    let err = control.create_storage_image(import("shadow", "alice", "/etc/shadow")).unwrap_err();
    assert_eq!((err.status(), err.field()), (400, Some("import_from")));
    assert!(err.message().starts_with("imports are off on this switch: storage.import_dir is not set"), "{err}");
    assert!(control.storage_images().unwrap().is_empty());
}
