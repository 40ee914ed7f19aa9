//! DPDK errors, carrying `rte_strerror` text.
use std::ffi::CStr;
use std::os::raw::c_int;

use dpdk_ffi as ffi;

/// A failed DPDK call: which operation, the errno, and DPDK's text for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {text}")]
pub struct DpdkError {
    pub op: String,
    pub errno: i32,
    pub text: String,
}

impl DpdkError {
    pub fn new(op: impl Into<String>, errno: i32) -> Self {
        DpdkError { op: op.into(), errno, text: strerror(errno) }
    }

    /// The error left in `rte_errno` by a call that returned NULL or -1.
    pub(crate) fn last(op: impl Into<String>) -> Self {
        // SAFETY: reads this thread's rte_errno; no preconditions.
        let errno = unsafe { ffi::sy_rte_errno() };
        Self::new(op, errno)
    }
}

/// `rte_strerror`: DPDK's text for an errno, including its own codes (E_RTE_*).
pub(crate) fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated string, static or
    // per-thread, valid until the next call on this thread; we copy it at once.
    let text = unsafe { CStr::from_ptr(ffi::rte_strerror(errno)) };
    text.to_string_lossy().into_owned()
}

/// Turns a DPDK return code (negative errno on failure) into a `Result`.
pub(crate) trait ToResult: Sized {
    fn to_result(self, op: &str) -> Result<Self, DpdkError>;
}

impl ToResult for c_int {
    fn to_result(self, op: &str) -> Result<Self, DpdkError> {
        if self < 0 {
            Err(DpdkError::new(op, -self))
        } else {
            Ok(self)
        }
    }
}
