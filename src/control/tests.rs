//! The control core with a fake data plane: validation, all-or-nothing changes,
//! commit before apply.
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::http::parse_json;
use super::testing::FakeRuntime;
use super::*;
use crate::store::{ConfigSnapshot, Network, RemoteEndpoint, Store, VmEndpoint};

/// FakeRuntime that also checks, on every apply, that the database already holds
/// exactly the snapshot being applied.
struct ProbeRuntime {
    fake: FakeRuntime,
    control: OnceLock<Weak<Control>>,
    committed_first: Mutex<Vec<bool>>,
}

impl Runtime for ProbeRuntime {
    fn apply(&self, config: &ConfigSnapshot) {
        if let Some(control) = self.control.get().and_then(Weak::upgrade) {
            let in_store = control.store().snapshot().expect("read the store");
            self.committed_first.lock().unwrap().push(in_store == *config);
        }
        self.fake.apply(config);
    }
    fn ports(&self) -> Vec<PortView> {
        self.fake.ports()
    }
    fn unit_info(&self) -> serde_json::Value {
        self.fake.unit_info()
    }
    fn stats(&self) -> serde_json::Value {
        self.fake.stats()
    }
    fn metrics(&self) -> String {
        self.fake.metrics()
    }
    fn learned(&self) -> serde_json::Value {
        self.fake.learned()
    }
    fn upgrade(
        &self,
        library: &std::path::Path,
        gate: &dyn crate::upgrade::ConfigGate,
    ) -> Result<crate::upgrade::UpgradeRecord, crate::upgrade::UpgradeRefused> {
        self.fake.upgrade(library, gate)
    }
    fn upgrade_status(&self) -> Result<crate::upgrade::UpgradeStatus, crate::upgrade::UpgradeRefused> {
        self.fake.upgrade_status()
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    control: Arc<Control>,
    runtime: Arc<ProbeRuntime>,
}

impl Setup {
    fn empty() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("config.redb")).unwrap();
        let runtime = Arc::new(ProbeRuntime {
            fake: FakeRuntime::new(),
            control: OnceLock::new(),
            committed_first: Mutex::new(Vec::new()),
        });
        let control = Arc::new(Control::new(store, runtime.clone()).unwrap());
        runtime.control.set(Arc::downgrade(&control)).unwrap();
        Setup { _dir: dir, control, runtime }
    }

    /// Networks 100 "blue" (flooding to 192.0.2.2) and 200 "red"; VM endpoint
    /// 02:00:00:00:00:01 on vm0 and remote 02:00:00:00:00:02 in 100; vm0 bound to 100.
    fn populated() -> Setup {
        let setup = Setup::empty();
        let c = &setup.control;
        c.create_network(network(100, "blue", &["192.0.2.2"])).unwrap();
        c.create_network(network(200, "red", &[])).unwrap();
        c.add_endpoint(endpoint(100, "02:00:00:00:00:01", Some("10.1.0.1"), "vm0")).unwrap();
        c.add_remote(remote(100, "02:00:00:00:00:02", None, "192.0.2.3")).unwrap();
        c.bind_port("vm0", PortBind { vni: 100 }).unwrap();
        setup
    }

    fn applied(&self) -> Vec<ConfigSnapshot> {
        self.runtime.fake.applied()
    }

    /// Runs `op`, expects the error, and checks nothing moved: the snapshot, the
    /// database, and what the runtime was given.
    fn refused<T: std::fmt::Debug>(
        &self,
        op: impl FnOnce(&Control) -> Result<T, ApiError>,
        status: u16,
        field: Option<&str>,
    ) -> String {
        let before = self.control.snapshot();
        let applied = self.applied().len();
        let err = op(&self.control).expect_err("expected a refusal");
        assert_eq!((err.status(), err.field()), (status, field), "{err}");
        assert!(!err.message().is_empty() && !err.message().contains('\n'), "{err}");
        assert_eq!(self.control.snapshot(), before, "snapshot changed by a refused request: {err}");
        assert_eq!(self.control.store().snapshot().unwrap(), *before, "database changed by a refused request: {err}");
        assert_eq!(self.applied().len(), applied, "runtime applied a refused request: {err}");
        err.message().to_string()
    }
}

