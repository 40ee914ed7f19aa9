//! Logical cores: launching a closure on an EAL worker lcore.
use std::ffi::c_void;
use std::fmt;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use dpdk_ffi as ffi;

use super::error::{DpdkError, ToResult};

/// An EAL logical core id (`-l` list).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct LcoreId(pub u32);

impl fmt::Display for LcoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lcore {}", self.0)
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

extern "C" fn run_job(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `LcoreId::launch`, handed over exactly once.
    let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
    // A panic must not unwind into C.
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

impl LcoreId {
    /// Runs `job` on this worker lcore (`rte_eal_remote_launch`).
    pub fn launch(self, job: impl FnOnce() + Send + 'static) -> Result<(), DpdkError> {
        let job: Box<Job> = Box::new(Box::new(job));
        let arg = Box::into_raw(job).cast::<c_void>();
        // SAFETY: run_job has the lcore_function_t signature and takes ownership of arg.
        let ret = unsafe { ffi::rte_eal_remote_launch(Some(run_job), arg, self.0) };
        if ret < 0 {
            // SAFETY: the launch failed, so run_job never received arg; reclaim it.
            drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
        }
        ret.to_result(&format!("rte_eal_remote_launch({self})")).map(drop)
    }

    /// Waits for the job on this lcore to end (`rte_eal_wait_lcore`); false if it panicked.
    pub fn wait(self) -> bool {
        // SAFETY: called from the main lcore; waiting on an idle lcore returns at once.
        unsafe { ffi::rte_eal_wait_lcore(self.0) == 0 }
    }
}
