//! The migration state machine (`migration::Migration::on`) driven by event sequences from the
//! input, each accepted event published to the buffer-or-forward stage as a worker sees it, with frames
//! for the VM in between: zero loss (every frame passes, is held then released in order, or is dropped
//! under a named reason when the hold limit is reached) and the phase rules.
use std::net::Ipv4Addr;
use std::sync::Arc;

use arbitrary::Unstructured;

use switchyard::vm_migration::{
    EventRefused, Handling, HoldEntry, HoldLimits, HoldShared, Migration, MigrationEvent, MigrationStage, Phase, Role,
    Transition, Unchanged, VmKey,
};
use switchyard::pipeline::{Burst, BytesPacket, PacketBuf, PortId, Side, Stage, Verdict, BURST_SIZE};
use switchyard::wire::MacAddr;

const VM: VmKey = VmKey { vni: 100, mac: MacAddr([2, 0, 0, 0, 0, 0x0a]) };
const VM_PORT: PortId = PortId(0);
const HELD_PACKETS: usize = 8;
const MAX_STEPS: usize = 64;

/// Fuzz body `migration`: the role, then steps of (event or frames).
pub fn migration(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(role) = u.choose(&[Role::Source, Role::Destination]).copied() else { return };
    let mut migration = Migration {
        vm: VM,
        ip: None,
        source: Ipv4Addr::new(192, 0, 2, 1),
        destination: Ipv4Addr::new(192, 0, 2, 2),
        role,
        phase: Phase::Started,
        port: Some("vm0".into()),
        history: vec![(Phase::Started, 0)],
    };
    let shared = Arc::new(HoldShared::new(HoldLimits { packets: HELD_PACKETS, bytes: 1 << 20 }));
    let mut stage = MigrationStage::new(shared.clone(), vec![Side::Vm, Side::Uplink], Arc::default());
    let mut frames = Frames::default();
    publish(&shared, &migration);
    for now in 1..=MAX_STEPS as u64 {
        let Ok(step) = u.int_in_range(0u8..=7) else { break };
        stage.quiescent(now);
        if let Some(&event) = MigrationEvent::ALL.get(usize::from(step)) {
            let before = migration.phase;
            let result = migration.on(event, now);
            check_transition(before, event, &result, &migration, now);
            publish(&shared, &migration);
            stage.quiescent(now);
            frames.release(&mut stage);
        } else {
            frames.send(&mut stage, usize::from(step) - 4);
        }
    }
    // The VM runs somewhere in the end: everything held goes on.
    migration.phase = Phase::Completed;
    migration.role = Role::Source;
    publish(&shared, &migration);
    stage.quiescent(MAX_STEPS as u64 + 1);
    frames.release(&mut stage);
    assert_eq!(frames.sent, frames.passed + frames.dropped, "frames lost: {frames:?}");
}

fn publish(shared: &HoldShared, migration: &Migration) {
    let entry = HoldEntry { handling: migration.handling(), role: migration.role };
    shared.publish([(migration.vm, entry)], vec![Some(VM.vni), None]);
}

fn check_transition(before: Phase, event: MigrationEvent, result: &Result<Transition, EventRefused>, after: &Migration, now: u64) {
    match result {
        Ok(Transition::Moved { from, to }) => {
            assert_eq!((*from, *to, after.phase), (before, after.phase, *to));
            assert!(*to > *from || *to == Phase::Aborted, "{from:?} -> {to:?} goes back");
            assert_eq!(after.history.last(), Some(&(*to, now)));
        }
        Ok(Transition::Unchanged(kind)) => {
            assert_eq!(after.phase, before, "an unchanged migration changed");
            assert_eq!(*kind == Unchanged::Duplicate, MigrationEvent::ALL.iter().position(|e| *e == event) == Some(before as usize));
        }
        Err(EventRefused::AlreadyAborted { .. }) => assert_eq!(before, Phase::Aborted),
        Err(EventRefused::AlreadyCompleted { .. }) => assert_eq!((before, event), (Phase::Completed, MigrationEvent::Aborted)),
    }
    if after.phase == Phase::Aborted {
        assert_eq!(after.handling(), Handling::Pass, "an aborted migration holds nothing");
    }
}

/// Frames to the VM, numbered; what became of them.
#[derive(Debug, Default)]
struct Frames {
    sent: u32,
    passed: u32,
    dropped: u32,
    /// The number of the last frame that went on: frames for the VM never overtake each other.
    last_passed: Option<u32>,
}

impl Frames {
    /// `count` frames from a VM port to the VM (local switching) in one burst.
    fn send(&mut self, stage: &mut MigrationStage<BytesPacket>, count: usize) {
        let mut burst = Burst::new(VM_PORT);
        for _ in 0..count.min(BURST_SIZE) {
            let mut bytes = [0u8; 60];
            bytes[0..6].copy_from_slice(&VM.mac.0);
            bytes[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x0b]);
            bytes[12..14].copy_from_slice(&[0x08, 0x00]);
            bytes[56..60].copy_from_slice(&self.sent.to_be_bytes());
            self.sent += 1;
            let _ = burst.push(BytesPacket::new(&bytes));
        }
        stage.process(&mut burst);
        self.take(&mut burst);
    }

    fn release(&mut self, stage: &mut MigrationStage<BytesPacket>) {
        let mut burst = Burst::new(VM_PORT);
        for _ in 0..HELD_PACKETS + 1 {
            if !stage.release(&mut burst) {
                break;
            }
            self.take(&mut burst);
        }
    }

    fn take(&mut self, burst: &mut Burst<BytesPacket>) {
        burst.drain(|packet, verdict| match verdict {
            Verdict::Pending => {
                let data = packet.data();
                let number = u32::from_be_bytes([data[56], data[57], data[58], data[59]]);
                assert!(self.last_passed.is_none_or(|last| number > last), "frame {number} overtook {:?}", self.last_passed);
                self.last_passed = Some(number);
                self.passed += 1;
            }
            Verdict::Drop(_) => self.dropped += 1,
            other => panic!("the migration stage gave a frame {other:?}"),
        });
    }
}
