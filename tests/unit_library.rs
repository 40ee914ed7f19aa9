//! The unit ABI with the real shared objects `make units` builds, without EAL:
//! loading, the stamp check, create / apply / export through JSON, and every
//! way a library can be refused.
mod common;

use std::net::Ipv4Addr;
use std::path::Path;

use switchyard::config::VtepConfig;
use switchyard::unit::c_abi::UnitLibrary;
use switchyard::overlay::{Underlay, UnitSetup, VmPort};
use switchyard::pipeline::PortId;
use switchyard::model::{Change, ConfigSnapshot, Network, RemoteEndpoint};
use switchyard::unit::{LoadError, LoadedUnit, SwitchingUnit, UnitCommand, UnitState};
use switchyard::wire::MacAddr;

fn setup() -> UnitSetup {
    let config = ConfigSnapshot {
        generation: 3,
        networks: vec![Network { vni: 100, name: "blue".into(), flood_vteps: vec![Ipv4Addr::new(192, 0, 2, 2)] }],
        ..Default::default()
    };
    UnitSetup {
        vm_ports: vec![VmPort { name: "vm0".into(), id: PortId(0) }],
        underlay: Some(Underlay {
            port: PortId(1),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            vtep: VtepConfig { address: Ipv4Addr::new(192, 0, 2, 1), prefix_len: 24, gateway: None, next_hop_mac: None, mtu: 1500 },
            gateway_role: None,
        }),
        ageing_ms: 300_000,
        state: UnitState { config, ..Default::default() },
    }
}

fn load(name: &str) -> Result<LoadedUnit, LoadError> {
    LoadedUnit::load(&common::unit_library(name), &serde_json::to_vec(&setup()).unwrap())
}

#[test]
fn v1_and_v2_describe_themselves_and_run_the_configuration_they_were_given() {
    for (name, version) in [("basic-v1", "1.0.0"), ("basic-v2", "2.0.0")] {
        let unit = load(name).unwrap();
        assert_eq!((unit.id(), unit.version()), ("basic", version));
        assert_eq!(unit.generation(), 3);
        assert_eq!(unit.export().unwrap(), setup().state, "{name} exports what it was created from");
        assert_eq!(SwitchingUnit::library(&unit).map(Path::to_path_buf), Some(common::unit_library(name)));
        let info = unit.info();
        assert_eq!(info["tables"]["networks"], 1, "{info}");
        assert_eq!(info.get("packets_by_side").is_some(), name == "basic-v2", "only v2 counts by side: {info}");
    }
}

#[test]
fn commands_cross_the_abi_as_json_and_refusals_come_back_as_text() {
    let unit = load("basic-v1").unwrap();
    let remote = RemoteEndpoint { vni: 100, mac: MacAddr([2, 0, 0, 0, 0, 9]), ip: None, vtep: Ipv4Addr::new(192, 0, 2, 2), source: Default::default() };
    unit.apply(&UnitCommand::Apply { generation: 4, changes: vec![Change::PutRemote(remote.clone())] }).unwrap();
    assert_eq!(unit.generation(), 4);
    assert_eq!(unit.export().unwrap().config.remotes, vec![remote]);
    assert_eq!(unit.info()["tables"]["macs"], 1);
    let stale = unit.apply(&UnitCommand::Apply { generation: 4, changes: vec![] }).unwrap_err();
    assert_eq!(stale, "generation 4 is not newer than the unit's generation 4");
    unit.housekeeping();
}

#[test]
fn a_garbled_setup_is_refused_with_the_units_reason() {
    let err = LoadedUnit::load(&common::unit_library("basic-v1"), b"{\"vm_ports\": 7}").err().unwrap();
    let text = err.to_string();
    assert!(text.starts_with("basic 1.0.0 from ") && text.contains("unreadable unit setup"), "{text}");
}

#[test]
fn every_bad_library_is_refused_with_a_clear_error() {
    let err = |name: &str| load(name).err().map(|e| e.to_string()).unwrap_or_default();
    let abi = err("faulty-abi-mismatch");
    assert!(abi.contains("was built for another unit ABI: ABI 2,") && abi.contains("where this daemon has ABI 1,"), "{abi}");
    let rejected = err("faulty-reject-config");
    assert!(rejected.contains("faulty 0.0.1 from") && rejected.contains("refused configuration generation 3"), "{rejected}");
    let unhealthy = load("faulty-unhealthy").unwrap();
    assert!(unhealthy.export().unwrap().config.networks.is_empty(), "exports another configuration than it was given");

    let missing = UnitLibrary::open(Path::new("/nonexistent/unit.so")).unwrap_err().to_string();
    assert!(missing.starts_with("cannot load /nonexistent/unit.so: "), "{missing}");
    let dir = common::scratch("unit_library");
    let text_file = dir.join("not-a-library.so");
    std::fs::write(&text_file, "hello").unwrap();
    let not_elf = UnitLibrary::open(&text_file).unwrap_err().to_string();
    assert!(not_elf.starts_with(&format!("cannot load {}: ", text_file.display())), "{not_elf}");
    let libz = Path::new("/lib/x86_64-linux-gnu/libz.so.1");
    let not_unit = UnitLibrary::open(libz).unwrap_err().to_string();
    assert!(not_unit.contains("is not a switchyard unit: it exports no switchyard_unit_abi"), "{not_unit}");
}