fn network(vni: i64, name: &str, flood: &[&str]) -> NetworkCreate {
    NetworkCreate { vni, name: name.into(), flood_vteps: flood.iter().map(|s| s.to_string()).collect() }
}

fn endpoint(vni: i64, mac: &str, ip: Option<&str>, port: &str) -> EndpointCreate {
    EndpointCreate { vni, mac: mac.into(), ip: ip.map(str::to_string), port: port.into() }
}

fn remote(vni: i64, mac: &str, ip: Option<&str>, vtep: &str) -> RemoteCreate {
    RemoteCreate { vni, mac: mac.into(), ip: ip.map(str::to_string), vtep: vtep.into() }
}

fn replace(vni: Option<i64>, name: &str, flood: &[&str]) -> NetworkReplace {
    NetworkReplace { vni, name: name.into(), flood_vteps: flood.iter().map(|s| s.to_string()).collect() }
}

#[test]
fn start_applies_what_the_database_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.redb");
    {
        let store = Store::open(&path).unwrap();
        let seed = ConfigSnapshot {
            networks: vec![crate::store::Network { vni: 5, name: "five".into(), flood_vteps: vec![] }],
            ..ConfigSnapshot::default()
        };
        assert!(store.bootstrap_if_empty(&seed).unwrap());
    }
    let fake = Arc::new(FakeRuntime::new());
    let control = Control::new(Store::open(&path).unwrap(), fake.clone()).unwrap();
    let applied = fake.applied();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].generation, 1);
    assert_eq!(applied[0].networks[0].name, "five");
    assert_eq!(*control.snapshot(), applied[0]);
}

#[test]
fn changes_are_committed_then_applied_in_generation_order() {
    let setup = Setup::populated();
    let c = &setup.control;
    let snapshot = c.snapshot();
    assert_eq!(snapshot.generation, 5);
    assert_eq!(snapshot.networks.len(), 2);
    assert_eq!(snapshot.networks[0].flood_vteps, ["192.0.2.2".parse::<std::net::Ipv4Addr>().unwrap()]);
    assert_eq!(snapshot.endpoints[0].ip, Some("10.1.0.1".parse().unwrap()));
    assert_eq!(c.store().snapshot().unwrap(), *snapshot);
    let generations: Vec<u64> = setup.applied().iter().map(|s| s.generation).collect();
    assert_eq!(generations, [0, 1, 2, 3, 4, 5]);
    assert_eq!(setup.applied().last().unwrap(), &*snapshot);
    let committed_first = setup.runtime.committed_first.lock().unwrap().clone();
    assert_eq!(committed_first, [true; 5], "apply must see a snapshot the database already holds");

    // Reads.
    assert_eq!(c.network("100").unwrap().name, "blue");
    assert_eq!(c.endpoint("100", "02-00-00-00-00-01").unwrap().port, "vm0");
    assert_eq!(c.remote("100", "02:00:00:00:00:02").unwrap().vtep, std::net::Ipv4Addr::new(192, 0, 2, 3));
    let ports = c.ports();
    assert_eq!(
        ports.iter().map(|p| (p.port.name.as_str(), p.vni)).collect::<Vec<_>>(),
        [("vm0", Some(100)), ("vm1", None), ("uplink0", None)]
    );
    assert_eq!(c.port("vm0").unwrap().vni, Some(100));

    // Replace, move a port, tear down, delete.
    let red = c.replace_network("200", replace(Some(200), "crimson", &["192.0.2.7", "192.0.2.8"])).unwrap();
    assert_eq!(red.flood_vteps.len(), 2);
    c.bind_port("vm0", PortBind { vni: 200 }).unwrap();
    c.bind_port("vm1", PortBind { vni: 200 }).unwrap();
    c.delete_endpoint("100", "02:00:00:00:00:01").unwrap();
    c.delete_remote("100", "02:00:00:00:00:02").unwrap();
    c.delete_network("100").unwrap();
    c.unbind_port("vm0").unwrap();
    let snapshot = c.snapshot();
    assert_eq!(snapshot.generation, 12);
    assert_eq!(snapshot.networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["crimson"]);
    assert_eq!(snapshot.ports, [crate::store::PortNetwork { port: "vm1".into(), vni: 200 }]);
    assert_eq!(c.store().snapshot().unwrap(), *snapshot);
    assert!(setup.runtime.committed_first.lock().unwrap().iter().all(|ok| *ok));
}

