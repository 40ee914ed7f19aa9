//! The control API over HTTP without EAL: `control::spawn` on a temporary unix
//! socket (and loopback TCP) with the fake data plane, driven by the client
//! library, raw requests, and the `switchyard ctl` binary.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use hyper::Method;
use serde_json::{json, Value};
use switchyard::config::{ControlConfig, StorageConfig};
use switchyard::control::cli::{self, CtlArgs, CtlCommand, NetworkCommand, PortCommand};
use switchyard::control::client::{Client, ClientError};
use switchyard::control::testing::FakeRuntime;
use switchyard::control::{http, spawn, spawn_with_storage, ControlError, ControlHandle};
use switchyard::configdb::Store;
use switchyard::upgrade::STEP_NAMES;
use switchyard::svc::auth::Token;
use switchyard::svc::{AuthFiles, ClientAuth};

struct Server {
    dir: tempfile::TempDir,
    handle: Option<ControlHandle>,
    fake: Arc<FakeRuntime>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(FakeRuntime::new())
    }

    fn start_with(fake: FakeRuntime) -> Server {
        Server::start_serving(fake, false)
    }

    /// With `[storage]`: images in `<dir>/images`.
    fn start_with_storage() -> Server {
        Server::start_serving(FakeRuntime::new(), true)
    }

    fn start_serving(fake: FakeRuntime, storage: bool) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = ControlConfig {
            socket: dir.path().join("run/api.sock"),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            auth: AuthFiles { token_file: Some(dir.path().join("api.token")), ..Default::default() },
            database: dir.path().join("lib/config.redb"),
            ..ControlConfig::defaults(None)
        };
        let store = Store::open(&config.database).unwrap();
        // Unit libraries "load" from the server's directory (root's, 0700).
        let fake = Arc::new(fake.with_unit_directory(dir.path()));
        let handle = if storage {
            std::fs::create_dir(dir.path().join("import")).unwrap();
            let storage =
                StorageConfig { import_dir: Some(dir.path().join("import")), ..StorageConfig::new(dir.path().join("images")) };
            spawn_with_storage(&config, Some(storage), store, fake.clone()).unwrap()
        } else {
            spawn(&config, store, fake.clone()).unwrap()
        };
        Server { dir, handle: Some(handle), fake }
    }

    fn handle(&self) -> &ControlHandle {
        self.handle.as_ref().unwrap()
    }

    fn socket(&self) -> PathBuf {
        self.handle().socket().to_path_buf()
    }

    fn client(&self) -> Client {
        Client::unix(self.socket())
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("api.token")
    }

    fn tcp_url(&self) -> String {
        format!("http://{}", self.handle().tcp_addr().unwrap())
    }

    fn tcp_client(&self) -> Client {
        let auth = ClientAuth { token: Some(Token::read(&self.token_file()).unwrap()), tls: None };
        Client::url(&self.tcp_url(), auth).unwrap()
    }

    /// A file standing for a unit library in the unit directory (the fake loads nothing).
    fn library(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, b"\x7fELF").unwrap();
        path
    }

    fn ctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command.arg("ctl").arg("--socket").arg(self.socket()).args(args).env("RUST_LOG", "warn");
        command.current_dir(self.dir.path());
        command
    }

    /// `switchyard ctl --socket S ARGS...` as a process, in the server's
    /// directory: (exit code, stdout, stderr).
    fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let output = self.ctl_command(args).output().unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }
}

async fn post(client: &Client, path: &str, body: Value) -> Result<Value, ClientError> {
    client.call(Method::POST, path, Some(&body)).await
}

/// Sends raw bytes and returns (status, field, error message) of the JSON error.
async fn refused(
    client: &Client,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value, String) {
    let reply = client.send(method, path, content_type, body.as_bytes().to_vec()).await.unwrap();
    assert_eq!(reply.content_type.as_deref(), Some("application/json"), "{}", reply.text());
    let json = reply.json().unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error", "field"], "error bodies are exactly {{error, field}}");
    (reply.status, json["field"].clone(), json["error"].as_str().unwrap().to_string())
}

async fn populate(client: &Client) {
    post(client, "/v1/networks", json!({"vni": 100, "name": "blue", "flood_vteps": ["192.0.2.2"]})).await.unwrap();
    post(client, "/v1/endpoints", json!({"vni": 100, "mac": "02:00:00:00:00:01", "ip": "10.1.0.1", "port": "vm0"}))
        .await
        .unwrap();
    post(client, "/v1/remotes", json!({"vni": 100, "mac": "02:00:00:00:00:02", "vtep": "192.0.2.3"})).await.unwrap();
    client.call(Method::PUT, "/v1/ports/vm0/network", Some(&json!({"vni": 100}))).await.unwrap();
}

#[tokio::test]
async fn crud_round_trip_over_unix_and_tcp() {
    let server = Server::start();
    let client = server.client();
    assert_eq!(client.get("/v1/networks").await.unwrap(), json!([]));

    let created =
        post(&client, "/v1/networks", json!({"vni": 100, "name": "blue", "flood_vteps": ["192.0.2.2"]})).await.unwrap();
    assert_eq!(created, json!({"vni": 100, "name": "blue", "flood_vteps": ["192.0.2.2"]}));
    populate_rest(&client).await;

    // The same state through TCP.
    let tcp = server.tcp_client();
    assert_eq!(tcp.get("/v1/networks/100").await.unwrap()["name"], "blue");
    let config = tcp.get("/v1/config").await.unwrap();
    assert_eq!(config["generation"], 4);
    assert_eq!(
        config["endpoints"][0],
        json!({"vni": 100, "mac": "02:00:00:00:00:01", "ip": "10.1.0.1", "port": "vm0"})
    );
    assert_eq!(config["remotes"][0], json!({"vni": 100, "mac": "02:00:00:00:00:02", "ip": null, "vtep": "192.0.2.3"}));
    let ports = tcp.get("/v1/ports").await.unwrap();
    assert_eq!(ports[0]["name"], "vm0");
    assert_eq!(ports[0]["role"], "vm");
    assert_eq!(ports[0]["vni"], 100);
    assert_eq!(ports[2]["vni"], Value::Null);
    assert_eq!(tcp.get("/v1/ports/uplink0").await.unwrap()["role"], "uplink");
    assert_eq!(server.fake.last_applied().unwrap().generation, 4);

    // PUT replaces; a GET body can be sent back as is.
    let mut network = client.get("/v1/networks/100").await.unwrap();
    network["flood_vteps"] = json!(["192.0.2.2", "192.0.2.4"]);
    let replaced = client.call(Method::PUT, "/v1/networks/100", Some(&network)).await.unwrap();
    assert_eq!(replaced["flood_vteps"], json!(["192.0.2.2", "192.0.2.4"]));

    // Tear down in order; DELETE answers 204 with no body.
    let reply = client.send(Method::DELETE, "/v1/endpoints/100/02:00:00:00:00:01", None, Vec::new()).await.unwrap();
    assert_eq!((reply.status, reply.body.len()), (204, 0));
    client.call(Method::DELETE, "/v1/remotes/100/02:00:00:00:00:02", None).await.unwrap();
    client.call(Method::DELETE, "/v1/ports/vm0/network", None).await.unwrap();
    client.call(Method::DELETE, "/v1/networks/100", None).await.unwrap();
    assert_eq!(client.get("/v1/config").await.unwrap()["generation"], 9);
    assert_eq!(server.fake.last_applied().unwrap().generation, 9);
    assert!(server.fake.last_applied().unwrap().networks.is_empty());
}

