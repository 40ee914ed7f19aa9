//! The image files in `storage.images`, and the order of file work around a
//! commit (docs/storage-management.md), so that a failure or a crash leaves
//! either the old or the new state, and no file this database did not make is
//! ever removed:
//!
//! - create, import, clone, adopt: an intent (the image id and a random nonce)
//!   is committed first; then the data goes to `<id>.<nonce>.img.creating`
//!   (sparse `set_len` or a copy, fsync'd; an adoption renames the unknown file
//!   there); then the image is committed; then the file is renamed to
//!   `<id>.img` (never over an existing file) and the intent cleared. A failed
//!   commit removes the staging file (an adoption puts the file back).
//! - delete: the record's deletion and a delete intent are one commit; then
//!   unlink, then the intent is cleared. grow: commit, then `set_len`.
//! - At start (`reconcile`): each intent is finished or undone, and only the
//!   file it names is touched. Any other `<id>.img` without a record or
//!   `*.img.creating` is an unknown file: reported and left alone, until the
//!   operator removes or adopts it (`ctl storage orphans`). Files shorter than
//!   their image are extended; image files readable beyond what
//!   `storage.image_group` allows are made private.
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::config::ImageGroup;
use crate::model::{image_file, ImageId, ImageIntent, StorageRecords, SECTOR_BYTES};

/// Copies go through a buffer of this size; all-zero blocks are skipped, so a
/// copy of a sparse image stays sparse.
const COPY_BLOCK: usize = 1 << 20;

const IMAGE_SUFFIX: &str = ".img";
const STAGING_SUFFIX: &str = ".img.creating";

/// Where a new image's data comes from.
#[derive(Clone, Debug)]
pub(super) enum ImageSource {
    /// A sparse file of this many bytes (reads as zeros).
    Sparse { size: u64 },
    /// The first bytes of another image's file (a clone), padded with zeros to `size`.
    Copy { from: PathBuf, size: u64 },
    /// A file opened beneath `storage.import_dir` (`shown`: its path there),
    /// padded with zeros to `size`.
    Import { file: Arc<File>, shown: String, size: u64 },
    /// An unknown file of the images directory, renamed into place (an
    /// adoption); extended to `size` after the commit.
    Adopt { file_name: String, size: u64 },
}

impl ImageSource {
    pub(super) fn size(&self) -> u64 {
        match self {
            ImageSource::Sparse { size }
            | ImageSource::Copy { size, .. }
            | ImageSource::Import { size, .. }
            | ImageSource::Adopt { size, .. } => *size,
        }
    }
}

/// The file work of one change, done around its commit.
#[derive(Clone, Debug)]
pub(super) enum FileWork {
    None,
    /// `intent` is the `ImageIntent::Create` recorded before the staging file is made.
    Create { id: ImageId, source: ImageSource, intent: ImageIntent },
    Remove { id: ImageId },
    Grow { id: ImageId, size: u64 },
}

impl FileWork {
    /// The creation of image `id` from `source`, with a new intent.
    pub(super) fn create(id: ImageId, source: ImageSource) -> Result<FileWork, ApiError> {
        let adopted_from = match &source {
            ImageSource::Adopt { file_name, .. } => Some(file_name.clone()),
            _ => None,
        };
        let intent = ImageIntent::create(id, adopted_from).map_err(ApiError::internal)?;
        Ok(FileWork::Create { id, source, intent })
    }

    /// The intent recorded for this work: a creation's before its staging
    /// file is made, a deletion's with its commit.
    pub(super) fn intent(&self) -> Option<ImageIntent> {
        match self {
            FileWork::Create { intent, .. } => Some(intent.clone()),
            FileWork::Remove { id } => Some(ImageIntent::Delete { id: *id }),
            FileWork::None | FileWork::Grow { .. } => None,
        }
    }
}

/// A file of the images directory that no image of this database and no
/// intent accounts for: left alone until the operator removes or adopts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageOrphan {
    /// Its name in the images directory (`7.img`, `9.img.creating`, ...).
    pub file: String,
    pub path: PathBuf,
    /// Its length.
    pub bytes: u64,
    /// Bytes it occupies on disk (`st_blocks` x 512).
    pub usage: u64,
}

/// The images directory.
#[derive(Debug)]
pub(super) struct ImageFiles {
    dir: PathBuf,
    group: Option<ImageGroup>,
}

