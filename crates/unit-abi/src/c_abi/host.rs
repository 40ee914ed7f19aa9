//! The daemon side of the unit ABI: loading a library, checking its stamp, and
//! safe handles on the units and worker bindings it creates.
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use super::{encode_side, AbiStamp, BurstIo, ByteSink, RawVerdict, UnitEntry, ABI_SYMBOL, ENTRY_SYMBOL};
use switchyard_dpdk::Mbuf;
use switchyard_pipeline::{Burst, DropReason, Side, Slot, Verdict, MADE_PER_BURST};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibraryError {
    #[error("cannot load {}: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("{} is not a switchyard unit: it exports no {symbol} ({reason})", path.display())]
    NotAUnit { path: PathBuf, symbol: &'static str, reason: String },
    #[error("{} was built for another unit ABI: {found} where this daemon has {expected}", path.display())]
    AbiMismatch { path: PathBuf, found: String, expected: String },
    #[error("{} describes itself badly: {reason}", path.display())]
    BadDescription { path: PathBuf, reason: String },
}

/// A loaded unit library. Dropping the last reference unloads it (`dlclose`);
/// units and worker bindings hold a reference, so the code outlives them.
pub struct UnitLibrary {
    entry: UnitEntry,
    path: PathBuf,
    id: String,
    version: String,
    // Last field: dropped (unloaded) after everything above.
    _library: libloading::Library,
}

impl std::fmt::Debug for UnitLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UnitLibrary({} {} from {})", self.id, self.version, self.path.display())
    }
}

impl UnitLibrary {
    /// Loads `path`, checks its ABI stamp, reads its entry table and description.
    pub fn open(path: &Path) -> Result<Arc<UnitLibrary>, LibraryError> {
        UnitLibrary::open_as(path, path)
    }

    /// `open` from `load_from`, known as `path` (in errors, `path()`, the unit's
    /// description): the daemon loads a checked file through its descriptor
    /// (`upgrade::UnitFile`, `/proc/self/fd/N`).
    pub fn open_as(load_from: &Path, path: &Path) -> Result<Arc<UnitLibrary>, LibraryError> {
        // dlerror names the file it was given: name it as the operator does.
        let (given, shown) = (load_from.display().to_string(), path.display().to_string());
        let load_error = |reason: String| LibraryError::Load { path: path.to_owned(), reason: reason.replace(&given, &shown) };
        // SAFETY: loading runs the library's initialisers. A unit library is
        // trusted code by definition: the upgrade API loads only root-owned files
        // from the unit directory (`upgrade::open_unit_library`), tests and the
        // bench only what `make units` built. Rust cdylibs run no initialisers of their own.
        let library = unsafe { libloading::Library::new(load_from) }.map_err(|e| load_error(e.to_string()))?;
        let missing = |symbol: &'static str| {
            move |e: libloading::Error| LibraryError::NotAUnit { path: path.to_owned(), symbol, reason: e.to_string() }
        };
        // SAFETY: the symbol's type is fixed by the ABI for every version: a
        // function without arguments returning the AbiStamp by value.
        let stamp_fn = unsafe { library.get::<extern "C" fn() -> AbiStamp>(ABI_SYMBOL) }
            .map_err(missing("switchyard_unit_abi"))?;
        let (found, expected) = (stamp_fn(), AbiStamp::current());
        if found != expected {
            return Err(LibraryError::AbiMismatch {
                path: path.to_owned(),
                found: describe_stamp(&found),
                expected: describe_stamp(&expected),
            });
        }
        // SAFETY: the stamp matched, so the entry symbol has this version's type.
        let entry_fn = unsafe { library.get::<extern "C" fn() -> &'static UnitEntry>(ENTRY_SYMBOL) }
            .map_err(missing("switchyard_unit_entry"))?;
        let entry = *entry_fn();
        // SAFETY: `describe` writes through the sink during the call only.
        let description = collect(|sink| unsafe { (entry.describe)(sink) });
        let bad = |reason: String| LibraryError::BadDescription { path: path.to_owned(), reason };
        let description: serde_json::Value =
            serde_json::from_slice(&description).map_err(|e| bad(format!("not JSON ({e})")))?;
        let field = |name: &str| match description[name].as_str() {
            Some(text) if !text.is_empty() && text.len() <= 64 && text.chars().all(|c| c.is_ascii_graphic()) => Ok(text.to_owned()),
            _ => Err(bad(format!("\"{name}\" must be 1 to 64 printable ASCII characters"))),
        };
        Ok(Arc::new(UnitLibrary {
            id: field("id")?,
            version: field("version")?,
            entry,
            path: path.to_owned(),
            _library: library,
        }))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn version(&self) -> &str {
        &self.version
    }
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A unit created from the configuration blob `setup`.
    pub fn create(self: &Arc<Self>, setup: &[u8]) -> Result<LibraryUnit, String> {
        let mut error = Vec::new();
        // SAFETY: `setup` is valid for its length during the call; the sink is
        // valid during the call.
        let unit = unsafe { (self.entry.create)(setup.as_ptr(), setup.len(), sink(&mut error)) };
        match NonNull::new(unit) {
            Some(handle) => Ok(LibraryUnit { library: self.clone(), handle }),
            None => Err(text(error, "the unit refused its configuration")),
        }
    }
}

fn describe_stamp(stamp: &AbiStamp) -> String {
    format!(
        "ABI {}, burst {}, {} made per burst, drop reasons {:016x}",
        stamp.abi_version, stamp.burst_size, stamp.made_per_burst, stamp.drop_reasons
    )
}

/// A unit living in a library; destroyed on drop.
pub struct LibraryUnit {
    library: Arc<UnitLibrary>,
    handle: NonNull<c_void>,
}

// SAFETY: the ABI requires a unit to accept control-side calls from one
// control thread at a time while workers use their own worker handles; the
// handle itself is an opaque pointer owned by this value.
unsafe impl Send for LibraryUnit {}
// SAFETY: as above: `&LibraryUnit` only allows the control-side calls and
// `attach`, which the ABI makes safe to call concurrently with workers.
unsafe impl Sync for LibraryUnit {}

impl LibraryUnit {
    pub fn library(&self) -> &Arc<UnitLibrary> {
        &self.library
    }

