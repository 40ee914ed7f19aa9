//! The migration information table (VM live migration): one entry per VM migrating to
//! or from this host, driven by the events a VM monitor hook sends. Pure state:
//! what each transition means for the data plane, the configuration and the
//! bulletin board is decided by the caller from the `Transition` it returns.
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use switchyard_model::Vni;
use switchyard_wire::MacAddr;

/// What the VM monitor reports (migration start, the source's stop
/// for the final copy, the destination running, the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationEvent {
    /// The VM starts moving from the source host to the destination host.
    Start,
    /// The source copy stopped for the final memory copy.
    Paused,
    /// The destination copy runs.
    Resumed,
    /// The migration is over; the source copy is gone.
    Completed,
    /// The migration failed; the VM stays on (or returns to) the source.
    Aborted,
}

impl MigrationEvent {
    pub const ALL: [MigrationEvent; 5] = [
        MigrationEvent::Start,
        MigrationEvent::Paused,
        MigrationEvent::Resumed,
        MigrationEvent::Completed,
        MigrationEvent::Aborted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MigrationEvent::Start => "start",
            MigrationEvent::Paused => "paused",
            MigrationEvent::Resumed => "resumed",
            MigrationEvent::Completed => "completed",
            MigrationEvent::Aborted => "aborted",
        }
    }

    pub fn named(name: &str) -> Option<MigrationEvent> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The phase this event leads to.
    fn phase(self) -> Phase {
        match self {
            MigrationEvent::Start => Phase::Started,
            MigrationEvent::Paused => Phase::Paused,
            MigrationEvent::Resumed => Phase::Resumed,
            MigrationEvent::Completed => Phase::Completed,
            MigrationEvent::Aborted => Phase::Aborted,
        }
    }
}

/// Where a migration is. `Started < Paused < Resumed < Completed`; `Aborted`
/// ends it from any phase before `Completed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Started,
    Paused,
    Resumed,
    Completed,
    Aborted,
}

impl Phase {
    pub fn is_over(self) -> bool {
        matches!(self, Phase::Completed | Phase::Aborted)
    }
}

/// This host's part in a migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The VM leaves this host.
    Source,
    /// The VM arrives on this host (the receiving-side forwarder).
    Destination,
}

/// What the data plane does with packets for the VM (and, at the destination,
/// with its gratuitous ARP/RARP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    /// Switched as usual: delivered, or relayed by the switching unit.
    Pass,
    /// Buffered in order, because no copy of the VM can receive them here now.
    Hold,
    /// At the destination once the VM runs there, while the source still
    /// relays: frames relayed by the source (outer source address `relay`) go
    /// through; every other frame for the VM is held until that stream has
    /// ended, so a sender that moved to the direct path cannot overtake its own
    /// frames still being relayed.
    HoldDirect { relay: Ipv4Addr },
}

/// The VM a migration moves: VNI + MAC (its identity on the board).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VmKey {
    pub vni: Vni,
    pub mac: MacAddr,
}

impl std::fmt::Display for VmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VM {} in network {}", self.mac, self.vni)
    }
}

/// One entry of the migration information table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub vm: VmKey,
    pub ip: Option<Ipv4Addr>,
    /// VTEP addresses of the source and destination hosts.
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    pub role: Role,
    pub phase: Phase,
    /// The VM port the VM uses on this host: at the source where it was, at the
    /// destination where it arrives.
    pub port: Option<String>,
    /// Phase changes so far, with when they happened (µs since the Unix epoch).
    pub history: Vec<(Phase, u64)>,
}

/// What an accepted event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The phase moved from `from` to `to`.
    Moved { from: Phase, to: Phase },
    /// Nothing: the event repeats the current phase, or is older than it (an
    /// out-of-order delivery, say `paused` after `resumed`).
    Unchanged(Unchanged),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unchanged {
    Duplicate,
    Stale,
}

impl Unchanged {
    pub fn name(self) -> &'static str {
        match self {
            Unchanged::Duplicate => "duplicate",
            Unchanged::Stale => "stale",
        }
    }
}

/// An event the migration cannot take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventRefused {
    #[error("the migration of {vm} was aborted; send start to migrate it again")]
    AlreadyAborted { vm: VmKey },
    #[error("the migration of {vm} is completed and cannot be aborted; migrate it back instead")]
    AlreadyCompleted { vm: VmKey },
}

impl Migration {
    pub fn handling(&self) -> Handling {
        match (self.role, self.phase) {
            // From the source's stop until the destination runs, no copy receives.
            (Role::Source, Phase::Paused) => Handling::Hold,
            // The destination copy receives nothing until it runs.
            (Role::Destination, Phase::Started | Phase::Paused) => Handling::Hold,
            // Until the control plane sees the relayed stream end.
            (Role::Destination, Phase::Resumed | Phase::Completed) => Handling::HoldDirect { relay: self.source },
            _ => Handling::Pass,
        }
    }