/// What `reconcile` found and did at start.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Reconciled {
    /// Staging files of committed images, renamed into place.
    pub finished: Vec<ImageId>,
    /// Staging files of creations never committed (this database's), removed
    /// or, for an adoption, put back.
    pub undone: Vec<PathBuf>,
    /// Files of images whose deletion was committed before a stop, removed.
    pub removed: Vec<PathBuf>,
    /// Images whose file was shorter than their size, extended.
    pub extended: Vec<ImageId>,
    /// Images whose file is missing.
    pub missing: Vec<ImageId>,
    /// Files readable beyond what `storage.image_group` allows, made private.
    pub restricted: Vec<PathBuf>,
    /// Files no image or intent accounts for: left alone.
    pub unknown: Vec<PathBuf>,
    /// The intents dealt with: to be cleared from the database.
    pub settled: Vec<ImageId>,
}

impl Reconciled {
    /// Whether anything was changed or needs the operator (what is logged as a summary).
    pub(super) fn is_quiet(&self) -> bool {
        self.finished.is_empty()
            && self.undone.is_empty()
            && self.removed.is_empty()
            && self.extended.is_empty()
            && self.missing.is_empty()
            && self.restricted.is_empty()
            && self.unknown.is_empty()
    }
}

/// What a file of the images directory looks like by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    /// `<id>.img`
    Image(ImageId),
    /// `<id>.<nonce>.img.creating`, or `<id>.img.creating` as older versions named it.
    Staging(ImageId),
}

/// A regular file of the images directory named like an image's file.
struct Entry {
    name: String,
    path: PathBuf,
    meta: fs::Metadata,
    kind: FileKind,
}

