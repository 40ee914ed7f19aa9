//! Unit libraries that fail on purpose, one fault per build (a cargo
//! feature), so every rollback path of an upgrade is tested with a real
//! shared object: `abi-mismatch`, `reject-config`, `unhealthy`. None of them
//! ever forwards: each is refused before traffic reaches it.
use switchyard_unit_abi::c_abi::{entry, AbiStamp, UnitEntry};
use switchyard_unit_abi::Mbuf;
use switchyard_overlay::UnitSetup;
use switchyard_unit_abi::{Burst, DropReason, Side, Verdict};
use switchyard_unit_abi::{Exported, SwitchingUnit, UnitCommand, UnitFactory, UnitState, UnitWorker};

pub struct Faulty {
    state: UnitState,
}

impl UnitFactory for Faulty {
    const ID: &'static str = "faulty";
    const VERSION: &'static str = "0.0.1";

    fn create(setup: &[u8]) -> Result<Self, String> {
        let setup = UnitSetup::decode(setup).map_err(|e| e.to_string())?;
        if cfg!(feature = "reject-config") {
            return Err(format!(
                "refused configuration generation {}: this unit accepts none (test fault)",
                setup.state.config.generation
            ));
        }
        Ok(Faulty { state: setup.state })
    }
}

impl SwitchingUnit<Mbuf> for Faulty {
    fn id(&self) -> &str {
        Self::ID
    }
    fn version(&self) -> &str {
        Self::VERSION
    }
    fn generation(&self) -> u64 {
        self.state.config.generation
    }
    fn attach(&self, _: u64) -> Box<dyn UnitWorker<Mbuf>> {
        Box::new(DropAll)
    }
    fn apply(&self, _: &UnitCommand) -> Result<(), String> {
        Err("the faulty unit takes no commands".into())
    }
    fn export(&self) -> Result<UnitState, String> {
        let mut state = self.state.clone();
        if cfg!(feature = "unhealthy") {
            // Forgets its networks: what a unit that misread its configuration would report.
            state.config.networks.clear();
        }
        Ok(state)
    }
    fn housekeeping(&self) {}
    fn info(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

struct DropAll;

impl UnitWorker<Mbuf> for DropAll {
    fn process(&mut self, _: Side, burst: &mut Burst<Mbuf>) {
        burst.decide_all(Verdict::Drop(DropReason::UnitFault));
    }
    fn quiescent(&mut self, _: u64) {}
}

/// The ABI stamp, wrong on purpose in the `abi-mismatch` build.
#[no_mangle]
pub extern "C" fn switchyard_unit_abi() -> AbiStamp {
    let stamp = AbiStamp::current();
    if cfg!(feature = "abi-mismatch") {
        AbiStamp { abi_version: stamp.abi_version + 1, ..stamp }
    } else {
        stamp
    }
}

#[no_mangle]
pub extern "C" fn switchyard_unit_entry() -> &'static UnitEntry {
    static ENTRY: UnitEntry = entry::<Exported<Faulty>>();
    &ENTRY
}