#[test]
fn asking_for_what_already_is_commits_nothing() {
    let setup = Setup::populated();
    let c = &setup.control;
    let (generation, applied) = (c.snapshot().generation, setup.applied().len());
    c.bind_port("vm0", PortBind { vni: 100 }).unwrap();
    c.replace_network("100", replace(None, "blue", &["192.0.2.2"])).unwrap();
    assert_eq!(c.snapshot().generation, generation);
    assert_eq!(setup.applied().len(), applied);
}

#[test]
fn network_validation() {
    let s = Setup::populated();
    let long = "x".repeat(65);
    type Op = Box<dyn FnOnce(&Control) -> Result<Network, ApiError>>;
    let cases: Vec<(Op, u16, &str, &str)> = vec![
        (Box::new(|c| c.create_network(network(0, "a", &[]))), 400, "vni", "VNI 0 is out of range 1..=16777215"),
        (
            Box::new(|c| c.create_network(network(16_777_216, "a", &[]))),
            400,
            "vni",
            "VNI 16777216 is out of range 1..=16777215",
        ),
        (Box::new(|c| c.create_network(network(-1, "a", &[]))), 400, "vni", "VNI -1 is out of range 1..=16777215"),
        (
            Box::new(|c| c.create_network(network(300, "", &[]))),
            400,
            "name",
            "\"\" is not a valid network name: use 1 to 64 characters of A-Z a-z 0-9 . _ -",
        ),
        (
            Box::new(|c| c.create_network(network(300, "a b", &[]))),
            400,
            "name",
            "\"a b\" is not a valid network name: use 1 to 64 characters of A-Z a-z 0-9 . _ -",
        ),
        (Box::new(move |c| c.create_network(network(300, &long, &[]))), 400, "name", "is not a valid network name"),
        (
            Box::new(|c| c.create_network(network(300, "a", &["224.0.0.1"]))),
            400,
            "flood_vteps",
            "224.0.0.1 is a multicast address, not a unicast IPv4 address",
        ),
        (
            Box::new(|c| c.create_network(network(300, "a", &["0.0.0.0"]))),
            400,
            "flood_vteps",
            "0.0.0.0 is the unspecified address, not a unicast IPv4 address",
        ),
        (Box::new(|c| c.create_network(network(300, "a", &["255.255.255.255"]))), 400, "flood_vteps", "broadcast"),
        (Box::new(|c| c.create_network(network(300, "a", &["127.0.0.1"]))), 400, "flood_vteps", "loopback"),
        (
            Box::new(|c| c.create_network(network(300, "a", &["10.0.0"]))),
            400,
            "flood_vteps",
            "\"10.0.0\" is not an IPv4 address such as 192.0.2.1",
        ),
        (
            Box::new(|c| c.create_network(network(300, "a", &["10.0.0.2", "10.0.0.2"]))),
            400,
            "flood_vteps",
            "10.0.0.2 is listed twice",
        ),
        (Box::new(|c| c.create_network(network(100, "green", &[]))), 409, "vni", "network 100 already exists"),
        (
            Box::new(|c| c.create_network(network(300, "blue", &[]))),
            409,
            "name",
            "the name \"blue\" is already used by network 100",
        ),
        (Box::new(|c| c.network("abc")), 400, "vni", "\"abc\" is not a VNI (an integer in 1..=16777215)"),
        (Box::new(|c| c.network("0")), 400, "vni", "VNI 0 is out of range"),
        (Box::new(|c| c.network("300")), 404, "vni", "there is no network with VNI 300"),
        (
            Box::new(|c| c.replace_network("300", replace(None, "a", &[]))),
            404,
            "vni",
            "there is no network with VNI 300",
        ),
        (Box::new(|c| c.replace_network("x", replace(None, "a", &[]))), 400, "vni", "is not a VNI"),
        (
            Box::new(|c| c.replace_network("100", replace(Some(200), "a", &[]))),
            400,
            "vni",
            "the body's vni 200 differs from VNI 100 in the path",
        ),
        (
            Box::new(|c| c.replace_network("200", replace(None, "blue", &[]))),
            409,
            "name",
            "the name \"blue\" is already used by network 100",
        ),
        (
            Box::new(|c| c.replace_network("200", replace(None, "red", &["192.0.2.1", "192.0.2.1"]))),
            400,
            "flood_vteps",
            "listed twice",
        ),
    ];
    for (op, status, field, message) in cases {
        let got = s.refused(op, status, Some(field));
        assert!(got.contains(message), "{got:?} should contain {message:?}");
    }
}

