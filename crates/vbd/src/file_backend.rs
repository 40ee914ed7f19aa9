//! `FileBackend`: an export over a local raw image file (or block device), with positioned
//! reads and writes on tokio's blocking pool, so that requests run side by side. Trim and
//! write-zeroes use fallocate (punch a hole / zero a range) and fall back where the file
//! system cannot.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};

use super::backend::{BackendError, BlockBackend, Zeroing};

/// Zeroes written at most at once when fallocate cannot zero a range.
const ZERO_CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("cannot open the image {path}: {source}")]
pub struct OpenError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// A raw image served as it is: byte `n` of the export is byte `n` of the file.
#[derive(Debug, Clone)]
pub struct FileBackend {
    file: Arc<File>,
    size: u64,
    read_only: bool,
}

impl FileBackend {
    /// Opens `path` (read-only when `read_only`); the export's size is the file's size now.
    pub fn open(path: &Path, read_only: bool) -> Result<FileBackend, OpenError> {
        let opened = OpenOptions::new().read(true).write(!read_only).open(path).and_then(|mut file| {
            // Seeking to the end also sizes block devices, whose metadata length is 0.
            let size = file.seek(SeekFrom::End(0))?;
            Ok((file, size))
        });
        let (file, size) = opened.map_err(|source| OpenError { path: path.to_path_buf(), source })?;
        Ok(FileBackend { file: Arc::new(file), size, read_only })
    }

    /// The server refuses writes to a read-only export before they get here; this is the
    /// backstop for a caller that does not.
    fn check_writable(&self) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        Ok(())
    }

    /// Runs `io` on the blocking pool with the file.
    async fn blocking<T: Send + 'static>(
        &self,
        io: impl FnOnce(&File) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || io(&file)).await.map_err(|e| BackendError::TaskFailed(e.to_string()))?
    }
}

fn offset_arg(value: u64) -> Result<i64, BackendError> {
    i64::try_from(value).map_err(|_| BackendError::Invalid("offset beyond what the file system addresses"))
}

/// fallocate(mode) over the range; `Ok(false)` when the file system does not support `mode`.
fn try_fallocate(file: &File, mode: FallocateFlags, offset: u64, length: u32) -> Result<bool, BackendError> {
    match fallocate(file.as_raw_fd(), mode, offset_arg(offset)?, i64::from(length)) {
        Ok(()) => Ok(true),
        Err(Errno::EOPNOTSUPP | Errno::ENODEV) => Ok(false),
        Err(e) => Err(BackendError::Io(e.into())),
    }
}

fn write_zero_bytes(file: &File, offset: u64, length: u32) -> Result<(), BackendError> {
    let zeroes = vec![0; ZERO_CHUNK.min(length as usize)];
    let mut done = 0u64;
    while done < u64::from(length) {
        let step = zeroes.len().min((u64::from(length) - done) as usize);
        file.write_all_at(&zeroes[..step], offset + done)?;
        done += step as u64;
    }
    Ok(())
}

fn sync_if(file: &File, fua: bool) -> Result<(), BackendError> {
    if fua {
        file.sync_data()?;
    }
    Ok(())
}

impl BlockBackend for FileBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    /// One file, one page cache: what one connection flushed, every connection sees.
    fn can_multi_conn(&self) -> bool {
        true
    }

    async fn read(&self, offset: u64, length: u32) -> Result<Vec<u8>, BackendError> {
        self.blocking(move |file| {
            let mut data = vec![0; length as usize];
            file.read_exact_at(&mut data, offset)?;
            Ok(data)
        })
        .await
    }

    async fn write(&self, offset: u64, data: Vec<u8>, fua: bool) -> Result<(), BackendError> {
        self.check_writable()?;
        self.blocking(move |file| {
            file.write_all_at(&data, offset)?;
            sync_if(file, fua)
        })
        .await
    }

    async fn flush(&self) -> Result<(), BackendError> {
        self.blocking(|file| Ok(file.sync_data()?)).await
    }

    /// Punches a hole; a file system without holes keeps the data (trim is only a hint).
    async fn trim(&self, offset: u64, length: u32, fua: bool) -> Result<(), BackendError> {
        self.check_writable()?;
        if length == 0 {
            return Ok(());
        }
        self.blocking(move |file| {
            let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            try_fallocate(file, punch, offset, length)?;
            sync_if(file, fua)
        })
        .await
    }

    /// A hole when allowed, else an allocated zeroed range, else zeroes written.
    async fn write_zeroes(&self, offset: u64, length: u32, zeroing: Zeroing, fua: bool) -> Result<(), BackendError> {
        self.check_writable()?;
        if length == 0 {
            return Ok(());
        }
        self.blocking(move |file| {
            let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            let zero_range = FallocateFlags::FALLOC_FL_ZERO_RANGE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            let done = (zeroing == Zeroing::MayTrim && try_fallocate(file, punch, offset, length)?)
                || try_fallocate(file, zero_range, offset, length)?;
            if !done {
                write_zero_bytes(file, offset, length)?;
            }
            sync_if(file, fua)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    #[test]
    fn reads_writes_and_zeroes_a_file() {
        let (_dir, path) = image(&[7; 3 << 20]);
        let backend = FileBackend::open(&path, false).unwrap();
        assert_eq!(backend.size(), 3 << 20);
        assert!(!backend.read_only());
        runtime().block_on(async {
            backend.write(10, vec![1, 2, 3], true).await.unwrap();
            assert_eq!(backend.read(9, 5).await.unwrap(), [7, 1, 2, 3, 7]);
            backend.write_zeroes(4096, 8192, Zeroing::MayTrim, false).await.unwrap();
            backend.write_zeroes(1 << 20, (1 << 20) + 5, Zeroing::Allocate, true).await.unwrap();
            let data = backend.read(0, 3 << 20).await.unwrap();
            assert!(data[4096..12288].iter().all(|&b| b == 0));
            assert!(data[1 << 20..(2 << 20) + 5].iter().all(|&b| b == 0));
            assert_eq!(data[12288], 7);
            assert_eq!(data[(2 << 20) + 5], 7);
            backend.trim(0, 4096, false).await.unwrap();
            backend.trim(0, 0, false).await.unwrap();
            backend.flush().await.unwrap();
        });
    }

    #[test]
    fn zeroes_by_writing_where_fallocate_cannot() {
        let (_dir, path) = image(&[9; 5000]);
        let file = File::options().read(true).write(true).open(&path).unwrap();
        write_zero_bytes(&file, 1, 4998).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!((data[0], data[4999]), (9, 9));
        assert!(data[1..4999].iter().all(|&b| b == 0));
    }

    #[test]
    fn read_only_and_missing_images() {
        let (dir, path) = image(&[1; 512]);
        let backend = FileBackend::open(&path, true).unwrap();
        assert!(backend.read_only());
        let refused = runtime().block_on(backend.write(0, vec![0], false)).unwrap_err();
        assert_eq!(refused.nbd_errno(), crate::nbd_wire::error::EPERM);
        let missing = FileBackend::open(&dir.path().join("nope.img"), false).unwrap_err();
        assert!(missing.to_string().contains("nope.img"), "{missing}");
        // A read past the end of a file that shrank is an error, not short data.
        std::fs::write(&path, [1; 10]).unwrap();
        let short = runtime().block_on(backend.read(0, 512)).unwrap_err();
        assert_eq!(short.nbd_errno(), crate::nbd_wire::error::EIO);
    }
}
