//! The storage testbed: a switchyard storage server (its block-I/O stage on a `net_af_packet` uplink), a
//! client namespace, a user `alice` with a 64 MiB image served by `switchyard vbd` in the namespace.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::netns::{unique_name, veth, Netns};
use super::switch::RunningSwitch;
use super::{ctl_json, switchyard, SocketPath};

pub(crate) const SERVER_IP: &str = "10.77.0.1";
pub(crate) const CLIENT_IP: &str = "10.77.0.2";

/// `switchyard vbd` inside the client namespace; killed on drop.
pub(crate) struct Vbd {
    child: Child,
    socket: PathBuf,
}

/// `switchyard vbd` in `netns` for `user` (its secret written to a file in `dir`), serving `exports`
/// ("NAME=IMAGE_ID") on `dir/<tag>.sock`; stdout discarded, stderr piped.
pub(crate) fn vbd_command(netns: &Netns, dir: &Path, tag: &str, user: u64, secret: &str, exports: &[String]) -> (Command, PathBuf) {
    let secret_file = dir.join(format!("{tag}.secret"));
    std::fs::write(&secret_file, secret).unwrap();
    std::fs::set_permissions(&secret_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let socket = dir.join(format!("{tag}.sock"));
    let _ = std::fs::remove_file(&socket);
    let binary = switchyard().get_program().to_owned();
    let mut command = netns.exec(&[binary.to_str().unwrap(), "vbd", "--server", SERVER_IP, "--user", &user.to_string()]);
    command.arg("--secret-file").arg(&secret_file).arg("--socket").arg(&socket);
    for export in exports {
        command.args(["--export", export]);
    }
    command.env("RUST_LOG", "info").stdout(Stdio::null()).stderr(Stdio::piped());
    (command, socket)
}

impl Vbd {
    pub(crate) fn start(netns: &Netns, dir: &Path, user: u64, secret: &str, exports: &[String]) -> Vbd {
        let (mut command, socket) = vbd_command(netns, dir, "vbd", user, secret, exports);
        let child = command.spawn().unwrap();
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

    pub(crate) fn uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.socket.display())
    }
}

impl Drop for Vbd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The server's config: one worker, the uplink on `uplink` (`qdisc_bypass=0`, so a netem qdisc on it
/// applies to the replies too), `[storage]` with images in `dir/images`.
pub(crate) fn server_config(dir: &Path, socket: &Path, uplink: &str) -> String {
    format!(
        "[eal]\nlcores = \"0-1\"\nmemory_mb = 256\n[mempool]\nmbufs = 8191\n[dataplane]\nworkers = [1]\nidle_sleep_us = 100\n\
         [control]\nsocket = \"{}\"\ndatabase = \"{dir}/config.redb\"\n\
         [[port]]\nname = \"uplink\"\ndevargs = \"net_af_packet0,iface={uplink},framecnt=8192,qdisc_bypass=0\"\nrole = \"uplink\"\n\
         address = \"{SERVER_IP}/24\"\n[[network]]\nvni = 100\nname = \"blue\"\n[storage]\nimages = \"{dir}/images\"\n",
        socket.display(),
        dir = dir.display()
    )
}

/// A storage server, a client namespace and alice with a 64 MiB image `disk` served by vbd as `disk`.
pub(crate) struct Testbed {
    pub dir: tempfile::TempDir,
    pub client: Netns,
    pub uplink: String,
    pub socket: SocketPath,
    pub server: Option<RunningSwitch>,
    pub vbd: Option<Vbd>,
    /// Alice's id and secret.
    pub user: (u64, String),
    pub image: u64,
    /// One storage testbed at a time in a test binary (`TESTBEDS`); the last field, so released last.
    _turn: MutexGuard<'static, ()>,
}

/// Taken for a testbed's whole life. Two storage servers on af_packet uplinks at once in one test binary
/// were seen to receive each other's frames now and then (drops of datagrams from users they do not
/// have), which makes the drop checks fail for nothing the test is about.
static TESTBEDS: Mutex<()> = Mutex::new(());

impl Testbed {
    pub(crate) fn new(tag: &str) -> Testbed {
        let turn = TESTBEDS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let client = Netns::new(&unique_name(&format!("sy{tag}c")));
        let uplink = unique_name(&format!("sy{tag}u"));
        veth(&client, &uplink, "eth0", &format!("{CLIENT_IP}/24"), "1500");
        let socket = SocketPath::new(&format!("storage-{tag}"));
        let server = RunningSwitch::start_running(dir.path(), &server_config(dir.path(), &socket, &uplink));
        let user = ctl_json(&socket, &["storage", "user", "create", "alice", "--ip", CLIENT_IP, "--quota", "1G"]);
        let user = (user["id"].as_u64().unwrap(), user["secret"].as_str().unwrap().to_string());
        let image = ctl_json(&socket, &["storage", "image", "create", "disk", "--owner", "alice", "--size", "64M"]);
        let image = image["id"].as_u64().unwrap();
        let mut testbed = Testbed { _turn: turn, dir, client, uplink, socket, server: Some(server), vbd: None, user, image };
        testbed.start_vbd();
        testbed
    }

    pub(crate) fn start_vbd(&mut self) {
        let vbd_dir = self.dir.path().join("vbd");
        std::fs::create_dir_all(&vbd_dir).unwrap();
        self.vbd = None;
        self.vbd = Some(Vbd::start(&self.client, &vbd_dir, self.user.0, &self.user.1, &[format!("disk={}", self.image)]));
    }

    pub(crate) fn uri(&self) -> String {
        self.vbd.as_ref().unwrap().uri("disk")
    }

    /// Stops vbd and the server (SIGTERM) and checks the server's run balance.
    pub(crate) fn finish(mut self) -> serde_json::Value {
        self.vbd = None;
        let exit = self.server.take().unwrap().stop();
        assert_eq!(exit.stats["unaccounted"], 0, "{}", exit.stats);
        exit.stats
    }
}

pub(crate) fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

pub(crate) fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

