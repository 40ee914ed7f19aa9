//! The storage client over a real UDP socket, against a scripted peer on 127.0.0.1 that plays the server's
//! part with datagrams built by `switchyard_wire::block`: it drops first copies (the client retransmits),
//! answers WRITEs twice (the client takes one), answers with error statuses and ESTALE, and stays silent (the
//! client fences). Then `switchyard-vbd` as a process, with qemu-io and nbdinfo as its NBD clients.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_block_proto::{Insert, Reassembly};
use switchyard_vbd::io_scheduler::Limits;
use switchyard_vbd::nbd_wire::error;
use switchyard_vbd::retransmit::Timing;
use switchyard_vbd::{BlockBackend, ClientConfig, StorageBackend, StorageClient, StorageError};
use switchyard_wire::block::{
    BlockPacket, BlockRepr, Flags, FragmentSize, ImageInfo, Op, Status, UserKey, HEADER_LEN, INFO_LEN,
};

const SECRET: [u8; 32] = *b"the secret of user 7, 32 bytes!!";
const USER: u32 = 7;
const IMAGE: u32 = 3;
const IMAGE_SIZE: usize = 1 << 20;

fn key() -> UserKey {
    UserKey::new(SECRET)
}

/// One datagram of a reply to `request`.
fn datagram(request: &BlockRepr, status: Status, fragment_offset: u32, payload: &[u8]) -> Vec<u8> {
    let header = BlockRepr {
        flags: request.flags | Flags::REPLY,
        status,
        fragment_offset,
        payload_len: payload.len() as u16,
        ..*request
    };
    let mut buf = vec![0u8; HEADER_LEN + payload.len()];
    header.emit(&mut buf).expect("a valid reply");
    let mut packet = BlockPacket::new_unchecked(&mut buf[..]);
    packet.payload_mut().copy_from_slice(payload);
    packet.fill_mac(&key());
    buf
}

/// The reply to `request`: its data in fragments, or one datagram.
fn reply(request: &BlockRepr, status: Status, data: &[u8]) -> Vec<Vec<u8>> {
    if data.is_empty() || status != Status::Ok {
        return vec![datagram(request, status, 0, &[])];
    }
    FragmentSize::STANDARD
        .ranges(request.length)
        .map(|r| datagram(request, status, r.start, &data[r.start as usize..r.end as usize]))
        .collect()
}

/// What the peer does with a complete request (a WRITE's data reassembled): the datagrams to send back.
type Script = Box<dyn FnMut(&BlockRepr, &[u8]) -> Vec<Vec<u8>> + Send>;
/// Whether to drop a received request datagram (before it counts).
type DropRule = Box<dyn FnMut(&BlockRepr) -> bool + Send>;

/// The peer on its own thread; stops when dropped.
struct Peer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Every request datagram received (header only), dropped or not.
    seen: Arc<Mutex<Vec<BlockRepr>>>,
    /// Datagrams that were not a well-formed request MAC'd with the user's key.
    rejected: Arc<AtomicUsize>,
}

impl Peer {
    fn start(mut script: Script, mut drop_rule: DropRule) -> Peer {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rejected = Arc::new(AtomicUsize::new(0));
        let (stopping, log, bad) = (Arc::clone(&stop), Arc::clone(&seen), Arc::clone(&rejected));
        let thread = std::thread::spawn(move || {
            let mut writes = Reassembly::<u64>::new(8, 5000);
            let mut buf = [0u8; 2048];
            while !stopping.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else { continue };
                let parsed = BlockPacket::new_checked(&buf[..len]).and_then(|packet| {
                    packet.verify_mac(&key())?;
                    BlockRepr::parse_request(&packet).map(|request| (request, packet.payload().to_vec()))
                });
                let Ok((request, payload)) = parsed else {
                    bad.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                log.lock().unwrap().push(request);
                if drop_rule(&request) {
                    continue;
                }
                let whole = BlockRepr { fragment_offset: 0, payload_len: 0, ..request };
                let replies = if request.op == Op::Write {
                    match writes.insert(request.request_id, &request, &payload, 0) {
                        Insert::Complete(handle) => {
                            let data = writes.data(handle).unwrap().to_vec();
                            writes.release(handle);
                            script(&whole, &data)
                        }
                        _ => Vec::new(),
                    }
                } else {
                    script(&whole, &[])
                };
                for reply in replies {
                    socket.send_to(&reply, from).unwrap();
                }
            }
        });
        Peer { addr, stop, thread: Some(thread), seen, rejected }
    }

