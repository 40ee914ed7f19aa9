//! The versioned switching-unit table: one atomic pointer for the VM-side ports
//! and one for the uplink ports. Workers re-read them only when the generation
//! moved, and announce a quiescent state once per run-loop iteration; a replaced
//! unit is freed by the control plane once every worker has announced a
//! generation at least as new as the swap (quiescent-state-based reclamation),
//! so a worker never frees a table and never takes a lock.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use crossbeam::utils::CachePadded;

use super::{Side, SwitchingUnit, WorkerLocal};
use crate::pipeline::{Burst, PacketBuf, Stage};

/// A shared pointer to a published unit.
pub type UnitRef<P> = Arc<dyn SwitchingUnit<P>>;

/// What a worker announced last: the generation it has loaded, or `OFFLINE`.
type Announcement = Arc<CachePadded<AtomicU64>>;
const OFFLINE: u64 = u64::MAX;

/// The two bindings, VM side and uplink side, and the retired units waiting
/// for every worker to pass a quiescent state.
pub struct UnitTable<P> {
    vm: ArcSwap<UnitRef<P>>,
    uplink: ArcSwap<UnitRef<P>>,
    /// Bumped after every swap; workers compare it once per loop.
    generation: AtomicU64,
    /// Control-plane side only: workers never touch these locks.
    readers: Mutex<Vec<Announcement>>,
    retired: Mutex<Vec<(u64, UnitRef<P>)>>,
}

