//! The control API over HTTP without EAL: `control::spawn` on a temporary unix
//! socket (and loopback TCP) with the fake data plane, driven by the client
//! library, raw requests, and the `switchyard ctl` binary.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hyper::Method;
use serde_json::{json, Value};
use switchyard::config::ControlConfig;
use switchyard::control::cli::{self, CtlArgs, CtlCommand, NetworkCommand, PortCommand};
use switchyard::control::client::{Client, ClientError};
use switchyard::control::testing::FakeRuntime;
use switchyard::control::{http, spawn, ControlError, ControlHandle};
use switchyard::store::Store;

struct Server {
    dir: tempfile::TempDir,
    handle: Option<ControlHandle>,
    fake: Arc<FakeRuntime>,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = ControlConfig {
            socket: dir.path().join("run/api.sock"),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            database: dir.path().join("lib/config.redb"),
        };
        let store = Store::open(&config.database).unwrap();
        let fake = Arc::new(FakeRuntime::new());
        let handle = spawn(&config, store, fake.clone()).unwrap();
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

    fn tcp_client(&self) -> Client {
        Client::url(&format!("http://{}", self.handle().tcp_addr().unwrap())).unwrap()
    }

    /// `switchyard ctl --socket S ARGS...` as a process: (exit code, stdout, stderr).
    fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("ctl")
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
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
    assert!(error.starts_with("/v1/networks/100 does not accept PATCH; it accepts "), "{error}");

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
    CtlArgs { socket: socket.to_path_buf(), url: None, json, command }
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
    assert_eq!(ok(&["remote", "list"]), "VNI  MAC                IP  VTEP\n100  02:00:00:00:00:02  -   192.0.2.2\n");
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
    let url = format!("http://{}", server.handle().tcp_addr().unwrap());
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--url", &url, "network", "list"])
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
        .args(["ctl", "--url", "https://example.com", "network", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "switchyard ctl: \"https://example.com\" is not a URL of the form http://127.0.0.1:PORT\n"
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
    let config = ControlConfig { socket: socket.clone(), listen: None, database: server.dir.path().join("other.redb") };
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
fn non_loopback_tcp_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = ControlConfig {
        socket: dir.path().join("api.sock"),
        listen: Some("0.0.0.0:8080".parse().unwrap()),
        database: dir.path().join("config.redb"),
    };
    let err = spawn(&config, Store::open(&config.database).unwrap(), Arc::new(FakeRuntime::new())).err().unwrap();
    assert_eq!(
        err.to_string(),
        "control API: 0.0.0.0:8080 is not a loopback address; the API has no authentication, so it listens only on 127.0.0.1 or ::1"
    );
    assert!(!config.socket.exists());
}
