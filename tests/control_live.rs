//! The control API of a running switch: `switchyard ctl` changes networks and
//! endpoints, the running vRouter publishes them as new table versions, and
//! `kill -9` at random points loses no acknowledged change.
mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Two VM ports on net_null (they never receive, so the switch runs until
/// killed) and an uplink VTEP.
fn config(dir: &Path, socket: &Path) -> String {
    format!(
        r#"{ONE_WORKER}[storage]
images = "{dir}/images"
import_dir = "{dir}/import"
[control]
socket = "{socket}"
database = "{dir}/config.redb"
[[port]]
name = "vm0"
devargs = "net_null0,no-rx=1"
role = "vm"
[[port]]
name = "vm1"
devargs = "net_null1,no-rx=1"
role = "vm"
[[port]]
name = "uplink"
devargs = "net_null2,no-rx=1"
role = "uplink"
address = "192.0.2.1/24"
"#,
        socket = socket.display(),
        dir = dir.display()
    )
}

struct Switch(Child);

impl Switch {
    fn start(dir: &Path, socket: &Path) -> Switch {
        Switch::start_logging(dir, socket, Stdio::null())
    }

    /// `start`, its log (stderr) going to `log`.
    fn start_logging(dir: &Path, socket: &Path, log: impl Into<Stdio>) -> Switch {
        let path = dir.join("switch.toml");
        std::fs::write(&path, config(dir, socket)).unwrap();
        let child = switchyard().args(["run", "--config", path.to_str().unwrap()]).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let switch = Switch(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ctl(socket, &["unit"]).status.success() {
            assert!(Instant::now() < deadline, "the control API did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        switch
    }

    fn kill9(mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}



#[test]
fn ctl_changes_reach_the_running_unit_and_bad_requests_change_nothing() {
    let dir = scratch("ctl_changes_reach_the_running_unit");
    let socket = SocketPath::new("live");
    let switch = Switch::start(&dir, &socket);
    let before = ctl_json(&socket, &["unit"]);
    assert_eq!(before["vm"]["id"], "vrouter");

    let ok = |args: &[&str]| {
        let out = ctl(&socket, args);
        assert!(out.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ok(&["network", "create", "--vni", "100", "--name", "blue", "--flood", "192.0.2.2"]);
    ok(&["port", "bind", "vm1", "--vni", "100"]);
    ok(&["endpoint", "add", "--vni", "100", "--mac", "02:00:00:00:00:0a", "--ip", "10.0.0.10", "--port", "vm0"]);
    ok(&["remote", "add", "--vni", "100", "--mac", "02:00:00:00:00:14", "--vtep", "192.0.2.2"]);
    let unit = ctl_json(&socket, &["unit"]);
    let generation = unit["vm"]["generation"].as_u64().unwrap();
    assert_eq!(generation, 4, "four commits, four table versions: {unit}");
    assert_eq!(unit["uplink"]["generation"], generation, "both sides switched");
    assert_eq!(unit["tables"]["macs_configured"], 2);

    // Bad requests: one clear line naming the field, exit 1, nothing changes.
    for (args, field) in [
        (&["endpoint", "add", "--vni", "100", "--mac", "ff:ff:ff:ff:ff:ff", "--port", "vm0"][..], "mac"),
        (&["endpoint", "add", "--vni", "100", "--mac", "02:00:00:00:00:0b", "--port", "uplink"][..], "port"),
        (&["endpoint", "add", "--vni", "999", "--mac", "02:00:00:00:00:0b", "--port", "vm0"][..], "vni"),
        (&["remote", "add", "--vni", "100", "--mac", "02:00:00:00:00:15", "--vtep", "224.0.0.1"][..], "vtep"),
        (&["network", "delete", "100"][..], ""),
    ] {
        let out = ctl(&socket, args);
        assert_eq!(out.status.code(), Some(1), "ctl {args:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("(field: {field}")) || field.is_empty(), "{stderr}");
    }
    assert_eq!(ctl_json(&socket, &["unit"])["vm"]["generation"], generation, "refused requests publish nothing");

    let metrics = String::from_utf8(ctl(&socket, &["metrics"]).stdout).unwrap();
    for needle in ["switchyard_unit_info{side=\"vm\",id=\"vrouter\"", "switchyard_table_entries{table=\"networks\"} 1", "switchyard_drops_total{reason=\"unknown_vni\"} 0", "switchyard_port_packets_total{port=\"vm0\"", "switchyard_vni_packets_total{vni=\"100\",direction=\"to_vms\"} 0"] {
        assert!(metrics.contains(needle), "{needle} missing from /metrics");
    }
    let stats = ctl_json(&socket, &["stats"]);
    assert_eq!(stats["workers"][0]["lcore"], 1);
    // vm1 was bound to VNI 100 above: the per-network counters follow the binding.
    assert_eq!(stats["features"]["vni-counters"]["networks"][0]["vni"], 100, "{}", stats["features"]);
    switch.kill9();
}

/// kill -9 at random points while `ctl` adds endpoints; after each restart
/// every acknowledged endpoint is there, and no unacknowledged one is half there.
#[test]
fn kill_9_during_config_writes_loses_no_acknowledged_change() {
    let dir = scratch("kill_9_during_config_writes");
    let socket = SocketPath::new("crash");
    let mut acknowledged: Vec<String> = Vec::new();
    let mut seed = u64::from(std::process::id());
    let mut next = 0u32;
    for round in 0..5 {
        let switch = Switch::start(&dir, &socket);
        if round == 0 {
            assert!(ctl(&socket, &["network", "create", "--vni", "7", "--name", "crash"]).status.success());
        }
        let present: Vec<String> = ctl_json(&socket, &["endpoint", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["mac"].as_str().unwrap().to_string())
            .collect();
        for mac in &acknowledged {
            assert!(present.contains(mac), "round {round}: acknowledged {mac} is missing after kill -9");
        }
        assert_eq!(ctl_json(&socket, &["config"])["generation"].as_u64().unwrap(), 1 + present.len() as u64, "generation counts whole changes");
        acknowledged = present;
        // Writes in a second thread; the kill lands somewhere in 50-250 ms.
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(50 + (seed >> 33) % 200);
        let writer_socket = socket.to_path_buf();
        let start = next;
        let writer = std::thread::spawn(move || {
            let mut done = Vec::new();
            for i in start..start + 200 {
                let mac = format!("02:00:00:00:{:02x}:{:02x}", i >> 8, i & 0xff);
                let out = ctl(&writer_socket, &["endpoint", "add", "--vni", "7", "--mac", &mac, "--port", "vm0"]);
                if !out.status.success() {
                    break;
                }
                done.push(mac);
            }
            done
        });
        std::thread::sleep(delay);
        switch.kill9();
        let done = writer.join().unwrap();
        next += 200;
        acknowledged.extend(done);
    }
    let _switch = Switch::start(&dir, &socket);
    let present = ctl_json(&socket, &["endpoint", "list"]).as_array().unwrap().len();
    assert!(present >= acknowledged.len(), "{present} endpoints, {} acknowledged", acknowledged.len());
    assert!(acknowledged.len() > 5, "the writer got some changes through");
}

/// `ctl storage` against the running switch: the images directory is made and
/// filled, storage changes are committed generations like the others, and after
/// a kill -9 the next start brings the directory to what the database holds.
#[test]
fn ctl_storage_on_a_running_switch_and_its_images_after_a_kill() {
    let dir = scratch("ctl_storage_on_a_running_switch");
    let socket = SocketPath::new("storage");
    let images = dir.join("images");
    let switch = Switch::start(&dir, &socket);
    assert!(images.is_dir(), "storage.images is created at start");
    let ok = |args: &[&str]| {
        let out = ctl(&socket, args);
        assert!(out.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let created = ok(&["storage", "user", "create", "alice", "--ip", "10.0.0.5", "--quota", "1G"]);
    assert!(created.contains("\nsecret "), "{created}");
    ok(&["storage", "image", "create", "disk", "--owner", "alice", "--size", "64M"]);
    std::fs::create_dir_all(dir.join("import")).unwrap();
    std::fs::write(dir.join("import/golden.raw"), vec![9u8; 4096]).unwrap();
    ok(&["storage", "image", "import", "golden", "--owner", "alice", "--from", "golden.raw"]);
    assert_eq!(std::fs::metadata(images.join("1.img")).unwrap().len(), 64 << 20);
    assert_eq!(std::fs::read(images.join("2.img")).unwrap(), vec![9u8; 4096]);
    // Storage changes are generations like any other: the unit follows them.
    let unit = ctl_json(&socket, &["unit"]);
    assert_eq!(unit["vm"]["generation"], ctl_json(&socket, &["config"])["generation"], "{unit}");
    let out = ctl(&socket, &["storage", "image", "grow", "disk", "--size", "2G"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("quota of 1073741824 bytes would be exceeded"));
    switch.kill9();

    // What a kill between a commit and its file work leaves; files this
    // database did not make are left alone.
    std::fs::OpenOptions::new().write(true).open(images.join("1.img")).unwrap().set_len(4096).unwrap();
    std::fs::write(images.join("3.img.creating"), b"half").unwrap();
    std::fs::write(images.join("7.img"), b"unknown").unwrap();
    let switch = Switch::start(&dir, &socket);
    let mut files: Vec<String> =
        std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["1.img", "2.img", "3.img.creating", "7.img"]);
    assert_eq!(ok(&["storage", "orphans", "--remove", "3.img.creating"]), "removed unknown file 3.img.creating\n");
    assert_eq!(ok(&["storage", "orphans", "--remove", "7"]), "removed unknown file 7.img\n");
    assert_eq!(std::fs::metadata(images.join("1.img")).unwrap().len(), 64 << 20, "its size is applied again");
    let listed = ctl_json(&socket, &["storage", "image", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(ok(&["storage", "image", "delete", "golden"]), "deleted storage image golden\n");
    assert!(!images.join("2.img").exists());
    // Ids only rise: golden's 2 is not given again.
    let json = ctl_json(&socket, &["storage", "image", "create", "next", "--owner", "alice", "--size", "512"]);
    assert_eq!(json["id"], 3);
    switch.kill9();
}

/// Sha-256 of every file in `dir`, by name.
fn digests(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let out = std::process::Command::new("sha256sum").arg(e.path()).output().unwrap();
            let sum = String::from_utf8(out.stdout).unwrap().split(' ').next().unwrap().to_string();
            (e.file_name().into_string().unwrap(), sum)
        })
        .collect();
    files.sort();
    files
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// docs/databases.md's "start over" (move config.redb away) with the same images
/// directory: every image file stays, byte for byte; each is reported once
/// and listed as an unknown file until the operator adopts or removes it.
/// Image files are private, and a directory others may write to stops the start.
#[test]
fn starting_over_on_a_new_database_keeps_every_image_file() {
    let dir = scratch("starting_over_keeps_image_files");
    let socket = SocketPath::new("startover");
    let images = dir.join("images");
    let ok = |args: &[&str]| {
        let out = ctl(&socket, args);
        assert!(out.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let switch = Switch::start(&dir, &socket);
    ok(&["storage", "user", "create", "alice", "--ip", "10.0.0.5", "--quota", "1G"]);
    ok(&["storage", "image", "create", "disk", "--owner", "alice", "--size", "1M"]);
    std::fs::create_dir_all(dir.join("import")).unwrap();
    std::fs::write(dir.join("import/golden.raw"), (0..8192u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>()).unwrap();
    ok(&["storage", "image", "import", "golden", "--owner", "alice", "--from", "golden.raw"]);
    assert_eq!((mode(&images), mode(&images.join("1.img")), mode(&images.join("2.img"))), (0o700, 0o600, 0o600));
    // A local user cannot read a VM's disk.
    let read = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(images.join("2.img"))
        .output()
        .unwrap();
    assert!(!read.status.success() && read.stdout.is_empty(), "uid 65534 read an image file");
    assert!(String::from_utf8_lossy(&read.stderr).contains("Permission denied"), "{}", String::from_utf8_lossy(&read.stderr));
    std::fs::write(images.join("1.img"), vec![0x5au8; 1 << 20]).unwrap();
    switch.kill9();

    std::fs::rename(dir.join("config.redb"), dir.join("config.redb.old")).unwrap();
    std::fs::set_permissions(images.join("2.img"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let before = digests(&images);
    let log_path = dir.join("switch.log");
    let switch = Switch::start_logging(&dir, &socket, std::fs::File::create(&log_path).unwrap());
    assert_eq!(digests(&images), before, "every image file is still there, byte for byte");
    assert_eq!(mode(&images.join("2.img")), 0o600, "an image file readable by others is made private");
    let log = std::fs::read_to_string(&log_path).unwrap();
    for file in ["1.img", "2.img"] {
        let path = images.join(file).display().to_string();
        let reported = log.lines().filter(|l| l.contains(&path) && l.contains("left alone")).count();
        assert_eq!(reported, 1, "{file} is reported once:\n{log}");
    }
    assert!(log.contains(&format!("{} was readable or writable beyond its owner (mode 0644); set to 0600", images.join("2.img").display())), "{log}");
    let orphans = ctl_json(&socket, &["storage", "orphans"]);
    let files: Vec<&str> = orphans.as_array().unwrap().iter().map(|o| o["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["1.img", "2.img"]);
    ok(&["storage", "user", "create", "alice", "--ip", "10.0.0.5", "--quota", "1G"]);
    let adopted = ctl_json(&socket, &["storage", "orphans", "--adopt", "1.img", "--name", "disk", "--owner", "alice"]);
    assert_eq!((adopted["id"].as_u64(), adopted["size"].as_u64()), (Some(1), Some(1 << 20)));
    assert_eq!(ok(&["storage", "orphans", "--remove", "2.img"]), "removed unknown file 2.img\n");
    assert_eq!(digests(&images), before[..1], "the adopted image's data is untouched");
    switch.kill9();

    // A directory others can write to: the start fails, naming it.
    std::fs::set_permissions(&images, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let path = dir.join("switch.toml");
    let out = switchyard().args(["run", "--config", path.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = format!("storage.images {}: is writable by group or others (mode 0777)", images.display());
    assert!(stderr.contains(&line), "{stderr}");
}
