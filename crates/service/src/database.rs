//! How every redb database of switchyard is opened (the config database, the
//! board's, the coordinator's and the controllers'), in one place:
//!
//! - A missing file is created whole (under a staging name, then renamed),
//!   mode 0600, in a directory created 0700. Only a missing file is new: a
//!   0-byte or damaged file is refused, never started over.
//! - An existing file readable by group or others is set to 0600 (one WARN);
//!   a directory writable by group or others is refused (another user could
//!   swap the file).
//! - An existing file is checked before it is opened: redb asserts on some
//!   damage (a truncated file, junk appended, flipped bytes) instead of
//!   returning an error, and a release build aborts on a panic. So the
//!   switchyard binary checks the file in a child process of itself
//!   (`switchyard check-database FILE`), on a copy-on-write view that never
//!   writes the file, and a damaged file becomes one line naming it.
//! - A database whose file hit an I/O error (a full disk) is reopened by the
//!   next transaction, so the API recovers once the disk does (`RedbFile`).
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use redb::{Database, ReadableTableMetadata, ReadableTable, StorageError, TableDefinition, TableHandle, TransactionError};

/// The executable that checks database files (`check-database`), set once by
/// the switchyard binary. Unset (a library user, unit tests) the check runs in
/// this process and a panic inside redb is caught, which works only where
/// panics unwind.
static CHECKER: OnceLock<PathBuf> = OnceLock::new();

/// Makes every later open check an existing file by running `exe check-database FILE`.
pub fn check_databases_with(exe: PathBuf) {
    let _ = CHECKER.set(exe);
}

/// The exit code of `check-database` when the file is damaged or cannot be opened
/// (the reason on stdout, one line).
pub const CHECK_REFUSED: u8 = 3;

/// A redb error, boxed (it is large); the stores turn it into theirs.
#[derive(Debug)]
pub struct RedbError(Box<redb::Error>);

impl From<RedbError> for redb::Error {
    fn from(e: RedbError) -> redb::Error {
        *e.0
    }
}

fn boxed(e: impl Into<redb::Error>) -> RedbError {
    RedbError(Box::new(e.into()))
}

/// An open redb database that reopens itself after an I/O error: redb refuses
/// every write transaction after one failed write (`PreviousIo`) until the
/// `Database` is dropped and opened again, which also rolls back whatever the
/// failed commit left behind.
pub struct RedbFile {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
}

impl RedbFile {
    fn new(path: PathBuf, db: Database) -> RedbFile {
        RedbFile { path, db: RwLock::new(Some(Arc::new(db))) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn begin_write(&self) -> Result<redb::WriteTransaction, RedbError> {
        self.begin(Database::begin_write)
    }

    pub fn begin_read(&self) -> Result<redb::ReadTransaction, RedbError> {
        self.begin(Database::begin_read)
    }

    /// `begin` on the open database; after an I/O error (redb then refuses every
    /// transaction until the file is opened again) on the database reopened.
    fn begin<T>(&self, begin: impl Fn(&Database) -> Result<T, TransactionError>) -> Result<T, RedbError> {
        let db = self.current()?;
        match begin(&db) {
            Err(TransactionError::Storage(StorageError::PreviousIo)) => {
                let failed = Arc::as_ptr(&db);
                drop(db);
                begin(&*self.reopen(failed)?).map_err(boxed)
            }
            other => other.map_err(boxed),
        }
    }

    /// The open database, or (after a reopen that failed) a new attempt to open it.
    fn current(&self) -> Result<Arc<Database>, RedbError> {
        if let Some(db) = self.db.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return Ok(db.clone());
        }
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db = Arc::new(Database::open(&self.path).map_err(boxed)?);
        log::warn!("database {}: open again after an I/O error", self.path.display());
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Drops the `failed` database (the caller has dropped its own reference;
    /// the file stays locked until its last transaction ends) and opens the
    /// file again; another thread may have done so already.
    fn reopen(&self, failed: *const Database) -> Result<Arc<Database>, RedbError> {
        {
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                Some(db) if !std::ptr::eq(Arc::as_ptr(db), failed) => return Ok(db.clone()),
                _ => *slot = None,
            }
        }
        log::warn!("database {}: an earlier write failed (I/O error); opening it again", self.path.display());
        self.current()
    }
}

/// Opens the database file at `path` and hands it to `init` (which checks or
/// writes its layout); see the module comment for what happens before. Every
/// problem is one `error(message)`, the message saying what is wrong with the
/// file and what to do (`in_use`: who may be holding it).
pub fn open_whole<T, E>(
    path: &Path,
    in_use: &str,
    init: impl Fn(RedbFile) -> Result<T, E>,
    error: impl Fn(String) -> E,
) -> Result<T, E> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| error(format!("cannot create its directory: {e}")))?;
    let dir_mode = std::fs::metadata(dir).map_err(|e| error(format!("cannot read its directory: {e}")))?.mode();
    if dir_mode & 0o022 != 0 {
        return Err(error(format!(
            "its directory {} is writable by group or others (mode {:o}), so another user could replace the file: \
             chmod go-w {}",
            dir.display(),
            dir_mode & 0o7777,
            dir.display()
        )));
    }
    match std::fs::metadata(path) {
        Ok(metadata) => {
            open_existing(path, &metadata, in_use).map_err(&error)?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            create_whole(path, dir, &init).map_err(|e| match e {
                Creating::Io(e) => error(format!("cannot create: {e}")),
                Creating::Open(message) => error(message),
                Creating::Init(e) => e,
            })?;
        }
        Err(e) => return Err(error(format!("cannot read: {e}"))),
    }
    let db = open_file(path, in_use).map_err(&error)?;
    init(RedbFile::new(path.to_path_buf(), db))
}

