//! The NBD server against real NBD clients (qemu-img, qemu-io, nbdinfo, nbdcopy, fio's nbd
//! engine) and against hand-written bad input, in-process: the server runs on a tokio runtime
//! of its own thread, with `FileBackend` exports on temp files, a unix socket and a free
//! 127.0.0.1 port that requires TLS with a client certificate (a throwaway CA's). The clients
//! come from Debian (`make deps`).
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use switchyard::vbd::nbd_wire::{command, command_flag, error, info, option, reply, transmission_flag};
use switchyard::vbd::{Export, FileBackend, NbdListener, NbdServer, MAX_PAYLOAD};
use tokio::sync::oneshot;

use common::tls::TestCa;

/// One export of a test server.
struct Image {
    name: &'static str,
    size: u64,
    read_only: bool,
    description: &'static str,
}

/// A server on its own thread; stopped when dropped.
struct TestServer {
    dir: tempfile::TempDir,
    socket: PathBuf,
    port: u16,
    /// The clients' TLS folder (GnuTLS layout), signed by the CA the server trusts.
    client_tls: PathBuf,
    /// The same for a client whose certificate another CA signed.
    stranger_tls: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(images: &[Image]) -> TestServer {
        let _ = env_logger::builder().is_test(true).try_init();
        let dir = tempfile::tempdir().unwrap();
        let server = NbdServer::new();
        for image in images {
            let path = dir.path().join(format!("{}.img", image.name));
            std::fs::File::create(&path).unwrap().set_len(image.size).unwrap();
            let backend = Arc::new(FileBackend::open(&path, image.read_only).unwrap());
            let export = Export::new(image.name, backend).unwrap().with_description(image.description).unwrap();
            server.add_export(export).unwrap();
        }
        let socket = dir.path().join("nbd.sock");
        let unix = NbdListener::bind_unix(&socket, None).unwrap();
        let ca = TestCa::new(dir.path(), "nbd");
        let server_identity = ca.issue(dir.path(), "server", &["127.0.0.1", "localhost"]);
        let tls = switchyard::svc::auth::server_tls(&server_identity.cert, &server_identity.key, &ca.cert).unwrap();
        let tcp = NbdListener::bind_tls(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), Arc::new(tls)).unwrap();
        let client_tls = ca.client_folder(&dir.path().join("client-tls"), "client");
        let stranger_tls = TestCa::new(dir.path(), "stranger").client_folder(&dir.path().join("stranger-tls"), "x");
        let port = tcp.tcp_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime
                .block_on(server.serve(vec![unix, tcp], async move {
                    let _ = stopped.await;
                }))
                .unwrap();
        });
        TestServer { dir, socket, port, client_tls, stranger_tls, stop: Some(stop), thread: Some(thread) }
    }

    fn image(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.img"))
    }

    /// `nbd+unix:///NAME?socket=PATH`
    fn unix_uri(&self, name: &str) -> String {
        format!("nbd+unix:///{name}?socket={}", self.socket.display())
    }

    /// `nbds://127.0.0.1:PORT/NAME?tls-certificates=DIR` (libnbd's tools: nbdinfo, nbdcopy, fio)
    fn tcp_uri(&self, name: &str) -> String {
        format!("nbds://127.0.0.1:{}/{name}?tls-certificates={}", self.port, self.client_tls.display())
    }

    /// qemu-img's and qemu-io's arguments for export `name` over TCP with TLS.
    fn qemu_tcp(&self, name: &str, tls: &Path) -> [String; 4] {
        [
            "--object".into(),
            format!("tls-creds-x509,id=tls0,endpoint=client,dir={}", tls.display()),
            "--image-opts".into(),
            format!("driver=nbd,host=127.0.0.1,port={},export={name},tls-creds=tls0", self.port),
        ]
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const MIB: u64 = 1 << 20;

/// "disk" (64 MiB, read-write, described), "ro" (1 MiB of 0x5a, read-only).
fn two_exports() -> TestServer {
    let server = TestServer::start(&[
        Image { name: "disk", size: 64 * MIB, read_only: false, description: "a VM disk" },
        Image { name: "ro", size: MIB, read_only: true, description: "" },
    ]);
    std::fs::write(server.image("ro"), vec![0x5a; MIB as usize]).unwrap();
    server
}

/// Debian package of each client, for the message when one is missing.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "qemu-img" | "qemu-io" => "qemu-utils",
        "nbdinfo" | "nbdcopy" => "libnbd-bin",
        "fio" => "fio",
        _ => "coreutils",
    }
}

