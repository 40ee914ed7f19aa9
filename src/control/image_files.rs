//! The image files in `storage.images`, and the order of file work around a
//! commit (docs/storage-management.md), so that a failure or a crash leaves
//! either the old or the new state:
//!
//! - create, import, clone: the data goes to `<id>.img.creating` (sparse
//!   `set_len` or a copy, fsync'd) before the commit; after it the file is
//!   renamed to `<id>.img` and the directory fsync'd. A failed commit removes
//!   the staging file. A crash after the commit, before the rename, is finished
//!   at the next start (the staging file of a committed image is renamed).
//! - delete: commit, then unlink. grow: commit, then `set_len`.
//! - At start (`reconcile`): staging files of images never committed and
//!   `<id>.img` files without a record are removed; files shorter than their
//!   image are extended.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::ApiError;
use crate::store::{image_file, ImageId, StorageRecords, SECTOR_BYTES};

/// Copies go through a buffer of this size; all-zero blocks are skipped, so a
/// copy of a sparse image stays sparse.
const COPY_BLOCK: usize = 1 << 20;

const STAGING_SUFFIX: &str = ".img.creating";

/// Where a new image's data comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ImageSource {
    /// A sparse file of this many bytes (reads as zeros).
    Sparse { size: u64 },
    /// The first bytes of a file (an import, or another image for a clone),
    /// padded with zeros to `size`.
    Copy { from: PathBuf, size: u64 },
}

/// The file work of one change, done around its commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FileWork {
    None,
    Create { id: ImageId, source: ImageSource },
    Remove { id: ImageId },
    Grow { id: ImageId, size: u64 },
}

/// The images directory.
#[derive(Debug)]
pub(super) struct ImageFiles {
    dir: PathBuf,
}

/// What `reconcile` found and did at start.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Reconciled {
    /// Staging files of committed images, renamed into place.
    pub finished: Vec<ImageId>,
    /// Leftover staging files and image files without a record.
    pub removed: Vec<PathBuf>,
    /// Images whose file was shorter than their size, extended.
    pub extended: Vec<ImageId>,
    /// Images whose file is missing.
    pub missing: Vec<ImageId>,
}