#[test]
fn deleting_a_network_in_use_is_refused() {
    let s = Setup::populated();
    let message = s.refused(|c| c.delete_network("100"), 409, Some("vni"));
    assert_eq!(
        message,
        "network 100 is still used by 1 VM endpoint, 1 remote endpoint and 1 port (vm0); remove them first"
    );
    s.control.delete_endpoint("100", "02:00:00:00:00:01").unwrap();
    s.control.delete_remote("100", "02:00:00:00:00:02").unwrap();
    let message = s.refused(|c| c.delete_network("100"), 409, Some("vni"));
    assert_eq!(message, "network 100 is still used by 1 port (vm0); remove them first");
    s.control.unbind_port("vm0").unwrap();
    s.control.delete_network("100").unwrap();
    s.refused(|c| c.delete_network("100"), 404, Some("vni"));
    s.refused(|c| c.delete_network("many"), 400, Some("vni"));
}

#[test]
fn endpoint_validation() {
    let s = Setup::populated();
    type Op = Box<dyn FnOnce(&Control) -> Result<VmEndpoint, ApiError>>;
    let ep = |vni, mac: &'static str, ip: Option<&'static str>, port: &'static str| -> Op {
        Box::new(move |c| c.add_endpoint(endpoint(vni, mac, ip, port)))
    };
    let cases: Vec<(Op, u16, &str, &str)> = vec![
        (ep(0, "02:00:00:00:00:09", None, "vm0"), 400, "vni", "VNI 0 is out of range"),
        (ep(300, "02:00:00:00:00:09", None, "vm0"), 400, "vni", "there is no network with VNI 300; create it first"),
        (
            ep(100, "02:00:00:00:09", None, "vm0"),
            400,
            "mac",
            "\"02:00:00:00:09\" is not a MAC address: expected a MAC address of six hex octets",
        ),
        (
            ep(100, "01:00:5e:00:00:01", None, "vm0"),
            400,
            "mac",
            "01:00:5e:00:00:01 is a multicast address, not a unicast MAC address",
        ),
        (ep(100, "ff:ff:ff:ff:ff:ff", None, "vm0"), 400, "mac", "broadcast"),
        (ep(100, "00:00:00:00:00:00", None, "vm0"), 400, "mac", "all-zero"),
        (ep(100, "02:00:00:00:00:09", Some("10.1.0"), "vm0"), 400, "ip", "\"10.1.0\" is not an IPv4 address"),
        (ep(100, "02:00:00:00:00:09", Some("224.1.1.1"), "vm0"), 400, "ip", "multicast"),
        (ep(100, "02:00:00:00:00:09", None, "vm9"), 400, "port", "there is no port named \"vm9\""),
        (
            ep(100, "02:00:00:00:00:09", None, "uplink0"),
            400,
            "port",
            "port uplink0 has role uplink; VM endpoints attach to vm-role ports",
        ),
        (
            ep(100, "02:00:00:00:00:01", None, "vm1"),
            409,
            "mac",
            "MAC 02:00:00:00:00:01 in VNI 100 is already a VM endpoint",
        ),
        (
            ep(100, "02:00:00:00:00:02", None, "vm1"),
            409,
            "mac",
            "MAC 02:00:00:00:00:02 in VNI 100 is already a remote endpoint",
        ),
        (Box::new(|c| c.endpoint("100", "zz")), 400, "mac", "\"zz\" is not a MAC address"),
        (Box::new(|c| c.endpoint("1x", "02:00:00:00:00:01")), 400, "vni", "is not a VNI"),
        (
            Box::new(|c| c.endpoint("100", "02:00:00:00:00:09")),
            404,
            "mac",
            "there is no VM endpoint with MAC 02:00:00:00:00:09 in VNI 100",
        ),
        (Box::new(|c| c.endpoint("100", "02:00:00:00:00:02")), 404, "mac", "there is no VM endpoint"),
    ];
    for (op, status, field, message) in cases {
        let got = s.refused(op, status, Some(field));
        assert!(got.contains(message), "{got:?} should contain {message:?}");
    }
    s.refused(|c| c.delete_endpoint("100", "02:00:00:00:00:09"), 404, Some("mac"));
    s.refused(|c| c.delete_endpoint("100", "nope"), 400, Some("mac"));
    // The same MAC in another VNI is another endpoint.
    s.control.add_endpoint(endpoint(200, "02:00:00:00:00:01", None, "vm1")).unwrap();
}