impl ImageFiles {
    /// The images directory. A missing one is created 0700 (0750 and
    /// `group`'s with `storage.image_group`); an existing one must be a
    /// directory of the switch's user that group and others cannot write to:
    /// whoever can write there could put any file in an image's place.
    pub(super) fn open(dir: &Path, group: Option<ImageGroup>) -> Result<ImageFiles, String> {
        let shown = dir.display();
        let files = ImageFiles { dir: dir.to_path_buf(), group };
        let meta = match fs::metadata(dir) {
            Ok(meta) => meta,
            Err(_) => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| format!("storage.images {shown}: cannot create it: {e}"))?;
                files.set_access(dir, files.dir_mode()).map_err(|e| format!("storage.images {shown}: {e}"))?;
                return Ok(files);
            }
        };
        if !meta.is_dir() {
            return Err(format!("storage.images {shown}: is not a directory"));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(format!(
                "storage.images {shown}: is writable by group or others (mode {mode:04o}): anyone who can write there \
                 can replace image files; make it 0700 (chmod go-w)"
            ));
        }
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != euid {
            return Err(format!(
                "storage.images {shown}: is owned by uid {}, not by the switch's user (uid {euid}): its owner can \
                 replace image files; chown it",
                meta.uid()
            ));
        }
        if files.group.is_some() {
            files.set_access(dir, files.dir_mode()).map_err(|e| format!("storage.images {shown}: {e}"))?;
        }
        Ok(files)
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn path(&self, id: ImageId) -> PathBuf {
        image_file(&self.dir, id)
    }

    fn staging(&self, id: ImageId, nonce: &str) -> PathBuf {
        self.dir.join(format!("{id}.{nonce}{STAGING_SUFFIX}"))
    }

    /// The staging file of a creation intent.
    fn staging_of(&self, intent: &ImageIntent) -> Option<PathBuf> {
        match intent {
            ImageIntent::Create { id, nonce, .. } => Some(self.staging(*id, nonce)),
            ImageIntent::Delete { .. } => None,
        }
    }

    fn dir_mode(&self) -> u32 {
        if self.group.is_some() {
            0o750
        } else {
            0o700
        }
    }

    fn file_mode(&self) -> u32 {
        if self.group.is_some() {
            0o640
        } else {
            0o600
        }
    }

    /// Gives `path` `mode` (not narrowed by the umask) and the image group.
    fn set_access(&self, path: &Path, mode: u32) -> io::Result<()> {
        if let Some(group) = &self.group {
            std::os::unix::fs::chown(path, None, Some(group.gid))
                .map_err(|e| io::Error::new(e.kind(), format!("cannot give it group {}: {e}", group.name)))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot set its mode to {mode:04o}: {e}")))
    }

    /// Makes an image file no more readable than `storage.image_group` allows;
    /// true when it was (logged as a warning).
    fn restrict(&self, entry: &Entry) -> io::Result<bool> {
        let mode = entry.meta.mode() & 0o7777;
        let our_group = self.group.as_ref().is_some_and(|g| g.gid == entry.meta.gid());
        let too_open = mode & 0o007 != 0 || (mode & 0o070 != 0 && !(our_group && mode & 0o070 == 0o040)) || mode & 0o7000 != 0;
        if too_open {
            self.set_access(&entry.path, self.file_mode())?;
            log::warn!(
                "control: storage: {} was readable or writable beyond its owner{} (mode {mode:04o}); set to {:04o}",
                entry.path.display(),
                self.group.as_ref().map_or(String::new(), |g| format!(" and group {}", g.name)),
                self.file_mode()
            );
        } else if self.group.is_some() && (!our_group || mode != 0o640) {
            self.set_access(&entry.path, 0o640)?;
        }
        Ok(too_open)
    }

    /// Allocated bytes of image `id`'s file (`st_blocks` x 512); `None` when it is missing.
    pub(super) fn usage(&self, id: ImageId) -> Option<u64> {
        fs::metadata(self.path(id)).ok().map(|m| m.blocks() * 512)
    }

    /// The regular files named like image files (`<id>.img`, `<id>[.<nonce>].img.creating`).
    fn entries(&self) -> Result<Vec<Entry>, String> {
        let listing_failed = |e: io::Error| format!("cannot list {}: {e}", self.dir.display());
        let mut entries = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(listing_failed)? {
            let entry = entry.map_err(listing_failed)?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            let Some(kind) = file_kind(&name) else { continue };
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if meta.is_file() {
                entries.push(Entry { name, path, meta, kind });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Ids after `last` whose file names are free, the first one: an unknown
    /// `<id>.img` is never overwritten by a new image.
    pub(super) fn free_id(&self, last: ImageId) -> Result<ImageId, ApiError> {
        let taken: BTreeSet<ImageId> = self
            .entries()
            .map_err(ApiError::internal)?
            .iter()
            .map(|e| match e.kind {
                FileKind::Image(id) | FileKind::Staging(id) => id,
            })
            .collect();
        let mut id = last;
        loop {
            id = id
                .checked_add(1)
                .ok_or_else(|| ApiError::conflict("name", "every storage image id (1 to 4294967295) has been given out"))?;
            if !taken.contains(&id) && !self.path(id).exists() {
                return Ok(id);
            }
        }
    }

    /// The files no image and no intent accounts for. `records` (the images
    /// and the intents) is read after the directory: a file made by a change is
    /// made after its record or intent is committed, so it is never taken for
    /// an unknown file.
    pub(super) fn orphans(
        &self,
        records: impl FnOnce() -> Result<(StorageRecords, Vec<ImageIntent>), String>,
    ) -> Result<Vec<StorageOrphan>, String> {
        let entries = self.entries()?;
        let (storage, intents) = records()?;
        let staging: BTreeSet<PathBuf> = intents.iter().filter_map(|i| self.staging_of(i)).collect();
        Ok(entries
            .into_iter()
            .filter(|e| match e.kind {
                FileKind::Image(id) => !storage.images.iter().any(|i| i.id == id),
                FileKind::Staging(_) => !staging.contains(&e.path),
            })
            .map(|e| StorageOrphan { file: e.name, path: e.path, bytes: e.meta.len(), usage: e.meta.blocks() * 512 })
            .collect())
    }

    /// Removes unknown file `name` at the operator's request.
    pub(super) fn remove_orphan(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))?;
        self.sync_dir()
    }

    /// Before the commit (and after the creation's intent is recorded): writes
    /// a new image's staging file whole, or renames an adopted file there.
    /// Nothing is left behind on failure.
    pub(super) fn prepare(&self, work: &FileWork) -> Result<(), ApiError> {
        let FileWork::Create { source, intent, .. } = work else { return Ok(()) };
        let Some(staging) = self.staging_of(intent) else { return Ok(()) };
        let written = match source {
            ImageSource::Adopt { file_name, .. } => {
                let from = self.dir.join(file_name);
                rename_new(&from, &staging).and_then(|()| {
                    let access = self.set_access(&staging, self.file_mode()).and_then(|()| self.sync_dir());
                    if access.is_err() {
                        let _ = rename_new(&staging, &from);
                    }
                    access
                })
            }
            _ => {
                let written = self.write_staging(&staging, source);
                if written.is_err() {
                    let _ = fs::remove_file(&staging);
                }
                written
            }
        };
        if let Err(e) = written {
            let what = match source {
                ImageSource::Sparse { .. } => format!("cannot create {}: {e}", staging.display()),
                ImageSource::Copy { from, .. } => format!("cannot copy {} to {}: {e}", from.display(), staging.display()),
                ImageSource::Import { shown, .. } => format!("cannot copy {shown} to {}: {e}", staging.display()),
                ImageSource::Adopt { file_name, .. } => format!("cannot rename {file_name} to {}: {e}", staging.display()),
            };
            log::error!("control: storage: {what}");
            return Err(ApiError::internal(format!("the image was not made: {what}")));
        }
        Ok(())
    }

    /// The commit failed: removes what `prepare` wrote (puts an adopted file
    /// back); true when that is done and the creation's intent can be cleared.
    pub(super) fn discard(&self, work: &FileWork) -> bool {
        let FileWork::Create { source, intent, .. } = work else { return true };
        let Some(staging) = self.staging_of(intent) else { return true };
        let undone = match source {
            ImageSource::Adopt { file_name, .. } => rename_new(&staging, &self.dir.join(file_name)),
            _ => fs::remove_file(&staging),
        };
        if let Err(e) = &undone {
            log::error!("control: storage: cannot undo {}: {e}; it is undone at the next start", staging.display());
        }
        undone.is_ok()
    }

    /// After the commit. The database is the record now, so a failure here is
    /// logged and finished at the next start (`reconcile`, from the intent);
    /// true when the work is done and its intent can be cleared.
    pub(super) fn finish(&self, work: &FileWork) -> bool {
        let result = match work {
            FileWork::None => Ok(()),
            FileWork::Create { id, source, intent } => match self.staging_of(intent) {
                Some(staging) => rename_new(&staging, &self.path(*id))
                    .and_then(|()| match source {
                        ImageSource::Adopt { size, .. } => extend(&self.path(*id), *size),
                        _ => Ok(()),
                    })
                    .and_then(|()| self.sync_dir()),
                None => Ok(()),
            },
            FileWork::Remove { id } => match fs::remove_file(self.path(*id)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other.and_then(|()| self.sync_dir()),
            },
            FileWork::Grow { id, size } => extend(&self.path(*id), *size),
        };
        if let Err(e) = &result {
            log::error!("control: storage: committed, but the file work ({work:?}) failed: {e}; it is finished at the next start");
        }
        result.is_ok()
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// At start: finishes or undoes the file work of each intent (touching only
    /// the file it names), reports files nothing accounts for and leaves them
    /// alone, extends short images and makes image files private.
    pub(super) fn reconcile(&self, storage: &StorageRecords, intents: &[ImageIntent]) -> Result<Reconciled, String> {
        let mut done = Reconciled::default();
        let recorded = |id: ImageId| storage.images.iter().any(|i| i.id == id);
        let failed = |what: &str, path: &Path, e: io::Error| format!("cannot {what} {}: {e}", path.display());
        for intent in intents {
            match intent {
                ImageIntent::Create { id, adopted_from, .. } => {
                    let staging = self.staging_of(intent).unwrap_or_default();
                    if fs::symlink_metadata(&staging).is_err() {
                        // Nothing was written, or the work was finished.
                    } else if recorded(*id) {
                        match rename_new(&staging, &self.path(*id)) {
                            Ok(()) => {
                                log::warn!("control: storage: image {id} was committed before a stop; its file is in place now");
                                done.finished.push(*id);
                            }
                            // Never over a file: the staging file stays, reported below.
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                            Err(e) => return Err(failed("rename", &staging, e)),
                        }
                    } else {
                        match adopted_from {
                            Some(name) => match rename_new(&staging, &self.dir.join(name)) {
                                Ok(()) => log::warn!(
                                    "control: storage: the adoption of {name} was not committed before a stop; it is \
                                     back under its name"
                                ),
                                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                                Err(e) => return Err(failed("rename", &staging, e)),
                            },
                            None => {
                                fs::remove_file(&staging).map_err(|e| failed("remove", &staging, e))?;
                                log::warn!(
                                    "control: storage: removed {}, left by an image creation that was not committed",
                                    staging.display()
                                );
                            }
                        }
                        done.undone.push(staging);
                    }
                }
                ImageIntent::Delete { id } if !recorded(*id) => {
                    let path = self.path(*id);
                    match fs::remove_file(&path) {
                        Ok(()) => {
                            log::warn!(
                                "control: storage: removed {}: the deletion of image {id} was committed before a stop",
                                path.display()
                            );
                            done.removed.push(path);
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(failed("remove", &path, e)),
                    }
                }
                ImageIntent::Delete { .. } => {}
            }
            done.settled.push(intent.id());
        }
        for entry in self.entries()? {
            match entry.kind {
                FileKind::Image(id) if recorded(id) => {}
                // Named as older versions named a staging file: the crash came
                // after the commit, before the rename; renaming it loses nothing.
                FileKind::Staging(id) if recorded(id) && entry.name == format!("{id}{STAGING_SUFFIX}") => {
                    if rename_new(&entry.path, &self.path(id)).is_ok() {
                        log::warn!("control: storage: image {id} was committed before a stop; its file is in place now");
                        done.finished.push(id);
                        let meta = fs::symlink_metadata(self.path(id)).map_err(|e| failed("read", &self.path(id), e))?;
                        let moved = Entry { path: self.path(id), meta, ..entry };
                        if self.restrict(&moved).map_err(|e| failed("restrict", &moved.path, e))? {
                            done.restricted.push(moved.path);
                        }
                        continue;
                    }
                    log::warn!("{}", unknown_line(&entry.path));
                    done.unknown.push(entry.path.clone());
                }
                _ => {
                    log::warn!("{}", unknown_line(&entry.path));
                    done.unknown.push(entry.path.clone());
                }
            }
            if self.restrict(&entry).map_err(|e| failed("restrict", &entry.path, e))? {
                done.restricted.push(entry.path);
            }
        }
        for image in &storage.images {
            let path = self.path(image.id);
            match fs::metadata(&path) {
                Ok(meta) if meta.len() < image.size => {
                    extend(&path, image.size).map_err(|e| failed("extend", &path, e))?;
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
        if done.finished.len() + done.undone.len() + done.removed.len() > 0 {
            self.sync_dir().map_err(|e| failed("sync", &self.dir, e))?;
        }
        Ok(done)
    }

    fn write_staging(&self, staging: &Path, source: &ImageSource) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // create_new: the name is new (its nonce); never write through an existing file or link.
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(staging)?;
        if let Some(group) = &self.group {
            std::os::unix::fs::fchown(&file, None, Some(group.gid))?;
        }
        file.set_permissions(fs::Permissions::from_mode(self.file_mode()))?;
        match source {
            ImageSource::Sparse { size } => file.set_len(*size)?,
            ImageSource::Copy { from, size } => {
                let mut input = File::open(from)?.take(*size);
                copy_sparse(&mut input, &mut file)?;
                file.set_len(*size)?;
            }
            ImageSource::Import { file: from, size, .. } => {
                let mut input = (&**from).take(*size);
                copy_sparse(&mut input, &mut file)?;
                file.set_len(*size)?;
            }
            ImageSource::Adopt { .. } => return Err(io::Error::other("an adopted file is renamed, not written")),
        }
        file.sync_all()
    }
}

fn unknown_line(path: &Path) -> String {
    format!(
        "control: storage: {}: no image or unfinished change of this config database accounts for this file; left \
         alone (see `switchyard ctl storage orphans`)",
        path.display()
    )
}

/// The image id a file named `name` would belong to, when it is named like an image's file.
pub(super) fn file_id(name: &str) -> Option<ImageId> {
    file_kind(name).map(|kind| match kind {
        FileKind::Image(id) | FileKind::Staging(id) => id,
    })
}

/// `<id>.img`, `<id>.img.creating` or `<id>.<16 hex>.img.creating`.
fn file_kind(name: &str) -> Option<FileKind> {
    if let Some(stem) = name.strip_suffix(STAGING_SUFFIX) {
        let (id, nonce) = stem.split_once('.').unwrap_or((stem, ""));
        let nonce_ok = nonce.is_empty() || (nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit()));
        return parse_id(id).filter(|_| nonce_ok).map(FileKind::Staging);
    }
    name.strip_suffix(IMAGE_SUFFIX).and_then(parse_id).map(FileKind::Image)
}

/// "17" -> 17; ids are positive and written without leading zeros.
pub(super) fn parse_id(text: &str) -> Option<ImageId> {
    let id: ImageId = text.parse().ok()?;
    (id > 0 && id.to_string() == text).then_some(id)
}

/// Renames `from` to `to`, failing with `AlreadyExists` rather than replace a file.
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    nix::fcntl::renameat2(None, from, None, to, nix::fcntl::RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)
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
