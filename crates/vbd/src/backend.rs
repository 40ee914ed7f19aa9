//! What an NBD export reads and writes: the `BlockBackend` trait, and its errors mapped to
//! the NBD error values. The server checks every request against the export's size and
//! flags before it reaches a backend, so a backend sees only in-range requests.

use std::future::Future;
use std::io;

use nix::errno::Errno;

use super::nbd_wire::error;
use super::storage_error::StorageError;

/// How `write_zeroes` may zero (proto.md `NBD_CMD_WRITE_ZEROES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zeroing {
    /// The range may become a hole, as long as it reads back as zeroes.
    MayTrim,
    /// `NBD_CMD_FLAG_NO_HOLE`: the range stays allocated.
    Allocate,
}

/// A block device behind an export. Futures are `Send` so that requests run as tasks of
/// their own, several at once per connection.
///
/// `fua`: the data is on stable storage before the future completes (`NBD_CMD_FLAG_FUA`).
pub trait BlockBackend: Send + Sync + 'static {
    /// Size in bytes; fixed while the export is served.
    fn size(&self) -> u64;

    fn read_only(&self) -> bool;

    /// True when a flush or FUA on one connection is seen by every other connection to the
    /// same backend (proto.md `NBD_FLAG_CAN_MULTI_CONN`).
    fn can_multi_conn(&self) -> bool {
        false
    }

    /// Exactly `length` bytes at `offset`.
    fn read(&self, offset: u64, length: u32) -> impl Future<Output = Result<Vec<u8>, BackendError>> + Send;

    fn write(&self, offset: u64, data: Vec<u8>, fua: bool) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Every write completed before this call is on stable storage when it returns.
    fn flush(&self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// A hint that the range is no longer needed; doing nothing is a valid answer.
    fn trim(&self, offset: u64, length: u32, fua: bool) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The range reads back as zeroes afterwards.
    fn write_zeroes(
        &self,
        offset: u64,
        length: u32,
        zeroing: Zeroing,
        fua: bool,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Why a backend could not do a request; `nbd_errno` is what the client is told.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the export is read-only")]
    ReadOnly,
    #[error("no space left for the write")]
    NoSpace,
    #[error("out of memory")]
    NoMemory,
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    #[error("operation not supported")]
    Unsupported,
    #[error("the backend is shutting down")]
    ShuttingDown,
    #[error("read returned {got} bytes, {wanted} asked for")]
    ShortRead { wanted: u32, got: usize },
    #[error("the I/O task failed: {0}")]
    TaskFailed(String),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// From the storage-protocol client (`StorageBackend`).
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

impl BackendError {
    /// The NBD error value (proto.md "Error values"). Host errors map to the nearest one:
    /// EDQUOT and EFBIG become ENOSPC as the spec asks, anything unlisted is EIO.
    pub fn nbd_errno(&self) -> u32 {
        match self {
            BackendError::ReadOnly => error::EPERM,
            BackendError::NoSpace => error::ENOSPC,
            BackendError::NoMemory => error::ENOMEM,
            BackendError::Invalid(_) => error::EINVAL,
            BackendError::Unsupported => error::ENOTSUP,
            BackendError::ShuttingDown => error::ESHUTDOWN,
            BackendError::ShortRead { .. } | BackendError::TaskFailed(_) => error::EIO,
            BackendError::Storage(e) => e.nbd_errno(),
            BackendError::Io(e) => match e.raw_os_error().map(Errno::from_raw) {
                Some(Errno::EPERM | Errno::EACCES | Errno::EROFS) => error::EPERM,
                Some(Errno::ENOSPC | Errno::EDQUOT | Errno::EFBIG) => error::ENOSPC,
                Some(Errno::ENOMEM) => error::ENOMEM,
                Some(Errno::EINVAL) => error::EINVAL,
                Some(Errno::ESHUTDOWN) => error::ESHUTDOWN,
                _ => error::EIO,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_map_to_nbd_error_values() {
        let os = |errno: Errno| BackendError::Io(io::Error::from_raw_os_error(errno as i32)).nbd_errno();
        assert_eq!(os(Errno::EROFS), error::EPERM);
        assert_eq!(os(Errno::EACCES), error::EPERM);
        assert_eq!(os(Errno::EDQUOT), error::ENOSPC);
        assert_eq!(os(Errno::EFBIG), error::ENOSPC);
        assert_eq!(os(Errno::ENOSPC), error::ENOSPC);
        assert_eq!(os(Errno::ENOMEM), error::ENOMEM);
        assert_eq!(os(Errno::EINVAL), error::EINVAL);
        assert_eq!(os(Errno::EIO), error::EIO);
        assert_eq!(os(Errno::ENXIO), error::EIO);
        assert_eq!(BackendError::Io(io::ErrorKind::UnexpectedEof.into()).nbd_errno(), error::EIO);
        assert_eq!(BackendError::ShuttingDown.nbd_errno(), error::ESHUTDOWN);
        assert_eq!(BackendError::Unsupported.nbd_errno(), error::ENOTSUP);
        assert_eq!(BackendError::ShortRead { wanted: 2, got: 1 }.nbd_errno(), error::EIO);
        let refused = BackendError::from(StorageError::Refused(switchyard_wire::block::Status::AccessDenied));
        assert_eq!(refused.nbd_errno(), error::EPERM);
    }
}
