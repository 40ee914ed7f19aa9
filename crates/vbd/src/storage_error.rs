//! Why a storage request failed, and the NBD error its client is told (docs/vbd.md "Errors"). The server's
//! statuses are NBD's error numbers already (docs/storage-protocol.md "Statuses"), except EACCES, which NBD
//! does not have, and ESTALE, which the client handles itself.

use switchyard_wire::block::{BlockError, Status};

use super::nbd_wire::error;

/// How many ESTALE replies one request may get, each answered by sending it again above the server's
/// highest id, before it fails: the server's window only moves forward, so more means something is wrong.
pub const MAX_STALE_REPLIES: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The server answered with an error status (never OK or ESTALE here).
    #[error("the server refused it: {}", .0.name())]
    Refused(Status),
    /// No reply for the give-up time (30 s); the fence was sent first, so the request can no longer land.
    #[error("no reply from the storage server")]
    TimedOut,
    /// A fence is unanswered for the give-up time: requests fail at once until it is answered.
    #[error("the storage server is unreachable")]
    Unreachable,
    /// ESTALE more than `MAX_STALE_REPLIES` times.
    #[error("the server called its request id stale more than {MAX_STALE_REPLIES} times")]
    Stale,
    /// The client is stopping.
    #[error("the storage client is stopping")]
    ShuttingDown,
    /// The request cannot be said in the protocol (a READ over 64 KiB, a range past 2^64, ...).
    #[error("not a valid storage request: {0}")]
    Invalid(BlockError),
    /// An authenticated reply whose content makes no sense (an INFO payload that does not parse).
    #[error("a bad reply from the storage server: {0}")]
    BadReply(BlockError),
    /// No room in the client's queue.
    #[error("the storage client's queue is full")]
    QueueFull,
}

impl StorageError {
    /// The NBD error value (proto.md "Error values"). EACCES becomes EPERM (docs/storage-protocol.md), and what
    /// the client decides itself (timeouts, a broken reply) is EIO.
    pub fn nbd_errno(&self) -> u32 {
        match self {
            StorageError::Refused(status) => match status {
                Status::NotPermitted | Status::AccessDenied => error::EPERM,
                Status::NoMemory => error::ENOMEM,
                Status::Invalid => error::EINVAL,
                Status::NoSpace => error::ENOSPC,
                Status::Overflow => error::EOVERFLOW,
                Status::NotSupported => error::ENOTSUP,
                Status::ShuttingDown => error::ESHUTDOWN,
                Status::Ok | Status::IoError | Status::StaleRequestId => error::EIO,
            },
            StorageError::ShuttingDown => error::ESHUTDOWN,
            StorageError::Invalid(_) => error::EINVAL,
            StorageError::QueueFull => error::ENOMEM,
            StorageError::TimedOut | StorageError::Unreachable | StorageError::Stale | StorageError::BadReply(_) => {
                error::EIO
            }
        }
    }

    /// A short name for counters and log lines: the status's name for a refusal.
    pub fn name(&self) -> &'static str {
        match self {
            StorageError::Refused(status) => status.name(),
            StorageError::TimedOut => "timed_out",
            StorageError::Unreachable => "unreachable",
            StorageError::Stale => "stale",
            StorageError::ShuttingDown => "shutting_down",
            StorageError::Invalid(_) => "invalid_request",
            StorageError::BadReply(_) => "bad_reply",
            StorageError::QueueFull => "queue_full",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_maps_to_an_nbd_error() {
        let expected = [
            (Status::Ok, error::EIO),
            (Status::NotPermitted, error::EPERM),
            (Status::IoError, error::EIO),
            (Status::NoMemory, error::ENOMEM),
            (Status::AccessDenied, error::EPERM),
            (Status::Invalid, error::EINVAL),
            (Status::NoSpace, error::ENOSPC),
            (Status::Overflow, error::EOVERFLOW),
            (Status::NotSupported, error::ENOTSUP),
            (Status::ShuttingDown, error::ESHUTDOWN),
            (Status::StaleRequestId, error::EIO),
        ];
        assert_eq!(expected.len(), Status::ALL.len());
        for (status, errno) in expected {
            assert_eq!(StorageError::Refused(status).nbd_errno(), errno, "{status:?}");
            assert_eq!(StorageError::Refused(status).name(), status.name());
        }
        // Statuses that are NBD's numbers keep them.
        for status in [Status::NotPermitted, Status::NoMemory, Status::Invalid, Status::NoSpace, Status::ShuttingDown] {
            assert_eq!(StorageError::Refused(status).nbd_errno(), u32::from(status.code()));
        }
    }

    #[test]
    fn what_the_client_decides_maps_too() {
        assert_eq!(StorageError::TimedOut.nbd_errno(), error::EIO);
        assert_eq!(StorageError::Unreachable.nbd_errno(), error::EIO);
        assert_eq!(StorageError::Stale.nbd_errno(), error::EIO);
        assert_eq!(StorageError::BadReply(BlockError::Truncated).nbd_errno(), error::EIO);
        assert_eq!(StorageError::ShuttingDown.nbd_errno(), error::ESHUTDOWN);
        assert_eq!(StorageError::Invalid(BlockError::IoTooLong).nbd_errno(), error::EINVAL);
        assert_eq!(StorageError::QueueFull.nbd_errno(), error::ENOMEM);
        assert_eq!(StorageError::Refused(Status::AccessDenied).to_string(), "the server refused it: eacces");
        assert_eq!(StorageError::TimedOut.name(), "timed_out");
    }
}
