//! Units across the shared-library boundary, both ways: `LoadedUnit` is a
//! library's unit seen by the daemon, `Exported` a Rust unit seen by the ABI
//! (what a unit crate exports with `export_unit!`). Commands and state cross
//! as JSON (docs/unit-abi.md).
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::{SwitchingUnit, UnitCommand, UnitState, UnitWorker};
use crate::c_abi::{ExportedUnit, ExportedWorker, LibraryError, LibraryUnit, LibraryWorker, UnitLibrary};
use switchyard_dpdk::Mbuf;
use switchyard_pipeline::{Burst, DropReason, Side, Verdict};

/// Why a library unit could not be put to work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Library(#[from] LibraryError),
    #[error("{id} {version} from {}: {reason}", path.display())]
    Refused { id: String, version: String, path: std::path::PathBuf, reason: String },
}

/// A unit created by a loaded library.
pub struct LoadedUnit {
    unit: LibraryUnit,
}

impl LoadedUnit {
    /// Loads `path` and creates its unit from `setup` (the JSON configuration blob).
    pub fn load(path: &Path, setup: &[u8]) -> Result<LoadedUnit, LoadError> {
        LoadedUnit::load_as(path, path, setup)
    }

    /// `load` from `load_from` (a checked file's `/proc/self/fd/N`), shown as `path`.
    pub fn load_as(load_from: &Path, path: &Path, setup: &[u8]) -> Result<LoadedUnit, LoadError> {
        let library = UnitLibrary::open_as(load_from, path)?;
        let unit = library.create(setup).map_err(|reason| LoadError::Refused {
            id: library.id().to_owned(),
            version: library.version().to_owned(),
            path: path.to_owned(),
            reason,
        })?;
        Ok(LoadedUnit { unit })
    }

    pub fn library(&self) -> &Arc<UnitLibrary> {
        self.unit.library()
    }
}

impl SwitchingUnit<Mbuf> for LoadedUnit {
    fn id(&self) -> &str {
        self.unit.library().id()
    }
    fn version(&self) -> &str {
        self.unit.library().version()
    }
    fn generation(&self) -> u64 {
        self.unit.generation()
    }

    fn attach(&self, tsc_hz: u64) -> Box<dyn UnitWorker<Mbuf>> {
        match self.unit.attach(tsc_hz) {
            Some(worker) => Box::new(worker),
            None => Box::new(RefusedAttach),
        }
    }

    fn apply(&self, command: &UnitCommand) -> Result<(), String> {
        let command = serde_json::to_vec(command).map_err(|e| format!("cannot encode the command: {e}"))?;
        self.unit.apply(&command)
    }

    fn export(&self) -> Result<UnitState, String> {
        serde_json::from_slice(&self.unit.export()).map_err(|e| format!("the unit exported an unreadable state: {e}"))
    }

    fn housekeeping(&self) {
        self.unit.housekeeping()
    }

    fn info(&self) -> serde_json::Value {
        let info = self.unit.info();
        serde_json::from_slice(&info).unwrap_or_else(|e| json!({ "error": format!("unreadable info from the unit: {e}") }))
    }

    fn library(&self) -> Option<&Path> {
        Some(self.unit.library().path())
    }
}

impl UnitWorker<Mbuf> for LibraryWorker {
    #[inline]
    fn process(&mut self, side: Side, burst: &mut Burst<Mbuf>) {
        LibraryWorker::process(self, side, burst)
    }
    fn quiescent(&mut self, now: u64) {
        LibraryWorker::quiescent(self, now)
    }
}

/// A library that would not give a worker a binding: its packets are dropped
/// under a name rather than lost.
struct RefusedAttach;

impl UnitWorker<Mbuf> for RefusedAttach {
    fn process(&mut self, _: Side, burst: &mut Burst<Mbuf>) {
        burst.decide_all(Verdict::Drop(DropReason::UnitFault));
    }
    fn quiescent(&mut self, _: u64) {}
}

/// A unit a library can export: a `SwitchingUnit` made from the JSON blob.
pub trait UnitFactory: SwitchingUnit<Mbuf> + Sized + 'static {
    const ID: &'static str;
    const VERSION: &'static str;
    fn create(setup: &[u8]) -> Result<Self, String>;
}

/// A `UnitFactory` behind the ABI.
pub struct Exported<U>(U);

/// A worker binding behind the ABI.
pub struct ExportedBinding(Box<dyn UnitWorker<Mbuf>>);

impl ExportedWorker for ExportedBinding {
    #[inline]
    fn process(&mut self, side: Side, burst: &mut Burst<Mbuf>) {
        self.0.process(side, burst)
    }
    fn quiescent(&mut self, now: u64) {
        self.0.quiescent(now)
    }
}

impl<U: UnitFactory> ExportedUnit for Exported<U> {
    type Worker = ExportedBinding;

    fn describe() -> (&'static str, &'static str) {
        (U::ID, U::VERSION)
    }
    fn create(setup: &[u8]) -> Result<Self, String> {
        U::create(setup).map(Exported)
    }
    fn apply(&self, command: &[u8]) -> Result<(), String> {
        let command = UnitCommand::decode(command)?;
        self.0.apply(&command)
    }
    fn export(&self) -> Vec<u8> {
        match self.0.export() {
            Ok(state) => serde_json::to_vec(&state).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
    fn info(&self) -> Vec<u8> {
        self.0.info().to_string().into_bytes()
    }
    fn generation(&self) -> u64 {
        self.0.generation()
    }
    fn housekeeping(&self) {
        self.0.housekeeping()
    }
    fn attach(&self, tsc_hz: u64) -> ExportedBinding {
        ExportedBinding(self.0.attach(tsc_hz))
    }
}

/// Exports `$unit` (a `UnitFactory`) as a switchyard unit library: the two
/// symbols of docs/unit-abi.md. Use once, in a `cdylib` crate.
#[macro_export]
macro_rules! export_unit {
    ($unit:ty) => {
        /// The ABI stamp, checked by the daemon before anything else.
        #[no_mangle]
        pub extern "C" fn switchyard_unit_abi() -> $crate::c_abi::AbiStamp {
            $crate::c_abi::AbiStamp::current()
        }

        /// The entry table.
        #[no_mangle]
        pub extern "C" fn switchyard_unit_entry() -> &'static $crate::c_abi::UnitEntry {
            static ENTRY: $crate::c_abi::UnitEntry =
                $crate::c_abi::entry::<$crate::Exported<$unit>>();
            &ENTRY
        }
    };
}
