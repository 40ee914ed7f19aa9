//! What an io_uring op or the ring itself can fail with: `IoError` for a kernel result
//! (a CQE's negative errno), `IoRingError` for setup, registration and queueing, and
//! `Refused` for an op that took a buffer lease and hands it back with the reason.
use super::buffer_pool::BufferLease;

/// A negative `cqe.res`, errno kept: the common ones named for the block stage's reply
/// mapping (NBD error values follow errno), any other in `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    #[error("I/O error (EIO)")]
    Io,
    #[error("no space left on device (ENOSPC)")]
    NoSpace,
    #[error("bad file descriptor (EBADF)")]
    BadFile,
    #[error("invalid argument (EINVAL)")]
    InvalidArgument,
    #[error("operation not supported (EOPNOTSUPP)")]
    NotSupported,
    #[error("file too large (EFBIG)")]
    FileTooLarge,
    #[error("read-only file system (EROFS)")]
    ReadOnlyFilesystem,
    #[error("cancelled (ECANCELED)")]
    Cancelled,
    #[error("{}", std::io::Error::from_raw_os_error(*.0))]
    Other(i32),
}

impl IoError {
    /// From a positive errno (`-cqe.res`, or `io::Error::raw_os_error`).
    pub fn from_errno(errno: i32) -> IoError {
        match errno {
            libc::EIO => IoError::Io,
            libc::ENOSPC => IoError::NoSpace,
            libc::EBADF => IoError::BadFile,
            libc::EINVAL => IoError::InvalidArgument,
            libc::EOPNOTSUPP => IoError::NotSupported,
            libc::EFBIG => IoError::FileTooLarge,
            libc::EROFS => IoError::ReadOnlyFilesystem,
            libc::ECANCELED => IoError::Cancelled,
            other => IoError::Other(other),
        }
    }

    pub fn errno(self) -> i32 {
        match self {
            IoError::Io => libc::EIO,
            IoError::NoSpace => libc::ENOSPC,
            IoError::BadFile => libc::EBADF,
            IoError::InvalidArgument => libc::EINVAL,
            IoError::NotSupported => libc::EOPNOTSUPP,
            IoError::FileTooLarge => libc::EFBIG,
            IoError::ReadOnlyFilesystem => libc::EROFS,
            IoError::Cancelled => libc::ECANCELED,
            IoError::Other(errno) => errno,
        }
    }

    /// A failed setup or register syscall; an error without an errno (none is expected
    /// from these calls) counts as EIO.
    pub(super) fn from_io(error: &std::io::Error) -> IoError {
        IoError::from_errno(error.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// Building the ring, registering files and buffers, queueing or submitting an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IoRingError {
    #[error("queue depth {0} is outside 1..=32768 (IORING_MAX_ENTRIES)")]
    QueueDepthOutOfRange(u32),
    #[error("buffer count {0} is outside 1..=16384 (IORING_MAX_REG_BUFFERS)")]
    BufferCountOutOfRange(u32),
    #[error("buffer size {0} is not a non-zero multiple of 4096 up to 1 GiB")]
    BadBufferSize(usize),
    #[error("file slot count {0} is outside 1..=1048576")]
    FileSlotCountOutOfRange(u32),
    #[error("cannot allocate the buffer pool ({0} bytes)")]
    PoolAllocation(usize),
    #[error("io_uring_setup: {0}")]
    Setup(IoError),
    #[error("registering the buffer pool: {0}")]
    RegisterBuffers(IoError),
    #[error("registering files: {0}")]
    RegisterFiles(IoError),
    #[error("io_uring_enter: {0}")]
    Submit(IoError),
    /// The kernel could not take the queued ops now (EAGAIN/EBUSY/EINTR); they stay queued.
    #[error("the kernel is busy; the queued ops stay queued for the next submit")]
    SubmitBusy,
    /// No room in the submission queue until the next `submit`; keep the request for the next turn.
    #[error("the submission queue is full until the next submit")]
    SubmissionQueueFull,
    /// As many ops are in flight as the completion queue can hold; poll completions first.
    #[error("as many ops are in flight as the completion queue holds")]
    TooManyInFlight,
    #[error("file slot {slot} is outside the ring's {slots} slots")]
    SlotOutOfRange { slot: u32, slots: u32 },
    #[error("file slot {0} holds no file")]
    EmptySlot(u32),
    #[error("the buffer lease belongs to another ring")]
    ForeignBuffer,
    #[error("length {len} exceeds the buffer size {capacity}")]
    LengthExceedsBuffer { len: u32, capacity: usize },
    #[error("offset {0} exceeds the largest file offset (i64::MAX)")]
    OffsetTooLarge(u64),
}

/// An op that took a buffer lease and could not be queued: the reason and the lease back,
/// so the caller can keep the request for the next turn or release the buffer.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Refused {
    pub error: IoRingError,
    pub buffer: BufferLease,
}