    fn seen(&self) -> Vec<BlockRepr> {
        self.seen.lock().unwrap().clone()
    }

    fn rejected(&self) -> usize {
        self.rejected.load(Ordering::Relaxed)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A script serving an in-memory image (image `IMAGE` only; EACCES for any other), with `twice` WRITE
/// replies sent twice.
fn image_script(image: Arc<Mutex<Vec<u8>>>) -> Script {
    Box::new(move |request, data| {
        if request.image_id != IMAGE {
            return reply(request, Status::AccessDenied, &[]);
        }
        let mut image = image.lock().unwrap();
        let range = request.offset as usize..request.offset as usize + request.length as usize;
        match request.op {
            Op::Info => {
                let mut payload = [0u8; INFO_LEN as usize];
                ImageInfo { size: image.len() as u64, flags: 0, block_size: 4096 }.emit(&mut payload).unwrap();
                reply(request, Status::Ok, &payload)
            }
            Op::Read => reply(request, Status::Ok, &image[range]),
            Op::Write => {
                image[range].copy_from_slice(data);
                // Twice: the client takes the first and drops the second.
                let mut replies = reply(request, Status::Ok, &[]);
                replies.extend(reply(request, Status::Ok, &[]));
                replies
            }
            Op::WriteZeroes | Op::Trim => {
                image[range].fill(0);
                reply(request, Status::Ok, &[])
            }
            Op::Flush => reply(request, Status::Ok, &[]),
        }
    })
}

fn client(peer: &Peer, timing: Timing) -> StorageClient {
    let config = ClientConfig {
        server: peer.addr,
        user_id: USER,
        key: key(),
        fragment_size: FragmentSize::STANDARD,
        limits: Limits::default(),
        timing,
    };
    StorageClient::connect(config).unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

#[tokio::test]
async fn reads_and_writes_survive_lost_datagrams_and_duplicate_replies() {
    let image = Arc::new(Mutex::new(vec![0u8; IMAGE_SIZE]));
    // Lose the first copy of the 5th fragment of the first WRITE, and of the 2nd fragment of the first READ
    // reply (the READ's request comes back after 250 ms and is answered in full).
    let mut write_fragment_lost = false;
    let drop_rule: DropRule = Box::new(move |request| {
        let lose = request.op == Op::Write && request.fragment_offset == 4 * 1408 && !write_fragment_lost;
        write_fragment_lost |= lose;
        lose
    });
    let mut serve = image_script(Arc::clone(&image));
    let mut read_reply_cut = false;
    let script: Script = Box::new(move |request, data| {
        let mut replies = serve(request, data);
        if request.op == Op::Read && !read_reply_cut {
            read_reply_cut = true;
            replies.remove(1);
        }
        replies
    });
    let peer = Peer::start(script, drop_rule);
    let client = client(&peer, Timing::default());
    let started = Instant::now();
    let backend = StorageBackend::attach(client.clone(), IMAGE).await.unwrap();
    assert_eq!((backend.size(), backend.read_only(), backend.info().block_size), (IMAGE_SIZE as u64, false, 4096));
    // 200 KiB: four pieces, the first one loses a fragment.
    let data = pattern(200 << 10, 1);
    backend.write(4096, data.clone(), true).await.unwrap();
    assert_eq!(&image.lock().unwrap()[4096..4096 + data.len()], &data[..]);
    assert_eq!(backend.read(4096, data.len() as u32).await.unwrap(), data);
    backend.write_zeroes(8192, 4096, switchyard_vbd::Zeroing::Allocate, false).await.unwrap();
    backend.trim(0, 0, false).await.unwrap();
    backend.flush().await.unwrap();
    let mut expected = data.clone();
    expected[4096..8192].fill(0);
    assert_eq!(backend.read(4096, 8192).await.unwrap(), expected[..8192]);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let counters = client.shutdown().await.unwrap();
    assert!(counters.retransmissions >= 2, "{counters}");
    assert!(counters.dropped(switchyard_vbd::storage_codec::DropReason::NotOutstanding) >= 4, "{counters}");
    assert_eq!((counters.sent(Op::Write), counters.sent(Op::Flush)), (4, 1), "{counters}");
    assert!(counters.errors.is_empty(), "{counters}");
    // The retransmitted WRITE kept its id; 4 pieces were sent as 4 requests.
    let writes: Vec<u64> = peer.seen().iter().filter(|r| r.op == Op::Write).map(|r| r.request_id).collect();
    let mut ids = writes.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    assert_eq!(peer.rejected(), 0);
    // NO_HOLE is still a WRITE_ZEROES: the server decides how to zero.
    assert_eq!(peer.seen().iter().filter(|r| r.op == Op::WriteZeroes).count(), 1);
    // After shutdown, requests fail with ESHUTDOWN.
    let refused = backend.read(0, 512).await.unwrap_err();
    assert_eq!(refused.nbd_errno(), error::ESHUTDOWN);
}

#[tokio::test]
async fn server_errors_and_estale_map_to_nbd_errors() {
    let image = Arc::new(Mutex::new(vec![0u8; IMAGE_SIZE]));
    let mut serve = image_script(image);
    // ESTALE once for the first READ; ENOSPC for WRITEs beyond 512 KiB.
    let mut stale_sent = false;
    let script: Script = Box::new(move |request, data| {
        if request.op == Op::Read && !stale_sent {
            stale_sent = true;
            let highest = request.request_id + 10_000;
            return vec![datagram(&BlockRepr { offset: highest, ..*request }, Status::StaleRequestId, 0, &[])];
        }
        if request.op == Op::Write && request.offset >= 512 << 10 {
            return reply(request, Status::NoSpace, &[]);
        }
        serve(request, data)
    });
    let peer = Peer::start(script, Box::new(|_| false));
    let client = client(&peer, Timing::default());
    let refused = StorageBackend::attach(client.clone(), 99).await.err().expect("image 99 is not the user's");
    assert_eq!(refused, StorageError::Refused(Status::AccessDenied));
    let backend = StorageBackend::attach(client.clone(), IMAGE).await.unwrap();
    assert_eq!(backend.read(0, 4096).await.unwrap(), vec![0; 4096]);
    let full = backend.write(600 << 10, vec![1; 4096], false).await.unwrap_err();
    assert_eq!(full.nbd_errno(), error::ENOSPC);
    let counters = client.shutdown().await.unwrap();
    assert_eq!((counters.stale_replies, counters.errors("eacces"), counters.errors("enospc")), (1, 1, 1));
    // The READ went again above the id the ESTALE named.
    let reads: Vec<u64> = peer.seen().iter().filter(|r| r.op == Op::Read).map(|r| r.request_id).collect();
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[1], reads[0] + 10_001);
}

#[tokio::test]
async fn an_unanswered_request_is_fenced_then_fails_with_eio() {
    let image = Arc::new(Mutex::new(vec![0u8; IMAGE_SIZE]));
    let mut serve = image_script(image);
    let script: Script = Box::new(move |request, data| {
        if request.op == Op::Read && request.offset == 8192 {
            return Vec::new();
        }
        serve(request, data)
    });
    let peer = Peer::start(script, Box::new(|_| false));
    let timing = Timing { give_up: Duration::from_millis(1200), ..Timing::default() };
    let client = client(&peer, timing);
    let backend = StorageBackend::attach(client.clone(), IMAGE).await.unwrap();
    let started = Instant::now();
    let lost = backend.read(8192, 512).await.unwrap_err();
    assert_eq!(lost.nbd_errno(), error::EIO);
    assert!(started.elapsed() >= Duration::from_millis(1200));
    let seen = peer.seen();
    let read_id = seen.iter().find(|r| r.op == Op::Read).unwrap().request_id;
    let fence = seen.iter().rev().find(|r| r.op == Op::Info).unwrap();
    assert_eq!(fence.request_id, read_id + 1024);
    // 250, 750 ms: two retransmissions before giving up at 1.2 s.
    assert_eq!(seen.iter().filter(|r| r.request_id == read_id).count(), 3);
    // And the client works on, above the fence.
    assert_eq!(backend.read(0, 512).await.unwrap(), vec![0; 512]);
    let counters = client.shutdown().await.unwrap();
    assert_eq!((counters.fences, counters.errors("timed_out")), (1, 1));
}

/// `switchyard-vbd` on a temp secret file and a free unix socket, against a peer serving `image`.
struct VbdProcess {
    child: Child,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
}

impl VbdProcess {
    fn start(peer: &Peer, secret: &str, exports: &[&str]) -> VbdProcess {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, secret).unwrap();
        std::fs::set_permissions(&secret_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let socket = dir.path().join("vbd.sock");
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard-vbd"));
        command.arg("--server").arg(peer.addr.to_string()).args(["--user", &USER.to_string()]);
        command.arg("--secret-file").arg(&secret_file).arg("--socket").arg(&socket);
        for export in exports {
            command.args(["--export", export]);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        VbdProcess { child, _dir: dir, socket }
    }

    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.socket.exists() || self.child.try_wait().unwrap().is_some() {
            assert!(self.child.try_wait().unwrap().is_none(), "switchyard-vbd exited: {}", self.stderr());
            assert!(Instant::now() < deadline, "no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit; (exit code, stderr).
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        (status.code(), self.stderr())
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut text).unwrap();
        }
        text
    }
}

fn secret_hex() -> String {
    SECRET.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_vbd_command_serves_an_image_to_qemu_io_and_nbdinfo() {
    let image = Arc::new(Mutex::new(vec![0u8; IMAGE_SIZE]));
    let peer = Peer::start(image_script(Arc::clone(&image)), Box::new(|_| false));
    let mut vbd = VbdProcess::start(&peer, &secret_hex(), &["disk0=3"]);
    vbd.wait_for_socket();
    let uri = format!("nbd+unix:///disk0?socket={}", vbd.socket.display());
    let info = Command::new("nbdinfo").args(["--json", &uri]).output().expect("nbdinfo (make deps)");
    let json: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(json["exports"][0]["export-size"], IMAGE_SIZE as u64, "{json}");
    let io = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0xab 65536 131072", "-c", "read -P 0xab 65536 131072", "-c", "flush"])
        .arg(&uri)
        .output()
        .expect("qemu-io (make deps)");
    let said = String::from_utf8_lossy(&io.stdout);
    assert!(io.status.success() && !said.contains("Pattern verification failed"), "{said}");
    assert!(image.lock().unwrap()[65536..196608].iter().all(|&b| b == 0xab));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(vbd.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let (code, stderr) = vbd.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("export \"disk0\": image 3 of user 7"), "{stderr}");
    assert!(stderr.contains("1048576 bytes, read-write"), "{stderr}");
    assert!(stderr.contains("vbd: requests ") && stderr.contains("write 2"), "128 KiB in two pieces: {stderr}");
    assert!(!stderr.contains("readable by others"), "{stderr}");
}

#[test]
fn the_vbd_command_names_a_refused_export_and_a_bad_secret() {
    let image = Arc::new(Mutex::new(vec![0u8; IMAGE_SIZE]));
    let peer = Peer::start(image_script(image), Box::new(|_| false));
    let (code, stderr) = VbdProcess::start(&peer, &secret_hex(), &["disk0=3", "other=4"]).finish();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot attach export \"other\" (image 4 of user 7"), "{stderr}");
    assert!(stderr.contains("eacces"), "{stderr}");
    let (code, stderr) = VbdProcess::start(&peer, "not hex", &["disk0=3"]).finish();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("64 hex digits"), "{stderr}");
    let (code, stderr) = VbdProcess::start(&peer, &secret_hex(), &["disk0=3", "disk0=4"]).finish();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("given twice"), "{stderr}");
    assert_eq!(peer.rejected(), 0);
}

