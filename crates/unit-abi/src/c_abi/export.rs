//! The library side of the unit ABI: `extern "C"` trampolines over a Rust unit.
//! A unit crate builds its `UnitEntry` with `entry::<U>()` (the
//! `export_unit!` macro does it), so no unit crate writes unsafe code.
use std::ffi::c_void;
use std::ptr::NonNull;

use super::{decode_side, BurstIo, ByteSink, RawVerdict, UnitEntry};
use switchyard_dpdk::Mbuf;
use switchyard_pipeline::{Burst, PortId, Side, Slot};

/// A unit implementation seen through plain data: what the trampolines call.
pub trait ExportedUnit: Send + Sync + Sized + 'static {
    type Worker: ExportedWorker;
    /// (id, version), readable before any unit exists.
    fn describe() -> (&'static str, &'static str);
    fn create(setup: &[u8]) -> Result<Self, String>;
    fn apply(&self, command: &[u8]) -> Result<(), String>;
    fn export(&self) -> Vec<u8>;
    fn info(&self) -> Vec<u8>;
    fn generation(&self) -> u64;
    fn housekeeping(&self);
    fn attach(&self, tsc_hz: u64) -> Self::Worker;
}

pub trait ExportedWorker: Send + 'static {
    fn process(&mut self, side: Side, burst: &mut Burst<Mbuf>);
    fn quiescent(&mut self, now: u64);
}

/// The entry table for `U`.
pub const fn entry<U: ExportedUnit>() -> UnitEntry {
    UnitEntry {
        describe: describe::<U>,
        create: create::<U>,
        apply: apply::<U>,
        export: export::<U>,
        info: info::<U>,
        generation: generation::<U>,
        housekeeping: housekeeping::<U>,
        destroy: destroy::<U>,
        attach: attach::<U>,
        process: process::<U>,
        quiescent: quiescent::<U>,
        detach: detach::<U>,
    }
}

/// A worker handle: the unit's worker and the burst it rebuilds each call.
struct WorkerHandle<W> {
    worker: W,
    burst: Burst<Mbuf>,
}

fn write(sink: &ByteSink, bytes: &[u8]) {
    // SAFETY: the daemon passes a sink whose `write` accepts `context` and any
    // byte range for the duration of the call (host.rs `collect`).
    unsafe { (sink.write)(sink.context, bytes.as_ptr(), bytes.len()) }
}

/// # Safety
/// `unit` is a pointer `create::<U>` returned and `destroy` has not freed.
unsafe fn unit<'a, U>(unit: *mut c_void) -> &'a U {
    // SAFETY: per the contract above; control-side calls only read through `&U`.
    unsafe { &*unit.cast::<U>() }
}

/// # Safety
/// `bytes` is valid for `len` bytes for the duration of the call (or `len` is 0).
unsafe fn slice<'a>(bytes: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: per the contract above.
    unsafe { std::slice::from_raw_parts(bytes, len) }
}

unsafe extern "C" fn describe<U: ExportedUnit>(out: ByteSink) {
    let (id, version) = U::describe();
    write(&out, serde_json::json!({ "id": id, "version": version }).to_string().as_bytes());
}

