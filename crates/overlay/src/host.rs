//! The vRouter units of a running switch: the versioned pair workers forward
//! through, and what any new unit is made from (the ports and the underlay,
//! which never change while the switch runs).
use std::sync::Arc;

use serde_json::{json, Value};

use super::unit::{UnitSetup, VRouterUnit};
use switchyard_pipeline::{PacketBuf, Side};
use switchyard_unit_abi::{SwitchingUnit, UnitCommand, UnitState, Versioned};

pub struct UnitHost<P: PacketBuf> {
    units: Arc<Versioned<dyn SwitchingUnit<P>>>,
    /// The setup every unit is created from, with an empty state.
    template: UnitSetup,
}

impl<P: PacketBuf + 'static> UnitHost<P> {
    /// Starts with the embedded vRouter unit built from `setup`.
    pub fn new(setup: UnitSetup) -> Self {
        let template = UnitSetup { state: UnitState::default(), ..setup.clone() };
        let unit: Arc<dyn SwitchingUnit<P>> = Arc::new(VRouterUnit::new(setup));
        UnitHost { units: Arc::new(Versioned::new(unit)), template }
    }

    /// The pair workers read.
    pub fn units(&self) -> &Arc<Versioned<dyn SwitchingUnit<P>>> {
        &self.units
    }

    /// The ports and underlay every unit is made for.
    pub fn template(&self) -> &UnitSetup {
        &self.template
    }

    /// A setup for a new unit starting from `state`.
    pub fn setup(&self, state: UnitState) -> UnitSetup {
        UnitSetup { state, ..self.template.clone() }
    }

    /// The distinct units bound now: one, except in the middle of an upgrade.
    pub fn bound(&self) -> Vec<Arc<dyn SwitchingUnit<P>>> {
        let (vm, uplink) = (self.units.active(Side::Vm), self.units.active(Side::Uplink));
        if Arc::ptr_eq(&vm, &uplink) {
            vec![vm]
        } else {
            vec![vm, uplink]
        }
    }

    /// Applies a configuration command to every bound unit.
    pub fn apply(&self, command: &UnitCommand) -> Result<(), String> {
        for unit in self.bound() {
            unit.apply(command).map_err(|e| format!("unit {} {}: {e}", unit.id(), unit.version()))?;
        }
        Ok(())
    }

    /// Gives every bound unit its housekeeping time and frees replaced ones.
    pub fn housekeeping(&self) {
        for unit in self.bound() {
            unit.housekeeping();
        }
        self.units.reclaim();
    }

    /// The underlay neighbours the VM-side unit learned, and the VTEPs its configuration names
    /// (remote entries, which on a gateway are table 2, and flood lists).
    pub fn neighbors_and_vteps(&self, with_vteps: bool) -> (Vec<(std::net::Ipv4Addr, switchyard_wire::MacAddr)>, Vec<std::net::Ipv4Addr>) {
        let unit = self.units.active(Side::Vm);
        if !with_vteps {
            return (unit.neighbors(), Vec::new());
        }
        let mut vteps: Vec<_> = unit.export().map_or_else(
            |_| Vec::new(),
            |s| s.config.remotes.iter().map(|r| r.vtep).chain(s.config.networks.iter().flat_map(|n| n.flood_vteps.clone())).collect(),
        );
        vteps.sort();
        vteps.dedup();
        (unit.neighbors(), vteps)
    }

    /// What the unit bound to `side` is: id, version, generation, library.
    pub fn describe(&self, side: Side) -> Value {
        let unit = self.units.active(side);
        json!({
            "id": unit.id(),
            "version": unit.version(),
            "generation": unit.generation(),
            "library": unit.library().map(|p| p.display().to_string()),
        })
    }

    /// `GET /v1/unit`: each side's unit, and the VM-side unit's tables and counters.
    pub fn info(&self) -> Value {
        let mut info = serde_json::Map::new();
        if let Value::Object(extra) = self.units.active(Side::Vm).info() {
            info = extra;
        }
        info.insert("vm".into(), self.describe(Side::Vm));
        info.insert("uplink".into(), self.describe(Side::Uplink));
        Value::Object(info)
    }
}