    /// Takes `event` at `now_us`. Later phases imply earlier ones (`resumed`
    /// without `paused` is a stop-and-copy the hook did not report), so an event
    /// may skip phases; an event for an earlier phase is stale and changes nothing.
    pub fn on(&mut self, event: MigrationEvent, now_us: u64) -> Result<Transition, EventRefused> {
        let to = event.phase();
        let from = self.phase;
        let unchanged = |kind| Ok(Transition::Unchanged(kind));
        match (from, to) {
            _ if from == to => unchanged(Unchanged::Duplicate),
            (Phase::Aborted, _) => Err(EventRefused::AlreadyAborted { vm: self.vm }),
            (Phase::Completed, Phase::Aborted) => Err(EventRefused::AlreadyCompleted { vm: self.vm }),
            (_, Phase::Aborted) => self.moved(from, to, now_us),
            _ if to < from => unchanged(Unchanged::Stale),
            _ => self.moved(from, to, now_us),
        }
    }

    fn moved(&mut self, from: Phase, to: Phase, now_us: u64) -> Result<Transition, EventRefused> {
        self.phase = to;
        self.history.push((to, now_us));
        Ok(Transition::Moved { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(role: Role) -> Migration {
        Migration {
            vm: VmKey { vni: 100, mac: MacAddr([2, 0, 0, 0, 0, 9]) },
            ip: None,
            source: Ipv4Addr::new(192, 0, 2, 1),
            destination: Ipv4Addr::new(192, 0, 2, 2),
            role,
            phase: Phase::Started,
            port: None,
            history: vec![(Phase::Started, 0)],
        }
    }

    fn run(role: Role, events: &[MigrationEvent]) -> (Migration, Vec<Result<Transition, EventRefused>>) {
        let mut m = migration(role);
        let results = events.iter().enumerate().map(|(i, &e)| m.on(e, i as u64 + 1)).collect();
        (m, results)
    }

    use MigrationEvent::*;

    #[test]
    fn the_normal_order_moves_through_every_phase() {
        let (m, results) = run(Role::Source, &[Paused, Resumed, Completed]);
        assert_eq!(
            results,
            vec![
                Ok(Transition::Moved { from: Phase::Started, to: Phase::Paused }),
                Ok(Transition::Moved { from: Phase::Paused, to: Phase::Resumed }),
                Ok(Transition::Moved { from: Phase::Resumed, to: Phase::Completed }),
            ]
        );
        assert_eq!(m.history.iter().map(|h| h.0).collect::<Vec<_>>(), [Phase::Started, Phase::Paused, Phase::Resumed, Phase::Completed]);
    }

    #[test]
    fn duplicates_and_late_events_change_nothing() {
        let (m, results) = run(Role::Destination, &[Paused, Paused, Resumed, Paused, Start, Resumed]);
        assert_eq!(results[1], Ok(Transition::Unchanged(Unchanged::Duplicate)));
        assert_eq!(results[3], Ok(Transition::Unchanged(Unchanged::Stale)));
        assert_eq!(results[4], Ok(Transition::Unchanged(Unchanged::Stale)));
        assert_eq!(results[5], Ok(Transition::Unchanged(Unchanged::Duplicate)));
        assert_eq!(m.phase, Phase::Resumed);
        assert_eq!(m.history.len(), 3);
    }

    #[test]
    fn later_events_imply_the_phases_they_skip() {
        let (m, results) = run(Role::Source, &[Completed]);
        assert_eq!(results[0], Ok(Transition::Moved { from: Phase::Started, to: Phase::Completed }));
        assert_eq!(m.phase, Phase::Completed);
    }

    #[test]
    fn abort_ends_any_phase_before_completed() {
        for prefix in [&[][..], &[Paused], &[Paused, Resumed]] {
            let mut events = prefix.to_vec();
            events.push(Aborted);
            let (m, results) = run(Role::Destination, &events);
            let from = m.history[m.history.len() - 2].0;
            assert_eq!(results.last(), Some(&Ok(Transition::Moved { from, to: Phase::Aborted })), "{prefix:?}");
            assert_eq!(m.handling(), Handling::Pass);
        }
        let (_, results) = run(Role::Source, &[Completed, Aborted]);
        assert!(matches!(results[1], Err(EventRefused::AlreadyCompleted { .. })));
        let (_, results) = run(Role::Source, &[Aborted, Resumed, Aborted]);
        assert!(matches!(results[1], Err(EventRefused::AlreadyAborted { .. })));
        assert_eq!(results[2], Ok(Transition::Unchanged(Unchanged::Duplicate)));
    }

    #[test]
    fn packets_are_held_while_no_copy_can_receive_them() {
        let phases = [Phase::Started, Phase::Paused, Phase::Resumed, Phase::Completed, Phase::Aborted];
        let held = |role| {
            phases.iter().filter(|&&phase| Migration { phase, ..migration(role) }.handling() == Handling::Hold).copied().collect::<Vec<_>>()
        };
        assert_eq!(held(Role::Source), [Phase::Paused]);
        assert_eq!(held(Role::Destination), [Phase::Started, Phase::Paused]);
        let running = Migration { phase: Phase::Resumed, ..migration(Role::Destination) };
        assert_eq!(running.handling(), Handling::HoldDirect { relay: running.source }, "direct frames wait for the relayed ones");
    }

    #[test]
    fn events_have_stable_names() {
        for event in MigrationEvent::ALL {
            assert_eq!(MigrationEvent::named(event.name()), Some(event));
        }
        assert_eq!(MigrationEvent::named("finished"), None);
    }
}
