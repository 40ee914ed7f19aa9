//! Inter-cloud connectivity (docs/intercloud.md) as processes: `switchyard
//! coordinator serve`, one `controller serve` per cloud, vRouter switches with
//! null ports (cloud A: compute A1 and gateway GA; cloud B: compute B1, B2 and
//! gateway GB; later a compute node A2) and their agents. A VM on B1 reaches
//! GB's table 2 (-> B1) and A1's table 1 (-> GB); it moves to B2 (make before
//! break, then break before make) and only GB's table changes; a compute node
//! added later gets the stored entries; a deleted VM goes everywhere. Then 200
//! VMs are created on B1, each timed until A1's table shows it (the figure
//! quoted in docs/intercloud.md: run with `--release --nocapture` for the real one).
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::json;
use switchyard::control::client::Client;

use common::roles::{controller, coordinator, gateway_agent, switch_agent};
use common::switch::RunningSwitch;
use common::*;

/// A vRouter with a VM port and an uplink (VTEP `vtep`) on null devices, network 100.
struct Node {
    switch: RunningSwitch,
    socket: SocketPath,
    api: Client,
    vtep: String,
}

fn start_node(dir: &Path, name: &str, vtep: &str) -> Node {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let socket = SocketPath::new(&format!("ic-{name}"));
    let n = NODES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let toml = format!(
        "{ONE_WORKER}[control]\nsocket = \"{}\"\ndatabase = \"{}/config.redb\"\n\
         [[port]]\nname = \"vm0\"\ndevargs = \"net_null{}0,no-rx=1\"\nrole = \"vm\"\nvni = 100\n\
         [[port]]\nname = \"uplink\"\ndevargs = \"net_null{}1,no-rx=1\"\nrole = \"uplink\"\naddress = \"{vtep}/24\"\n\
         [[network]]\nvni = 100\nname = \"blue\"\n",
        socket.display(),
        sub.display(),
        n,
        n
    );
    let mut switch = RunningSwitch::start(&sub, &toml);
    switch.wait_until_running();
    let api = Client::unix(&*socket);
    Node { switch, socket, api, vtep: vtep.to_string() }
}

static NODES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The remote entry of `mac` in network 100: its VTEP, if any.
async fn remote(node: &Node, mac: &str) -> Option<String> {
    let reply = node.api.send_json(Method::GET, &format!("/v1/remotes/100/{mac}"), None).await.unwrap();
    if reply.status == 404 {
        return None;
    }
    Some(reply.json().unwrap()["vtep"].as_str().unwrap().to_string())
}

async fn generation(node: &Node) -> u64 {
    node.api.get("/v1/config").await.unwrap()["generation"].as_u64().unwrap()
}