enum Creating<E> {
    Io(std::io::Error),
    Open(String),
    Init(E),
}

/// Builds the empty layout under a staging name beside `path`, renames it into
/// place and syncs the directory: a crash while creating never leaves a
/// half-written file where the next start looks; a leftover staging file is
/// started over.
fn create_whole<T, E>(path: &Path, dir: &Path, init: &impl Fn(RedbFile) -> Result<T, E>) -> Result<(), Creating<E>> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(".creating");
    let staging = PathBuf::from(staging);
    match std::fs::remove_file(&staging) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(Creating::Io(e)),
        _ => {}
    }
    // 0600 whatever the umask: the databases hold secrets.
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&staging).map_err(Creating::Io)?;
    let db = open_file(&staging, "").map_err(Creating::Open)?;
    // Closed before the rename: what is renamed into place is whole and closed.
    drop(init(RedbFile::new(staging.clone(), db)).map_err(Creating::Init)?);
    std::fs::rename(&staging, path).map_err(Creating::Io)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Creating::Io)
}

/// What must hold of an existing file before redb opens it.
fn open_existing(path: &Path, metadata: &std::fs::Metadata, in_use: &str) -> Result<(), String> {
    if !metadata.is_file() {
        return Err("is not a regular file".into());
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("is readable by group or others (mode {mode:o}) and cannot be set to 0600: {e}"))?;
        log::warn!("database {}: was readable by group or others (mode {mode:o}); set to 0600", path.display());
    }
    if metadata.len() == 0 {
        return Err("is empty (0 bytes), so it is not a database: restore it from a backup, or remove it to start \
                    with a new, empty database"
            .into());
    }
    // Hold redb's lock (flock) while the file is checked, so that a file another
    // process is writing is reported as in use, not as damaged.
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => format!("is already open ({in_use})"),
            other => format!("cannot lock: {other}"),
        })?;
    let checked = match CHECKER.get() {
        Some(exe) => check_in_child(exe, path),
        None => check_here(path),
    };
    drop(lock);
    checked.map_err(|problem| match problem.starts_with("cannot open:") {
        true => format!("{problem}: restore it from a backup, or move it away to start with a new, empty database"),
        false => problem,
    })
}

fn open_file(path: &Path, in_use: &str) -> Result<Database, String> {
    Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => format!("is already open ({in_use})"),
        other => format!("cannot open: {}", describe(other.into())),
    })
}

fn describe(e: redb::Error) -> String {
    match e {
        redb::Error::Io(io) if io.kind() == ErrorKind::InvalidData => {
            "it is not a redb database file, or it is damaged".to_string()
        }
        other => other.to_string(),
    }
}

/// `exe check-database path`: the child's one line on refusal, or how it ended.
fn check_in_child(exe: &Path, path: &Path) -> Result<(), String> {
    let output = Command::new(exe)
        .arg("check-database")
        .arg(path)
        .env("RUST_LOG", "off")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot check it: cannot run {}: {e}", exe.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().next() {
        Some(line) if output.status.code() == Some(CHECK_REFUSED.into()) => Err(line.to_string()),
        _ => Err(format!("cannot open: it is damaged (the check of the file ended with {})", output.status)),
    }
}

/// The check, in this process, a panic caught (where panics unwind).
fn check_here(path: &Path) -> Result<(), String> {
    std::panic::catch_unwind(|| check_file(path)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(format!("cannot open: it is damaged (redb: {})", one_line(message)))
    })
}

/// `switchyard check-database FILE`: checks the file and prints one line saying
/// what is wrong with it (exit `CHECK_REFUSED`), or nothing (exit 0). A panic
/// inside redb is reported the same way, from the panic hook, before a release
/// build would abort.
pub fn check_database_command(path: &Path) -> std::process::ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        let place = info.location().map(|l| format!(" at {}:{}", short_file(l.file()), l.line())).unwrap_or_default();
        println!("cannot open: it is damaged (redb: {}{place})", one_line(message));
        std::process::exit(CHECK_REFUSED.into());
    }));
    match check_file(path) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(problem) => {
            println!("{problem}");
            std::process::ExitCode::from(CHECK_REFUSED)
        }
    }
}

