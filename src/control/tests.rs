//! The control core with a fake data plane: validation, all-or-nothing changes,
//! commit before apply.
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::http::parse_json;
use super::testing::FakeRuntime;
use super::*;
use crate::configdb::{RequestState, Store};
use crate::model::{AddressMigration, ConfigSnapshot, AddressMigrationSource, Network, RemoteEndpoint, VmEndpoint};
use crate::upgrade::{ConfigGate, Outcome, Resumed, UpgradeRefused};

/// FakeRuntime that also checks, on every apply, that the database already holds
/// exactly the snapshot being applied.
struct ProbeRuntime {
    fake: FakeRuntime,
    control: OnceLock<Weak<Control>>,
    committed_first: Mutex<Vec<bool>>,
    /// Called after every apply (tests that act while a change is being applied).
    on_apply: Mutex<Option<OnApply>>,
}

type OnApply = Box<dyn FnMut(&ConfigSnapshot) + Send>;

impl Runtime for ProbeRuntime {
    fn apply(&self, changes: &[crate::model::Change], config: &ConfigSnapshot) {
        if let Some(control) = self.control.get().and_then(Weak::upgrade) {
            let in_store = control.store().snapshot().expect("read the store");
            self.committed_first.lock().unwrap().push(in_store == *config);
        }
        self.fake.apply(changes, config);
        if let Some(hook) = self.on_apply.lock().unwrap().as_mut() {
            hook(config);
        }
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
        library: &crate::upgrade::UnitFile,
        gate: &dyn crate::upgrade::ConfigGate,
    ) -> Result<crate::upgrade::UpgradeRecord, crate::upgrade::UpgradeRefused> {
        self.fake.upgrade(library, gate)
    }
    fn upgrade_status(&self) -> Result<crate::upgrade::UpgradeStatus, crate::upgrade::UpgradeRefused> {
        self.fake.upgrade_status()
    }
    fn local_vtep(&self) -> Option<std::net::Ipv4Addr> {
        self.fake.local_vtep()
    }
    fn unit_directory(&self) -> std::path::PathBuf {
        self.fake.unit_directory()
    }
    fn address_reports(&self) -> Vec<crate::address_migration::AddressReport> {
        self.fake.address_reports()
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    control: Arc<Control>,
    runtime: Arc<ProbeRuntime>,
}

impl Setup {
    fn empty() -> Setup {
        Setup::with_runtime(FakeRuntime::new())
    }

