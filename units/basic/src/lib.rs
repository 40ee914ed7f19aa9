//! `units/basic`: the vRouter switching unit built as a loadable library, in
//! two versions. Version 1 is the embedded vRouter as it is; version 2 adds an
//! observable improvement: it counts the packets each side hands to it, shown
//! as `packets_by_side` in `GET /v1/unit`. The Makefile builds both
//! (`target/units/basic-v1.so`, `target/units/basic-v2.so`).
use switchyard_unit_abi::Mbuf;
use switchyard_overlay::{UnitSetup, VRouterUnit};
use switchyard_unit_abi::{SwitchingUnit, UnitCommand, UnitFactory, UnitState, UnitWorker};

#[cfg(feature = "v2")]
mod side_counters;

pub struct Basic {
    vrouter: VRouterUnit,
    #[cfg(feature = "v2")]
    sides: side_counters::SideCounters,
}

impl UnitFactory for Basic {
    const ID: &'static str = "basic";
    const VERSION: &'static str = if cfg!(feature = "v2") { "2.0.0" } else { "1.0.0" };

    fn create(setup: &[u8]) -> Result<Self, String> {
        let setup = UnitSetup::decode(setup).map_err(|e| e.to_string())?;
        Ok(Basic {
            vrouter: VRouterUnit::new(setup),
            #[cfg(feature = "v2")]
            sides: Default::default(),
        })
    }
}

impl SwitchingUnit<Mbuf> for Basic {
    fn id(&self) -> &str {
        Self::ID
    }
    fn version(&self) -> &str {
        Self::VERSION
    }
    fn generation(&self) -> u64 {
        SwitchingUnit::<Mbuf>::generation(&self.vrouter)
    }

    #[cfg(not(feature = "v2"))]
    fn attach(&self, tsc_hz: u64) -> Box<dyn UnitWorker<Mbuf>> {
        self.vrouter.attach(tsc_hz)
    }

    #[cfg(feature = "v2")]
    fn attach(&self, tsc_hz: u64) -> Box<dyn UnitWorker<Mbuf>> {
        self.sides.attach(self.vrouter.attach(tsc_hz))
    }

    fn apply(&self, command: &UnitCommand) -> Result<(), String> {
        SwitchingUnit::<Mbuf>::apply(&self.vrouter, command)
    }

    fn export(&self) -> Result<UnitState, String> {
        SwitchingUnit::<Mbuf>::export(&self.vrouter)
    }

    fn housekeeping(&self) {
        SwitchingUnit::<Mbuf>::housekeeping(&self.vrouter)
    }

    fn info(&self) -> serde_json::Value {
        let info = SwitchingUnit::<Mbuf>::info(&self.vrouter);
        #[cfg(feature = "v2")]
        let info = {
            let mut info = info;
            info["packets_by_side"] = self.sides.totals();
            info
        };
        info
    }
}

switchyard_unit_abi::export_unit!(Basic);
