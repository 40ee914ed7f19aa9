//! How database files are opened (`file.rs`), on real files: damage, an empty
//! file, modes (a full disk that frees up again: `tests/damaged_database.rs`).
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use switchyard_model::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn network(vni: Vni, name: String) -> Network {
    Network { vni, name, flood_vteps: Vec::new() }
}

fn filled_config_database(path: &Path) {
    let store = Store::open(path).unwrap();
    for vni in 1..=20 {
        store.commit(&[Change::PutNetwork(network(vni, format!("net{vni}")))]).unwrap();
    }
}

#[test]
fn an_empty_file_is_refused_not_started_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.redb");
    std::fs::File::create(&path).unwrap();
    let err = Store::open(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "config database {}: is empty (0 bytes), so it is not a database: restore it from a backup, or remove \
             it to start with a new, empty database",
            path.display()
        )
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "the file is left alone");
}

/// In this process the check catches redb's panics (tests unwind); the binary
/// checks in a child process instead (tests/damaged_database.rs).
#[test]
fn damaged_files_are_refused_with_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 5] = [
        ("half", |b| b.truncate(b.len() / 2)),
        ("4096", |b| b.truncate(4096)),
        ("junk", |b| b.extend(std::iter::repeat_n(0x5a, 100_000))),
        ("header", |b| b[..4096].iter_mut().step_by(7).for_each(|x| *x ^= 0xff)),
        ("pages", |b| b[4096..].iter_mut().step_by(997).for_each(|x| *x ^= 0xff)),
    ];
    for (name, damage) in damages {
        let path = dir.path().join(format!("{name}.redb"));
        filled_config_database(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("config database {}: cannot open: it is", path.display())), "{name}: {err}");
        assert!(err.contains("damaged") && err.ends_with("restore it from a backup, or move it away to start with a new, empty database"), "{name}: {err}");
        assert!(!err.contains('\n'), "{name}: {err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}: the check never writes the file");
    }
}

#[test]
fn new_databases_are_private_and_readable_ones_are_made_so() {
    let dir = tempfile::tempdir().unwrap();
    let fresh_dir = dir.path().join("state");
    let path = fresh_dir.join("config.redb");
    drop(Store::open(&path).unwrap());
    assert_eq!(mode(&fresh_dir), 0o700);
    assert_eq!(mode(&path), 0o600);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Store::open(&path).unwrap());
    assert_eq!(mode(&path), 0o600, "an existing database readable by others is set to 0600");
}

#[test]
fn a_directory_others_can_write_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let path = shared.join("config.redb");
    let err = Store::open(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "config database {}: its directory {} is writable by group or others (mode 1777), so another user could \
             replace the file: chmod go-w {}",
            path.display(),
            shared.display(),
            shared.display()
        )
    );
    assert!(!path.exists());
}