/// NBD clients cannot send a token: the unix socket is private (0600), and TCP needs TLS.
#[test]
fn the_vbd_socket_is_private_and_tcp_needs_tls() {
    let image = Arc::new(Mutex::new(vec![0u8; IMAGE_SIZE]));
    let peer = Peer::start(image_script(image), Box::new(|_| false));
    let mut vbd = VbdProcess::start(&peer, &secret_hex(), &["disk0=3"]);
    vbd.wait_for_socket();
    let mode = std::fs::metadata(&vbd.socket).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    drop(vbd);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, secret_hex()).unwrap();
    std::fs::set_permissions(&secret_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for (extra, says) in [
        (&["--listen", "127.0.0.1:0"][..], "NBD on TCP needs TLS (clients cannot send a token)"),
        (&["--listen", "0.0.0.0:0", "--tls-cert", "/c"][..], "NBD on TCP needs TLS"),
        (&["--tls-ca", "/a"][..], "are for --listen, which is not given"),
        (&["--socket-group", "no-such-group-here"][..], "is not a group on this host"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard-vbd"))
            .args(["--server", &peer.addr.to_string(), "--user", "7", "--export", "disk0=3"])
            .arg("--secret-file")
            .arg(&secret_file)
            .arg("--socket")
            .arg(dir.path().join("vbd.sock"))
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(says) && stderr.trim().lines().count() == 1, "{extra:?}: {stderr}");
    }
}
