//! The Environment Abstraction Layer: initialised once per process.
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};

use dpdk_ffi as ffi;

use super::error::DpdkError;

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// Proof that the EAL is running; cleaned up on drop.
pub struct Eal {
    tsc_hz: u64,
}

impl Eal {
    /// `rte_eal_init` with `args` (argv[0] first). Fails if called twice in a process.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::new("rte_eal_init", EALREADY));
        }
        let owned: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| DpdkError { op: "rte_eal_init".into(), errno: 22, text: "an EAL argument contains a NUL byte".into() })?;
        // EAL may keep pointers into argv (it permutes it and keeps some strings),
        // so the strings live for the rest of the process.
        let owned: &'static [CString] = Vec::leak(owned);
        let mut argv: Vec<*mut c_char> = owned.iter().map(|s| s.as_ptr().cast_mut()).collect();
        let argc = i32::try_from(argv.len()).unwrap_or(i32::MAX);
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the process's
        // EAL; the vector itself stays alive for the call.
        let ret = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(DpdkError::last("rte_eal_init"));
        }
        // SAFETY: EAL is initialised; rte_get_tsc_hz has no other precondition.
        let tsc_hz = unsafe { ffi::rte_get_tsc_hz() };
        Ok(Eal { tsc_hz })
    }

    /// Time-stamp counter ticks per second.
    pub fn tsc_hz(&self) -> u64 {
        self.tsc_hz
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: every port and mempool has been released by now (their owners
        // are dropped before the Eal, see dataplane::Dataplane) and no worker runs.
        unsafe { ffi::rte_eal_cleanup() };
    }
}

/// errno for "the EAL is already initialised" (Linux EALREADY).
const EALREADY: i32 = 114;

/// The time-stamp counter (`rte_rdtsc`).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the CPU's time-stamp counter; no preconditions.
    unsafe { ffi::rte_rdtsc() }
}
