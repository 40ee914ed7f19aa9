//! The migration orchestrator with a fake data plane: events, the configuration
//! each transition commits, the stage's table it publishes, and bad events.
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use super::testing::FakeRuntime;
use super::board_agent::BoardAction;
use super::migration::RELAY_QUIET;
use super::*;
use crate::config::BoardConfig;
use crate::vm_migration::{Arrival, Handling, HoldLimits, HoldShared, Phase, Role, VmKey};
use crate::overlay::VmPort;
use crate::pipeline::{PortId, Side};
use crate::configdb::Store;
use crate::model::{RemoteEndpoint, RemoteSource, VmEndpoint};

const A: &str = "192.0.2.1";
const B: &str = "192.0.2.2";
const X: &str = "02:00:00:00:00:0a";

struct Host {
    _dir: tempfile::TempDir,
    control: Control,
    holding: Arc<HoldShared>,
}

/// A host with VTEP `vtep`, VM ports vm0 (id 0) and vm1 (id 1), network 100
/// with vm0 bound; VM X attached to vm0 when `with_x`.
fn host(vtep: &str, with_x: bool) -> Host {
    lingering_host(vtep, with_x, Duration::ZERO)
}

/// `host`, where finished migrations stay for `linger`.
fn lingering_host(vtep: &str, with_x: bool, linger: Duration) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let holding = Arc::new(HoldShared::new(HoldLimits { packets: 64, bytes: 1 << 20 }));
    let plane = MigrationPlane {
        holding: holding.clone(),
        vm_ports: vec![VmPort { name: "vm0".into(), id: PortId(0) }, VmPort { name: "vm1".into(), id: PortId(1) }],
        local_vtep: vtep.parse().unwrap(),
        linger,
        board: Some(BoardConfig {
            url: "http://127.0.0.1:9".into(),
            host: None,
            lease_ms: 30_000,
            auth: Default::default(),
        }),
    };
    let runtime = Arc::new(FakeRuntime::new().with_migration_plane(plane));
    let control = Control::new(Store::open(dir.path().join("config.redb")).unwrap(), runtime).unwrap();
    control.create_network(NetworkCreate { vni: 100, name: "blue".into(), flood_vteps: vec![] }).unwrap();
    control.bind_port("vm0", PortBind { vni: 100 }).unwrap();
    if with_x {
        let body = EndpointCreate { vni: 100, mac: X.into(), ip: Some("10.0.0.10".into()), port: "vm0".into() };
        control.add_endpoint(body).unwrap();
    }
    Host { _dir: dir, control, holding }
}

fn event(name: &str) -> MigrationEventBody {
    MigrationEventBody {
        event: name.into(),
        vni: 100,
        mac: X.into(),
        ip: None,
        source: None,
        destination: None,
        port: None,
    }
}

fn start() -> MigrationEventBody {
    MigrationEventBody { source: Some(A.into()), destination: Some(B.into()), ..event("start") }
}

fn x() -> VmKey {
    VmKey { vni: 100, mac: X.parse().unwrap() }
}

impl Host {
    fn send(&self, body: MigrationEventBody) -> Result<EventReply, ApiError> {
        self.control.migration_event(body)
    }

    fn handling(&self) -> Option<Handling> {
        self.holding.table.active(Side::Vm).handling(x())
    }

    fn remote(&self) -> Option<RemoteEndpoint> {
        self.control.snapshot().remotes.iter().find(|r| r.mac == x().mac).cloned()
    }

    fn endpoint(&self) -> Option<VmEndpoint> {
        self.control.snapshot().endpoints.iter().find(|e| e.mac == x().mac).cloned()
    }
}

fn relay_to(vtep: &str) -> Option<RemoteEndpoint> {
    Some(RemoteEndpoint {
        vni: 100,
        mac: x().mac,
        ip: Some(Ipv4Addr::new(10, 0, 0, 10)),
        vtep: vtep.parse().unwrap(),
        source: RemoteSource::Migration,
    })
}

#[test]
fn the_source_holds_from_paused_and_relays_from_resumed() {
    let a = host(A, true);
    let reply = a.send(start()).unwrap();
    assert_eq!((reply.outcome, reply.migration.role, reply.migration.port.as_deref()), ("moved", Role::Source, Some("vm0")));
    assert_eq!(a.handling(), Some(Handling::Pass), "the VM still runs at the source");
    a.send(event("paused")).unwrap();
    assert_eq!(a.handling(), Some(Handling::Hold));
    assert!(a.endpoint().is_some());
    a.send(event("resumed")).unwrap();
    assert_eq!(a.handling(), Some(Handling::Pass));
    assert_eq!(a.endpoint(), None, "the VM left");
    assert_eq!(a.remote(), relay_to(B), "its frames go on to the destination");
    assert_eq!(a.holding.table.active(Side::Vm).port_vni(PortId(0)), Some(100));
    let reply = a.send(event("completed")).unwrap();
    assert_eq!(reply.migration.phase, Phase::Completed);
    // Forgotten after the linger time (zero here): the relay entry becomes the board's.
    a.control.migration_tick();
    assert_eq!(a.handling(), None);
    assert_eq!(a.remote().map(|r| r.source), Some(RemoteSource::Board));
    assert!(a.control.migration_list().is_empty());
}

