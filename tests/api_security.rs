//! Who may use the HTTP services, and what a hostile client can hold: the
//! control API on TCP authenticates every peer (a bearer token on loopback,
//! mutual TLS anywhere), the HTTP parser's own refusals carry JSON bodies, and
//! slow or half-sent requests are cut off without starving the unix socket.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};
use switchyard::config::ControlConfig;
use switchyard::control::client::Client;
use switchyard::control::testing::FakeRuntime;
use switchyard::control::{spawn, ControlHandle};
use switchyard::configdb::Store;
use switchyard::svc::auth::Token;
use switchyard::svc::{AuthFiles, ClientAuth, HttpLimits};

use common::tls::TestCa;

const NOBODY: &str = "65534";

struct Api {
    dir: tempfile::TempDir,
    handle: ControlHandle,
}

impl Api {
    /// The API on its unix socket and on `listen` with `auth`.
    fn start(listen: &str, auth: impl FnOnce(&Path) -> AuthFiles, limits: HttpLimits) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let config = ControlConfig {
            socket: dir.path().join("api.sock"),
            listen: Some(listen.parse().unwrap()),
            auth: auth(dir.path()),
            limits,
            database: dir.path().join("config.redb"),
            ..ControlConfig::defaults(None)
        };
        let store = Store::open(&config.database).unwrap();
        let handle = spawn(&config, store, Arc::new(FakeRuntime::new())).unwrap();
        Api { dir, handle }
    }

    fn with_token(limits: HttpLimits) -> Api {
        Api::start("127.0.0.1:0", |dir| AuthFiles { token_file: Some(dir.join("api.token")), ..Default::default() }, limits)
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("api.token")
    }

    fn url(&self) -> String {
        format!("http://{}", self.handle.tcp_addr().unwrap())
    }

    fn unix(&self) -> Client {
        Client::unix(self.handle.socket())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// `switchyard ctl ARGS` as uid/gid 65534 with no groups: (exit code, stderr).
fn ctl_as_nobody(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", env!("CARGO_BIN_EXE_switchyard"), "ctl"])
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_local_user_cannot_upgrade_or_import_through_the_tcp_api() {
    let api = Api::with_token(HttpLimits::default());
    let token = api.token_file();
    let mode = std::fs::metadata(&token).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "the token file is root's alone");
    // The attack: uid 65534 asks the root daemon to load its library, or to copy a root-only file.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let evil = scratch.path().join("evil-unit.so");
    std::fs::write(&evil, b"\x7fELF").unwrap();
    let (code, err) = ctl_as_nobody(&["--url", &api.url(), "upgrade", evil.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("bearer token"), "refused for want of the token: {err}");
    let (code, err) = ctl_as_nobody(&["--url", &api.url(), "--token-file", token.to_str().unwrap(), "network", "list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Permission denied"), "the token file is unreadable to the user: {err}");
    runtime().block_on(async {
        // Raw requests without (or with a wrong) token: 401 with the JSON error shape.
        let forged = ClientAuth { token: Some(token_of(&api, &"0".repeat(64))), tls: None };
        for auth in [ClientAuth::default(), forged] {
            let client = Client::url(&api.url(), auth).unwrap();
            let import = json!({"name": "shadow", "import_from": "/etc/shadow"});
            for (method, path, body) in
                [(Method::POST, "/v1/upgrade", json!({"library": evil})), (Method::POST, "/v1/storage/images", import)]
            {
                let reply = client.send_json(method, path, Some(&body)).await.unwrap();
                assert_eq!(reply.status, 401, "{path}: {}", reply.text());
                assert!(reply.json().unwrap()["error"].as_str().unwrap().contains("bearer token"));
            }
        }
        // Nothing ran; root on the unix socket and a client with the token are served.
        let status = api.unix().get("/v1/upgrade").await.unwrap();
        assert_eq!(status["history"], json!([]), "{status}");
        let auth = AuthFiles { token_file: Some(token.clone()), ..Default::default() }.client().unwrap();
        assert_eq!(Client::url(&api.url(), auth).unwrap().get("/v1/networks").await.unwrap(), json!([]));
    });
}

fn token_of(api: &Api, text: &str) -> Token {
    let path = api.dir.path().join("forged.token");
    std::fs::write(&path, text).unwrap();
    Token::read(&path).unwrap()
}

#[test]
fn mutual_tls_admits_only_clients_the_configured_ca_signed() {
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki.path(), "cluster");
    let server = ca.issue(pki.path(), "server", &["127.0.0.1", "localhost"]);
    let client = ca.issue(pki.path(), "client", &["operator"]);
    let stranger_ca = TestCa::new(pki.path(), "stranger");
    let stranger = stranger_ca.issue(pki.path(), "stranger", &["operator"]);
    // TLS may listen on any address: the wildcard is accepted.
    let files = AuthFiles {
        tls_cert: Some(server.cert.clone()),
        tls_key: Some(server.key.clone()),
        tls_ca: Some(ca.cert.clone()),
        ..Default::default()
    };
    let api = Api::start("0.0.0.0:0", |_| files, HttpLimits::default());
    let url = format!("https://127.0.0.1:{}", api.handle.tcp_addr().unwrap().port());
    let as_client = |ca: &Path, cert: &Path, key: &Path| {
        let files = AuthFiles {
            tls_ca: Some(ca.to_path_buf()),
            tls_cert: Some(cert.to_path_buf()),
            tls_key: Some(key.to_path_buf()),
            ..Default::default()
        };
        Client::url(&url, files.client().unwrap()).unwrap()
    };
    runtime().block_on(async {
        let trusted = as_client(&ca.cert, &client.cert, &client.key);
        assert_eq!(trusted.get("/v1/networks").await.unwrap(), json!([]));
        // A certificate from another CA: the handshake fails, no request is served.
        let refused = as_client(&ca.cert, &stranger.cert, &stranger.key).get("/v1/networks").await;
        assert!(refused.is_err(), "{refused:?}");
        // No client certificate at all.
        let tcp = tokio::net::TcpStream::connect(api.handle.tcp_addr().unwrap()).await.unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca.cert).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(anonymous)).connect(name, tcp).await;
        let answered = match tls {
            Err(_) => false,
            Ok(mut tls) => {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = tls.write_all(b"GET /v1/networks HTTP/1.1\r\nHost: x\r\n\r\n").await;
                let mut buf = [0u8; 64];
                matches!(tls.read(&mut buf).await, Ok(n) if n > 0)
            }
        };
        assert!(!answered, "a client without a certificate got an answer");
        // A plain-HTTP request to the TLS listener gets nothing either.
        let plain = Client::url(&format!("http://127.0.0.1:{}", api.handle.tcp_addr().unwrap().port()), ClientAuth::default());
        assert!(plain.unwrap().get("/v1/networks").await.is_err());
    });
}