#[test]
fn remote_validation() {
    let s = Setup::populated();
    type Op = Box<dyn FnOnce(&Control) -> Result<RemoteEndpoint, ApiError>>;
    let rem = |vni, mac: &'static str, ip: Option<&'static str>, vtep: &'static str| -> Op {
        Box::new(move |c| c.add_remote(remote(vni, mac, ip, vtep)))
    };
    let cases: Vec<(Op, u16, &str, &str)> = vec![
        (rem(16_777_216, "02:00:00:00:00:09", None, "192.0.2.9"), 400, "vni", "out of range"),
        (rem(300, "02:00:00:00:00:09", None, "192.0.2.9"), 400, "vni", "there is no network with VNI 300"),
        (rem(100, "03:00:00:00:00:09", None, "192.0.2.9"), 400, "mac", "multicast"),
        (rem(100, "02:00:00:00:00:09", Some("0.0.0.0"), "192.0.2.9"), 400, "ip", "unspecified"),
        (
            rem(100, "02:00:00:00:00:09", None, "0.0.0.0"),
            400,
            "vtep",
            "0.0.0.0 is the unspecified address, not a unicast IPv4 address",
        ),
        (rem(100, "02:00:00:00:00:09", None, "239.0.0.1"), 400, "vtep", "239.0.0.1 is a multicast address"),
        (rem(100, "02:00:00:00:00:09", None, "255.255.255.255"), 400, "vtep", "broadcast"),
        (rem(100, "02:00:00:00:00:09", None, "127.0.0.2"), 400, "vtep", "loopback"),
        (rem(100, "02:00:00:00:00:09", None, "example.com"), 400, "vtep", "\"example.com\" is not an IPv4 address"),
        (rem(100, "02:00:00:00:00:01", None, "192.0.2.9"), 409, "mac", "is already a VM endpoint"),
        (rem(100, "02:00:00:00:00:02", None, "192.0.2.9"), 409, "mac", "is already a remote endpoint"),
        (
            Box::new(|c| c.remote("100", "02:00:00:00:00:01")),
            404,
            "mac",
            "there is no remote endpoint with MAC 02:00:00:00:00:01 in VNI 100",
        ),
    ];
    for (op, status, field, message) in cases {
        let got = s.refused(op, status, Some(field));
        assert!(got.contains(message), "{got:?} should contain {message:?}");
    }
    s.refused(|c| c.delete_remote("100", "02:00:00:00:00:01"), 404, Some("mac"));
}