/// Runs `tool args` under a two-minute limit (a hung client must not hang the suite).
fn run(tool: &str, args: &[&str]) -> Output {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap();
    assert!(
        found.status.success(),
        "`{tool}` is not installed: the NBD client tests need Debian's {} (run `make deps` as root)",
        package_of(tool)
    );
    Command::new("timeout").arg("120").arg(tool).args(args).output().unwrap()
}

/// `tool args`, which must succeed; its stdout.
fn run_ok(tool: &str, args: &[&str]) -> String {
    let out = run(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stdout and stderr together, for the error a client reports.
fn all_output(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn sha256(path: &Path) -> String {
    let sum = run_ok("sha256sum", &[path.to_str().unwrap()]);
    sum.split_whitespace().next().unwrap().to_string()
}

#[test]
fn nbdinfo_shows_the_export_over_unix_and_tcp() {
    let server = two_exports();
    for uri in [server.unix_uri("disk"), server.tcp_uri("disk")] {
        assert_eq!(run_ok("nbdinfo", &["--size", &uri]).trim(), (64 * MIB).to_string(), "{uri}");
        let shown: Value = serde_json::from_str(&run_ok("nbdinfo", &["--json", &uri])).unwrap();
        let export = &shown["exports"][0];
        assert_eq!(shown["protocol"], "newstyle-fixed");
        assert_eq!(export["export-name"], "disk");
        assert_eq!(export["description"], "a VM disk");
        assert_eq!(export["export-size"], 64 * MIB);
        assert_eq!(export["is_read_only"], false);
        for can in ["can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"] {
            assert_eq!(export[can], true, "{can}");
        }
        assert_eq!(export["block_size_minimum"], 1);
        assert_eq!(export["block_size_preferred"], 4096);
        assert_eq!(export["block_size_maximum"], MAX_PAYLOAD);
    }
    let shown: Value = serde_json::from_str(&run_ok("nbdinfo", &["--json", &server.tcp_uri("ro")])).unwrap();
    assert_eq!(shown["exports"][0]["is_read_only"], true);
    assert_eq!(shown["exports"][0]["export-size"], MIB);
}

#[test]
fn nbdinfo_lists_the_exports() {
    let server = two_exports();
    let listed: Value = serde_json::from_str(&run_ok("nbdinfo", &["--list", "--json", &server.unix_uri("")])).unwrap();
    let exports = listed["exports"].as_array().unwrap();
    let names: Vec<_> = exports.iter().map(|e| e["export-name"].as_str().unwrap()).collect();
    assert_eq!(names, ["disk", "ro"]);
    assert_eq!(exports[0]["description"], "a VM disk");
    let listed = run_ok("nbdinfo", &["--list", &server.tcp_uri("")]);
    assert!(listed.contains("export=\"disk\"") && listed.contains("export=\"ro\""), "{listed}");
}

#[test]
fn an_unknown_export_name_is_refused() {
    let server = two_exports();
    for uri in [server.unix_uri("nope"), server.tcp_uri("nope")] {
        let out = run("nbdinfo", &[&uri]);
        assert!(!out.status.success());
        // libnbd names NBD_REP_ERR_UNKNOWN "No such file or directory".
        let said = all_output(&out);
        assert!(said.contains("No such file or directory") && said.contains("nope"), "{said}");
    }
}

/// A random 64 MiB raw image into the export (unix socket) and back out (TCP): same bytes.
#[test]
fn qemu_img_convert_round_trip() {
    let server = two_exports();
    let dir = tempfile::tempdir().unwrap();
    let [source, copy, nbdcopied] = ["src.img", "out.img", "nbdcopy.img"].map(|name| dir.path().join(name));
    let mut random = vec![0; (64 * MIB) as usize];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut random).unwrap();
    random[..MIB as usize].fill(0); // a zero run, which qemu-img sends as WRITE_ZEROES
    std::fs::write(&source, &random).unwrap();

    // -n: the export exists, qemu-img must not try to create it.
    let source_path = source.to_str().unwrap();
    run_ok("qemu-img", &["convert", "-n", "-f", "raw", "-O", "raw", source_path, &server.unix_uri("disk")]);
    let [object, creds, image_opts, source_opts] = server.qemu_tcp("disk", &server.client_tls);
    let out_path = copy.to_str().unwrap();
    run_ok("qemu-img", &["convert", &object, &creds, image_opts.as_str(), "-O", "raw", &source_opts, out_path]);
    assert_eq!(sha256(&copy), sha256(&source));
    assert_eq!(sha256(&server.image("disk")), sha256(&source), "what the server wrote is the image");

    run_ok("nbdcopy", &[&server.unix_uri("disk"), nbdcopied.to_str().unwrap()]);
    assert_eq!(sha256(&nbdcopied), sha256(&source));
}

#[test]
fn qemu_io_patterns_zeroes_discard_flush_and_aio() {
    let server = two_exports();
    let checks = [
        "write -P 0xab 0 1M",
        "read -P 0xab 0 1M",
        "write -P 0xee 1M 2M",
        "write -z 1M 1M", // NO_HOLE
        "read -P 0 1M 1M",
        "write -z -u 2M 64k", // may punch a hole
        "read -P 0 2M 64k",
        "read -P 0xee 2112k 960k",
        "write -f -P 0x17 3M 4k", // FUA
        "read -P 0x17 3M 4k",
        "discard 4M 1M",
        "flush",
        "aio_write -P 0xcd 8M 64k",
        "aio_write -P 0xce 9M 64k",
        "aio_flush",
        "read -P 0xcd 8M 64k",
        "read -P 0xce 9M 64k",
        "read -P 0 63M 1M",
    ];
    let unix = vec!["-f".to_string(), "raw".to_string(), server.unix_uri("disk")];
    for target in [unix, server.qemu_tcp("disk", &server.client_tls).to_vec()] {
        let mut args: Vec<&str> = target.iter().map(String::as_str).collect();
        for check in &checks {
            args.extend(["-c", check]);
        }
        let said = run_ok("qemu-io", &args);
        assert!(!said.contains("failed"), "{said}");
        assert_eq!(said.matches("read ").count(), 8, "{said}");
    }
    // The checks above would pass against anything that echoes; this one must fail.
    let out = run("qemu-io", &["-f", "raw", &server.unix_uri("disk"), "-c", "read -P 0xac 0 4k"]);
    assert!(all_output(&out).contains("Pattern verification failed"), "{}", all_output(&out));
}

/// fio's nbd engine at `uri`. On the unix socket only: the engine may not name a TLS folder
/// (libnbd refuses local files in its URIs), and root's default folder is the host's /etc/pki/libnbd.
fn fio(uri: &str, rw: &str) -> String {
    let out = Command::new("timeout")
        .args(["120", "fio"])
        .args([
            "--name=nbd",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            &format!("--rw={rw}"),
            "--bs=4k",
            "--iodepth=32",
            "--size=32M",
            "--verify=crc32c",
            "--verify_fatal=1",
            "--do_verify=1",
            "--verify_state_save=0", // no state file left in the working directory
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "fio at {uri} failed ({}):\n{}", out.status, all_output(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn fio_randwrite_with_verify_at_iodepth_32() {
    let server = two_exports();
    let report = fio(&server.unix_uri("disk"), "randwrite");
    assert!(report.contains("err= 0"), "{report}");
}

#[test]
fn fio_randrw_with_verify_at_iodepth_32() {
    let server = two_exports();
    let report = fio(&server.unix_uri("disk"), "randrw");
    assert!(report.contains("err= 0"), "{report}");
}

#[test]
fn a_read_only_export_refuses_writes() {
    let server = two_exports();
    let uri = server.unix_uri("ro");
    let said = run_ok("qemu-io", &["-r", "-f", "raw", &uri, "-c", "read -P 0x5a 0 1M"]);
    assert!(said.contains("read 1048576/1048576"), "{said}");
    // qemu sees READ_ONLY: a read-write open fails, a write on a read-only open fails.
    let out = run("qemu-io", &["-f", "raw", &uri, "-c", "write -P 1 0 4k"]);
    assert!(!out.status.success());
    assert!(all_output(&out).contains("Permission denied"), "{}", all_output(&out));
    let out = run("qemu-io", &["-r", "-f", "raw", &uri, "-c", "write -P 1 0 4k"]);
    assert!(!out.status.success());
    assert!(all_output(&out).contains("read-only"), "{}", all_output(&out));
    let out = run("nbdcopy", &[server.image("disk").to_str().unwrap(), &server.tcp_uri("ro")]);
    assert!(!out.status.success());
    assert!(all_output(&out).contains("read-only"), "{}", all_output(&out));
    assert_eq!(std::fs::read(server.image("ro")).unwrap(), vec![0x5a; MIB as usize]);
}

/// The attack: a client on the network reaches the TCP port without TLS, or with a
/// certificate another CA signed. It gets no export, no data, no listing.
#[test]
fn tcp_serves_only_clients_that_start_tls_with_a_certificate_the_ca_signed() {
    let server = two_exports();
    let plain = format!("nbd://127.0.0.1:{}/disk", server.port);
    for args in [vec!["--json", plain.as_str()], vec!["--list", plain.as_str()]] {
        let out = run("nbdinfo", &args);
        assert!(!out.status.success(), "{}", all_output(&out));
    }
    let stranger = format!("nbds://127.0.0.1:{}/disk?tls-certificates={}", server.port, server.stranger_tls.display());
    let out = run("nbdinfo", &[&stranger]);
    assert!(!out.status.success(), "{}", all_output(&out));
    let qemu = server.qemu_tcp("disk", &server.stranger_tls);
    let out = run("qemu-img", &["info", &qemu[0], &qemu[1], &qemu[2], &qemu[3]]);
    assert!(!out.status.success(), "{}", all_output(&out));
    // The trusted client on the same port is served, by both client libraries.
    let qemu = server.qemu_tcp("disk", &server.client_tls);
    let said = run_ok("qemu-img", &["info", &qemu[0], &qemu[1], &qemu[2], &qemu[3]]);
    assert!(said.contains("64 MiB"), "{said}");
    // By hand: every option before NBD_OPT_STARTTLS gets NBD_REP_ERR_TLS_REQD ...
    let mut raw = RawClient::greeted_tcp(&server);
    raw.send(&3u32.to_be_bytes());
    for (opt, data) in [(option::LIST, vec![]), (option::GO, go_data("disk", &[])), (option::INFO, go_data("disk", &[]))] {
        raw.option(opt, &data);
        let (replied_to, kind, _) = raw.option_reply();
        assert_eq!((replied_to, kind), (opt, reply::ERR_TLS_REQD));
    }
    // ... and NBD_OPT_EXPORT_NAME, which has no error reply, closes the connection.
    raw.option(option::EXPORT_NAME, b"disk");
    raw.assert_closed();
}

/// A hand-written NBD client over the unix socket (or plain TCP), for input no real client sends.
struct RawClient<S = UnixStream> {
    stream: S,
}

const IHAVEOPT: &[u8; 8] = b"IHAVEOPT";
const REQUEST_MAGIC: [u8; 4] = [0x25, 0x60, 0x95, 0x13];

impl RawClient {
    /// Connects and checks the greeting; no flags sent yet.
    fn greeted(server: &TestServer) -> RawClient {
        let stream = UnixStream::connect(&server.socket).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawClient::greeting(stream)
    }

    /// Greeted, flags FIXED_NEWSTYLE | NO_ZEROES sent.
    fn connect(server: &TestServer) -> RawClient {
        let mut client = RawClient::greeted(server);
        client.send(&3u32.to_be_bytes());
        client
    }

    /// Connected and in transmission on `name` (NBD_OPT_GO); returns the size and flags.
    fn go(server: &TestServer, name: &str) -> (RawClient, u64, u16) {
        let mut client = RawClient::connect(server);
        client.option(option::GO, &go_data(name, &[]));
        let (mut size, mut flags) = (None, 0);
        loop {
            let (replied_to, kind, data) = client.option_reply();
            assert_eq!(replied_to, option::GO);
            if kind == reply::ACK {
                break;
            }
            assert_eq!(kind, reply::INFO, "{:?}", String::from_utf8_lossy(&data));
            if u16::from_be_bytes([data[0], data[1]]) == info::EXPORT {
                size = Some(u64::from_be_bytes(data[2..10].try_into().unwrap()));
                flags = u16::from_be_bytes([data[10], data[11]]);
            }
        }
        (client, size.expect("NBD_INFO_EXPORT before the ACK"), flags)
    }
}

impl RawClient<std::net::TcpStream> {
    /// The same on the TCP port, without ever starting TLS.
    fn greeted_tcp(server: &TestServer) -> RawClient<std::net::TcpStream> {
        let stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawClient::greeting(stream)
    }
}

impl<S: Read + Write> RawClient<S> {
    fn greeting(stream: S) -> RawClient<S> {
        let mut client = RawClient { stream };
        assert_eq!(client.bytes(18), b"NBDMAGICIHAVEOPT\x00\x03", "greeting with FIXED_NEWSTYLE | NO_ZEROES");
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn bytes(&mut self, count: usize) -> Vec<u8> {
        let mut bytes = vec![0; count];
        self.stream.read_exact(&mut bytes).unwrap();
        bytes
    }

    fn option(&mut self, option: u32, data: &[u8]) {
        let mut message = IHAVEOPT.to_vec();
        message.extend_from_slice(&option.to_be_bytes());
        message.extend_from_slice(&(data.len() as u32).to_be_bytes());
        message.extend_from_slice(data);
        self.send(&message);
    }

    /// (option replied to, reply type, data)
    fn option_reply(&mut self) -> (u32, u32, Vec<u8>) {
        let header = self.bytes(20);
        assert_eq!(header[..8], 0x0003_e889_0455_65a9u64.to_be_bytes(), "option reply magic");
        let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().unwrap());
        let data = self.bytes(be32(16) as usize);
        (be32(8), be32(12), data)
    }

    fn request(&mut self, flags: u16, command: u16, cookie: u64, offset: u64, length: u32, payload: &[u8]) {
        self.send(&request_bytes(flags, command, cookie, offset, length, payload));
    }

    /// (error, cookie) of a simple reply.
    fn reply(&mut self) -> (u32, u64) {
        let reply = self.bytes(16);
        assert_eq!(reply[..4], [0x67, 0x44, 0x66, 0x98], "simple reply magic");
        (u32::from_be_bytes(reply[4..8].try_into().unwrap()), u64::from_be_bytes(reply[8..16].try_into().unwrap()))
    }

    /// The server closed the connection (EOF or reset) without sending anything more.
    fn assert_closed(&mut self) {
        let mut byte = [0; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("expected the server to close the connection, got {other:?} {byte:?}"),
        }
    }
}

/// A request header and its payload.
fn request_bytes(flags: u16, command: u16, cookie: u64, offset: u64, length: u32, payload: &[u8]) -> Vec<u8> {
    let mut message = REQUEST_MAGIC.to_vec();
    message.extend_from_slice(&flags.to_be_bytes());
    message.extend_from_slice(&command.to_be_bytes());
    message.extend_from_slice(&cookie.to_be_bytes());
    message.extend_from_slice(&offset.to_be_bytes());
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(payload);
    message
}

/// NBD_OPT_GO / INFO data.
fn go_data(name: &str, requests: &[u16]) -> Vec<u8> {
    let mut data = (name.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(&(requests.len() as u16).to_be_bytes());
    for request in requests {
        data.extend_from_slice(&request.to_be_bytes());
    }
    data
}

#[test]
fn unknown_client_flags_end_the_handshake() {
    let server = two_exports();
    let mut client = RawClient::greeted(&server);
    client.send(&4u32.to_be_bytes());
    client.assert_closed();
}

#[test]
fn a_bad_option_magic_ends_the_handshake() {
    let server = two_exports();
    let mut client = RawClient::connect(&server);
    client.send(b"IHAVEOPX\0\0\0\x07\0\0\0\0");
    client.assert_closed();
}

#[test]
fn unsupported_options_get_err_unsup_and_the_session_goes_on() {
    let server = two_exports();
    let mut client = RawClient::connect(&server);
    let unsupported_options = [
        (99u32, &b"hello"[..]),
        (option::STRUCTURED_REPLY, b""),
        (option::STARTTLS, b""),
        (option::SET_META_CONTEXT, b"x"),
    ];
    for (unsupported, data) in unsupported_options {
        client.option(unsupported, data);
        let (replied_to, kind, message) = client.option_reply();
        assert_eq!((replied_to, kind), (unsupported, reply::ERR_UNSUP));
        assert!(String::from_utf8(message).unwrap().contains("not supported"));
    }
    // NBD_OPT_INFO with every information request, then NBD_OPT_GO on the same connection.
    client.option(option::INFO, &go_data("disk", &[info::NAME, info::DESCRIPTION, info::BLOCK_SIZE, 0x4242]));
    let mut infos = Vec::new();
    loop {
        let (_, kind, data) = client.option_reply();
        if kind == reply::ACK {
            break;
        }
        assert_eq!(kind, reply::INFO);
        infos.push(data);
    }
    let flags = transmission_flag::HAS_FLAGS
        | transmission_flag::SEND_FLUSH
        | transmission_flag::SEND_FUA
        | transmission_flag::SEND_TRIM
        | transmission_flag::SEND_WRITE_ZEROES
        | transmission_flag::CAN_MULTI_CONN;
    let export = [&[0, 0][..], &(64 * MIB).to_be_bytes(), &flags.to_be_bytes()].concat();
    assert!(infos.contains(&export), "{infos:?}");
    assert!(infos.contains(&b"\0\x01disk".to_vec()));
    assert!(infos.contains(&b"\0\x02a VM disk".to_vec()));
    assert!(infos.contains(&[&[0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0][..], &MAX_PAYLOAD.to_be_bytes()].concat()));
    assert_eq!(infos.len(), 4);
    client.option(option::GO, &go_data("disk", &[]));
    while client.option_reply().1 != reply::ACK {}
    client.request(0, command::READ, 1, 0, 512, &[]);
    assert_eq!(client.reply(), (0, 1));
    assert_eq!(client.bytes(512), vec![0; 512]);
}

#[test]
fn oversize_options_get_err_too_big_or_a_close() {
    let server = two_exports();
    let mut client = RawClient::connect(&server);
    // Read and dropped: the client may go on.
    client.option(option::INFO, &vec![0; 9000]);
    let (replied_to, kind, _) = client.option_reply();
    assert_eq!((replied_to, kind), (option::INFO, reply::ERR_TOO_BIG));
    client.option(option::LIST, &[]);
    let kinds: Vec<u32> = std::iter::repeat_with(|| client.option_reply().1).take(3).collect();
    assert_eq!(kinds, [reply::SERVER, reply::SERVER, reply::ACK]);
    // Too large to drop: closed without reading it.
    client.send(&[&IHAVEOPT[..], &option::GO.to_be_bytes(), &(64 * MIB as u32).to_be_bytes()].concat());
    client.assert_closed();
}

#[test]
fn malformed_option_data_gets_err_invalid_and_unknown_exports_err_unknown() {
    let server = two_exports();
    let mut client = RawClient::connect(&server);
    let too_long_name = go_data(&"n".repeat(4097), &[]);
    let cases: [(u32, Vec<u8>, u32); 6] = [
        (option::GO, vec![0, 0, 0, 50, b'd', b'i', 0, 0], reply::ERR_INVALID),
        (option::INFO, vec![0, 0], reply::ERR_INVALID),
        (option::GO, [&go_data("disk", &[])[..], &[0]].concat(), reply::ERR_INVALID),
        (option::LIST, b"data".to_vec(), reply::ERR_INVALID),
        (option::INFO, too_long_name, reply::ERR_INVALID),
        (option::GO, go_data("nope", &[info::NAME]), reply::ERR_UNKNOWN),
    ];
    for (sent, data, expected) in cases {
        client.option(sent, &data);
        let (replied_to, kind, message) = client.option_reply();
        assert_eq!((replied_to, kind), (sent, expected), "{}", String::from_utf8_lossy(&message));
    }
    // Still haggling: an abort is acknowledged, then the server closes.
    client.option(option::ABORT, &[]);
    assert_eq!(client.option_reply(), (option::ABORT, reply::ACK, vec![]));
    client.assert_closed();
}

#[test]
fn nbd_opt_export_name_with_and_without_zeroes() {
    let server = two_exports();
    let mut client = RawClient::connect(&server);
    client.option(option::EXPORT_NAME, b"ro");
    let reply = client.bytes(10);
    assert_eq!(reply[..8], MIB.to_be_bytes());
    assert_ne!(u16::from_be_bytes([reply[8], reply[9]]) & transmission_flag::READ_ONLY, 0);
    client.request(0, command::READ, 7, 0, 4, &[]);
    assert_eq!(client.reply(), (0, 7));
    assert_eq!(client.bytes(4), [0x5a; 4]);

    // An old client: no NO_ZEROES, so 124 zeroes follow.
    let mut client = RawClient::greeted(&server);
    client.send(&1u32.to_be_bytes());
    client.option(option::EXPORT_NAME, b"disk");
    let reply = client.bytes(10 + 124);
    assert_eq!(reply[..8], (64 * MIB).to_be_bytes());
    assert!(reply[10..].iter().all(|&b| b == 0));
    client.request(0, command::FLUSH, 8, 0, 0, &[]);
    assert_eq!(client.reply(), (0, 8));

    // NBD_OPT_EXPORT_NAME has no error reply: an unknown name closes the connection.
    let mut client = RawClient::connect(&server);
    client.option(option::EXPORT_NAME, b"nope");
    client.assert_closed();
}

#[test]
fn refused_requests_get_the_spec_error_and_the_session_goes_on() {
    let server = two_exports();
    let (mut client, size, _) = RawClient::go(&server, "disk");
    let cases: [(u16, u16, u64, u32, u32); 12] = [
        (0, command::READ, size - 511, 512, error::EINVAL),
        (0, command::TRIM, size, 1, error::EINVAL),
        (0, command::WRITE_ZEROES, size - 1, 2, error::ENOSPC),
        (0, command::READ, u64::MAX - 10, 512, error::EINVAL),
        (0, command::READ, 0, MAX_PAYLOAD + 1, error::EINVAL),
        (0, command::WRITE_ZEROES, 0, MAX_PAYLOAD + 1, error::EINVAL),
        (0, command::CACHE, 0, 512, error::EINVAL),
        (0, command::BLOCK_STATUS, 0, 512, error::EINVAL),
        (0, 0x4242, 0, 0, error::EINVAL),
        (command_flag::NO_HOLE, command::READ, 0, 512, error::EINVAL),
        (command_flag::DF, command::READ, 0, 512, error::EINVAL),
        (0, command::FLUSH, 4096, 0, error::EINVAL),
    ];
    for (cookie, (flags, sent, offset, length, errno)) in cases.into_iter().enumerate() {
        client.request(flags, sent, cookie as u64, offset, length, &[]);
        assert_eq!(client.reply(), (errno, cookie as u64), "command {sent} flags {flags} at {offset}+{length}");
    }
    // A refused write's payload is read all the same: the next request is understood.
    client.request(0, command::WRITE, 100, size - 2, 4, &[1, 2, 3, 4]);
    assert_eq!(client.reply(), (error::ENOSPC, 100));
    client.request(0, command::WRITE, 101, 0, 4, &[1, 2, 3, 4]);
    assert_eq!(client.reply(), (0, 101));
    client.request(0, command::READ, 102, 0, 4, &[]);
    assert_eq!(client.reply(), (0, 102));
    assert_eq!(client.bytes(4), [1, 2, 3, 4]);
    // Zero lengths are not refused (the spec leaves them unspecified, but says not to disconnect).
    client.request(0, command::READ, 103, size, 0, &[]);
    assert_eq!(client.reply(), (0, 103));
    // A bad request magic cannot be followed: the server closes.
    client.send(&[0xde; 28]);
    client.assert_closed();
}

#[test]
fn a_write_payload_over_the_maximum_closes_the_connection() {
    let server = two_exports();
    let (mut client, _, _) = RawClient::go(&server, "disk");
    client.request(0, command::WRITE, 1, 0, MAX_PAYLOAD + 1, &[]);
    client.assert_closed();
}

#[test]
fn a_read_only_export_answers_writes_with_eperm() {
    let server = two_exports();
    let (mut client, size, flags) = RawClient::go(&server, "ro");
    assert_eq!(size, MIB);
    assert_ne!(flags & transmission_flag::READ_ONLY, 0);
    client.request(command_flag::FUA, command::WRITE, 1, 0, 4, &[0; 4]);
    assert_eq!(client.reply(), (error::EPERM, 1));
    client.request(0, command::TRIM, 2, 0, 4096, &[]);
    assert_eq!(client.reply(), (error::EPERM, 2));
    client.request(command_flag::NO_HOLE, command::WRITE_ZEROES, 3, 0, 4096, &[]);
    assert_eq!(client.reply(), (error::EPERM, 3));
    client.request(0, command::FLUSH, 4, 0, 0, &[]);
    assert_eq!(client.reply(), (0, 4));
    assert_eq!(std::fs::read(server.image("ro")).unwrap(), vec![0x5a; MIB as usize]);
}

/// Far more requests than `MAX_IN_FLIGHT` sent without waiting: every one is answered once,
/// under its own cookie, reads with their own data (replies may come in any order).
#[test]
fn pipelined_requests_are_all_answered_by_cookie() {
    let server = two_exports();
    let (mut client, _, _) = RawClient::go(&server, "disk");
    // Block b holds the byte b.
    for block in 0..64u64 {
        client.request(0, command::WRITE, block, block * 4096, 4096, &[block as u8; 4096]);
        assert_eq!(client.reply(), (0, block));
    }
    let mut sender = RawClient { stream: client.stream.try_clone().unwrap() };
    let requests = 1000u64;
    let sending = std::thread::spawn(move || {
        for cookie in 0..requests {
            let block = cookie % 64;
            if cookie % 2 == 0 {
                sender.request(0, command::READ, cookie, block * 4096, 4096, &[]);
            } else {
                // Writes go past the blocks the reads look at.
                sender.request(0, command::WRITE, cookie, (64 + block) * 4096, 4096, &[7; 4096]);
            }
        }
    });
    let mut answered = vec![false; requests as usize];
    for _ in 0..requests {
        let (errno, cookie) = client.reply();
        assert_eq!(errno, 0);
        assert!(!std::mem::replace(&mut answered[cookie as usize], true), "cookie {cookie} answered twice");
        if cookie % 2 == 0 {
            assert_eq!(client.bytes(4096), vec![(cookie % 64) as u8; 4096], "cookie {cookie}");
        }
    }
    sending.join().unwrap();
    assert!(answered.iter().all(|&a| a));
}

#[test]
fn nbd_cmd_disc_answers_what_is_in_flight_then_closes() {
    let server = two_exports();
    let (mut client, _, _) = RawClient::go(&server, "disk");
    // One write(): the DISC arrives while the write and the flush are in flight.
    client.send(
        &[
            request_bytes(command_flag::FUA, command::WRITE, 1, 0, 8, &[9; 8]),
            request_bytes(0, command::FLUSH, 2, 0, 0, &[]),
            request_bytes(0, command::DISC, 3, 0, 0, &[]),
        ]
        .concat(),
    );
    let mut cookies = vec![client.reply(), client.reply()];
    cookies.sort();
    assert_eq!(cookies, [(0, 1), (0, 2)]);
    client.assert_closed();
    assert_eq!(std::fs::read(server.image("disk")).unwrap()[..8], [9; 8]);
}

#[test]
fn stopping_the_server_closes_connections_and_removes_the_socket() {
    let server = two_exports();
    let socket = server.socket.clone();
    let mut haggling = RawClient::connect(&server);
    let (mut transmitting, _, _) = RawClient::go(&server, "disk");
    drop(server);
    haggling.assert_closed();
    transmitting.assert_closed();
    assert!(!socket.exists(), "the socket file is removed");
}
