//! Opening a file strictly beneath a directory: openat2(2) with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so neither `..`, an absolute path
//! nor a symbolic link anywhere on the way can leave the directory. Here
//! because adopting the returned descriptor as a `File` is the one step that
//! needs the switch's only exemption from safe code.
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

/// Opens `path` (relative) under `dir` for reading. A FIFO or device opens
/// without blocking (`O_NONBLOCK`) so the caller can refuse it by its type.
pub fn open_beneath(dir: &File, path: &Path) -> io::Result<File> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(dir.as_raw_fd(), path, how).map_err(io::Error::from)?;
    // SAFETY: `fd` was just returned by a successful openat2, so it is an open
    // descriptor that nothing else owns; the `File` takes sole ownership.
    Ok(unsafe { File::from_raw_fd(fd) })
}