fn short_file(file: &str) -> &str {
    file.rsplit_once("/src/").map_or(file, |(_, rest)| rest)
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Opens the file on a copy-on-write view (redb's recovery writes go to memory,
/// the file is never written), has redb verify every page checksum, and reads
/// every row of the tables switchyard writes (`&str` keys, `&str` or `u64` values).
fn check_file(path: &Path) -> Result<(), String> {
    let view = CopyOnWriteFile::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut db = redb::Builder::new()
        .create_with_backend(view)
        .map_err(|e| format!("cannot open: {}", describe(e.into())))?;
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => return Err("cannot open: it is damaged (its last commit fails its checksums)".into()),
        Err(e) => return Err(format!("cannot open: it is damaged ({})", describe(e.into()))),
    }
    let damaged = |e: redb::Error| format!("cannot open: it is damaged ({})", describe(e));
    let txn = db.begin_read().map_err(|e| damaged(e.into()))?;
    for table in txn.list_tables().map_err(|e| damaged(e.into()))? {
        let text: TableDefinition<&str, &str> = TableDefinition::new(table.name());
        match txn.open_table(text) {
            Ok(rows) => {
                for row in rows.iter().map_err(|e| damaged(e.into()))? {
                    let (key, value) = row.map_err(|e| damaged(e.into()))?;
                    let _ = (key.value().len(), value.value().len());
                }
                continue;
            }
            Err(redb::TableError::TableTypeMismatch { .. }) => {}
            Err(e) => return Err(damaged(e.into())),
        }
        let numbers: TableDefinition<&str, u64> = TableDefinition::new(table.name());
        match txn.open_table(numbers) {
            Ok(rows) => {
                let _ = rows.len().map_err(|e| damaged(e.into()))?;
                for row in rows.iter().map_err(|e| damaged(e.into()))? {
                    row.map_err(|e| damaged(e.into()))?;
                }
            }
            // Not a layout of ours; its pages passed the checksums above.
            Err(redb::TableError::TableTypeMismatch { .. }) => {}
            Err(e) => return Err(damaged(e.into())),
        }
    }
    Ok(())
}

/// The file as redb sees it, read-only underneath: writes land in memory, in
/// whole blocks, and later reads see them.
#[derive(Debug)]
struct CopyOnWriteFile {
    file: std::fs::File,
    state: Mutex<Overlay>,
}

#[derive(Debug)]
struct Overlay {
    len: u64,
    /// Bytes of the file at or past this offset read as zeros (it was truncated).
    file_limit: u64,
    blocks: BTreeMap<u64, Vec<u8>>,
}

const BLOCK: u64 = 4096;

impl CopyOnWriteFile {
    fn open(path: &Path) -> std::io::Result<CopyOnWriteFile> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(CopyOnWriteFile { file, state: Mutex::new(Overlay { len, file_limit: len, blocks: BTreeMap::new() }) })
    }

    fn read_file(&self, offset: u64, buf: &mut [u8], limit: u64) -> std::io::Result<()> {
        buf.fill(0);
        let readable = usize::try_from(limit.saturating_sub(offset)).unwrap_or(usize::MAX).min(buf.len());
        let mut done = 0;
        while done < readable {
            match self.file.read_at(&mut buf[done..readable], offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        Ok(())
    }

    fn block(&self, state: &Overlay, index: u64) -> std::io::Result<Vec<u8>> {
        if let Some(block) = state.blocks.get(&index) {
            return Ok(block.clone());
        }
        let mut block = vec![0; BLOCK as usize];
        self.read_file(index * BLOCK, &mut block, state.file_limit)?;
        Ok(block)
    }
}

impl redb::StorageBackend for CopyOnWriteFile {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.state.lock().unwrap_or_else(PoisonError::into_inner).len)
    }

    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut buf = vec![0; len];
        self.read_file(offset, &mut buf, state.file_limit)?;
        let end = offset + len as u64;
        for (&index, block) in state.blocks.range(offset / BLOCK..end.div_ceil(BLOCK)) {
            let start = (index * BLOCK).max(offset);
            let stop = ((index + 1) * BLOCK).min(end);
            buf[(start - offset) as usize..(stop - offset) as usize]
                .copy_from_slice(&block[(start - index * BLOCK) as usize..(stop - index * BLOCK) as usize]);
        }
        Ok(buf)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if len < state.len {
            state.file_limit = state.file_limit.min(len);
            let first_gone = len.div_ceil(BLOCK);
            state.blocks.retain(|&index, _| index < first_gone);
            if len % BLOCK != 0 {
                let index = len / BLOCK;
                if let Some(block) = state.blocks.get_mut(&index) {
                    block[(len % BLOCK) as usize..].fill(0);
                }
            }
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let end = offset + data.len() as u64;
        for index in offset / BLOCK..end.div_ceil(BLOCK) {
            let mut block = self.block(&state, index)?;
            let start = (index * BLOCK).max(offset);
            let stop = ((index + 1) * BLOCK).min(end);
            block[(start - index * BLOCK) as usize..(stop - index * BLOCK) as usize]
                .copy_from_slice(&data[(start - offset) as usize..(stop - offset) as usize]);
            state.blocks.insert(index, block);
        }
        state.len = state.len.max(end);
        Ok(())
    }
}
