//! Layer 1: the coordinator's rewrite and views, the controller's tables, and
//! the agents' reconcile plan, without HTTP.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use super::controller::Controller;
use super::coordinator::{forwarding_view, gateway_view, rewrite, Coordinator, CoordinatorError, ViewKind};
use super::model::{Announce, Cloud, Entry, VmKey, VmRecord};
use super::reconcile::{plan, Action, Skip};
use super::store::MemoryStore;
use crate::model::{ConfigSnapshot, Network, RemoteEndpoint, RemoteSource, VmEndpoint};
use crate::wire::MacAddr;

const GA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const GB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const B1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
const B2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 22);

fn key(last: u8) -> VmKey {
    VmKey::new(100, MacAddr([2, 0, 0, 0, 0, last]))
}

fn at(vtep: Ipv4Addr) -> Announce {
    Announce { ip: Some(Ipv4Addr::new(10, 0, 0, 1)), vtep }
}

fn entry(last: u8, vtep: Ipv4Addr) -> Entry {
    Entry { vni: 100, mac: key(last).mac, ip: Some(Ipv4Addr::new(10, 0, 0, 1)), vtep }
}

fn two_clouds() -> Coordinator {
    let mut coordinator = Coordinator::open(MemoryStore::default()).unwrap();
    coordinator.register("a", GA).unwrap();
    coordinator.register("b", GB).unwrap();
    coordinator
}

#[test]
fn the_rewrite_puts_the_gateway_of_the_vms_cloud_in_place_of_its_compute_node() {
    let clouds: BTreeMap<String, Cloud> =
        [("b".to_string(), Cloud { name: "b".into(), gateway_vtep: GB })].into_iter().collect();
    let vm = VmRecord { vni: 100, mac: key(1).mac, ip: Some(Ipv4Addr::new(10, 0, 0, 1)), vtep: B1, cloud: "b".into() };
    assert_eq!(rewrite(&vm, &clouds), Some(entry(1, GB)));
    assert_eq!(rewrite(&VmRecord { cloud: "z".into(), ..vm.clone() }, &clouds), None, "no gateway known");
    let vms: BTreeMap<VmKey, VmRecord> = [(key(1), vm)].into_iter().collect();
    assert_eq!(gateway_view("b", &vms), vec![entry(1, B1)], "table 2: VM -> compute node");
    assert_eq!(gateway_view("a", &vms), vec![]);
    assert_eq!(forwarding_view("a", &vms, &clouds), vec![entry(1, GB)], "table 1: VM -> its cloud's gateway");
    assert_eq!(forwarding_view("b", &vms, &clouds), vec![], "a cloud's own VMs are not in its table 1");
}

#[test]
fn a_move_inside_a_cloud_changes_its_gateway_view_only() {
    let mut coordinator = two_clouds();
    coordinator.put_vm("b", key(1), at(B1)).unwrap();
    let (gateway, forwarding) =
        (coordinator.view(ViewKind::Gateway, "b").unwrap(), coordinator.view(ViewKind::Forwarding, "a").unwrap());
    assert_eq!((gateway.entries.clone(), forwarding.entries.clone()), (vec![entry(1, B1)], vec![entry(1, GB)]));
    coordinator.put_vm("b", key(1), at(B2)).unwrap();
    let moved = coordinator.view(ViewKind::Gateway, "b").unwrap();
    assert_eq!(moved.entries, vec![entry(1, B2)]);
    assert!(moved.revision > gateway.revision);
    assert_eq!(coordinator.view(ViewKind::Forwarding, "a").unwrap(), forwarding, "same revision: followers sleep on");
    // The same announcement again changes nothing at all.
    let revision = coordinator.revision();
    coordinator.put_vm("b", key(1), at(B2)).unwrap();
    assert_eq!(coordinator.revision(), revision);
    // A late withdrawal by another cloud removes nothing; the VM's own cloud's does.
    assert!(!coordinator.delete_vm("a", key(1)).unwrap().withdrawn);
    assert!(coordinator.delete_vm("b", key(1)).unwrap().withdrawn);
    assert_eq!(coordinator.view(ViewKind::Forwarding, "a").unwrap().entries, vec![]);
    // A new gateway VTEP: every other cloud's table 1 follows.
    coordinator.put_vm("b", key(2), at(B1)).unwrap();
    coordinator.register("b", Ipv4Addr::new(192, 0, 2, 29)).unwrap();
    assert_eq!(coordinator.view(ViewKind::Forwarding, "a").unwrap().entries, vec![entry(2, Ipv4Addr::new(192, 0, 2, 29))]);
}