use rustls::pki_types::pem::PemObject;

/// Sends `request` raw and reads the reply until the server closes or 2 s pass.
fn raw_exchange(mut stream: impl Read + Write, request: &[u8]) -> String {
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

fn json_body(reply: &str) -> Value {
    serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or(Value::Null)
}

#[test]
fn requests_the_http_parser_refuses_get_the_json_error_shape() {
    let api = Api::with_token(HttpLimits::default());
    let huge_length = b"POST /v1/networks HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n".to_vec();
    let twice = b"POST /v1/networks HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec();
    let mut raw_path = b"GET /v1/net".to_vec();
    raw_path.extend_from_slice(&[0xff]);
    raw_path.extend_from_slice(b"works HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut huge_header = b"GET /v1/networks HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge_header.extend(std::iter::repeat_n(b'a', 600 * 1024));
    huge_header.extend_from_slice(b"\r\n\r\n");
    // hyper calls an unrepresentable length "too large" (431).
    for (request, status) in [(&huge_length, "431"), (&twice, "400"), (&raw_path, "400"), (&huge_header, "431")] {
        for over_tcp in [false, true] {
            let reply = if over_tcp {
                let stream = TcpStream::connect(api.handle.tcp_addr().unwrap()).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                raw_exchange(stream, request)
            } else {
                let stream = UnixStream::connect(api.handle.socket()).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                raw_exchange(stream, request)
            };
            let head = reply.lines().next().unwrap_or("");
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "tcp {over_tcp}: {reply:?}");
            let body = json_body(&reply);
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "tcp {over_tcp}: {reply:?}");
            assert_eq!(body["field"], Value::Null);
        }
    }
}

