//! Layer 3 for the network block device (issue 8): a switchyard storage server (its block-I/O stage on an
//! `net_af_packet` uplink) and `switchyard vbd` in a client namespace, with real NBD clients (qemu-img,
//! qemu-io, nbdinfo) on the vbd's unix socket. Root only; the namespace, processes and sockets are removed
//! even when a check fails.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{unique_name, veth, Netns};
use common::switch::RunningSwitch;
use common::{ctl_json, switchyard, SocketPath};

const SERVER_IP: &str = "10.77.0.1";
const CLIENT_IP: &str = "10.77.0.2";

/// `switchyard vbd` inside the client namespace; killed on drop.
struct Vbd {
    child: Child,
    socket: PathBuf,
}

impl Vbd {
    fn start(netns: &Netns, dir: &Path, user: u64, secret: &str, exports: &[String]) -> Vbd {
        let secret_file = dir.join("secret");
        std::fs::write(&secret_file, secret).unwrap();
        std::fs::set_permissions(&secret_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let socket = dir.join("vbd.sock");
        let binary = switchyard().get_program().to_owned();
        let mut command = netns.exec(&[binary.to_str().unwrap(), "vbd", "--server", SERVER_IP, "--user", &user.to_string()]);
        command.arg("--secret-file").arg(&secret_file).arg("--socket").arg(&socket);
        for export in exports {
            command.args(["--export", export]);
        }
        let child = command.env("RUST_LOG", "info").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let mut vbd = Vbd { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !vbd.socket.exists() {
            if let Some(status) = vbd.child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(vbd.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                panic!("switchyard vbd exited ({status}): {stderr}");
            }
            assert!(Instant::now() < deadline, "switchyard vbd did not make its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        vbd
    }

    fn uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.socket.display())
    }
}

impl Drop for Vbd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn server_config(dir: &Path, socket: &Path, uplink: &str) -> String {
    format!(
        "[eal]\nlcores = \"0-1\"\nmemory_mb = 256\n[mempool]\nmbufs = 8191\n[dataplane]\nworkers = [1]\nidle_sleep_us = 100\n\
         [control]\nsocket = \"{}\"\ndatabase = \"{dir}/config.redb\"\n\
         [[port]]\nname = \"uplink\"\ndevargs = \"net_af_packet0,iface={uplink},framecnt=8192\"\nrole = \"uplink\"\n\
         address = \"{SERVER_IP}/24\"\n[[network]]\nvni = 100\nname = \"blue\"\n[storage]\nimages = \"{dir}/images\"\n",
        socket.display(),
        dir = dir.display()
    )
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn qemu_img_and_qemu_io_use_an_image_through_vbd_and_the_block_io_stage() {
    let dir = tempfile::tempdir().unwrap();
    let client = Netns::new(&unique_name("sybc"));
    let uplink = unique_name("sybu");
    veth(&client, &uplink, "eth0", &format!("{CLIENT_IP}/24"), "1500");
    let socket = SocketPath::new("storage");
    let server = RunningSwitch::start_running(dir.path(), &server_config(dir.path(), &socket, &uplink));

    let user = ctl_json(&socket, &["storage", "user", "create", "alice", "--ip", CLIENT_IP, "--quota", "1G"]);
    let (user_id, secret) = (user["id"].as_u64().unwrap(), user["secret"].as_str().unwrap().to_string());
    let image = ctl_json(&socket, &["storage", "image", "create", "disk", "--owner", "alice", "--size", "64M"]);
    let image_id = image["id"].as_u64().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let vbd = Vbd::start(&client, client_dir.path(), user_id, &secret, &[format!("disk={image_id}")]);

    let info = run_ok(Command::new("nbdinfo").args(["--json", &vbd.uri("disk")]));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["exports"][0]["export-size"], 64 << 20, "{info}");

    // 64 MiB of random data in and back out.
    let input = dir.path().join("random.raw");
    run_ok(Command::new("dd").args(["if=/dev/urandom", &format!("of={}", input.display()), "bs=1M", "count=64", "status=none"]));
    let started = Instant::now();
    run_ok(Command::new("qemu-img").args(["convert", "-n", "-f", "raw", "-O", "raw"]).arg(&input).arg(vbd.uri("disk")));
    let wrote = started.elapsed();
    let output = dir.path().join("back.raw");
    let started = Instant::now();
    run_ok(Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "raw"]).arg(vbd.uri("disk")).arg(&output));
    let read = started.elapsed();
    assert_eq!(sha256(&output), sha256(&input), "the image read back equals what was written");
    eprintln!("qemu-img convert 64 MiB: in {:.2} s, out {:.2} s", wrote.as_secs_f64(), read.as_secs_f64());

    // Patterns, zeroes, discard and flush through qemu-io.
    let qemu_io = |commands: &[&str]| {
        let mut command = Command::new("qemu-io");
        command.args(["-f", "raw"]);
        for c in commands {
            command.args(["-c", c]);
        }
        run_ok(command.arg(vbd.uri("disk")))
    };
    qemu_io(&["write -P 0xab 1M 192k", "write -z 1056k 64k", "discard 2M 64k", "flush"]);
    let out = qemu_io(&["read -P 0xab 1M 32k", "read -P 0 1056k 64k", "read -P 0 2M 64k", "read -P 0xab 1120k 64k"]);
    assert!(!out.contains("Pattern verification failed"), "{out}");

    let stats = ctl_json(&socket, &["stats"]);
    for reason in ["storage_malformed", "storage_unknown_user", "storage_bad_mac", "storage_wrong_source"] {
        assert_eq!(stats["drops"][reason], 0, "{reason}: {}", stats["drops"]);
    }
    let images = ctl_json(&socket, &["storage", "image", "list"]);
    assert_eq!(images[0]["attached"], true, "the image counts as attached while vbd uses it: {images}");
    drop(vbd);
    let exit = server.stop();
    assert_eq!(exit.stats["unaccounted"], 0, "{}", exit.stats);
}