#[test]
fn the_destination_holds_until_the_vm_runs_there() {
    let b = host(B, false);
    let reply = b.send(start()).unwrap();
    assert_eq!(reply.migration.role, Role::Destination);
    assert_eq!(b.handling(), Some(Handling::Hold));
    assert_eq!(b.remote().map(|r| (r.vtep.to_string(), r.source)), Some((A.into(), RemoteSource::Migration)));
    let error = b.send(event("resumed")).unwrap_err();
    assert_eq!(error.status(), 409);
    assert!(error.message().contains("give port"), "{}", error.message());
    assert_eq!(b.handling(), Some(Handling::Hold), "a refused event changes nothing");
    b.send(MigrationEventBody { port: Some("vm1".into()), ..event("resumed") }).unwrap();
    let relayed_only = Some(Handling::HoldDirect { relay: A.parse().unwrap() });
    assert_eq!(b.handling(), relayed_only, "the VM runs here; direct frames wait for the source's relayed ones");
    assert_eq!(b.remote(), None);
    assert_eq!(b.endpoint().map(|e| e.port), Some("vm1".into()));
    // Aborted after the VM ran here: it goes back to the source.
    b.send(event("aborted")).unwrap();
    assert_eq!(b.endpoint(), None);
    assert_eq!(b.remote().map(|r| (r.vtep.to_string(), r.source)), Some((A.into(), RemoteSource::Migration)));
}

#[test]
fn a_vm_does_not_resume_on_a_port_of_another_network() {
    let b = host(B, false);
    b.control.create_network(NetworkCreate { vni: 7, name: "seven".into(), flood_vteps: vec![] }).unwrap();
    b.control.bind_port("vm1", PortBind { vni: 7 }).unwrap();
    b.send(start()).unwrap();
    let error = b.send(MigrationEventBody { port: Some("vm1".into()), ..event("resumed") }).unwrap_err();
    assert_eq!((error.status(), error.field()), (409, Some("port")));
    assert_eq!(error.message(), "port vm1 is in network 7, not 100; a port's VM endpoints are all in its network");
    assert_eq!(b.endpoint(), None, "the VM was not attached to vm1");
    assert_eq!(b.handling(), Some(Handling::Hold), "a refused event changes nothing");
}

#[test]
fn a_vm_announcing_itself_at_the_destination_resumes_it() {
    let b = host(B, false);
    b.send(start()).unwrap();
    b.holding.arrivals.push(Arrival { vm: x(), port: PortId(1) }).unwrap();
    b.control.migration_tick();
    assert_eq!(b.control.migration("100", X).unwrap().phase, Phase::Resumed);
    assert_eq!(b.endpoint().map(|e| e.port), Some("vm1".into()));
    assert_eq!(b.handling(), Some(Handling::HoldDirect { relay: A.parse().unwrap() }));
}

#[test]
fn an_abort_before_resumed_gives_the_vm_back_to_the_source() {
    let a = host(A, true);
    a.send(start()).unwrap();
    a.send(event("paused")).unwrap();
    a.send(event("aborted")).unwrap();
    assert_eq!(a.handling(), Some(Handling::Pass), "held packets go to the source VM again");
    assert_eq!(a.endpoint().map(|e| e.port), Some("vm0".into()));
    assert_eq!(a.remote(), None);
    // After resumed, the source takes the VM back.
    let a = host(A, true);
    for name in ["paused", "resumed", "aborted"] {
        if name == "paused" {
            a.send(start()).unwrap();
        }
        a.send(event(name)).unwrap();
    }
    assert_eq!(a.endpoint().map(|e| e.port), Some("vm0".into()));
    assert_eq!(a.remote(), None);
}

#[test]
fn repeated_and_late_events_are_answered_and_change_nothing() {
    let a = host(A, true);
    assert_eq!(a.send(start()).unwrap().outcome, "moved");
    assert_eq!(a.send(start()).unwrap().outcome, "duplicate");
    a.send(event("resumed")).unwrap();
    let generation = a.control.snapshot().generation;
    assert_eq!(a.send(event("paused")).unwrap().outcome, "stale");
    assert_eq!(a.send(event("resumed")).unwrap().outcome, "duplicate");
    assert_eq!(a.control.snapshot().generation, generation);
    assert_eq!(a.handling(), Some(Handling::Pass));
}

