//! The intermediate switching unit (loaded in upgrade step 2): compiled into the
//! daemon, it carries traffic while the old unit is unloaded and the new one
//! loaded. Minimal on purpose: the vRouter's forwarding on one frozen table
//! version, built from the configuration in the database and the entries the
//! old unit had learned. It learns nothing and takes no configuration
//! commands: config requests are paused while it forwards.
use std::sync::Arc;

use serde_json::json;

use super::unit::{sizes, UnitSetup, VRouterWorker};
use super::vrouter::VRouter;
use switchyard_pipeline::{PacketBuf, Side};
use switchyard_unit_abi::{SwitchingUnit, UnitCommand, UnitState, UnitWorker, Versioned, WorkerLocal};

pub struct IntermediateUnit {
    /// One table version, never replaced: workers bind as to the vRouter's.
    tables: Arc<Versioned<VRouter>>,
    state: UnitState,
}

impl IntermediateUnit {
    pub const ID: &'static str = "intermediate";
    pub const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    pub fn new(setup: UnitSetup) -> Self {
        let tables = Arc::new(VRouter::new(setup.tables()));
        IntermediateUnit { tables: Arc::new(Versioned::new(tables)), state: setup.state }
    }
}

impl<P: PacketBuf + 'static> SwitchingUnit<P> for IntermediateUnit {
    fn id(&self) -> &str {
        Self::ID
    }
    fn version(&self) -> &str {
        Self::VERSION
    }
    fn generation(&self) -> u64 {
        self.state.config.generation
    }

    fn attach(&self, tsc_hz: u64) -> Box<dyn UnitWorker<P>> {
        Box::new(VRouterWorker::new(&self.tables, WorkerLocal::without_learning(tsc_hz)))
    }

    fn apply(&self, _command: &UnitCommand) -> Result<(), String> {
        Err("the intermediate unit takes no configuration commands (config requests are paused during an upgrade)".into())
    }

    fn export(&self) -> Result<UnitState, String> {
        Ok(self.state.clone())
    }

    fn housekeeping(&self) {}

    fn info(&self) -> serde_json::Value {
        json!({ "tables": sizes(&self.tables.active(Side::Vm)) })
    }
}
