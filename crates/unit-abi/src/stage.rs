//! The pipeline stage through which a worker runs the units bound to the VM
//! side and to the uplink, and follows them when an upgrade rebinds a side.
use std::sync::Arc;

use super::{Reader, Side, SwitchingUnit, UnitWorker, Versioned};
use switchyard_pipeline::{Burst, PacketBuf, Stage};

/// A unit and this worker's binding to it.
struct Bound<P: PacketBuf> {
    unit: Arc<dyn SwitchingUnit<P>>,
    worker: Box<dyn UnitWorker<P>>,
}

impl<P: PacketBuf> Bound<P> {
    fn new(unit: Arc<dyn SwitchingUnit<P>>, tsc_hz: u64) -> Self {
        let worker = unit.attach(tsc_hz);
        Bound { unit, worker }
    }
}

pub struct UnitStage<P: PacketBuf> {
    units: Arc<Versioned<dyn SwitchingUnit<P>>>,
    reader: Reader,
    vm: Bound<P>,
    uplink: Bound<P>,
    /// By port id: which binding a burst from that port uses (VM side if absent).
    side_of_port: Vec<Side>,
    tsc_hz: u64,
}

impl<P: PacketBuf> UnitStage<P> {
    pub fn new(units: Arc<Versioned<dyn SwitchingUnit<P>>>, side_of_port: Vec<Side>, tsc_hz: u64) -> Self {
        let reader = units.reader();
        UnitStage {
            vm: Bound::new(units.active(Side::Vm), tsc_hz),
            uplink: Bound::new(units.active(Side::Uplink), tsc_hz),
            units,
            reader,
            side_of_port,
            tsc_hz,
        }
    }

    /// Follows a side to the unit bound to it now. The old binding is dropped
    /// here, on the worker, before the new generation is announced: once every
    /// worker announced it, nothing of the old unit is in use and it may be
    /// destroyed and its library unloaded.
    fn rebind(&mut self, side: Side) {
        let unit = self.units.active(side);
        let bound = match side {
            Side::Vm => &mut self.vm,
            Side::Uplink => &mut self.uplink,
        };
        if !Arc::ptr_eq(&bound.unit, &unit) {
            *bound = Bound::new(unit, self.tsc_hz);
        }
    }
}

impl<P: PacketBuf> Stage<P> for UnitStage<P> {
    fn name(&self) -> &'static str {
        "switching-unit"
    }

    #[inline]
    fn process(&mut self, burst: &mut Burst<P>) {
        match self.side_of_port.get(burst.in_port().index()).copied().unwrap_or(Side::Vm) {
            Side::Vm => self.vm.worker.process(Side::Vm, burst),
            Side::Uplink => self.uplink.worker.process(Side::Uplink, burst),
        }
    }

    fn quiescent(&mut self, now: u64) {
        if let Some(generation) = self.reader.moved(&self.units) {
            self.rebind(Side::Vm);
            self.rebind(Side::Uplink);
            self.reader.announce(generation);
        }
        self.vm.worker.quiescent(now);
        self.uplink.worker.quiescent(now);
    }
}