    pub fn apply(&self, command: &[u8]) -> Result<(), String> {
        let mut error = Vec::new();
        // SAFETY: a live unit handle; the command and the sink are valid during the call.
        let ok = unsafe { (self.library.entry.apply)(self.handle.as_ptr(), command.as_ptr(), command.len(), sink(&mut error)) };
        if ok {
            Ok(())
        } else {
            Err(text(error, "the unit refused the command"))
        }
    }

    pub fn export(&self) -> Vec<u8> {
        // SAFETY: a live unit handle; the sink is valid during the call.
        collect(|sink| unsafe { (self.library.entry.export)(self.handle.as_ptr(), sink) })
    }

    pub fn info(&self) -> Vec<u8> {
        // SAFETY: a live unit handle; the sink is valid during the call.
        collect(|sink| unsafe { (self.library.entry.info)(self.handle.as_ptr(), sink) })
    }

    pub fn generation(&self) -> u64 {
        // SAFETY: a live unit handle.
        unsafe { (self.library.entry.generation)(self.handle.as_ptr()) }
    }

    pub fn housekeeping(&self) {
        // SAFETY: a live unit handle.
        unsafe { (self.library.entry.housekeeping)(self.handle.as_ptr()) }
    }

    /// A binding for the calling worker.
    pub fn attach(&self, tsc_hz: u64) -> Option<LibraryWorker> {
        // SAFETY: a live unit handle.
        let worker = unsafe { (self.library.entry.attach)(self.handle.as_ptr(), tsc_hz) };
        Some(LibraryWorker { library: self.library.clone(), handle: NonNull::new(worker)?, io: BurstIo::boxed() })
    }
}

impl Drop for LibraryUnit {
    fn drop(&mut self) {
        // SAFETY: the handle came from `create` and is destroyed once; the
        // daemon drops a unit only after every worker binding to it is gone.
        unsafe { (self.library.entry.destroy)(self.handle.as_ptr()) }
    }
}

/// One worker's binding to a library unit; detached on drop.
pub struct LibraryWorker {
    library: Arc<UnitLibrary>,
    handle: NonNull<c_void>,
    io: Box<BurstIo>,
}

// SAFETY: a worker binding is used by one thread at a time (it moves to its
// worker once); the ABI allows that thread to differ from the one that made it.
unsafe impl Send for LibraryWorker {}

impl LibraryWorker {
    /// Hands the burst to the unit and takes the decided packets back.
    #[inline]
    pub fn process(&mut self, side: Side, burst: &mut Burst<Mbuf>) {
        let io = &mut *self.io;
        let in_port = burst.in_port();
        io.in_port = in_port.0;
        io.side = encode_side(side);
        let (mut count, mut made) = (0usize, 0usize);
        burst.drain_slots(|slot, mbuf, verdict| {
            let Some(mbuf) = mbuf else { return };
            let (mbuf, verdict) = (mbuf.into_raw(), RawVerdict::encode(verdict));
            match slot {
                Slot::Received(_) => {
                    (io.mbufs[count], io.verdicts[count]) = (mbuf, verdict);
                    count += 1;
                }
                Slot::Made => {
                    (io.made[made], io.made_verdicts[made]) = (mbuf, verdict);
                    made += 1;
                }
            }
        });
        io.count = count as u16;
        io.made_count = made as u16;
        io.unmade = 0;
        // SAFETY: a live worker handle used by this thread only; `io` is ours
        // and holds owned mbufs, which the unit hands back in it.
        unsafe { (self.library.entry.process)(self.handle.as_ptr(), io) };
        burst.reset(in_port);
        for i in 0..usize::from(io.count).min(io.mbufs.len()) {
            if let Some(ptr) = NonNull::new(io.mbufs[i]) {
                // SAFETY: the unit returned ownership of every non-null mbuf.
                let mbuf = unsafe { Mbuf::from_raw(ptr) };
                // The unit returns at most what it got: BURST_SIZE.
                let verdict = io.verdicts[i].decode();
                if verdict == Verdict::Drop(DropReason::NextHopUnresolved) {
                    burst.note_unresolved();
                }
                let _ = burst.push_decided(mbuf, verdict);
            }
        }
        for i in 0..usize::from(io.made_count).min(MADE_PER_BURST) {
            if let Some(ptr) = NonNull::new(io.made[i]) {
                // SAFETY: as above, for the packets the unit made.
                burst.add_made(unsafe { Mbuf::from_raw(ptr) }, io.made_verdicts[i].decode());
            }
        }
        burst.add_unmade_count(io.unmade);
    }