/// Waits until `mac`'s entry on `node` is `want`; panics after 5 s.
async fn until(node: &Node, mac: &str, want: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = remote(node, mac).await;
        if got.as_deref() == want {
            return;
        }
        assert!(Instant::now() < deadline, "{mac} on {}: {got:?}, want {want:?}", node.vtep);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn add_vm(node: &Node, mac: &str, ip: &str) {
    let body = json!({"vni": 100, "mac": mac, "ip": ip, "port": "vm0"});
    node.api.call(Method::POST, "/v1/endpoints", Some(&body)).await.unwrap();
}

async fn delete_vm(node: &Node, mac: &str) {
    node.api.call(Method::DELETE, &format!("/v1/endpoints/100/{mac}"), None).await.unwrap();
}

const X: &str = "02:00:00:0b:00:01";
const Y: &str = "02:00:00:0a:00:01";
const OPERATOR: &str = "02:00:00:0e:00:01";

#[tokio::test]
async fn a_vm_in_one_cloud_is_reached_through_the_gateway_of_its_cloud() {
    let dir = scratch("intercloud_flow");
    let coordinator = coordinator(&dir);
    let controller_a = controller(&dir, "cloud-a", "192.0.2.10", &coordinator);
    let controller_b = controller(&dir, "cloud-b", "192.0.2.20", &coordinator);
    let (ga, a1) = (start_node(&dir, "ga", "192.0.2.10"), start_node(&dir, "a1", "192.0.2.11"));
    let (gb, b1, b2) = (start_node(&dir, "gb", "192.0.2.20"), start_node(&dir, "b1", "192.0.2.21"), start_node(&dir, "b2", "192.0.2.22"));
    let _agents = [
        gateway_agent(&dir, "ga", &ga.socket, &coordinator, "cloud-a"),
        gateway_agent(&dir, "gb", &gb.socket, &coordinator, "cloud-b"),
        switch_agent(&dir, "a1", &a1.socket, &a1.vtep, &controller_a),
        switch_agent(&dir, "b1", &b1.socket, &b1.vtep, &controller_b),
        switch_agent(&dir, "b2", &b2.socket, &b2.vtep, &controller_b),
    ];
    // The operator's own entry on A1 is not the agents' to touch.
    let body = json!({"vni": 100, "mac": OPERATOR, "vtep": "198.51.100.7"});
    a1.api.call(Method::POST, "/v1/remotes", Some(&body)).await.unwrap();

    // A VM comes online on B1: GB's table 2 -> B1, A1's table 1 -> GB.
    add_vm(&b1, X, "10.0.0.1").await;
    until(&gb, X, Some("192.0.2.21")).await;
    until(&a1, X, Some("192.0.2.20")).await;
    assert_eq!(remote(&ga, X).await, None, "cloud A's gateway relays only cloud A's VMs");
    assert_eq!(remote(&b2, X).await, None, "table 1 holds only the other clouds' VMs");
    // And one on A1, the other way round.
    add_vm(&a1, Y, "10.0.0.2").await;
    until(&ga, Y, Some("192.0.2.11")).await;
    until(&b1, Y, Some("192.0.2.10")).await;
    until(&b2, Y, Some("192.0.2.10")).await;
    let vms = coordinator.client().get("/v1/coordinator/vms").await.unwrap();
    assert_eq!(vms.as_array().unwrap().len(), 2, "{vms}");

    // The VM moves to B2, make before break: only GB's table changes.
    let a1_before = generation(&a1).await;
    add_vm(&b2, X, "10.0.0.1").await;
    delete_vm(&b1, X).await;
    until(&gb, X, Some("192.0.2.22")).await;
    // And back to B1, break before make (within the controller's withdraw hold).
    delete_vm(&b2, X).await;
    add_vm(&b1, X, "10.0.0.1").await;
    until(&gb, X, Some("192.0.2.21")).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(remote(&gb, X).await.as_deref(), Some("192.0.2.21"));
    assert_eq!(remote(&a1, X).await.as_deref(), Some("192.0.2.20"));
    assert_eq!(generation(&a1).await, a1_before, "A1's table 1 did not change while X moved inside cloud B");

    // A compute node added later in cloud A gets the stored entries.
    let a2 = start_node(&dir, "a2", "192.0.2.12");
    let _a2_agent = switch_agent(&dir, "a2", &a2.socket, &a2.vtep, &controller_a);
    until(&a2, X, Some("192.0.2.20")).await;

    // Deleted: withdrawn everywhere; the operator's entry stays.
    delete_vm(&b1, X).await;
    for node in [&gb, &a1, &a2] {
        until(node, X, None).await;
    }
    assert_eq!(remote(&a1, OPERATOR).await.as_deref(), Some("198.51.100.7"));
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("a1-agent.json")).unwrap()).unwrap();
    assert_eq!(state["made"].as_array().unwrap().len(), 0, "{state}");

    // 200 VMs online in cloud B, each timed until A1's table 1 has it.
    let mut latencies = Vec::new();
    for i in 0..200u32 {
        let mac = format!("02:00:00:0c:{:02x}:{:02x}", i / 256, i % 256);
        let started = Instant::now();
        add_vm(&b1, &mac, &format!("10.1.{}.{}", i / 250, 1 + i % 250)).await;
        until(&a1, &mac, Some("192.0.2.20")).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "VM online in cloud B to table 1 on A1 over 200 VMs: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    until(&gb, "02:00:00:0c:00:c7", Some("192.0.2.21")).await;

    for node in [ga, a1, a2, gb, b1, b2] {
        let exit = node.switch.stop();
        assert!(exit.status.success(), "{}", exit.log);
    }
    drop((controller_a, controller_b, coordinator));
    for log in ["controller-cloud-a", "controller-cloud-b", "a1-agent", "b1-agent", "gb-agent"] {
        let text = std::fs::read_to_string(dir.join(format!("{log}.log"))).unwrap();
        assert!(!text.contains("ERROR"), "{log}: {text}");
    }
}

/// A request that must be refused: to whom, what, and the status and field of the refusal.
type BadRequest<'a> = (&'a Client, Method, &'a str, Option<serde_json::Value>, u16, &'a str);