    fn with_runtime(fake: FakeRuntime) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("config.redb")).unwrap();
        let runtime = Arc::new(ProbeRuntime {
            fake,
            control: OnceLock::new(),
            committed_first: Mutex::new(Vec::new()),
            on_apply: Mutex::new(None),
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
            networks: vec![crate::model::Network { vni: 5, name: "five".into(), flood_vteps: vec![] }],
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
    c.delete_endpoint("100", "02:00:00:00:00:01").unwrap();
    c.bind_port("vm0", PortBind { vni: 200 }).unwrap();
    c.bind_port("vm1", PortBind { vni: 200 }).unwrap();
    c.delete_remote("100", "02:00:00:00:00:02").unwrap();
    c.delete_network("100").unwrap();
    c.unbind_port("vm0").unwrap();
    let snapshot = c.snapshot();
    assert_eq!(snapshot.generation, 12);
    assert_eq!(snapshot.networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["crimson"]);
    assert_eq!(snapshot.ports, [crate::model::PortNetwork { port: "vm1".into(), vni: 200 }]);
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
fn an_endpoint_joins_only_the_network_of_its_port() {
    let s = Setup::populated();
    s.control.create_network(network(7, "seven", &[])).unwrap();
    s.control.bind_port("vm1", PortBind { vni: 100 }).unwrap();
    // vm1 is bound to network 100: a VNI 7 endpoint there would get VNI 7 traffic on vm1.
    let message = s.refused(|c| c.add_endpoint(endpoint(7, "02:00:00:00:00:07", None, "vm1")), 409, Some("port"));
    assert_eq!(message, "port vm1 is in network 100, not 7; a port's VM endpoints are all in its network");
    // vm0 is in network 100 through its binding and its endpoint.
    s.refused(|c| c.add_endpoint(endpoint(200, "02:00:00:00:00:08", None, "vm0")), 409, Some("port"));
    // An unbound port is in the network of its first endpoint.
    s.control.unbind_port("vm1").unwrap();
    s.control.add_endpoint(endpoint(7, "02:00:00:00:00:07", None, "vm1")).unwrap();
    let message = s.refused(|c| c.add_endpoint(endpoint(100, "02:00:00:00:00:09", None, "vm1")), 409, Some("port"));
    assert!(message.starts_with("port vm1 is in network 7, not 100"), "{message}");
    // The same network is fine.
    s.control.add_endpoint(endpoint(7, "02:00:00:00:00:0a", None, "vm1")).unwrap();
}

#[test]
fn a_port_with_endpoints_is_not_moved_to_another_network() {
    let s = Setup::populated();
    let message = s.refused(|c| c.bind_port("vm0", PortBind { vni: 200 }), 409, Some("vni"));
    assert_eq!(
        message,
        "port vm0 still has VM endpoint 02:00:00:00:00:01 of network 100; remove it first, or bind the port to network 100"
    );
    s.control.add_endpoint(endpoint(100, "02:00:00:00:00:03", None, "vm0")).unwrap();
    let message = s.refused(|c| c.bind_port("vm0", PortBind { vni: 200 }), 409, Some("vni"));
    assert!(message.contains("VM endpoints 02:00:00:00:00:01 and 02:00:00:00:00:03 of network 100"), "{message}");
    // Binding again to its own network asks for what already is.
    s.control.bind_port("vm0", PortBind { vni: 100 }).unwrap();
    s.control.delete_endpoint("100", "02:00:00:00:00:01").unwrap();
    s.control.delete_endpoint("100", "02:00:00:00:00:03").unwrap();
    s.control.bind_port("vm0", PortBind { vni: 200 }).unwrap();
    assert_eq!(s.control.port("vm0").unwrap().vni, Some(200));
}

#[test]
fn the_local_vtep_is_refused_as_a_remote_vtep_and_in_flood_lists() {
    let s = Setup::with_runtime(FakeRuntime::new().with_local_vtep("192.0.2.1".parse().unwrap()));
    s.control.create_network(network(100, "blue", &[])).unwrap();
    let message = s.refused(|c| c.add_remote(remote(100, "02:00:00:00:00:02", None, "192.0.2.1")), 400, Some("vtep"));
    assert_eq!(message, "192.0.2.1 is this switch's own VTEP address, not a remote VTEP");
    let message = s.refused(|c| c.create_network(network(300, "a", &["192.0.2.9", "192.0.2.1"])), 400, Some("flood_vteps"));
    assert_eq!(message, "192.0.2.1 is this switch's own VTEP address, not a remote VTEP");
    s.refused(|c| c.replace_network("100", replace(None, "blue", &["192.0.2.1"])), 400, Some("flood_vteps"));
    s.refused(|c| c.add_remote(remote(100, "02:00:00:00:00:02", None, "240.0.0.1")), 400, Some("vtep"));
    s.control.add_remote(remote(100, "02:00:00:00:00:02", None, "192.0.2.2")).unwrap();
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

// Config requests during an upgrade.

fn queued(control: &Control, request: ConfigRequest) -> u64 {
    match control.submit(request).expect("queued") {
        Submitted::Queued(record) => {
            assert_eq!(record.state, RequestState::Queued);
            record.id
        }
        Submitted::Applied(applied) => panic!("applied at once while paused: {applied:?}"),
    }
}

fn create(vni: i64, name: &str) -> ConfigRequest {
    ConfigRequest::CreateNetwork(network(vni, name, &[]))
}

fn rename(vni: i64, name: &str) -> ConfigRequest {
    ConfigRequest::ReplaceNetwork { vni: vni.to_string(), body: replace(None, name, &[]) }
}

fn delete(vni: i64) -> ConfigRequest {
    ConfigRequest::DeleteNetwork { vni: vni.to_string() }
}

#[test]
fn requests_queued_while_paused_apply_in_arrival_order_on_resume() {
    let s = Setup::empty();
    let c = &s.control;
    c.pause();
    assert!(c.is_paused());
    let ids = [
        queued(c, create(100, "blue")),
        queued(c, rename(100, "green")),
        queued(c, delete(100)),
        queued(c, create(101, "red")),
        queued(c, ConfigRequest::BindPort { name: "vm0".into(), body: PortBind { vni: 101 } }),
    ];
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    // Nothing moved yet, anywhere.
    assert_eq!(c.snapshot().generation, 0);
    assert_eq!(c.store().snapshot().unwrap(), ConfigSnapshot::default());
    assert_eq!(s.applied().len(), 1, "only the start");
    assert_eq!(c.request_status("3").unwrap().state, RequestState::Queued);

    assert_eq!(c.resume(), Resumed { applied: 5, failed: 0 });
    assert!(!c.is_paused());
    let snapshot = c.snapshot();
    assert_eq!(snapshot.networks, [Network { vni: 101, name: "red".into(), flood_vteps: vec![] }]);
    assert_eq!(snapshot.ports, [crate::model::PortNetwork { port: "vm0".into(), vni: 101 }]);
    assert_eq!(c.store().snapshot().unwrap(), *snapshot);
    // One generation per request, applied in arrival order, each committed first.
    let generations: Vec<u64> = s.applied().iter().map(|a| a.generation).collect();
    assert_eq!(generations, [0, 1, 2, 3, 4, 5]);
    assert_eq!(s.applied()[2].networks[0].name, "green");
    assert!(s.runtime.committed_first.lock().unwrap().iter().all(|ok| *ok));
    for (id, generation) in ids.iter().zip(1..) {
        let status = c.request_status(&id.to_string()).unwrap();
        assert_eq!((status.state, status.generation), (RequestState::Applied, Some(generation)), "{status:?}");
        assert!(status.finished_unix_us.is_some() && status.error.is_none());
    }
    let created = c.request_status("1").unwrap();
    assert_eq!((created.method.as_str(), created.path.as_str(), created.status), ("POST", "/v1/networks", Some(201)));
    assert_eq!(created.reply, Some(serde_json::json!({"vni": 100, "name": "blue", "flood_vteps": []})));
    let deleted = c.request_status("3").unwrap();
    assert_eq!((deleted.method.as_str(), deleted.path.as_str()), ("DELETE", "/v1/networks/100"));
    assert_eq!((deleted.status, deleted.reply), (Some(204), None), "a delete has no reply body");
    assert!(c.store().queued_requests().unwrap().is_empty());

    // Open again: applied at once.
    match c.submit(create(102, "grey")).unwrap() {
        Submitted::Applied(applied) => assert_eq!((applied.status, applied.generation), (201, 6)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_queued_request_refused_when_applied_is_recorded_and_the_rest_still_apply() {
    let s = Setup::populated();
    let c = &s.control;
    let generation = c.snapshot().generation;
    c.pause();
    let ids = [
        queued(c, create(300, "green")),
        queued(c, create(300, "again")),
        queued(c, ConfigRequest::AddEndpoint(endpoint(400, "02:00:00:00:00:09", None, "vm1"))),
        queued(c, delete(100)),
        queued(c, rename(200, "crimson")),
        // Asks for what already is: applied, no new generation.
        queued(c, ConfigRequest::BindPort { name: "vm0".into(), body: PortBind { vni: 100 } }),
    ];
    assert_eq!(c.resume(), Resumed { applied: 3, failed: 3 });
    let status = |id: u64| c.request_status(&id.to_string()).unwrap();
    let failed = |id: u64| {
        let s = status(id);
        assert_eq!((s.state, s.generation, &s.reply), (RequestState::Failed, None, &None), "{s:?}");
        (s.status.unwrap(), s.field.unwrap(), s.error.unwrap())
    };
    assert_eq!(status(ids[0]).generation, Some(generation + 1));
    assert_eq!(failed(ids[1]), (409, "vni".into(), "network 300 already exists".into()));
    assert_eq!(failed(ids[2]), (400, "vni".into(), "there is no network with VNI 400; create it first".into()));
    assert_eq!(
        failed(ids[3]),
        (
            409,
            "vni".into(),
            "network 100 is still used by 1 VM endpoint, 1 remote endpoint and 1 port (vm0); remove them first".into()
        )
    );
    assert_eq!(status(ids[4]).generation, Some(generation + 2));
    assert_eq!((status(ids[5]).state, status(ids[5]).generation), (RequestState::Applied, Some(generation + 2)));
    assert_eq!(c.snapshot().generation, generation + 2);
    assert_eq!(c.network("200").unwrap().name, "crimson");
    assert_eq!(c.network("300").unwrap().name, "green");
}

#[test]
fn malformed_requests_are_refused_at_once_while_paused() {
    let s = Setup::populated();
    let c = &s.control;
    c.pause();
    let cases: Vec<(ConfigRequest, u16, &str, &str)> = vec![
        (create(0, "zero"), 400, "vni", "VNI 0 is out of range 1..=16777215"),
        (create(300, "a b"), 400, "name", "is not a valid network name"),
        (ConfigRequest::CreateNetwork(network(300, "a", &["224.0.0.1"])), 400, "flood_vteps", "multicast"),
        (rename(-5, "x"), 400, "vni", "VNI -5 is out of range"),
        (
            ConfigRequest::ReplaceNetwork { vni: "100".into(), body: replace(Some(200), "x", &[]) },
            400,
            "vni",
            "the body's vni 200 differs from VNI 100 in the path",
        ),
        (ConfigRequest::DeleteNetwork { vni: "blue".into() }, 400, "vni", "\"blue\" is not a VNI"),
        (ConfigRequest::AddEndpoint(endpoint(100, "ff:ff:ff:ff:ff:ff", None, "vm0")), 400, "mac", "broadcast"),
        (ConfigRequest::AddEndpoint(endpoint(100, "02:00:00:00:00:09", None, "vm9")), 400, "port", "no port"),
        (
            ConfigRequest::AddEndpoint(endpoint(100, "02:00:00:00:00:09", None, "uplink0")),
            400,
            "port",
            "has role uplink",
        ),
        (
            ConfigRequest::AddRemote(remote(100, "02:00:00:00:00:09", Some("10.1.0"), "192.0.2.9")),
            400,
            "ip",
            "not an IPv4 address",
        ),
        (ConfigRequest::AddRemote(remote(100, "02:00:00:00:00:09", None, "127.0.0.1")), 400, "vtep", "loopback"),
        (
            ConfigRequest::DeleteEndpoint { vni: "100".into(), mac: "nope".into() },
            400,
            "mac",
            "\"nope\" is not a MAC address",
        ),
        (ConfigRequest::DeleteRemote { vni: "0".into(), mac: "02:00:00:00:00:02".into() }, 400, "vni", "out of range"),
        (
            ConfigRequest::BindPort { name: "nope".into(), body: PortBind { vni: 100 } },
            404,
            "name",
            "there is no port named \"nope\"",
        ),
        (
            ConfigRequest::BindPort { name: "uplink0".into(), body: PortBind { vni: 100 } },
            400,
            "name",
            "only vm-role ports join a network",
        ),
        (ConfigRequest::BindPort { name: "vm1".into(), body: PortBind { vni: 1 << 24 } }, 400, "vni", "out of range"),
    ];
    for (request, status, field, message) in cases {
        let err = c.submit(request.clone()).expect_err(&format!("{request:?} must be refused"));
        assert_eq!((err.status(), err.field()), (status, Some(field)), "{request:?}: {err}");
        assert!(err.message().contains(message), "{err} should contain {message:?}");
    }
    assert!(c.store().queued_requests().unwrap().is_empty(), "nothing malformed is queued");
    assert_eq!(c.resume(), Resumed::default());
}

#[test]
fn queued_requests_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.redb");
    {
        let control = Control::new(Store::open(&path).unwrap(), Arc::new(FakeRuntime::new())).unwrap();
        control.create_network(network(100, "blue", &[])).unwrap();
        control.pause();
        queued(&control, rename(100, "green"));
        queued(&control, create(100, "duplicate"));
        queued(&control, create(101, "red"));
        // The switch stops during the upgrade: no resume.
    }
    let fake = Arc::new(FakeRuntime::new());
    let control = Control::new(Store::open(&path).unwrap(), fake.clone()).unwrap();
    assert!(!control.is_paused());
    let generations: Vec<u64> = fake.applied().iter().map(|a| a.generation).collect();
    assert_eq!(generations, [1, 2, 3], "the database at start, then each queued request that applies");
    let names: Vec<String> = control.networks().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["green", "red"]);
    let states: Vec<RequestState> = (1..=3).map(|id| control.request_status(&id.to_string()).unwrap().state).collect();
    assert_eq!(states, [RequestState::Applied, RequestState::Failed, RequestState::Applied]);
    assert!(control.store().queued_requests().unwrap().is_empty());
    drop(control);
    // Applied once: a second restart has nothing to do.
    let fake = Arc::new(FakeRuntime::new());
    let control = Control::new(Store::open(&path).unwrap(), fake.clone()).unwrap();
    assert_eq!(fake.applied().len(), 1);
    assert_eq!(control.snapshot().generation, 3);
}

#[test]
fn a_request_arriving_during_resume_comes_after_every_queued_one() {
    let s = Setup::empty();
    let c = s.control.clone();
    c.pause();
    for vni in 1..=5 {
        queued(&c, create(vni, &format!("n{vni}")));
    }
    // When the first queued request is applied, another client deletes network 5
    // (queued last). Were it let through before the queue, it would find nothing.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let late = c.clone();
    let mut once = Some(done_tx);
    *s.runtime.on_apply.lock().unwrap() = Some(Box::new(move |_| {
        if let Some(done) = once.take() {
            let late = late.clone();
            std::thread::spawn(move || done.send(late.submit(delete(5))).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }));
    assert_eq!(c.resume(), Resumed { applied: 5, failed: 0 });
    let late = done_rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap().expect("the late delete applies");
    assert!(matches!(late, Submitted::Applied(Applied { status: 204, generation: 6, .. })), "{late:?}");
    let names: Vec<String> = c.networks().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["n1", "n2", "n3", "n4"]);
}

#[test]
fn request_ids_are_checked() {
    let s = Setup::empty();
    let refused = |id: &str| {
        let err = s.control.request_status(id).unwrap_err();
        (err.status(), err.field().unwrap().to_string(), err.message().to_string())
    };
    let not_an_id = |id: &str| format!("{id:?} is not a request id (a positive integer from a 202 reply)");
    assert_eq!(refused("abc"), (400, "id".into(), not_an_id("abc")));
    assert_eq!(refused("0"), (400, "id".into(), not_an_id("0")));
    assert_eq!(refused("-1"), (400, "id".into(), not_an_id("-1")));
    assert_eq!(
        refused("7"),
        (404, "id".into(), "there is no request 7 (the outcomes of the last 1000 are kept)".into())
    );
}

#[test]
fn an_upgrade_pauses_requests_and_applies_them_at_its_end() {
    let s = Setup::populated();
    let library = crate::upgrade::UnitFile::unchecked(s._dir.path().join("unit-v2.so")).unwrap();
    s.runtime.fake.hold_upgrades();
    std::thread::scope(|scope| {
        let upgrade = scope.spawn(|| s.control.upgrade(&library));
        assert!(s.runtime.fake.wait_until_held(std::time::Duration::from_secs(10)));
        assert!(s.control.is_paused());
        queued(&s.control, create(300, "green"));
        // A second upgrade is refused without touching the gate.
        assert_eq!(s.control.upgrade(&library), Err(UpgradeRefused::InProgress(1)));
        assert!(s.control.is_paused());
        s.runtime.fake.release_upgrades();
        let record = upgrade.join().unwrap().unwrap();
        assert_eq!(record.outcome, Outcome::Upgraded);
        assert_eq!(record.steps.iter().map(|step| step.step).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!((record.queued_applied, record.queued_failed), (1, 0));
        assert_eq!(record.to.unwrap().version, "0.0.0+unit-v2");
    });
    assert!(!s.control.is_paused());
    assert_eq!(s.control.network("300").unwrap().name, "green");

    // A refused unit rolls back, and the gate is resumed all the same.
    s.runtime.fake.refuse_next_upgrade("the unit's ABI version 9 is not 1");
    let record = s.control.upgrade(&library).unwrap();
    assert_eq!(record.outcome, Outcome::RolledBack);
    assert_eq!(record.error.as_deref(), Some("the unit's ABI version 9 is not 1"));
    assert_eq!(record.steps.iter().map(|step| step.step).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 0, 0, 0, 8]);
    assert!(!record.steps[4].ok);
    assert!(!s.control.is_paused());
    let status = s.control.runtime().upgrade_status().unwrap();
    assert_eq!((status.running, status.history.len()), (None, 2));
}

#[test]
fn config_requests_round_trip_as_json_and_name_their_route() {
    let requests = [
        (create(100, "blue"), "POST", "/v1/networks", 201),
        (rename(100, "green"), "PUT", "/v1/networks/100", 200),
        (ConfigRequest::DeleteNetwork { vni: "1 0".into() }, "DELETE", "/v1/networks/1%200", 204),
        (ConfigRequest::AddEndpoint(endpoint(1, "02:00:00:00:00:01", None, "vm0")), "POST", "/v1/endpoints", 201),
        (
            ConfigRequest::DeleteEndpoint { vni: "1".into(), mac: "02:00:00:00:00:01".into() },
            "DELETE",
            "/v1/endpoints/1/02:00:00:00:00:01",
            204,
        ),
        (ConfigRequest::AddRemote(remote(1, "02:00:00:00:00:02", None, "192.0.2.2")), "POST", "/v1/remotes", 201),
        (
            ConfigRequest::DeleteRemote { vni: "1".into(), mac: "02-00-00-00-00-02".into() },
            "DELETE",
            "/v1/remotes/1/02-00-00-00-00-02",
            204,
        ),
        (
            ConfigRequest::BindPort { name: "vm/0".into(), body: PortBind { vni: 1 } },
            "PUT",
            "/v1/ports/vm%2F0/network",
            200,
        ),
        (ConfigRequest::UnbindPort { name: "vm0".into() }, "DELETE", "/v1/ports/vm0/network", 204),
        (
            ConfigRequest::NotifyAddressMigration(notify(100, "10.1.0.5", Some("10.2.0.5"), "vm0")),
            "POST",
            "/v1/address-migrations",
            201,
        ),
        (
            ConfigRequest::DeleteAddressMigration { vni: "100".into(), primary_ip: "10.1.0.5".into() },
            "DELETE",
            "/v1/address-migrations/100/10.1.0.5",
            204,
        ),
    ];
    for (request, method, path, status) in requests {
        assert_eq!((request.method(), request.path().as_str(), request.success_status()), (method, path, status));
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(serde_json::from_value::<ConfigRequest>(json).unwrap(), request);
    }
    assert_eq!(
        serde_json::to_value(create(100, "blue")).unwrap(),
        serde_json::json!({"create_network": {"vni": 100, "name": "blue", "flood_vteps": []}})
    );
}

fn notify(vni: i64, primary: &str, post: Option<&str>, port: &str) -> AddressMigrationNotify {
    AddressMigrationNotify { vni, primary_ip: primary.into(), post_migration_ip: post.map(str::to_string), port: port.into() }
}

fn migration(primary: [u8; 4], post: Option<[u8; 4]>, port: &str, source: AddressMigrationSource) -> AddressMigration {
    AddressMigration {
        vni: 100,
        primary_ip: primary.into(),
        post_migration_ip: post.map(std::net::Ipv4Addr::from),
        port: port.into(),
        source,
    }
}

#[test]
fn address_migrations_are_notified_replaced_listed_and_removed() {
    let s = Setup::populated();
    let c = &s.control;
    let created = c.execute(ConfigRequest::NotifyAddressMigration(notify(100, "10.1.0.5", None, "vm0"))).unwrap();
    assert_eq!(created.status, 201);
    assert_eq!(c.address_migrations(), [migration([10, 1, 0, 5], None, "vm0", AddressMigrationSource::Notification)]);
    // The same primary IP again replaces its entry (200); the same content again commits nothing.
    let replaced = c.execute(ConfigRequest::NotifyAddressMigration(notify(100, "10.1.0.5", Some("10.2.0.5"), "vm0"))).unwrap();
    assert_eq!((replaced.status, replaced.generation), (200, created.generation + 1));
    let again = c.execute(ConfigRequest::NotifyAddressMigration(notify(100, "10.1.0.5", Some("10.2.0.5"), "vm0"))).unwrap();
    assert_eq!((again.status, again.generation), (200, replaced.generation));
    let entry = migration([10, 1, 0, 5], Some([10, 2, 0, 5]), "vm0", AddressMigrationSource::Notification);
    assert_eq!(c.address_migration("100", "10.1.0.5").unwrap(), entry);
    assert_eq!(s.applied().last().unwrap().address_migrations, std::slice::from_ref(&entry), "handed to the data plane");
    assert_eq!(c.store().snapshot().unwrap().address_migrations, [entry]);
    let message = s.refused(|c| c.delete_network("100"), 409, Some("vni"));
    assert!(message.ends_with("1 port (vm0) and 1 address migration; remove them first"), "{message}");
    c.delete_address_migration("100", "10.1.0.5").unwrap();
    assert!(c.address_migrations().is_empty());
    s.refused(|c| c.delete_address_migration("100", "10.1.0.5"), 404, Some("primary_ip"));
    s.refused(|c| c.delete_address_migration("100", "10.1.0"), 400, Some("primary_ip"));
    s.refused(|c| c.address_migration("0", "10.1.0.5"), 400, Some("vni"));
}

#[test]
fn address_migration_validation() {
    let s = Setup::populated();
    s.control.notify_address_migration(notify(100, "10.1.0.5", Some("10.2.0.5"), "vm0")).unwrap();
    let cases: &[(AddressMigrationNotify, u16, &str, &str)] = &[
        (notify(300, "10.1.0.6", None, "vm0"), 400, "vni", "there is no network with VNI 300; create it first"),
        (notify(0, "10.1.0.6", None, "vm0"), 400, "vni", "VNI 0 is out of range 1..=16777215"),
        (notify(100, "10.1.0", None, "vm0"), 400, "primary_ip", "\"10.1.0\" is not an IPv4 address such as 192.0.2.1"),
        (notify(100, "224.0.0.1", None, "vm0"), 400, "primary_ip", "224.0.0.1 is a multicast address, not a unicast IPv4 address"),
        (notify(100, "10.1.0.6", Some("10.1.0.6"), "vm0"), 400, "post_migration_ip", "10.1.0.6 is also the primary IP; a migration moves a VM to another address"),
        (notify(100, "10.1.0.6", Some("169.254.83.89"), "vm0"), 400, "post_migration_ip", "169.254.83.89 is the address VMs send their migration reports to"),
        (notify(100, "10.1.0.6", None, "vm9"), 400, "port", "there is no port named \"vm9\""),
        (notify(100, "10.1.0.6", None, "uplink0"), 400, "port", "port uplink0 has role uplink; address migrations are for vm-role ports"),
        (notify(200, "10.1.0.6", None, "vm0"), 400, "port", "port vm0 is in network 100, not 200"),
        (notify(100, "10.2.0.5", None, "vm1"), 409, "primary_ip", "10.2.0.5 is the post-migration IP of the address migration of 10.1.0.5"),
        (notify(100, "10.1.0.6", Some("10.1.0.5"), "vm1"), 409, "post_migration_ip", "10.1.0.5 is the primary IP of another address migration"),
        (notify(100, "10.1.0.6", Some("10.2.0.5"), "vm1"), 409, "post_migration_ip", "10.2.0.5 is already the post-migration IP of the address migration of 10.1.0.5"),
        (notify(100, "10.1.0.1", None, "vm1"), 409, "primary_ip", "10.1.0.1 is the IP of VM endpoint 02:00:00:00:00:01 on port vm0"),
    ];
    for (body, status, field, expected) in cases {
        let message = s.refused(|c| c.notify_address_migration(body.clone()), *status, Some(field));
        assert_eq!(message, *expected);
    }
}

fn report(port: &str, source: [u8; 4], primary: [u8; 4], post: [u8; 4], status: crate::wire::ReportStatus) -> crate::address_migration::AddressReport {
    crate::address_migration::AddressReport {
        port: port.into(),
        source_mac: crate::wire::MacAddr([2, 0, 0, 0, 0, 0x0a]),
        source_ip: source.into(),
        request_id: 1,
        primary_ip: primary.into(),
        post_migration_ip: post.into(),
        status,
    }
}

#[test]
fn accepted_vm_reports_are_applied_and_every_report_is_logged() {
    use crate::wire::ReportStatus;
    let s = Setup::populated();
    let c = &s.control;
    c.add_endpoint(endpoint(100, "02:00:00:00:00:0a", Some("10.2.0.5"), "vm0")).unwrap();
    c.bind_port("vm1", PortBind { vni: 100 }).unwrap();
    c.notify_address_migration(notify(100, "10.1.0.5", None, "vm0")).unwrap();
    let before = c.snapshot().generation;
    let fake = &s.runtime.fake;
    fake.push_address_report(report("vm0", [10, 2, 0, 5], [10, 1, 0, 5], [10, 2, 0, 5], ReportStatus::Accepted));
    fake.push_address_report(report("vm1", [10, 2, 0, 5], [10, 1, 0, 5], [10, 2, 0, 5], ReportStatus::PostMigrationIpOnOtherPort));
    // Accepted by a worker, but the configuration it judged on is gone: refused here.
    fake.push_address_report(report("vm0", [10, 2, 0, 5], [10, 1, 0, 77], [10, 2, 0, 5], ReportStatus::Accepted));
    assert_eq!(c.apply_address_reports(), 3);
    assert_eq!(c.snapshot().generation, before + 1, "one commit");
    assert_eq!(c.address_migrations(), [migration([10, 1, 0, 5], Some([10, 2, 0, 5]), "vm0", AddressMigrationSource::VmReport)]);
    let log = c.address_report_log();
    assert_eq!(log.iter().map(|r| r.outcome).collect::<Vec<_>>(), [AddressReportOutcome::Applied, AddressReportOutcome::Refused, AddressReportOutcome::Refused]);
    assert_eq!(log[0].generation, Some(before + 1));
    assert_eq!(log[1].status, "post_migration_ip_on_other_port");
    assert_eq!(log[1].error.as_deref(), Some("the post-migration IP 10.2.0.5 is bound to port vm0, not vm1"));
    assert_eq!(
        log[2].error.as_deref(),
        Some("the primary IP 10.1.0.77 is not registered in network 100 (the configuration changed after the switch accepted it)")
    );
    // The same report again changes nothing.
    fake.push_address_report(report("vm0", [10, 2, 0, 5], [10, 1, 0, 5], [10, 2, 0, 5], ReportStatus::Accepted));
    c.apply_address_reports();
    assert_eq!(c.snapshot().generation, before + 1);
    assert_eq!(c.address_report_log().last().unwrap().outcome, AddressReportOutcome::InEffect);
}

#[test]
fn vm_reports_wait_while_an_upgrade_pauses_changes() {
    use crate::wire::ReportStatus;
    let s = Setup::populated();
    let c = &s.control;
    c.add_endpoint(endpoint(100, "02:00:00:00:00:0a", Some("10.2.0.5"), "vm0")).unwrap();
    c.notify_address_migration(notify(100, "10.1.0.5", None, "vm0")).unwrap();
    s.runtime.fake.push_address_report(report("vm0", [10, 2, 0, 5], [10, 1, 0, 5], [10, 2, 0, 5], ReportStatus::Accepted));
    c.pause();
    assert_eq!(c.apply_address_reports(), 0, "left in the workers' queue");
    c.resume();
    assert_eq!(c.apply_address_reports(), 1);
    assert_eq!(c.address_migrations()[0].post_migration_ip, Some([10, 2, 0, 5].into()));
}