#[test]
fn the_coordinator_refuses_unknown_clouds_and_bad_input_and_a_failed_commit_changes_nothing() {
    let store = MemoryStore::default();
    let mut coordinator = Coordinator::open(store.clone()).unwrap();
    coordinator.register("a", GA).unwrap();
    assert!(matches!(coordinator.put_vm("z", key(1), at(B1)), Err(CoordinatorError::UnknownCloud(_))));
    let bad = coordinator.put_vm("a", key(1), Announce { ip: None, vtep: Ipv4Addr::BROADCAST }).unwrap_err();
    assert!(matches!(&bad, CoordinatorError::Invalid(i) if i.field == "vtep"), "{bad}");
    assert!(matches!(coordinator.register("a b", GA), Err(CoordinatorError::Invalid(i)) if i.field == "cloud"));
    store.refuse.store(true, Ordering::Relaxed);
    assert!(matches!(coordinator.put_vm("a", key(1), at(B1)), Err(CoordinatorError::Store(_))));
    assert_eq!((coordinator.vms(), coordinator.revision()), (vec![], 1));
    store.refuse.store(false, Ordering::Relaxed);
    // A restart keeps clouds and VMs.
    coordinator.put_vm("a", key(1), at(B1)).unwrap();
    let reopened = Coordinator::open(store).unwrap();
    assert_eq!((reopened.vms(), reopened.clouds(), reopened.revision()), (coordinator.vms(), coordinator.clouds(), 2));
}

#[test]
fn the_controller_keeps_a_move_made_before_break_and_stores_table_1() {
    let store = MemoryStore::default();
    let mut controller = Controller::open(store.clone(), "b", GB).unwrap();
    controller.announce(key(1), at(B1)).unwrap();
    controller.announce(key(1), at(B2)).unwrap();
    let late = controller.withdraw(key(1), B1).unwrap();
    assert!(!late.withdrawn && late.vtep == Some(B2), "{late:?}");
    assert_eq!(controller.local()[0].vtep, B2);
    assert!(controller.withdraw(key(1), B2).unwrap().withdrawn);
    // Table 1: a new revision only when the entries differ.
    assert!(controller.follow(&[entry(3, GA)]).unwrap());
    let view = controller.remote_view();
    assert!(!controller.follow(&[entry(3, GA)]).unwrap());
    assert_eq!(controller.remote_view(), view);
    let reopened = Controller::open(store, "b", GB).unwrap();
    assert_eq!(reopened.remote_view(), view, "stored for compute nodes that come later");
}

fn switch(remotes: &[(Entry, RemoteSource)], endpoints: &[u8]) -> ConfigSnapshot {
    ConfigSnapshot {
        generation: 1,
        networks: vec![Network { vni: 100, name: "blue".into(), flood_vteps: vec![] }],
        endpoints: endpoints
            .iter()
            .map(|last| VmEndpoint { vni: 100, mac: key(*last).mac, ip: None, port: "vm0".into() })
            .collect(),
        remotes: remotes
            .iter()
            .map(|(e, source)| RemoteEndpoint { vni: e.vni, mac: e.mac, ip: e.ip, vtep: e.vtep, source: *source })
            .collect(),
        ports: vec![],
        address_migrations: vec![],
        storage: Default::default(),
    }
}

#[test]
fn reconcile_adds_what_is_missing_once_and_removes_only_its_own() {
    let operator = RemoteSource::Operator;
    let mut made = BTreeMap::new();
    // Missing: added; already there: nothing (idempotent).
    let wanted = [entry(1, GB)];
    assert_eq!(plan(&wanted, &switch(&[], &[]), &made).actions, vec![Action::Add(entry(1, GB))]);
    made.insert(key(1), entry(1, GB));
    assert_eq!(plan(&wanted, &switch(&[(entry(1, GB), operator)], &[]), &made), Default::default());
    // Wanted elsewhere: replaced; no longer wanted: removed.
    let there = switch(&[(entry(1, GB), operator)], &[]);
    assert_eq!(plan(&[entry(1, GA)], &there, &made).actions, vec![Action::Replace { old: entry(1, GB), new: entry(1, GA) }]);
    assert_eq!(plan(&[], &there, &made).actions, vec![Action::Remove(entry(1, GB))]);
    // Not made by the agent: left alone, whether wanted or not.
    let theirs = switch(&[(entry(2, B1), operator)], &[]);
    let left = plan(&[entry(2, GB)], &theirs, &BTreeMap::new());
    assert_eq!((left.actions, left.skipped), (vec![], vec![(key(2), Skip::NotMine)]));
    assert_eq!(plan(&[], &theirs, &BTreeMap::new()), Default::default());
    // Changed by someone else: theirs now. Removed by someone else and still wanted: added again.
    let changed = plan(&[], &switch(&[(entry(1, B2), operator)], &[]), &made);
    assert_eq!((changed.actions, changed.forget), (vec![], vec![key(1)]));
    assert_eq!(plan(&wanted, &switch(&[], &[]), &made).actions, vec![Action::Add(entry(1, GB))]);
    // A VM attached here, or a network the switch lacks: skipped.
    assert_eq!(plan(&[entry(4, GB)], &switch(&[], &[4]), &BTreeMap::new()).skipped, vec![(key(4), Skip::AttachedHere)]);
    let elsewhere = Entry { vni: 200, ..entry(5, GB) };
    assert_eq!(plan(&[elsewhere], &switch(&[], &[]), &BTreeMap::new()).skipped, vec![(elsewhere.key(), Skip::NoNetwork)]);
}