async fn populate_rest(client: &Client) {
    let reply = client
        .send(
            Method::POST,
            "/v1/endpoints",
            Some("application/json; charset=utf-8"),
            r#"{"vni": 100, "mac": "02:00:00:00:00:01", "ip": "10.1.0.1", "port": "vm0"}"#,
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    post(client, "/v1/remotes", json!({"vni": 100, "mac": "02:00:00:00:00:02", "vtep": "192.0.2.3"})).await.unwrap();
    let bound = client.call(Method::PUT, "/v1/ports/vm0/network", Some(&json!({"vni": 100}))).await.unwrap();
    assert_eq!(bound, json!({"port": "vm0", "vni": 100}));
}

#[tokio::test]
async fn bad_requests_are_json_errors_naming_the_field() {
    let server = Server::start();
    let c = server.client();
    populate(&c).await;
    let generation = c.get("/v1/config").await.unwrap()["generation"].clone();
    let json_type = Some("application/json");

    let (status, field, error) = refused(&c, Method::POST, "/v1/networks", json_type, "{\"vni\": 5, \"name\": ").await;
    assert_eq!((status, field), (400, json!("body")));
    assert_eq!(error, "the body is not valid JSON: EOF while parsing a value");

    let (status, field, error) =
        refused(&c, Method::POST, "/v1/networks", json_type, r#"{"vni": 5, "name": "x", "mtu": 9000}"#).await;
    assert_eq!((status, field), (400, json!("mtu")));
    assert_eq!(error, "unknown field `mtu`; expected one of `vni`, `name`, `flood_vteps`");

    let (status, field, _) = refused(&c, Method::POST, "/v1/networks", json_type, r#"{"vni": "5", "name": "x"}"#).await;
    assert_eq!((status, field), (400, json!("vni")));

    let (status, field, error) =
        refused(&c, Method::POST, "/v1/networks", Some("text/plain"), r#"{"vni": 5, "name": "x"}"#).await;
    assert_eq!((status, field), (415, json!("Content-Type")));
    assert_eq!(error, "the body must be sent as Content-Type: application/json (got \"text/plain\")");
    let (status, _, error) = refused(&c, Method::POST, "/v1/networks", None, r#"{"vni": 5, "name": "x"}"#).await;
    assert_eq!(status, 415);
    assert!(error.ends_with("(got none)"), "{error}");

    let big = format!(r#"{{"vni": 5, "name": "{}"}}"#, "x".repeat(70_000));
    let (status, field, _) = refused(&c, Method::POST, "/v1/networks", json_type, &big).await;
    assert_eq!((status, field), (413, json!("body")));

    let (status, field, error) = refused(
        &c,
        Method::POST,
        "/v1/remotes",
        json_type,
        r#"{"vni": 100, "mac": "02:00:00:00:00:09", "vtep": "224.0.0.1"}"#,
    )
    .await;
    assert_eq!((status, field), (400, json!("vtep")));
    assert_eq!(error, "224.0.0.1 is a multicast address, not a unicast IPv4 address");

    let (status, field, error) = refused(&c, Method::GET, "/v1/networks/300", None, "").await;
    assert_eq!((status, field, error.as_str()), (404, json!("vni"), "there is no network with VNI 300"));
    let (status, field, _) = refused(&c, Method::GET, "/v1/endpoints/100/02:00:00:00:00:09", None, "").await;
    assert_eq!((status, field), (404, json!("mac")));
    let (status, field, _) = refused(&c, Method::DELETE, "/v1/remotes/100/02:00:00:00:00:09", None, "").await;
    assert_eq!((status, field), (404, json!("mac")));
    let (status, field, _) = refused(&c, Method::GET, "/v1/ports/vm7", None, "").await;
    assert_eq!((status, field), (404, json!("name")));
    let (status, field, _) = refused(&c, Method::GET, "/v1/networks/blue", None, "").await;
    assert_eq!((status, field), (400, json!("vni")));

    let (status, field, error) = refused(&c, Method::DELETE, "/v1/networks/100", None, "").await;
    assert_eq!((status, field), (409, json!("vni")));
    assert_eq!(
        error,
        "network 100 is still used by 1 VM endpoint, 1 remote endpoint and 1 port (vm0); remove them first"
    );
    let (status, field, _) =
        refused(&c, Method::POST, "/v1/networks", json_type, r#"{"vni": 100, "name": "other"}"#).await;
    assert_eq!((status, field), (409, json!("vni")));

    let (status, field, error) = refused(&c, Method::GET, "/v1/nothing", None, "").await;
    assert_eq!((status, field, error.as_str()), (404, Value::Null, "there is no route GET /v1/nothing"));
    let (status, field, error) = refused(&c, Method::PATCH, "/v1/networks/100", json_type, "{}").await;
    assert_eq!((status, field), (405, Value::Null));
    assert_eq!(error, "/v1/networks/100 does not accept PATCH; it accepts GET,HEAD,PUT,DELETE");

    // None of it changed anything.
    assert_eq!(c.get("/v1/config").await.unwrap()["generation"], generation);
}

#[tokio::test]
async fn openapi_lists_every_route_and_metrics_are_text() {
    let server = Server::start();
    let c = server.client();
    let doc = c.get("/openapi.json").await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let routes = http::route_list();
    for (method, path) in &routes {
        assert!(paths.get(*path).and_then(|p| p.get(*method)).is_some(), "{method} {path} is not in /openapi.json");
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, routes.len(), "/openapi.json documents routes the router does not serve");
    // Every $ref resolves.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/").skip(1) {
        let reference = &piece[..piece.find('"').unwrap()];
        let mut node = &doc["components"];
        for part in reference.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref {reference}");
    }

    let reply = c.send(Method::GET, "/metrics", None, Vec::new()).await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.as_deref().unwrap().starts_with("text/plain"), "{:?}", reply.content_type);
    assert!(reply.text().contains("switchyard_port_rx_packets{port=\"vm0\"} 1\n"), "{}", reply.text());

    assert_eq!(c.get("/v1/unit").await.unwrap()["vm"]["id"], "fake");
    assert!(c.get("/v1/stats").await.unwrap()["drops"].is_object());
    assert!(c.get("/v1/learned").await.unwrap()["macs"].is_array());
}

fn args(socket: &Path, json: bool, command: CtlCommand) -> CtlArgs {
    CtlArgs { socket: socket.to_path_buf(), url: None, auth: Default::default(), json, command }
}

#[test]
fn ctl_library_prints_tables_and_json() {
    let server = Server::start();
    let socket = server.socket();
    let mut out = Vec::new();
    let create = NetworkCommand::Create { vni: 100, name: "blue".into(), flood: Some("192.0.2.2,192.0.2.3".into()) };
    cli::run(&args(&socket, false, CtlCommand::Network(create)), &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "VNI  NAME  FLOOD_VTEPS\n100  blue  192.0.2.2,192.0.2.3\n");

    let mut out = Vec::new();
    cli::run(&args(&socket, true, CtlCommand::Network(NetworkCommand::List)), &mut out).unwrap();
    let listed: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(listed, json!([{"vni": 100, "name": "blue", "flood_vteps": ["192.0.2.2", "192.0.2.3"]}]));

    let mut out = Vec::new();
    cli::run(&args(&socket, false, CtlCommand::Port(PortCommand::Bind { name: "uplink0".into(), vni: 100 })), &mut out)
        .map(|_| panic!("binding an uplink port must fail"))
        .unwrap_or_else(|e| {
            assert_eq!(e.to_string(), "port uplink0 has role uplink; only vm-role ports join a network (field: name)")
        });
}

#[test]
fn ctl_binary_end_to_end() {
    let server = Server::start();
    let ok = |args: &[&str]| {
        let (code, out, err) = server.ctl(args);
        assert_eq!(code, 0, "ctl {args:?}: {err}");
        out
    };
    ok(&["network", "create", "--vni", "100", "--name", "blue", "--flood", "192.0.2.2"]);
    ok(&["network", "set", "100", "--flood", "192.0.2.2,192.0.2.9"]);
    ok(&["endpoint", "add", "--vni", "100", "--mac", "02:00:00:00:00:01", "--ip", "10.1.0.1", "--port", "vm0"]);
    ok(&["remote", "add", "--vni", "100", "--mac", "02:00:00:00:00:02", "--vtep", "192.0.2.2"]);
    ok(&["port", "bind", "vm0", "--vni", "100"]);

    assert_eq!(ok(&["network", "list"]), "VNI  NAME  FLOOD_VTEPS\n100  blue  192.0.2.2,192.0.2.9\n");
    assert_eq!(
        ok(&["endpoint", "list"]),
        "VNI  MAC                IP        PORT\n100  02:00:00:00:00:01  10.1.0.1  vm0\n"
    );
    assert_eq!(
        ok(&["remote", "list"]),
        "VNI  MAC                IP  VTEP       SOURCE\n100  02:00:00:00:00:02  -   192.0.2.2  -\n"
    );
    let ports = ok(&["port", "list"]);
    let lines: Vec<&str> = ports.lines().collect();
    assert!(lines[0].starts_with("NAME     ROLE    DRIVER         MAC                VNI  RX_PACKETS"), "{ports}");
    assert!(lines[1].starts_with("vm0      vm      net_tap        02:53:59:00:00:00  100"), "{ports}");
    assert!(lines[3].starts_with("uplink0  uplink  net_af_packet  02:53:59:00:00:02  -"), "{ports}");
    let json: Value = serde_json::from_str(&ok(&["--json", "port", "list"])).unwrap();
    assert_eq!(json[0]["vni"], 100);
    assert!(ok(&["unit"]).contains("vm.id"));
    assert!(ok(&["stats"]).contains("drops.no_forwarding_rule"));
    assert!(ok(&["learned"]).contains("macs\n"));
    assert!(ok(&["metrics"]).contains("# TYPE switchyard_port_rx_packets counter"));
    assert!(ok(&["config"]).starts_with("generation 5\n"));

    // API errors: one line, exit code 1.
    let (code, out, err) = server.ctl(&["network", "delete", "100"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "switchyard ctl: network 100 is still used by 1 VM endpoint, 1 remote endpoint and 1 port (vm0); remove them first (field: vni)\n"
    );
    let (code, _, err) =
        server.ctl(&["remote", "add", "--vni", "100", "--mac", "02:00:00:00:00:03", "--vtep", "0.0.0.0"]);
    assert_eq!(code, 1);
    assert_eq!(err, "switchyard ctl: 0.0.0.0 is the unspecified address, not a unicast IPv4 address (field: vtep)\n");

    ok(&["endpoint", "delete", "100", "02:00:00:00:00:01"]);
    ok(&["remote", "delete", "100", "02:00:00:00:00:02"]);
    assert_eq!(ok(&["port", "unbind", "vm0"]), "port vm0 left its network\n");
    assert_eq!(ok(&["network", "delete", "100"]), "deleted network 100\n");
    assert_eq!(ok(&["network", "list"]), "VNI  NAME  FLOOD_VTEPS\n");

    // Over TCP too.
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--url", &server.tcp_url(), "--token-file", server.token_file().to_str().unwrap(), "network", "list"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "VNI  NAME  FLOOD_VTEPS\n");
}

#[test]
fn ctl_names_the_socket_it_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--socket"])
        .arg(&socket)
        .args(["network", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(
        err.starts_with(&format!("switchyard ctl: cannot connect to {}: ", socket.display()))
            && err.lines().count() == 1,
        "{err}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--url", "ftp://example.com:21", "network", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "switchyard ctl: \"ftp://example.com:21\" is not a URL of the form http://127.0.0.1:PORT or https://HOST:PORT\n"
    );
}

#[test]
fn socket_lifecycle() {
    let server = Server::start();
    let socket = server.socket();
    assert!(socket.exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // A second server on the same socket is refused while the first one lives.
    let config = ControlConfig {
        socket: socket.clone(),
        listen: None,
        database: server.dir.path().join("other.redb"),
        ..ControlConfig::defaults(None)
    };
    let err = spawn(&config, Store::open(&config.database).unwrap(), Arc::new(FakeRuntime::new())).err().unwrap();
    assert!(matches!(err, ControlError::SocketInUse(_)), "{err}");
    assert_eq!(err.to_string(), format!("control API: another process is serving on {}", socket.display()));

    // Shutdown removes the socket.
    let mut server = server;
    server.handle.take().unwrap().shutdown();
    assert!(!socket.exists());

    // A stale socket (its server gone without cleanup) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(stale);
    assert!(socket.exists());
    let handle =
        spawn(&config, Store::open(server.dir.path().join("third.redb")).unwrap(), Arc::new(FakeRuntime::new()))
            .unwrap();
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_ok());
    drop(handle);
    assert!(!socket.exists());

    // Not a socket: left alone.
    std::fs::write(&socket, "precious").unwrap();
    let err = spawn(&config, Store::open(server.dir.path().join("fourth.redb")).unwrap(), Arc::new(FakeRuntime::new()))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!("control API: {} exists and is not a socket; refusing to replace it", socket.display())
    );
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

#[test]
fn tcp_without_authentication_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ControlConfig {
        socket: dir.path().join("api.sock"),
        listen: Some("0.0.0.0:8080".parse().unwrap()),
        database: dir.path().join("config.redb"),
        ..ControlConfig::defaults(None)
    };
    let err = spawn(&config, Store::open(&config.database).unwrap(), Arc::new(FakeRuntime::new())).err().unwrap();
    assert_eq!(
        err.to_string(),
        "control API: control.listen: 0.0.0.0:8080 on TCP needs authentication: set control.token_file (loopback \
         addresses only), or control.tls_cert, control.tls_key and control.tls_client_ca (mutual TLS)"
    );
    // A token is for loopback only.
    config.auth.token_file = Some(dir.path().join("api.token"));
    let err = spawn(&config, Store::open(dir.path().join("2.redb")).unwrap(), Arc::new(FakeRuntime::new())).err().unwrap();
    assert!(err.to_string().contains("0.0.0.0:8080 is not a loopback address"), "{err}");
    assert!(!config.socket.exists());
}

// Upgrades, and config requests while one runs.

/// Polls `GET /v1/upgrade` until the running upgrade has done step 1 (config
/// requests paused); the fake holds it there.
async fn wait_until_paused(client: &Client) -> Value {
    for _ in 0..1000 {
        let status = client.get("/v1/upgrade").await.unwrap();
        if status["running"]["steps"].as_array().is_some_and(|steps| !steps.is_empty()) {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the upgrade did not pause config requests");
}

/// Starts an upgrade the fake holds after step 1 (config requests paused);
/// the reply comes once `release_upgrades` lets it finish.
fn start_held_upgrade(server: &Server, c: &Client) -> tokio::task::JoinHandle<switchyard::control::client::Reply> {
    let library = server.library("unit-v2.so");
    server.fake.hold_upgrades();
    let c = c.clone();
    let body = json!({"library": library});
    tokio::spawn(async move { c.send_json(Method::POST, "/v1/upgrade", Some(&body)).await.unwrap() })
}

/// Sends a change and expects 202: returns the request id.
async fn queued(client: &Client, method: Method, path: &str, body: Option<Value>) -> u64 {
    let reply = client.send_json(method.clone(), path, body.as_ref()).await.unwrap();
    assert_eq!(reply.status, 202, "{method} {path}: {}", reply.text());
    let json = reply.json().unwrap();
    let id = json["request_id"].as_u64().unwrap();
    assert_eq!(json, json!({"request_id": id, "state": "queued", "status": format!("/v1/requests/{id}")}));
    assert_eq!(reply.location, Some(format!("/v1/requests/{id}")));
    id
}

#[tokio::test]
async fn changes_during_an_upgrade_are_answered_202_and_applied_in_order_after_it() {
    let server = Server::start();
    let c = server.client();
    let upgrade = start_held_upgrade(&server, &c);
    let library = server.dir.path().join("unit-v2.so");
    let status = wait_until_paused(&c).await;
    assert_eq!(status["running"]["id"], 1);
    assert_eq!(status["running"]["outcome"], "running");
    assert_eq!(status["running"]["steps"][0]["name"], "pause config requests");

    let ids = [
        queued(&c, Method::POST, "/v1/networks", Some(json!({"vni": 100, "name": "blue"}))).await,
        queued(&c, Method::PUT, "/v1/networks/100", Some(json!({"name": "green"}))).await,
        queued(&c, Method::DELETE, "/v1/networks/100", None).await,
        queued(&c, Method::POST, "/v1/networks", Some(json!({"vni": 101, "name": "red"}))).await,
        // Valid as far as can be told now; there is no network 300 when its turn comes.
        queued(&c, Method::POST, "/v1/endpoints", Some(json!({"vni": 300, "mac": "02:00:00:00:00:01", "port": "vm0"})))
            .await,
        queued(
            &c,
            Method::POST,
            "/v1/remotes",
            Some(json!({"vni": 101, "mac": "02:00:00:00:00:02", "vtep": "192.0.2.3"})),
        )
        .await,
        queued(&c, Method::PUT, "/v1/ports/vm0/network", Some(json!({"vni": 101}))).await,
        queued(&c, Method::DELETE, "/v1/remotes/101/02:00:00:00:00:02", None).await,
    ];
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 8]);

    // What is wrong whatever the configuration is refused at once, and not queued.
    let json_type = Some("application/json");
    let (status, field, error) = refused(&c, Method::POST, "/v1/networks", json_type, "{\"vni\": 5, \"name\": ").await;
    assert_eq!(
        (status, field, error.as_str()),
        (400, json!("body"), "the body is not valid JSON: EOF while parsing a value")
    );
    let (status, field, _) =
        refused(&c, Method::POST, "/v1/networks", json_type, r#"{"vni": 5, "name": "x", "mtu": 9000}"#).await;
    assert_eq!((status, field), (400, json!("mtu")));
    let (status, field, error) =
        refused(&c, Method::POST, "/v1/networks", json_type, r#"{"vni": 0, "name": "x"}"#).await;
    assert_eq!((status, field, error.as_str()), (400, json!("vni"), "VNI 0 is out of range 1..=16777215"));
    let (status, field, _) = refused(&c, Method::DELETE, "/v1/networks/blue", None, "").await;
    assert_eq!((status, field), (400, json!("vni")));
    let (status, field, _) = refused(&c, Method::PUT, "/v1/ports/uplink0/network", json_type, r#"{"vni": 101}"#).await;
    assert_eq!((status, field), (400, json!("name")));
    let (status, field, _) = refused(&c, Method::POST, "/v1/networks", Some("text/plain"), "{}").await;
    assert_eq!((status, field), (415, json!("Content-Type")));

    // Reads answer as before, from the configuration as committed.
    assert_eq!(c.get("/v1/networks").await.unwrap(), json!([]));
    assert_eq!(c.get("/v1/config").await.unwrap()["generation"], 0);
    let request = c.get("/v1/requests/2").await.unwrap();
    assert_eq!(request["state"], "queued");
    assert_eq!((request["method"].as_str(), request["path"].as_str()), (Some("PUT"), Some("/v1/networks/100")));
    let keys: Vec<&String> = request.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "error",
            "field",
            "finished_unix_us",
            "generation",
            "id",
            "method",
            "path",
            "queued_unix_us",
            "reply",
            "state",
            "status"
        ]
    );

    // One upgrade at a time.
    let (status, field, error) =
        refused(&c, Method::POST, "/v1/upgrade", json_type, &json!({"library": library}).to_string()).await;
    assert_eq!(
        (status, field, error.as_str()),
        (409, Value::Null, "an upgrade is already running (id 1); wait for it to finish")
    );

    server.fake.release_upgrades();
    let reply = upgrade.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let record = reply.json().unwrap();
    assert_eq!(record["outcome"], "upgraded");
    assert_eq!(
        record["steps"].as_array().unwrap().iter().map(|s| s["step"].as_u64().unwrap()).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert_eq!((record["queued_applied"].as_u64(), record["queued_failed"].as_u64()), (Some(7), Some(1)));
    assert_eq!(record["to"], json!({"id": "fake", "version": "0.0.0+unit-v2", "library": library}));

    // Applied in arrival order: created, renamed, deleted; then 101 with a remote
    // added and removed again, and vm0 bound to it.
    assert_eq!(c.get("/v1/networks").await.unwrap(), json!([{"vni": 101, "name": "red", "flood_vteps": []}]));
    assert_eq!(c.get("/v1/ports/vm0").await.unwrap()["vni"], 101);
    assert_eq!(c.get("/v1/remotes").await.unwrap(), json!([]));
    let config = c.get("/v1/config").await.unwrap();
    assert_eq!(config["generation"], 7);
    assert_eq!(server.fake.last_applied().unwrap().generation, 7);
    let mut generations = Vec::new();
    for id in ids {
        let request = c.get(&format!("/v1/requests/{id}")).await.unwrap();
        generations.push(request["generation"].as_u64());
        assert!(request["finished_unix_us"].as_u64() >= request["queued_unix_us"].as_u64());
    }
    assert_eq!(generations, [Some(1), Some(2), Some(3), Some(4), None, Some(5), Some(6), Some(7)]);
    let created = c.get("/v1/requests/1").await.unwrap();
    assert_eq!((created["state"].as_str(), created["status"].as_u64()), (Some("applied"), Some(201)));
    assert_eq!(created["reply"], json!({"vni": 100, "name": "blue", "flood_vteps": []}));
    let failed = c.get("/v1/requests/5").await.unwrap();
    assert_eq!(failed["state"], "failed");
    assert_eq!((failed["status"].as_u64(), failed["field"].as_str()), (Some(400), Some("vni")));
    assert_eq!(failed["error"], "there is no network with VNI 300; create it first");
    assert_eq!(failed["reply"], Value::Null);

    // After the upgrade requests apply at once again.
    let reply = c.send_json(Method::POST, "/v1/networks", Some(&json!({"vni": 102, "name": "grey"}))).await.unwrap();
    assert_eq!((reply.status, reply.location), (201, None));
    let status = c.get("/upgrade").await.unwrap();
    assert_eq!((status["running"].clone(), status["history"].as_array().unwrap().len()), (Value::Null, 1));
    assert_eq!(status["vm"]["version"], "0.0.0+unit-v2");
}

#[tokio::test]
async fn upgrade_requests_are_checked() {
    let server = Server::start();
    let c = server.client();
    let json_type = Some("application/json");
    let library = server.library("unit-v2.so");
    let post = |body: &str| {
        let (c, body) = (c.clone(), body.to_string());
        async move { refused(&c, Method::POST, "/v1/upgrade", json_type, &body).await }
    };
    let dir = server.dir.path().to_str().unwrap().to_string();
    let (status, field, error) = post(r#"{"library": "../unit-v2.so"}"#).await;
    assert_eq!((status, field), (400, json!("library")));
    assert_eq!(error, format!("../unit-v2.so contains `..`; unit libraries load only from files directly in {dir}"));
    let (status, field, error) = post(r#"{"library": ""}"#).await;
    assert_eq!(
        (status, field, error),
        (400, json!("library"), format!("the library is empty; give the file name of a unit library in {dir}"))
    );
    let (status, field, error) = post(r#"{"library": "/nonexistent/unit.so"}"#).await;
    assert_eq!((status, field), (400, json!("library")));
    assert_eq!(error, format!("/nonexistent/unit.so is outside the unit directory {dir}; unit libraries load only from there"));
    let (status, field, error) = post(r#"{"library": "absent.so"}"#).await;
    assert_eq!((status, field, error), (400, json!("library"), format!("{dir}/absent.so does not exist")));
    let (status, field, error) = post(&json!({"library": format!("{dir}/run")}).to_string()).await;
    assert_eq!((status, field, error), (400, json!("library"), format!("{dir}/run is not a regular file")));
    let (status, field, error) = post(&json!({"library": library, "force": true}).to_string()).await;
    assert_eq!((status, field, error.as_str()), (400, json!("force"), "unknown field `force`; expected `library`"));
    let (status, field, error) = post("{}").await;
    assert_eq!((status, field, error.as_str()), (400, json!("library"), "missing field `library`"));
    let (status, field, _) = post(r#"{"library": 7}"#).await;
    assert_eq!((status, field), (400, json!("library")));
    let (status, field, _) = post(r#"["/x.so"]"#).await;
    assert_eq!((status, field), (400, json!("body")));
    let (status, field, _) =
        refused(&c, Method::POST, "/upgrade", None, &json!({"library": library}).to_string()).await;
    assert_eq!((status, field), (415, json!("Content-Type")));
    let (status, _, error) = refused(&c, Method::PUT, "/v1/upgrade", json_type, "{}").await;
    assert_eq!(status, 405);
    assert!(error.starts_with("/v1/upgrade does not accept PUT"), "{error}");
    assert_eq!(c.get("/v1/upgrade").await.unwrap()["history"], json!([]), "nothing was started");
    assert!(!server.fake.applied().is_empty());

    // A refused unit: 422 with the record; the alias route is the same handler.
    server.fake.refuse_next_upgrade("the unit's ABI version 9 is not 1");
    let reply = c.send_json(Method::POST, "/upgrade", Some(&json!({"library": library}))).await.unwrap();
    assert_eq!(reply.status, 422, "{}", reply.text());
    let body = reply.json().unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error", "field", "record"]);
    assert_eq!(body["error"], "upgrade 1 rolled back: the unit's ABI version 9 is not 1");
    assert_eq!(body["field"], Value::Null);
    assert_eq!(body["record"]["outcome"], "rolled_back");
    assert_eq!(body["record"]["to"]["version"], "0.0.0");
    assert_eq!(body["record"]["steps"][4]["ok"], false);
    assert_eq!(c.get("/upgrade").await.unwrap(), c.get("/v1/upgrade").await.unwrap());
    assert_eq!(c.get("/v1/upgrade").await.unwrap()["vm"]["version"], "0.0.0");

    // Request ids.
    let (status, field, error) = refused(&c, Method::GET, "/v1/requests/abc", None, "").await;
    assert_eq!((status, field), (400, json!("id")));
    assert_eq!(error, "\"abc\" is not a request id (a positive integer from a 202 reply)");
    let (status, field, error) = refused(&c, Method::GET, "/v1/requests/99", None, "").await;
    assert_eq!((status, field), (404, json!("id")));
    assert_eq!(error, "there is no request 99 (the outcomes of the last 1000 are kept)");
    let (status, field, _) = refused(&c, Method::GET, "/v1/requests/0", None, "").await;
    assert_eq!((status, field), (400, json!("id")));
    let (status, _, _) = refused(&c, Method::DELETE, "/v1/requests/1", None, "").await;
    assert_eq!(status, 405);

    // A switch without a switching unit (the cross-connect) has nothing to upgrade.
    let cross = Server::start_with(FakeRuntime::new().without_unit());
    let library = cross.library("unit.so");
    let c = cross.client();
    let no_unit = "upgrades need the vRouter; this switch runs the cross-connect (ports with forward_to)";
    let (status, field, error) =
        refused(&c, Method::POST, "/v1/upgrade", json_type, &json!({"library": library}).to_string()).await;
    assert_eq!((status, field, error.as_str()), (409, Value::Null, no_unit));
    let (status, _, error) = refused(&c, Method::GET, "/v1/upgrade", None, "").await;
    assert_eq!((status, error.as_str()), (409, no_unit));
    // And its change requests were never paused.
    post_ok(&c).await;
}

async fn post_ok(c: &Client) {
    let reply = c.send_json(Method::POST, "/v1/networks", Some(&json!({"vni": 7, "name": "seven"}))).await.unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
}

/// Every line `ctl upgrade` printed for the steps: (step, rest of the line).
fn step_lines(out: &str) -> Vec<String> {
    out.lines().filter(|l| l.starts_with("step ") || l.starts_with("roll back: ")).map(str::to_string).collect()
}

#[test]
fn ctl_upgrade_prints_each_step_and_changes_meanwhile_are_queued() {
    let server = Server::start();
    server.library("unit-v2.so");
    let absolute = server.dir.path().join("unit-v2.so").canonicalize().unwrap();
    let ok = |args: &[&str]| {
        let (code, out, err) = server.ctl(args);
        assert_eq!(code, 0, "ctl {args:?}: {err}");
        out
    };
    // Slow enough that the polls see the steps one by one.
    server.fake.set_upgrade_step_time(std::time::Duration::from_millis(30));
    server.fake.hold_upgrades();
    // A relative path: ctl makes it absolute from its own working directory.
    let mut upgrade =
        server.ctl_command(&["upgrade", "unit-v2.so"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    assert!(server.fake.wait_until_held(std::time::Duration::from_secs(20)), "the upgrade did not start");
    let (line_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = std::io::BufReader::new(upgrade.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stdout) {
            line_tx.send(line.unwrap()).unwrap();
        }
    });
    // Printed while the upgrade is still held after step 1: steps show as they complete.
    let first = lines_rx.recv_timeout(std::time::Duration::from_secs(20)).expect("step 1 printed during the upgrade");
    assert!(first.starts_with("step 1/8 pause config requests ... "), "{first}");

    assert_eq!(
        ok(&["network", "create", "--vni", "100", "--name", "blue"]),
        "queued as request 1 (an upgrade is running)\n"
    );
    assert_eq!(ok(&["port", "bind", "vm0", "--vni", "100"]), "queued as request 2 (an upgrade is running)\n");
    assert_eq!(ok(&["port", "unbind", "vm0"]), "queued as request 3 (an upgrade is running)\n");
    let json: Value = serde_json::from_str(&ok(&["--json", "network", "delete", "100"])).unwrap();
    assert_eq!(json, json!({"request_id": 4, "state": "queued", "status": "/v1/requests/4"}));
    assert_eq!(ok(&["request", "1"]), "id      1\nstate   queued\nmethod  POST\npath    /v1/networks\n");
    let status = ok(&["upgrade", "--status"]);
    assert!(
        status.starts_with(
            "SIDE    ID    VERSION  LIBRARY\nvm      fake  0.0.0    built in\nuplink  fake  0.0.0    built in\n"
        ),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "\nrunning: upgrade 1 to {}\n  step 1/8 pause config requests ... ",
            absolute.display()
        )),
        "{status}"
    );
    assert!(status.ends_with("no upgrade since switchyard started\n"), "{status}");
    // A refused request is refused at once, upgrade or not.
    let (code, out, err) = server.ctl(&["network", "create", "--vni", "0", "--name", "zero"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (1, "", "switchyard ctl: VNI 0 is out of range 1..=16777215 (field: vni)\n")
    );
    let (code, _, err) = server.ctl(&["upgrade", "unit-v2.so"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "switchyard ctl: an upgrade is already running (id 1); wait for it to finish\n")
    );

    server.fake.release_upgrades();
    let output = upgrade.wait_with_output().unwrap();
    reader.join().unwrap();
    let out: String = std::iter::once(first).chain(lines_rx.try_iter()).map(|line| line + "\n").collect();
    assert_eq!(output.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&output.stderr));
    let lines = step_lines(&out);
    assert_eq!(lines.len(), 8, "each step once:\n{out}");
    for (i, line) in lines.iter().enumerate() {
        let prefix = format!("step {}/8 {} ... ", i + 1, STEP_NAMES[i]);
        assert!(line.starts_with(&prefix) && line.contains(" ms"), "{line:?} should start with {prefix:?}");
    }
    assert!(lines[7].ends_with(" ms  (4 queued requests applied, 0 refused)"), "{}", lines[7]);
    let tail: Vec<&str> = out.lines().skip(8).collect();
    assert_eq!(tail.len(), 2, "{out}");
    assert!(tail[0].starts_with("upgraded: fake 0.0.0 -> fake 0.0.0+unit-v2 in ") && tail[0].ends_with(" ms"), "{out}");
    assert_eq!(tail[1], "config requests queued during the upgrade: 4 applied, 0 failed");

    let applied = ok(&["request", "2"]);
    assert!(applied.starts_with("id          2\nstate       applied\nmethod      PUT\npath        /v1/ports/vm0/network\nstatus      200\ngeneration  2\nwaited      "), "{applied}");
    assert!(applied.ends_with(" ms\nreply       {\"port\":\"vm0\",\"vni\":100}\n"), "{applied}");
    assert_eq!(ok(&["network", "list"]), "VNI  NAME  FLOOD_VTEPS\n");
    assert!(ok(&["config"]).starts_with("generation 4\n"));

    // Refused: the steps up to the failure, the rollback, exit code 1.
    server.fake.refuse_next_upgrade("the unit's ABI version 9 is not 1");
    let (code, out, err) = server.ctl(&["upgrade", absolute.to_str().unwrap()]);
    assert_eq!((code, err.as_str()), (1, ""), "{out}");
    let lines = step_lines(&out);
    assert_eq!(lines.len(), 9, "{out}");
    assert!(
        lines[4].starts_with("step 5/8 load the new unit and write the configuration into it ... FAILED after "),
        "{out}"
    );
    assert!(lines[4].ends_with(" ms  (the unit's ABI version 9 is not 1)"), "{out}");
    assert!(
        lines[5].starts_with("roll back: load the previous unit and write the configuration into it ... "),
        "{out}"
    );
    assert!(out.ends_with("\nrolled back: the unit's ABI version 9 is not 1\n"), "{out}");

    // --json: the record, and still exit code 1 when refused.
    server.fake.refuse_next_upgrade("bad unit");
    let (code, out, _) = server.ctl(&["--json", "upgrade", "unit-v2.so"]);
    assert_eq!(code, 1);
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((record["id"].as_u64(), record["outcome"].as_str()), (Some(3), Some("rolled_back")));
    let (code, out, _) = server.ctl(&["--json", "upgrade", "unit-v2.so"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["outcome"], "upgraded");

    let status = ok(&["upgrade", "--status"]);
    assert!(status.contains("\nno upgrade running\n\nhistory\nID  OUTCOME      FROM"), "{status}");
    let history: Vec<&str> = status.lines().skip_while(|l| *l != "history").skip(2).collect();
    assert_eq!(history.len(), 4, "{status}");
    let first: Vec<&str> = history[0].split_whitespace().collect();
    assert_eq!(first[..6], ["1", "upgraded", "fake", "0.0.0", "fake", "0.0.0+unit-v2"], "{status}");
    assert_eq!(first[7..], ["4", "0", "-"], "{status}");
    assert!(history[1].ends_with("the unit's ABI version 9 is not 1"), "{status}");
    let json: Value = serde_json::from_str(&ok(&["--json", "upgrade", "--status"])).unwrap();
    assert_eq!(json["history"].as_array().unwrap().len(), 4);

    // Bad input.
    // A bare name not here names a file in the switch's unit directory.
    let (code, _, err) = server.ctl(&["upgrade", "missing.so"]);
    assert_eq!(code, 1);
    assert_eq!(err, format!("switchyard ctl: {}/missing.so does not exist (field: library)\n", server.dir.path().display()));
    let (code, _, err) = server.ctl(&["upgrade", "./missing.so"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "switchyard ctl: cannot use ./missing.so as the unit library: No such file or directory (os error 2)\n"
    );
    let (code, _, err) = server.ctl(&["upgrade"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = server.ctl(&["upgrade", "--status", "unit-v2.so"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = server.ctl(&["request", "abc"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "switchyard ctl: \"abc\" is not a request id (a positive integer from a 202 reply) (field: id)\n")
    );
    let (code, _, err) = server.ctl(&["request", "77"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "switchyard ctl: there is no request 77 (the outcomes of the last 1000 are kept) (field: id)\n")
    );
}

#[tokio::test]
async fn address_migrations_over_the_api_and_ctl() {
    let server = Server::start();
    let client = server.client();
    populate(&client).await;
    let body = json!({"vni": 100, "primary_ip": "10.1.0.5", "port": "vm0"});
    let reply = client.send(Method::POST, "/v1/address-migrations", Some("application/json"), body.to_string().into_bytes()).await.unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    let entry = json!({"vni": 100, "primary_ip": "10.1.0.5", "post_migration_ip": null, "port": "vm0", "source": "notification"});
    assert_eq!(reply.json().unwrap(), entry);
    // A notification for the same primary IP replaces the entry: 200.
    let body = json!({"vni": 100, "primary_ip": "10.1.0.5", "post_migration_ip": "10.2.0.5", "port": "vm0"});
    let reply = client.send(Method::POST, "/v1/address-migrations", Some("application/json"), body.to_string().into_bytes()).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(client.get("/v1/address-migrations/100/10.1.0.5").await.unwrap()["post_migration_ip"], "10.2.0.5");
    assert_eq!(client.get("/v1/config").await.unwrap()["address_migrations"][0]["port"], "vm0");
    assert_eq!(server.fake.last_applied().unwrap().address_migrations.len(), 1, "applied to the data plane");
    assert_eq!(client.get("/v1/address-migrations/reports").await.unwrap(), json!([]));

    let bad = |body: Value| body.to_string();
    for (body, status, field) in [
        (bad(json!({"vni": 100, "primary_ip": "10.1.0.6", "port": "vm0", "mac": "x"})), 400, "mac"),
        (bad(json!({"vni": 100, "primary_ip": 5, "port": "vm0"})), 400, "primary_ip"),
        (bad(json!({"vni": 100, "primary_ip": "10.1.0.6", "post_migration_ip": "10.2.0.5", "port": "vm1"})), 409, "post_migration_ip"),
        (bad(json!({"vni": 100, "primary_ip": "10.1.0.6", "port": "uplink0"})), 400, "port"),
    ] {
        let (got, got_field, message) = refused(&client, Method::POST, "/v1/address-migrations", Some("application/json"), &body).await;
        assert_eq!((got, got_field), (status, json!(field)), "{message}");
    }
    let (status, field, _) = refused(&client, Method::GET, "/v1/address-migrations/100/10.9.9.9", None, "").await;
    assert_eq!((status, field), (404, json!("primary_ip")));

    let (code, out, err) = server.ctl(&["address-migration", "list"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "VNI  PRIMARY_IP  POST_MIGRATION_IP  PORT  SOURCE\n100  10.1.0.5    10.2.0.5           vm0   notification\n");
    let (code, out, _) = server.ctl(&["address-migration", "add", "--vni", "100", "--primary", "10.1.0.7", "--port", "vm1"]);
    assert_eq!((code, out.lines().nth(1)), (0, Some("100  10.1.0.7    -                  vm1   notification")));
    let (code, _, err) = server.ctl(&["address-migration", "add", "--vni", "100", "--primary", "10.1.0.8", "--post", "10.2.0.5", "--port", "vm1"]);
    assert_eq!(code, 1);
    assert_eq!(err, "switchyard ctl: 10.2.0.5 is already the post-migration IP of the address migration of 10.1.0.5 (field: post_migration_ip)\n");
    let (code, out, _) = server.ctl(&["address-migration", "delete", "100", "10.1.0.7"]);
    assert_eq!((code, out.as_str()), (0, "deleted the address migration of 10.1.0.7 in network 100\n"));
    let (_, out, _) = server.ctl(&["config"]);
    assert!(out.contains("address migrations\nVNI  PRIMARY_IP  POST_MIGRATION_IP  PORT  SOURCE\n100  10.1.0.5"), "{out}");
    let (code, out, _) = server.ctl(&["address-migration", "reports"]);
    assert_eq!((code, out.as_str()), (0, "PORT  SOURCE_IP  PRIMARY_IP  POST_MIGRATION_IP  STATUS  OUTCOME  GENERATION  ERROR\n"));
}

// Storage users and images (docs/storage-management.md).

#[tokio::test]
async fn storage_over_the_api_shows_the_secret_only_when_it_is_made() {
    let server = Server::start_with_storage();
    let c = server.client();
    assert_eq!(c.get("/v1/storage/users").await.unwrap(), json!([]));
    let reply = c
        .send_json(Method::POST, "/v1/storage/users", Some(&json!({"name": "alice", "ips": ["10.0.0.5"], "quota_bytes": 1 << 20})))
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    let created = reply.json().unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    assert_eq!(
        created,
        json!({"name": "alice", "id": 1, "ips": ["10.0.0.5"], "quota_bytes": 1 << 20, "used_bytes": 0, "images": [],
            "secret": secret})
    );
    let listed = c.get("/v1/storage/users").await.unwrap();
    assert_eq!(listed[0].as_object().unwrap().get("secret"), None);
    assert_eq!(c.get("/v1/storage/users/alice").await.unwrap()["id"], 1);
    let rotated = c.call(Method::POST, "/v1/storage/users/alice/secret", None).await.unwrap();
    assert_ne!(rotated["secret"], json!(secret));
    let config = c.get("/v1/config").await.unwrap().to_string();
    assert!(!config.contains("secret") && !config.contains(&secret), "{config}");
    assert_eq!(server.fake.last_catalog().unwrap().user(1).unwrap().secret.to_hex(), rotated["secret"].as_str().unwrap());

    let reply = c
        .send_json(Method::POST, "/v1/storage/images", Some(&json!({"name": "disk", "owner": "alice", "size": 65536})))
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    let image = reply.json().unwrap();
    assert_eq!((image["id"].clone(), image["attached"].clone(), image["read_only"].clone()), (json!(1), json!(false), json!(false)));
    assert!(server.dir.path().join("images/1.img").exists());
    let grown = c.call(Method::POST, "/v1/storage/images/disk/grow", Some(&json!({"size": 131072}))).await.unwrap();
    assert_eq!(grown["size"], 131072);
    let reply = c
        .send_json(Method::POST, "/v1/storage/images/disk/clone", Some(&json!({"name": "disk2"})))
        .await
        .unwrap();
    assert_eq!((reply.status, reply.json().unwrap()["owner"].clone()), (201, json!("alice")));
    let flagged = c.call(Method::PUT, "/v1/storage/images/disk/read-only", Some(&json!({"read_only": true}))).await.unwrap();
    assert_eq!(flagged["read_only"], true);
    let user = c.call(Method::PUT, "/v1/storage/users/alice/quota", Some(&json!({"quota_bytes": 1 << 30}))).await.unwrap();
    assert_eq!((user["used_bytes"].clone(), user["images"].clone()), (json!(262144), json!(["disk", "disk2"])));
    c.call(Method::PUT, "/v1/storage/users/alice/ips", Some(&json!({"ips": ["10.0.0.7"]}))).await.unwrap();

    // Refusals: the status and the field.
    let json_type = Some("application/json");
    let cases = [
        (Method::POST, "/v1/storage/users", r#"{"name": "bob", "ips": ["10.0.0.7"], "quota_bytes": 1}"#, 409, json!("ips")),
        (Method::POST, "/v1/storage/users", r#"{"name": "bob", "ips": ["10.0.0.8"], "quota_bytes": -1}"#, 400, json!("quota_bytes")),
        (Method::POST, "/v1/storage/users", r#"{"name": "bob", "ips": ["10.0.0.8"]}"#, 400, json!("quota_bytes")),
        (Method::POST, "/v1/storage/users", r#"{"name": "bob", "ips": [], "quota_bytes": 1, "secret": "x"}"#, 400, json!("secret")),
        (Method::POST, "/v1/storage/images", r#"{"name": "big", "owner": "alice", "size": 2147483648}"#, 409, json!("size")),
        (Method::POST, "/v1/storage/images", r#"{"name": "odd", "owner": "alice", "size": 1000}"#, 400, json!("size")),
        (Method::POST, "/v1/storage/images", r#"{"name": "x", "owner": "alice", "import_from": "/nonexistent"}"#, 400, json!("import_from")),
        (Method::POST, "/v1/storage/images", r#"{"name": "x", "owner": "alice", "import_from": "../../etc/shadow"}"#, 400, json!("import_from")),
        (Method::DELETE, "/v1/storage/orphans/1.img", "", 404, json!("file")),
        (Method::POST, "/v1/storage/images/disk/grow", r#"{"size": 512}"#, 400, json!("size")),
        (Method::POST, "/v1/storage/images/nope/grow", r#"{"size": 1048576}"#, 404, json!("name")),
        (Method::PUT, "/v1/storage/images/disk/read-only", r#"{"read_only": "yes"}"#, 400, json!("read_only")),
    ];
    for (method, path, body, status, field) in cases {
        let (got, got_field, error) = refused(&c, method.clone(), path, json_type, body).await;
        assert_eq!((got, got_field), (status, field), "{method} {path} {body}: {error}");
    }
    let (status, field, _) = refused(&c, Method::DELETE, "/v1/storage/users/alice", None, "").await;
    assert_eq!((status, field), (409, json!("name")));

    // Attached images are not deleted; detached ones are, with their file.
    let disk2 = c.get("/v1/storage/images/disk2").await.unwrap();
    let id = u32::try_from(disk2["id"].as_u64().unwrap()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    server.fake.image_uses().set_last_used(id, now);
    assert_eq!(c.get("/v1/storage/images/disk2").await.unwrap()["attached"], true);
    let (status, field, error) = refused(&c, Method::DELETE, "/v1/storage/images/disk2", None, "").await;
    assert_eq!((status, field), (409, json!("name")), "{error}");
    server.fake.image_uses().set_last_used(id, now - 60_000);
    let reply = c.send(Method::DELETE, "/v1/storage/images/disk2", None, Vec::new()).await.unwrap();
    assert_eq!((reply.status, reply.body.len()), (204, 0));
    assert!(!server.dir.path().join(format!("images/{id}.img")).exists());
}

#[tokio::test]
async fn storage_is_refused_without_storage_and_during_an_upgrade() {
    let server = Server::start();
    let c = server.client();
    let (status, field, error) = refused(&c, Method::GET, "/v1/storage/images", None, "").await;
    assert_eq!((status, field), (409, Value::Null));
    assert_eq!(error, "storage is not configured on this switch: its config has no [storage] table (images = \"<dir>\")");

    let server = Server::start_with_storage();
    let c = server.client();
    let upgrade = start_held_upgrade(&server, &c);
    wait_until_paused(&c).await;
    let body = r#"{"name": "alice", "ips": ["10.0.0.5"], "quota_bytes": 0}"#;
    let (status, field, error) = refused(&c, Method::POST, "/v1/storage/users", Some("application/json"), body).await;
    assert_eq!((status, field), (409, Value::Null));
    assert!(error.starts_with("an upgrade of the switching unit is running; storage changes are not queued"), "{error}");
    assert_eq!(c.get("/v1/storage/users").await.unwrap(), json!([]), "reads go on");
    server.fake.release_upgrades();
    assert_eq!(upgrade.await.unwrap().status, 200);
    post(&c, "/v1/storage/users", json!({"name": "alice", "ips": ["10.0.0.5"], "quota_bytes": 0})).await.unwrap();
}

#[test]
fn ctl_storage_end_to_end() {
    let server = Server::start_with_storage();
    let ok = |args: &[&str]| {
        let (code, out, err) = server.ctl(args);
        assert_eq!(code, 0, "ctl {args:?}: {err}");
        out
    };
    let created = ok(&["storage", "user", "create", "alice", "--ip", "10.0.0.5,10.0.0.6", "--quota", "10G"]);
    let lines: Vec<&str> = created.lines().collect();
    assert_eq!(lines[..2], ["NAME   ID  IPS                QUOTA  USED  IMAGES", "alice  1   10.0.0.5,10.0.0.6  10G    0     -"]);
    assert!(lines[2].starts_with("secret ") && lines[2].len() == "secret ".len() + 64, "{created}");
    ok(&["storage", "user", "create", "bob", "--ip", "10.0.0.7", "--quota", "1M"]);
    let listed = ok(&["storage", "user", "list"]);
    assert!(!listed.contains("secret"), "{listed}");
    assert!(ok(&["storage", "user", "rotate-secret", "bob"]).contains("\nsecret "));
    ok(&["storage", "user", "set-ips", "bob", "--ip", "10.0.0.8"]);
    assert!(ok(&["storage", "user", "set-quota", "bob", "--quota", "2M"]).contains("bob   2   10.0.0.8  2M"));

    ok(&["storage", "image", "create", "disk", "--owner", "alice", "--size", "64M"]);
    std::fs::write(server.dir.path().join("import/golden.raw"), vec![7u8; 3000]).unwrap();
    // The path is relative to storage.import_dir.
    ok(&["storage", "image", "import", "golden", "--owner", "alice", "--from", "golden.raw", "--read-only"]);
    ok(&["storage", "image", "clone", "golden", "vm1", "--owner", "bob"]);
    ok(&["storage", "image", "grow", "disk", "--size", "128M"]);
    ok(&["storage", "image", "set-read-only", "disk", "on"]);
    let images = server.dir.path().join("images");
    assert_eq!(
        ok(&["storage", "image", "list"]),
        format!(
            "NAME    ID  OWNER  SIZE  USAGE  READ_ONLY  ATTACHED  FILE\n\
             disk    1   alice  128M  0      true       false     {0}/1.img\n\
             golden  2   alice  3K    4K     true       false     {0}/2.img\n\
             vm1     3   bob    3K    4K     false      false     {0}/3.img\n",
            images.display()
        )
    );
    let json: Value = serde_json::from_str(&ok(&["--json", "storage", "image", "show", "vm1"])).unwrap();
    assert_eq!((json["size"].clone(), json["owner"].clone()), (json!(3072), json!("bob")));
    assert!(ok(&["config"]).contains("\nstorage images\nNAME    ID  OWNER  SIZE       READ_ONLY\n"));

    // Errors: one line, exit code 1; command-line mistakes: exit code 2.
    let (code, _, err) = server.ctl(&["storage", "user", "delete", "alice"]);
    assert_eq!((code, err.as_str()), (1, "switchyard ctl: storage user alice still owns 2 images (disk and golden); delete them first (field: name)\n"));
    let (code, _, err) = server.ctl(&["storage", "image", "grow", "disk", "--size", "1M"]);
    assert_eq!((code, err.as_str()), (1, "switchyard ctl: 1048576 bytes is less than image disk's size of 134217728 bytes; images only grow (field: size)\n"));
    let (code, _, err) = server.ctl(&["storage", "image", "create", "big", "--owner", "bob", "--size", "2M"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("storage user bob's quota of 2097152 bytes would be exceeded"), "{err}");
    let (code, _, err) = server.ctl(&["storage", "image", "create", "x", "--owner", "bob", "--size", "ten"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"ten\" is not a size such as 512, 64M or 10G"), "{err}");
    let (code, _, _) = server.ctl(&["storage", "image", "set-read-only", "disk", "maybe"]);
    assert_eq!(code, 2);

    assert_eq!(ok(&["storage", "image", "delete", "vm1"]), "deleted storage image vm1\n");
    assert!(!images.join("3.img").exists());
    assert_eq!(ok(&["storage", "user", "delete", "bob"]), "deleted storage user bob\n");

    // Unknown files: listed, adopted or removed only when asked.
    std::fs::write(images.join("9.img"), vec![1u8; 1024]).unwrap();
    std::fs::write(images.join("8.img.creating"), b"half").unwrap();
    assert_eq!(
        ok(&["storage", "orphans"]),
        format!(
            "FILE            SIZE  USAGE  PATH
8.img.creating  4     4K     {0}/8.img.creating
9.img           1K    4K     {0}/9.img
",
            images.display()
        )
    );
    let adopted = ok(&["storage", "orphans", "--adopt", "9", "--name", "nine", "--owner", "alice"]);
    assert!(adopted.contains("nine  9   alice  1K "), "{adopted}");
    assert_eq!(ok(&["storage", "orphans", "--remove", "8.img.creating"]), "removed unknown file 8.img.creating\n");
    assert_eq!(ok(&["--json", "storage", "orphans"]), "[]\n");
    let (code, _, err) = server.ctl(&["storage", "orphans", "--remove", "1.img"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("\"1.img\" is not an unknown file of storage.images"), "{err}");
    let (code, _, _) = server.ctl(&["storage", "orphans", "--adopt", "9"]);
    assert_eq!(code, 2, "--adopt needs --name and --owner");
}