#[test]
fn bad_events_are_refused_with_the_field_at_fault() {
    let a = host(A, true);
    let refused = |body: MigrationEventBody| {
        let e = a.send(body).unwrap_err();
        (e.status(), e.field().map(str::to_string), e.message().to_string())
    };
    let (status, field, message) = refused(event("finished"));
    assert_eq!((status, field.as_deref()), (400, Some("event")));
    assert!(message.contains("start, paused, resumed, completed, aborted"), "{message}");
    assert_eq!(refused(event("paused")).0, 404, "no start yet");
    assert_eq!(refused(MigrationEventBody { destination: None, ..start() }).1.as_deref(), Some("destination"));
    let elsewhere = MigrationEventBody { source: Some("192.0.2.7".into()), ..start() };
    assert!(refused(elsewhere).2.contains("neither the source 192.0.2.7 nor the destination 192.0.2.2"));
    assert_eq!(refused(MigrationEventBody { source: Some(B.into()), ..start() }).1.as_deref(), Some("destination"));
    assert_eq!(refused(MigrationEventBody { vni: 0, ..start() }).1.as_deref(), Some("vni"));
    assert_eq!(refused(MigrationEventBody { mac: "ff:ff:ff:ff:ff:ff".into(), ..start() }).1.as_deref(), Some("mac"));
    assert_eq!(refused(MigrationEventBody { port: Some("uplink0".into()), ..start() }).1.as_deref(), Some("port"));
    let stranger = MigrationEventBody { mac: "02:00:00:00:00:0b".into(), ..start() };
    assert!(refused(stranger).2.contains("is not attached to this host"));
    // A second start elsewhere while one runs; an abort after completion.
    a.send(start()).unwrap();
    let other = MigrationEventBody { destination: Some("192.0.2.9".into()), ..start() };
    assert_eq!(refused(other).0, 409);
    a.send(event("completed")).unwrap();
    let (status, _, message) = refused(event("aborted"));
    assert_eq!(status, 409);
    assert!(message.contains("migrate it back"), "{message}");
    // The destination refuses a VM already attached there.
    let b = host(B, true);
    assert!(b.send(start()).unwrap_err().message().contains("already attached to port vm0"));
    assert!(b.control.migration_list().is_empty());
}

#[test]
fn the_destination_locks_the_board_record_until_the_end() {
    let (a, b) = (host(A, true), host(B, false));
    let (mut a_board, mut b_board) = (a.control.board_actions().unwrap(), b.control.board_actions().unwrap());
    assert!(b.control.board_actions().is_none(), "one agent takes the channel");
    let next = |board: &mut tokio::sync::mpsc::UnboundedReceiver<BoardAction>| board.try_recv().ok();
    for event in [start(), event("paused")] {
        a.send(event.clone()).unwrap();
        b.send(event).unwrap();
    }
    assert!(matches!(next(&mut b_board), Some(BoardAction::Lock(vm)) if vm == x()), "start at the destination");
    b.send(MigrationEventBody { port: Some("vm1".into()), ..event("resumed") }).unwrap();
    b.send(event("completed")).unwrap();
    a.send(event("completed")).unwrap();
    assert!(matches!(next(&mut b_board), Some(BoardAction::Unlock { vm, back_at: None }) if vm == x()));
    assert!(next(&mut b_board).is_none(), "a repeated event asks nothing more");
    assert!(next(&mut a_board).is_none(), "the source leaves the board to the destination");

    // Aborted: the VM is reported back at the source before the unlock.
    let b = host(B, false);
    let mut b_board = b.control.board_actions().unwrap();
    b.send(start()).unwrap();
    b.send(event("aborted")).unwrap();
    assert!(matches!(next(&mut b_board), Some(BoardAction::Lock(_))));
    let back_at = Some((A.parse().unwrap(), None));
    assert!(matches!(next(&mut b_board), Some(BoardAction::Unlock { back_at: at, .. }) if at == back_at));
}

#[test]
fn direct_frames_wait_at_the_destination_until_the_relayed_stream_ends() {
    let b = lingering_host(B, false, Duration::from_secs(60));
    b.send(start()).unwrap();
    b.send(MigrationEventBody { port: Some("vm1".into()), ..event("resumed") }).unwrap();
    let relayed_only = Some(Handling::HoldDirect { relay: A.parse().unwrap() });
    std::thread::sleep(RELAY_QUIET * 2);
    b.control.migration_tick();
    assert_eq!(b.handling(), relayed_only, "a quiet relay ends nothing before completed");
    b.send(event("completed")).unwrap();
    // The source still relays: a frame came since the last look.
    for _ in 0..3 {
        b.holding.relayed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b.control.migration_tick();
        assert_eq!(b.handling(), relayed_only);
        std::thread::sleep(RELAY_QUIET / 2);
    }
    std::thread::sleep(RELAY_QUIET);
    b.control.migration_tick();
    assert_eq!(b.handling(), Some(Handling::Pass), "quiet for {RELAY_QUIET:?} after completed: the direct path opens");
}
