//! The switching-unit ABI: how the daemon and a unit built as a shared library
//! (`cdylib`) talk. Plain data only: integers, byte strings (JSON), mbuf
//! pointers and verdict codes. Layout and rules: docs/unit-abi.md.
//!
//! A library exports two symbols. `switchyard_unit_abi` returns an `AbiStamp`,
//! checked against the daemon's before anything else is touched (its layout
//! never changes); `switchyard_unit_entry` returns the `UnitEntry` table.
mod export;
mod host;

pub use export::{entry, ExportedUnit, ExportedWorker};
pub use host::{LibraryError, LibraryUnit, LibraryWorker, UnitLibrary};

use std::ffi::c_void;

use dpdk_ffi as ffi;

use switchyard_pipeline::{DropReason, PortId, Side, Verdict, BURST_SIZE, MADE_PER_BURST};

/// Bumped whenever `UnitEntry`, `BurstIo` or `RawVerdict` change.
pub const UNIT_ABI_VERSION: u32 = 1;
pub const ABI_SYMBOL: &[u8] = b"switchyard_unit_abi\0";
pub const ENTRY_SYMBOL: &[u8] = b"switchyard_unit_entry\0";

/// What both sides must agree on before a unit is used.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiStamp {
    pub abi_version: u32,
    pub burst_size: u32,
    pub made_per_burst: u32,
    /// FNV-1a of the drop reason names in order: verdicts carry reasons by index.
    pub drop_reasons: u64,
}

impl AbiStamp {
    /// This build's stamp.
    pub fn current() -> AbiStamp {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for reason in DropReason::ALL {
            for &byte in reason.name().as_bytes().iter().chain(b"\n") {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        AbiStamp {
            abi_version: UNIT_ABI_VERSION,
            burst_size: BURST_SIZE as u32,
            made_per_burst: MADE_PER_BURST as u32,
            drop_reasons: hash,
        }
    }
}

/// A verdict as plain data.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawVerdict {
    pub kind: u8,
    /// The drop reason's index, for `KIND_DROP`.
    pub reason: u8,
    /// The output port, for `KIND_FORWARD`.
    pub port: u16,
}

const KIND_PENDING: u8 = 0;
const KIND_FORWARD: u8 = 1;
const KIND_DROP: u8 = 2;
const KIND_TO_CONTROL: u8 = 3;
const KIND_CONSUMED: u8 = 4;
const KIND_ABSORBED: u8 = 5;

impl RawVerdict {
    pub fn encode(verdict: Verdict) -> RawVerdict {
        let kind = |kind| RawVerdict { kind, reason: 0, port: 0 };
        match verdict {
            Verdict::Pending => kind(KIND_PENDING),
            Verdict::Forward(port) => RawVerdict { kind: KIND_FORWARD, reason: 0, port: port.0 },
            Verdict::Drop(reason) => RawVerdict { kind: KIND_DROP, reason: reason.index() as u8, port: 0 },
            Verdict::ToControl => kind(KIND_TO_CONTROL),
            Verdict::Consumed => kind(KIND_CONSUMED),
            Verdict::Absorbed => kind(KIND_ABSORBED),
        }
    }

    /// The verdict, or a `UnitFault` drop for codes this build does not know.
    pub fn decode(self) -> Verdict {
        let fault = Verdict::Drop(DropReason::UnitFault);
        match self.kind {
            KIND_PENDING => Verdict::Pending,
            KIND_FORWARD => Verdict::Forward(PortId(self.port)),
            KIND_DROP => DropReason::from_index(usize::from(self.reason)).map_or(fault, Verdict::Drop),
            KIND_TO_CONTROL => Verdict::ToControl,
            KIND_CONSUMED => Verdict::Consumed,
            KIND_ABSORBED => Verdict::Absorbed,
            _ => fault,
        }
    }
}

const SIDE_VM: u8 = 0;
const SIDE_UPLINK: u8 = 1;

fn encode_side(side: Side) -> u8 {
    match side {
        Side::Vm => SIDE_VM,
        Side::Uplink => SIDE_UPLINK,
    }
}

fn decode_side(side: u8) -> Side {
    if side == SIDE_UPLINK {
        Side::Uplink
    } else {
        Side::Vm
    }
}

/// One burst across the ABI. The daemon fills `count` received mbufs (and any
/// packets earlier stages made); the unit takes ownership of them, decides,
/// and hands every mbuf back in the same arrays (a null pointer for one it
/// kept), followed by the ones it made. Ownership is back with the daemon when
/// `process` returns.
#[repr(C)]
pub struct BurstIo {
    pub in_port: u16,
    pub side: u8,
    pub count: u16,
    pub made_count: u16,
    /// Packets the unit meant to make but could not (no mbuf).
    pub unmade: u32,
    pub mbufs: [*mut ffi::rte_mbuf; BURST_SIZE],
    pub verdicts: [RawVerdict; BURST_SIZE],
    pub made: [*mut ffi::rte_mbuf; MADE_PER_BURST],
    pub made_verdicts: [RawVerdict; MADE_PER_BURST],
}

impl BurstIo {
    fn boxed() -> Box<BurstIo> {
        Box::new(BurstIo {
            in_port: 0,
            side: SIDE_VM,
            count: 0,
            made_count: 0,
            unmade: 0,
            mbufs: [std::ptr::null_mut(); BURST_SIZE],
            verdicts: [RawVerdict::default(); BURST_SIZE],
            made: [std::ptr::null_mut(); MADE_PER_BURST],
            made_verdicts: [RawVerdict::default(); MADE_PER_BURST],
        })
    }
}

/// Where a unit writes bytes it returns (JSON, an error message): the daemon
/// copies them out during the call, so no allocation crosses the boundary.
#[repr(C)]
pub struct ByteSink {
    pub context: *mut c_void,
    pub write: unsafe extern "C" fn(context: *mut c_void, bytes: *const u8, len: usize),
}

/// The functions a unit library exports. Control-side calls (`create` to
/// `destroy`) come from one control thread at a time; `attach`, `process`,
/// `quiescent` and `detach` come from workers, each with its own worker handle.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UnitEntry {
    /// Writes `{"id": ..., "version": ...}`.
    pub describe: unsafe extern "C" fn(out: ByteSink),
    /// A unit from a configuration blob, or null with the reason written to `error`.
    pub create: unsafe extern "C" fn(setup: *const u8, len: usize, error: ByteSink) -> *mut c_void,
    /// Applies one configuration command; false with the reason written to `error`.
    pub apply: unsafe extern "C" fn(unit: *mut c_void, command: *const u8, len: usize, error: ByteSink) -> bool,
    /// Writes the unit's configuration and learned state.
    pub export: unsafe extern "C" fn(unit: *mut c_void, out: ByteSink),
    /// Writes table sizes and counters (a JSON object).
    pub info: unsafe extern "C" fn(unit: *mut c_void, out: ByteSink),
    pub generation: unsafe extern "C" fn(unit: *mut c_void) -> u64,
    pub housekeeping: unsafe extern "C" fn(unit: *mut c_void),
    /// Clears the unit's configuration and frees it; no worker is attached.
    pub destroy: unsafe extern "C" fn(unit: *mut c_void),
    pub attach: unsafe extern "C" fn(unit: *mut c_void, tsc_hz: u64) -> *mut c_void,
    pub process: unsafe extern "C" fn(worker: *mut c_void, burst: *mut BurstIo),
    pub quiescent: unsafe extern "C" fn(worker: *mut c_void, now: u64),
    pub detach: unsafe extern "C" fn(worker: *mut c_void),
}