/// Every refusal is one JSON error naming the field, and changes nothing.
#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let dir = scratch("intercloud_bad_requests");
    let coordinator = coordinator(&dir);
    let controller = controller(&dir, "cloud-a", "192.0.2.10", &coordinator);
    let (c, k) = (controller.client(), coordinator.client());
    let cases: Vec<BadRequest> = vec![
        (&c, Method::PUT, "/v1/controller/vms/100/02:00:00:00:00:01", Some(json!({"vtep": "224.0.0.1"})), 400, "vtep"),
        (&c, Method::PUT, "/v1/controller/vms/100/02:00:00:00:00:01", Some(json!({"vtep": "192.0.2.1", "ip": "x"})), 400, "ip"),
        (&c, Method::PUT, "/v1/controller/vms/100/02:00:00:00:00:01", Some(json!({"vtep": "192.0.2.1", "colour": 1})), 400, "colour"),
        (&c, Method::PUT, "/v1/controller/vms/100/02:00:00:00:00:01", Some(json!({})), 400, "vtep"),
        (&c, Method::PUT, "/v1/controller/vms/0/02:00:00:00:00:01", Some(json!({"vtep": "192.0.2.1"})), 400, "vni"),
        (&c, Method::PUT, "/v1/controller/vms/100/ff:ff:ff:ff:ff:ff", Some(json!({"vtep": "192.0.2.1"})), 400, "mac"),
        (&c, Method::PUT, "/v1/controller/vms/100/02:00:00:00:00:01", Some(json!([1])), 400, "body"),
        (&c, Method::DELETE, "/v1/controller/vms/100/02:00:00:00:00:01", None, 400, "vtep"),
        (&c, Method::DELETE, "/v1/controller/vms/100/02:00:00:00:00:01?vtep=nope", None, 400, "vtep"),
        (&c, Method::GET, "/v1/controller/remotes?since=x", None, 400, "since"),
        (&c, Method::GET, "/v1/controller/remotes?timeout_ms=999999", None, 400, "timeout_ms"),
        (&c, Method::GET, "/v1/controller/remotes?colour=1", None, 400, "colour"),
        (&k, Method::PUT, "/v1/coordinator/clouds/cloud-z/vms/100/02:00:00:00:00:01", Some(json!({"vtep": "192.0.2.1"})), 404, "cloud"),
        (&k, Method::PUT, "/v1/coordinator/clouds/bad%20name", Some(json!({"gateway_vtep": "192.0.2.1"})), 400, "cloud"),
        (&k, Method::PUT, "/v1/coordinator/clouds/cloud-c", Some(json!({"gateway_vtep": "0.0.0.0"})), 400, "gateway_vtep"),
        (&k, Method::GET, "/v1/coordinator/clouds/cloud-z/forwarding", None, 404, "cloud"),
    ];
    for (client, method, path, body, status, field) in cases {
        let reply = client.send_json(method.clone(), path, body.as_ref()).await.unwrap();
        let text = reply.text();
        assert_eq!(reply.status, status, "{method} {path}: {text}");
        let error = reply.json().unwrap();
        assert_eq!(error["field"], field, "{method} {path}: {text}");
        assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()), "{text}");
    }
    let reply = c.send(Method::PUT, "/v1/controller/vms/100/02:00:00:00:00:01", Some("text/plain"), "{}").await.unwrap();
    assert_eq!((reply.status, reply.json().unwrap()["field"].clone()), (415, json!("Content-Type")));
    // Nothing was applied.
    assert_eq!(c.get("/v1/controller/vms").await.unwrap(), json!([]));
    let clouds = k.get("/v1/coordinator/clouds").await.unwrap();
    assert!(clouds.as_array().unwrap().iter().all(|c| c["name"] == "cloud-a"), "{clouds}");
    // Command-line mistakes: one line, exit 1.
    for (args, says) in [
        (&["controller", "serve", "--listen", "127.0.0.1:0", "--token-file", "/t", "--database", "x", "--cloud", "a", "--gateway-vtep", "224.0.0.1", "--coordinator", "http://127.0.0.1:1"][..], "--gateway-vtep"),
        (&["agent", "switch", "--switch-socket", "/tmp/x", "--controller", "ftp://x", "--vtep", "192.0.2.1"][..], "--controller"),
    ] {
        let out = switchyard().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says) && stderr.trim().lines().count() == 1, "{args:?}: {stderr}");
    }
    // A listener without authentication: a command-line error, exit 2, nothing created.
    for args in [
        &["coordinator", "serve", "--listen", "0.0.0.0:0", "--token-file", "/t", "--database", "/nonexistent/x.redb"][..],
        &["coordinator", "serve", "--listen", "127.0.0.1:0", "--database", "/nonexistent/x.redb"][..],
        &["controller", "serve", "--listen", "127.0.0.1:0", "--database", "x", "--cloud", "a", "--gateway-vtep", "192.0.2.1", "--coordinator", "http://127.0.0.1:1"][..],
    ] {
        let out = switchyard().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--listen: ") && stderr.trim().lines().count() == 1, "{args:?}: {stderr}");
    }
    let database: PathBuf = dir.join("controller-cloud-a.redb");
    let out = switchyard()
        .args(["coordinator", "serve", "--listen", "127.0.0.1:0", "--database", database.to_str().unwrap()])
        .arg("--token-file")
        .arg(&controller.token_file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is already open") || !out.status.success());
}