unsafe extern "C" fn create<U: ExportedUnit>(setup: *const u8, len: usize, error: ByteSink) -> *mut c_void {
    // SAFETY: the daemon passes its setup blob of `len` bytes.
    match U::create(unsafe { slice(setup, len) }) {
        Ok(unit) => Box::into_raw(Box::new(unit)).cast(),
        Err(reason) => {
            write(&error, reason.as_bytes());
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn apply<U: ExportedUnit>(unit_ptr: *mut c_void, command: *const u8, len: usize, error: ByteSink) -> bool {
    // SAFETY: `unit_ptr` came from `create` (ABI contract); the command is `len` bytes.
    let (unit, command) = unsafe { (unit::<U>(unit_ptr), slice(command, len)) };
    match unit.apply(command) {
        Ok(()) => true,
        Err(reason) => {
            write(&error, reason.as_bytes());
            false
        }
    }
}

unsafe extern "C" fn export<U: ExportedUnit>(unit_ptr: *mut c_void, out: ByteSink) {
    // SAFETY: `unit_ptr` came from `create` (ABI contract).
    write(&out, &unsafe { unit::<U>(unit_ptr) }.export());
}

unsafe extern "C" fn info<U: ExportedUnit>(unit_ptr: *mut c_void, out: ByteSink) {
    // SAFETY: `unit_ptr` came from `create` (ABI contract).
    write(&out, &unsafe { unit::<U>(unit_ptr) }.info());
}

unsafe extern "C" fn generation<U: ExportedUnit>(unit_ptr: *mut c_void) -> u64 {
    // SAFETY: `unit_ptr` came from `create` (ABI contract).
    unsafe { unit::<U>(unit_ptr) }.generation()
}

unsafe extern "C" fn housekeeping<U: ExportedUnit>(unit_ptr: *mut c_void) {
    // SAFETY: `unit_ptr` came from `create` (ABI contract).
    unsafe { unit::<U>(unit_ptr) }.housekeeping()
}

unsafe extern "C" fn destroy<U: ExportedUnit>(unit_ptr: *mut c_void) {
    // SAFETY: `unit_ptr` came from `create` (Box::into_raw) and the daemon
    // destroys each unit once, after every worker detached.
    drop(unsafe { Box::from_raw(unit_ptr.cast::<U>()) });
}

unsafe extern "C" fn attach<U: ExportedUnit>(unit_ptr: *mut c_void, tsc_hz: u64) -> *mut c_void {
    // SAFETY: `unit_ptr` came from `create` (ABI contract).
    let worker = unsafe { unit::<U>(unit_ptr) }.attach(tsc_hz);
    Box::into_raw(Box::new(WorkerHandle { worker, burst: Burst::new(PortId(0)) })).cast()
}

unsafe extern "C" fn process<U: ExportedUnit>(worker: *mut c_void, io: *mut BurstIo) {
    // SAFETY: `worker` came from `attach` and is used by one worker thread at a
    // time; `io` is that worker's BurstIo, exclusively ours during the call.
    let (handle, io) = unsafe { (&mut *worker.cast::<WorkerHandle<U::Worker>>(), &mut *io) };
    let burst = &mut handle.burst;
    burst.reset(PortId(io.in_port));
    for i in 0..usize::from(io.count) {
        let Some(ptr) = NonNull::new(io.mbufs[i]) else { continue };
        // SAFETY: the daemon hands over ownership of every non-null mbuf in `io`.
        let mbuf = unsafe { Mbuf::from_raw(ptr) };
        // At most BURST_SIZE by construction of `io`.
        let _ = burst.push_decided(mbuf, io.verdicts[i].decode());
    }
    for i in 0..usize::from(io.made_count) {
        if let Some(ptr) = NonNull::new(io.made[i]) {
            // SAFETY: as above, for packets earlier stages made.
            burst.add_made(unsafe { Mbuf::from_raw(ptr) }, io.made_verdicts[i].decode());
        }
    }
    handle.worker.process(decode_side(io.side), burst);
    io.unmade = burst.unmade();
    io.count = burst.len() as u16;
    let mut made = 0;
    burst.drain_slots(|slot, mbuf, verdict| {
        let (mbuf, verdict) = (mbuf.map_or(std::ptr::null_mut(), Mbuf::into_raw), RawVerdict::encode(verdict));
        match slot {
            Slot::Received(i) => (io.mbufs[i], io.verdicts[i]) = (mbuf, verdict),
            Slot::Made => {
                (io.made[made], io.made_verdicts[made]) = (mbuf, verdict);
                made += 1;
            }
        }
    });
    io.made_count = made as u16;
}

unsafe extern "C" fn quiescent<U: ExportedUnit>(worker: *mut c_void, now: u64) {
    // SAFETY: `worker` came from `attach`, used by one thread at a time.
    unsafe { &mut *worker.cast::<WorkerHandle<U::Worker>>() }.worker.quiescent(now);
}

unsafe extern "C" fn detach<U: ExportedUnit>(worker: *mut c_void) {
    // SAFETY: `worker` came from `attach` (Box::into_raw); detached once.
    drop(unsafe { Box::from_raw(worker.cast::<WorkerHandle<U::Worker>>()) });
}