impl<P: PacketBuf> UnitTable<P> {
    /// Both sides bound to `unit`.
    pub fn new(unit: UnitRef<P>) -> Self {
        UnitTable {
            vm: ArcSwap::from_pointee(unit.clone()),
            uplink: ArcSwap::from_pointee(unit),
            generation: AtomicU64::new(1),
            readers: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// The unit bound to `side` now.
    pub fn active(&self, side: Side) -> UnitRef<P> {
        UnitRef::clone(&self.slot(side).load())
    }

    /// Binds `side` to `unit` without pausing any worker; the unit it replaces
    /// is freed once no worker can still be using it.
    pub fn publish(&self, side: Side, unit: UnitRef<P>) {
        let old = self.slot(side).swap(Arc::new(unit));
        // Release: a worker that sees the new generation also sees the new pointer.
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.lock_retired().push((generation, Arc::unwrap_or_clone(old)));
        self.reclaim();
    }

    /// Binds both sides, VM side first (seed 000 step 3 order).
    pub fn publish_both(&self, unit: UnitRef<P>) {
        self.publish(Side::Vm, unit.clone());
        self.publish(Side::Uplink, unit);
    }

    /// Frees retired units that every worker has moved past. Returns how many
    /// are still waiting.
    pub fn reclaim(&self) -> usize {
        let oldest_announced = self
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .min()
            .unwrap_or(OFFLINE);
        let mut retired = self.lock_retired();
        retired.retain(|(generation, _)| *generation > oldest_announced);
        retired.len()
    }

    /// A worker's stage for this table. `side_of_port[port id]` says which
    /// binding a burst from that port uses (ports missing there use the VM side).
    pub fn stage(self: &Arc<Self>, side_of_port: Vec<Side>, local: WorkerLocal) -> UnitStage<P> {
        let seen = self.generation.load(Ordering::Acquire);
        let announcement: Announcement = Arc::new(CachePadded::new(AtomicU64::new(seen)));
        self.readers.lock().unwrap_or_else(|e| e.into_inner()).push(announcement.clone());
        UnitStage {
            vm: self.active(Side::Vm),
            uplink: self.active(Side::Uplink),
            table: self.clone(),
            seen,
            announcement,
            side_of_port,
            local,
        }
    }

    fn slot(&self, side: Side) -> &ArcSwap<UnitRef<P>> {
        match side {
            Side::Vm => &self.vm,
            Side::Uplink => &self.uplink,
        }
    }

    fn lock_retired(&self) -> std::sync::MutexGuard<'_, Vec<(u64, UnitRef<P>)>> {
        self.retired.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pipeline stage through which a worker runs the active units.
pub struct UnitStage<P> {
    table: Arc<UnitTable<P>>,
    /// The worker's own references, replaced when the generation moves.
    vm: UnitRef<P>,
    uplink: UnitRef<P>,
    seen: u64,
    announcement: Announcement,
    side_of_port: Vec<Side>,
    local: WorkerLocal,
}

impl<P: PacketBuf> Stage<P> for UnitStage<P> {
    fn name(&self) -> &'static str {
        "switching-unit"
    }

    fn process(&mut self, burst: &mut Burst<P>) {
        let side = self.side_of_port.get(burst.in_port().index()).copied().unwrap_or(Side::Vm);
        let unit = match side {
            Side::Vm => &self.vm,
            Side::Uplink => &self.uplink,
        };
        unit.process(side, burst, &mut self.local);
    }

    /// Loads new bindings if the generation moved, then announces it: from here
    /// on this worker holds no unit older than that generation.
    fn quiescent(&mut self, now: u64) {
        self.local.now = now;
        let generation = self.table.generation.load(Ordering::Acquire);
        if generation != self.seen {
            self.vm = self.table.active(Side::Vm);
            self.uplink = self.table.active(Side::Uplink);
            self.seen = generation;
            self.announcement.store(generation, Ordering::Release);
        }
    }
}

impl<P> Drop for UnitStage<P> {
    fn drop(&mut self) {
        self.announcement.store(OFFLINE, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::pipeline::{BytesPacket, PortId, Verdict};
    use crate::unit::LearnQueue;

    /// Forwards everything to `out`; sets `freed` when dropped.
    struct Fixed {
        out: u16,
        freed: Arc<AtomicBool>,
    }

    impl SwitchingUnit<BytesPacket> for Fixed {
        fn id(&self) -> &str {
            "fixed"
        }
        fn version(&self) -> &str {
            "1"
        }
        fn generation(&self) -> u64 {
            u64::from(self.out)
        }
        fn process(&self, _: Side, burst: &mut Burst<BytesPacket>, _: &mut WorkerLocal) {
            burst.decide_all(Verdict::Forward(PortId(self.out)));
        }
    }

    impl Drop for Fixed {
        fn drop(&mut self) {
            self.freed.store(true, Ordering::SeqCst);
        }
    }

    fn fixed(out: u16) -> (UnitRef<BytesPacket>, Arc<AtomicBool>) {
        let freed = Arc::new(AtomicBool::new(false));
        (Arc::new(Fixed { out, freed: freed.clone() }), freed)
    }

    fn local() -> WorkerLocal {
        WorkerLocal::new(Arc::new(LearnQueue::new(4)), 1000, 1)
    }

    fn out_port(stage: &mut UnitStage<BytesPacket>, in_port: u16) -> Verdict {
        let mut burst = Burst::new(PortId(in_port));
        burst.push(BytesPacket::new(&[0; 14])).unwrap();
        stage.process(&mut burst);
        burst.verdicts()[0]
    }

    #[test]
    fn a_replaced_unit_is_freed_only_after_every_worker_passed_a_quiescent_state() {
        let (first, first_freed) = fixed(1);
        let table = Arc::new(UnitTable::new(first));
        // Port 0 is a VM port, port 1 the uplink.
        let mut a = table.stage(vec![Side::Vm, Side::Uplink], local());
        let mut b = table.stage(vec![Side::Vm, Side::Uplink], local());
        let (second, _) = fixed(2);
        table.publish_both(second);
        assert_eq!(table.reclaim(), 2, "both workers may still use the old unit");
        assert_eq!(out_port(&mut a, 0), Verdict::Forward(PortId(1)), "until its quiescent state a worker keeps its unit");
        a.quiescent(0);
        assert_eq!(out_port(&mut a, 0), Verdict::Forward(PortId(2)));
        assert_eq!(table.reclaim(), 2);
        assert!(!first_freed.load(Ordering::SeqCst));
        b.quiescent(0);
        assert_eq!(table.reclaim(), 0);
        assert!(first_freed.load(Ordering::SeqCst), "freed by reclaim, on the control side");
    }

    #[test]
    fn sides_are_switched_separately_and_stopped_workers_do_not_hold_back_reclaim() {
        let (first, first_freed) = fixed(1);
        let table = Arc::new(UnitTable::new(first));
        let mut stage = table.stage(vec![Side::Vm, Side::Uplink], local());
        let (second, _) = fixed(2);
        table.publish(Side::Vm, second);
        stage.quiescent(0);
        assert_eq!(out_port(&mut stage, 0), Verdict::Forward(PortId(2)), "VM side switched");
        assert_eq!(out_port(&mut stage, 1), Verdict::Forward(PortId(1)), "uplink still on the old unit");
        assert_eq!(table.active(Side::Uplink).generation(), 1);
        drop(stage);
        let (third, _) = fixed(3);
        table.publish(Side::Uplink, third);
        assert_eq!(table.reclaim(), 0);
        assert!(first_freed.load(Ordering::SeqCst));
    }
}