    pub fn quiescent(&mut self, now: u64) {
        // SAFETY: a live worker handle used by this thread only.
        unsafe { (self.library.entry.quiescent)(self.handle.as_ptr(), now) }
    }
}

impl Drop for LibraryWorker {
    fn drop(&mut self) {
        // SAFETY: the handle came from `attach` and is detached once.
        unsafe { (self.library.entry.detach)(self.handle.as_ptr()) }
    }
}

/// A sink appending to `buffer`.
fn sink(buffer: &mut Vec<u8>) -> ByteSink {
    unsafe extern "C" fn append(context: *mut c_void, bytes: *const u8, len: usize) {
        if len == 0 || bytes.is_null() {
            return;
        }
        // SAFETY: `context` is the Vec passed to `sink`, alive for the call;
        // the unit passes `len` readable bytes.
        unsafe { (*context.cast::<Vec<u8>>()).extend_from_slice(std::slice::from_raw_parts(bytes, len)) }
    }
    ByteSink { context: (buffer as *mut Vec<u8>).cast(), write: append }
}

/// Runs `call` with a sink and returns what it wrote.
fn collect(call: impl FnOnce(ByteSink)) -> Vec<u8> {
    let mut buffer = Vec::new();
    call(sink(&mut buffer));
    buffer
}

fn text(bytes: Vec<u8>, fallback: &str) -> String {
    match String::from_utf8_lossy(&bytes).trim() {
        "" => fallback.to_owned(),
        message => message.to_owned(),
    }
}