impl ImageFiles {
    /// The images directory, created when missing.
    pub fn open(dir: &Path) -> Result<ImageFiles, String> {
        fs::create_dir_all(dir).map_err(|e| format!("storage.images {}: cannot create it: {e}", dir.display()))?;
        if !dir.is_dir() {
            return Err(format!("storage.images {}: is not a directory", dir.display()));
        }
        Ok(ImageFiles { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, id: ImageId) -> PathBuf {
        image_file(&self.dir, id)
    }

    fn staging(&self, id: ImageId) -> PathBuf {
        self.dir.join(format!("{id}{STAGING_SUFFIX}"))
    }

    /// Allocated bytes of image `id`'s file (`st_blocks` x 512); `None` when it is missing.
    pub fn usage(&self, id: ImageId) -> Option<u64> {
        fs::metadata(self.path(id)).ok().map(|m| m.blocks() * 512)
    }

    /// Before the commit: writes a new image's staging file whole. Nothing is
    /// left behind on failure.
    pub fn prepare(&self, work: &FileWork) -> Result<(), ApiError> {
        let FileWork::Create { id, source } = work else { return Ok(()) };
        let staging = self.staging(*id);
        let written = write_staging(&staging, source);
        if let Err(e) = written {
            let _ = fs::remove_file(&staging);
            let what = match source {
                ImageSource::Sparse { .. } => format!("cannot create {}: {e}", staging.display()),
                ImageSource::Copy { from, .. } => {
                    format!("cannot copy {} to {}: {e}", from.display(), staging.display())
                }
            };
            log::error!("control: storage: {what}");
            return Err(ApiError::internal(format!("the image was not made: {what}")));
        }
        Ok(())
    }

    /// The commit failed: removes what `prepare` wrote.
    pub fn discard(&self, work: &FileWork) {
        if let FileWork::Create { id, .. } = work {
            if let Err(e) = fs::remove_file(self.staging(*id)) {
                log::error!("control: storage: cannot remove {}: {e}", self.staging(*id).display());
            }
        }
    }

    /// After the commit. The database is the record now, so a failure here is
    /// logged and finished at the next start (`reconcile`).
    pub fn finish(&self, work: &FileWork) {
        let result = match work {
            FileWork::None => Ok(()),
            FileWork::Create { id, .. } => fs::rename(self.staging(*id), self.path(*id)).and_then(|()| self.sync_dir()),
            FileWork::Remove { id } => match fs::remove_file(self.path(*id)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other.and_then(|()| self.sync_dir()),
            },
            FileWork::Grow { id, size } => extend(&self.path(*id), *size),
        };
        if let Err(e) = result {
            log::error!("control: storage: committed, but the file work ({work:?}) failed: {e}; it is finished at the next start");
        }
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// At start: brings the directory to what `storage` (the committed
    /// records) says, after a crash or a failure between a commit and its file
    /// work. Files that are not images' are left alone.
    pub fn reconcile(&self, storage: &StorageRecords) -> Result<Reconciled, String> {
        let mut done = Reconciled::default();
        let known = |id: ImageId| storage.images.iter().any(|i| i.id == id);
        let entries = fs::read_dir(&self.dir).map_err(|e| format!("cannot list {}: {e}", self.dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", self.dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if let Some(id) = name.strip_suffix(STAGING_SUFFIX).and_then(parse_id) {
                if known(id) && !self.path(id).exists() {
                    fs::rename(&path, self.path(id)).map_err(|e| format!("cannot rename {}: {e}", path.display()))?;
                    log::warn!("control: storage: image {id} was committed before a stop; its file is in place now");
                    done.finished.push(id);
                } else {
                    fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                    log::warn!("control: storage: removed {}, left by an image creation that was not committed", path.display());
                    done.removed.push(path);
                }
            } else if let Some(id) = name.strip_suffix(".img").and_then(parse_id) {
                if !known(id) {
                    fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                    log::warn!("control: storage: removed {}: no image has id {id} (a deletion was committed before a stop)", path.display());
                    done.removed.push(path);
                }
            }
        }
        for image in &storage.images {
            let path = self.path(image.id);
            match fs::metadata(&path) {
                Ok(meta) if meta.len() < image.size => {
                    extend(&path, image.size).map_err(|e| format!("cannot extend {}: {e}", path.display()))?;
                    log::warn!(
                        "control: storage: image {} ({}) was {} bytes, extended to its size {}",
                        image.name,
                        image.id,
                        meta.len(),
                        image.size
                    );
                    done.extended.push(image.id);
                }
                Ok(_) => {}
                Err(e) => {
                    log::error!("control: storage: image {} ({}): its file {}: {e}", image.name, image.id, path.display());
                    done.missing.push(image.id);
                }
            }
        }
        if done.finished.len() + done.removed.len() > 0 {
            self.sync_dir().map_err(|e| format!("cannot sync {}: {e}", self.dir.display()))?;
        }
        Ok(done)
    }
}

/// "17" -> 17; ids are positive and written without leading zeros.
fn parse_id(text: &str) -> Option<ImageId> {
    let id: ImageId = text.parse().ok()?;
    (id > 0 && id.to_string() == text).then_some(id)
}

fn write_staging(staging: &Path, source: &ImageSource) -> io::Result<()> {
    // A staging file left by a crash during an earlier attempt is started over.
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(staging)?;
    match source {
        ImageSource::Sparse { size } => file.set_len(*size)?,
        ImageSource::Copy { from, size } => {
            let mut input = File::open(from)?.take(*size);
            copy_sparse(&mut input, &mut file)?;
            file.set_len(*size)?;
        }
    }
    file.sync_all()
}

/// Copies `input` to the start of `output`, seeking over all-zero blocks.
fn copy_sparse(input: &mut impl Read, output: &mut File) -> io::Result<()> {
    let mut buffer = vec![0u8; COPY_BLOCK];
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            match input.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        let block = &buffer[..filled];
        if block.iter().all(|b| *b == 0) {
            output.seek(SeekFrom::Current(filled as i64))?;
        } else {
            output.write_all(block)?;
        }
    }
}

/// Makes the file at `path` `size` bytes long (never shorter) and syncs it.
fn extend(path: &Path, size: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.len() < size {
        file.set_len(size)?;
    }
    file.sync_all()
}

/// `bytes` rounded up to whole sectors.
pub(super) fn round_up_to_sector(bytes: u64) -> u64 {
    bytes.div_ceil(SECTOR_BYTES).saturating_mul(SECTOR_BYTES)
}