#[test]
fn slow_heads_and_bodies_are_cut_off() {
    let limits = HttpLimits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let api = Api::with_token(limits);
    // Half a head: the connection is closed once the head deadline passes.
    let mut stream = UnixStream::connect(api.handle.socket()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET /v1/networks HTTP/1.1\r\nHost:").unwrap();
    let start = Instant::now();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(start.elapsed() < Duration::from_secs(3), "closed after {:?}", start.elapsed());
    // A head, then a body that never comes: refused with the JSON error shape.
    let stream = UnixStream::connect(api.handle.socket()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let reply = raw_exchange(
        stream,
        b"POST /v1/networks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\nConnection: close\r\n\r\n{",
    );
    assert!(start.elapsed() < Duration::from_secs(3), "answered after {:?}", start.elapsed());
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply:?}");
    assert!(json_body(&reply)["error"].as_str().unwrap().contains("did not arrive within"), "{reply:?}");
}

/// The attack: an unprivileged user opens as many half-sent requests to the
/// TCP listener as its file limit allows and holds them. Root's requests on
/// the unix socket are still answered at once, and the held connections are
/// dropped at the head deadline.
#[test]
fn half_sent_requests_from_a_local_user_do_not_starve_the_unix_socket() {
    let limits = HttpLimits { header_timeout: Duration::from_secs(2), max_connections: 64, ..HttpLimits::default() };
    let api = Api::with_token(limits);
    let port = api.handle.tcp_addr().unwrap().port();
    let script = format!(
        r#"
import socket, time, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for _ in range(hard - 16):
    s = socket.socket()
    s.setblocking(False)
    if s.connect_ex(("127.0.0.1", {port})) not in (0, 115):
        s.close()
        break
    held.append(s)
time.sleep(0.5)
sent = 0
for s in held:
    try:
        s.send(b"GET /v1/networks HTTP/1.1\r\nHost:")
        sent += 1
    except OSError:
        pass
print(len(held), sent, hard, flush=True)
time.sleep(8)
"#
    );
    let mut attacker = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "/usr/bin/python3", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(attacker.stdout.take().unwrap()), &mut line).unwrap();
    let numbers: Vec<usize> = line.split_whitespace().map(|n| n.parse().unwrap()).collect();
    let (held, limit) = (numbers[0], numbers[2]);
    // Most of the user's file limit (20,000 on the test machines), not stopped early by the server.
    assert!(held > limit / 2, "the attacker held {held} connections of its limit {limit}: {line}");
    runtime().block_on(async {
        for _ in 0..20 {
            let start = Instant::now();
            let reply = tokio::time::timeout(Duration::from_secs(2), api.unix().get("/v1/networks")).await;
            assert!(matches!(reply, Ok(Ok(_))), "the unix socket did not answer within 2 s: {reply:?}");
            assert!(start.elapsed() < Duration::from_secs(1), "answered after {:?}", start.elapsed());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let _ = attacker.kill();
    let _ = attacker.wait();
}

/// `control.socket_group` opens the unix socket (and the directory made for it) to one
/// group: its members are served, other local users cannot connect.
#[test]
fn the_unix_socket_is_opened_to_the_socket_group_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let group = nix::unistd::Group::from_name("nogroup").unwrap().expect("Debian's nogroup");
    let config = ControlConfig {
        socket: dir.path().join("run/api.sock"),
        socket_group: Some(switchyard::config::SocketGroup { name: "nogroup".into(), gid: group.gid.as_raw() }),
        database: dir.path().join("config.redb"),
        ..ControlConfig::defaults(None)
    };
    let handle = spawn(&config, Store::open(&config.database).unwrap(), Arc::new(FakeRuntime::new())).unwrap();
    let meta = |path: &Path| std::fs::metadata(path).unwrap();
    use std::os::unix::fs::MetadataExt;
    let socket = handle.socket().to_path_buf();
    assert_eq!((meta(&socket).mode() & 0o777, meta(&socket).gid()), (0o660, group.gid.as_raw()));
    let run_dir = socket.parent().unwrap();
    assert_eq!((meta(run_dir).mode() & 0o777, meta(run_dir).gid()), (0o710, group.gid.as_raw()));
    let list_as = |gid: &str| {
        let out = Command::new("setpriv")
            .args(["--reuid", NOBODY, "--regid", gid, "--clear-groups", env!("CARGO_BIN_EXE_switchyard"), "ctl"])
            .arg("--socket")
            .arg(&socket)
            .args(["network", "list"])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = list_as(&group.gid.as_raw().to_string());
    assert_eq!(code, Some(0), "a member of the group is served: {err}");
    let (code, err) = list_as("65533");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Permission denied"), "another user cannot connect: {err}");
}