#[test]
fn port_validation() {
    let s = Setup::populated();
    let message = s.refused(|c| c.bind_port("nope", PortBind { vni: 100 }), 404, Some("name"));
    assert_eq!(message, "there is no port named \"nope\"");
    let message = s.refused(|c| c.bind_port("uplink0", PortBind { vni: 100 }), 400, Some("name"));
    assert_eq!(message, "port uplink0 has role uplink; only vm-role ports join a network");
    let message = s.refused(|c| c.bind_port("vm1", PortBind { vni: 300 }), 400, Some("vni"));
    assert_eq!(message, "there is no network with VNI 300; create it first");
    s.refused(|c| c.bind_port("vm1", PortBind { vni: 0 }), 400, Some("vni"));
    let message = s.refused(|c| c.unbind_port("vm1"), 404, Some("name"));
    assert_eq!(message, "port vm1 is not bound to a network");
    s.refused(|c| c.unbind_port("nope"), 404, Some("name"));
    s.refused(|c| c.port("nope"), 404, Some("name"));
}

#[test]
fn a_failed_commit_changes_nothing() {
    let s = Setup::populated();
    s.control.store().fail_next_commit();
    let message = s.refused(|c| c.create_network(network(300, "green", &[])), 500, None);
    assert!(message.starts_with("the change was not made: config database "), "{message}");
    s.control.store().fail_next_commit();
    s.refused(|c| c.delete_endpoint("100", "02:00:00:00:00:01"), 500, None);
    // And the next request goes through.
    s.control.create_network(network(300, "green", &[])).unwrap();
    assert_eq!(s.control.snapshot().generation, 6);
}

#[test]
fn json_bodies_name_the_field_at_fault() {
    let bad = |text: &str| parse_json::<NetworkCreate>(text.as_bytes()).unwrap_err();
    let e = bad("{\"vni\": 1, \"name\": \"a\", \"colour\": \"blue\"}");
    assert_eq!((e.status(), e.field()), (400, Some("colour")));
    assert_eq!(e.message(), "unknown field `colour`; expected one of `vni`, `name`, `flood_vteps`");
    let e = bad("{\"vni\": 1}");
    assert_eq!((e.status(), e.field(), e.message()), (400, Some("name"), "missing field `name`"));
    let e = bad("{\"vni\": \"100\", \"name\": \"a\"}");
    assert_eq!(
        (e.field(), e.message()),
        (Some("vni"), "vni has the wrong type: invalid type: string \"100\", expected an integer")
    );
    let e = bad("{\"vni\": 1, \"name\": \"a\", \"flood_vteps\": [\"10.0.0.1\", 7]}");
    assert_eq!(e.field(), Some("flood_vteps[1]"));
    let e = bad("{\"vni\": 1, \"name\": ");
    assert_eq!((e.field(), e.message()), (Some("body"), "the body is not valid JSON: EOF while parsing a value"));
    let e = bad("{\"vni\": 1, \"name\": \"a\"} x");
    assert_eq!((e.field(), e.message()), (Some("body"), "the body is not valid JSON: trailing characters"));
    let e = bad("[1, 2]");
    assert_eq!(e.field(), Some("body"));
    assert_eq!(e.message(), "the body must be a JSON object, not an array");
    let e = bad("  ");
    assert_eq!((e.field(), e.message()), (Some("body"), "the body is empty; send a JSON object"));
    let ok: NetworkCreate = parse_json(b"{\"vni\": 1, \"name\": \"a\"}").unwrap();
    assert!(ok.flood_vteps.is_empty());
}

#[test]
fn concurrent_writers_take_turns() {
    let s = Setup::empty();
    std::thread::scope(|scope| {
        for t in 0..4i64 {
            let control = &s.control;
            scope.spawn(move || {
                for i in 0..10 {
                    let vni = 1000 + t * 100 + i;
                    control.create_network(network(vni, &format!("n{vni}"), &[])).unwrap();
                    assert_eq!(control.network(&vni.to_string()).unwrap().vni as i64, vni);
                }
            });
        }
    });
    assert_eq!(s.control.snapshot().generation, 40);
    assert_eq!(s.control.snapshot().networks.len(), 40);
    let generations: Vec<u64> = s.applied().iter().map(|a| a.generation).collect();
    assert_eq!(generations, (0..=40).collect::<Vec<_>>(), "applied once per commit, in order");
    assert_eq!(s.control.store().snapshot().unwrap(), *s.control.snapshot());
}
