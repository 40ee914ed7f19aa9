//! Where the board keeps its table: `BoardStore` loads everything once at start
//! and commits each accepted change as one atomic, durable batch. `RedbBoardStore`
//! is the default (one redb file of its own); a replicated store can come later
//! behind the same trait.
use std::path::{Path, PathBuf};

use redb::{Durability, ReadableTable, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::model::{LockEntry, Record, RecordKey};
use switchyard_service::database::{open_whole, RedbFile};

/// Everything a store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub revision: u64,
    pub records: Vec<Record>,
    pub locks: Vec<LockEntry>,
}

/// One write of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    PutRecord(Record),
    DeleteRecord(RecordKey),
    PutLock(LockEntry),
    DeleteLock(RecordKey),
}

/// Writes that land together with the board's revision after them, or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub revision: u64,
    pub writes: Vec<Write>,
}

pub trait BoardStore: Send + 'static {
    /// Everything committed so far.
    fn load(&self) -> Result<Stored, BoardStoreError>;
    /// Commits `batch` atomically; returns only once it survives a crash. On an
    /// error nothing of it is kept.
    fn commit(&mut self, batch: &Batch) -> Result<(), BoardStoreError>;
}

/// Every error names the database.
#[derive(Debug, thiserror::Error)]
pub enum BoardStoreError {
    #[error("board database {}: {message}", path.display())]
    Database { path: PathBuf, message: String },
    #[error(
        "board database {}: schema version {found} is not supported (this switchyard reads version {SCHEMA_VERSION})",
        path.display()
    )]
    Schema { path: PathBuf, found: u64 },
    #[error("board database {}: not a board database (it has tables {tables} but no board schema version)", path.display())]
    Foreign { path: PathBuf, tables: String },
    #[error("board database {}: table {table}, key {key:?}: cannot decode the value: {message}", path.display())]
    Corrupt { path: PathBuf, table: String, key: String, message: String },
}

/// The layout `RedbBoardStore` reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// `schema_version` and `revision`. Not `meta`, so that a config database
/// (which has one) is refused rather than mistaken for a board.
const META: TableDefinition<&str, u64> = TableDefinition::new("board_meta");
/// Key "<vni as 8 digits>/<mac>" ("00000100/02:00:00:00:00:01"), value a `Record` as JSON.
const RECORDS: TableDefinition<&str, &str> = TableDefinition::new("records");
/// Same key, value a `LockEntry` as JSON (holder, expiry and the queued updates).
const LOCKS: TableDefinition<&str, &str> = TableDefinition::new("locks");

const SCHEMA_KEY: &str = "schema_version";
const REVISION_KEY: &str = "revision";

fn table_key(key: &RecordKey) -> String {
    format!("{:08}/{}", key.vni, key.mac)
}

/// The board's own redb file: copy-on-write B-trees, and each commit fsync'd
/// before it returns (`Durability::Immediate`).
pub struct RedbBoardStore {
    db: RedbFile,
    path: PathBuf,
}

impl RedbBoardStore {
    /// Opens the database at `path`, creating it (and its directory) when absent.
    /// redb locks the file: a second board on it is refused.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbBoardStore, BoardStoreError> {
        let path = path.as_ref();
        let error = |message| BoardStoreError::Database { path: path.to_path_buf(), message };
        open_whole(path, "is another board using it?", RedbBoardStore::open_file, error)
    }

    /// Checks the layout of the opened file, or writes it into a new one.
    fn open_file(db: RedbFile) -> Result<RedbBoardStore, BoardStoreError> {
        let store = RedbBoardStore { path: db.path().to_path_buf(), db };
        store.initialise()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the schema version, or writes the empty layout into a new file.
    fn initialise(&self) -> Result<(), BoardStoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_error(e))?;
        let tables: Vec<String> =
            txn.list_tables().map_err(|e| self.db_error(e))?.map(|t| t.name().to_string()).collect();
        if tables.iter().any(|t| t == META.name()) {
            let found = {
                let meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
                let version = meta.get(SCHEMA_KEY).map_err(|e| self.db_error(e))?;
                version.map(|v| v.value())
            };
            txn.abort().map_err(|e| self.db_error(e))?;
            return match found {
                Some(SCHEMA_VERSION) => Ok(()),
                Some(found) => Err(BoardStoreError::Schema { path: self.path.clone(), found }),
                None => Err(BoardStoreError::Foreign { path: self.path.clone(), tables: tables.join(", ") }),
            };
        }
        if !tables.is_empty() {
            return Err(BoardStoreError::Foreign { path: self.path.clone(), tables: tables.join(", ") });
        }
        {
            let mut meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(|e| self.db_error(e))?;
            meta.insert(REVISION_KEY, 0).map_err(|e| self.db_error(e))?;
            txn.open_table(RECORDS).map_err(|e| self.db_error(e))?;
            txn.open_table(LOCKS).map_err(|e| self.db_error(e))?;
        }
        self.commit_durably(txn)
    }

    fn read_all<T: DeserializeOwned>(
        &self,
        txn: &redb::ReadTransaction,
        definition: TableDefinition<&str, &str>,
    ) -> Result<Vec<T>, BoardStoreError> {
        let table = txn.open_table(definition).map_err(|e| self.db_error(e))?;
        let mut values = Vec::new();
        for entry in table.iter().map_err(|e| self.db_error(e))? {
            let (key, value) = entry.map_err(|e| self.db_error(e))?;
            let decoded = serde_json::from_str(value.value()).map_err(|e| BoardStoreError::Corrupt {
                path: self.path.clone(),
                table: definition.name().to_string(),
                key: key.value().to_string(),
                message: e.to_string(),
            })?;
            values.push(decoded);
        }
        Ok(values)
    }

    fn put<T: Serialize>(
        &self,
        table: &mut redb::Table<&str, &str>,
        key: &str,
        value: &T,
    ) -> Result<(), BoardStoreError> {
        let json = serde_json::to_string(value).map_err(|e| BoardStoreError::Database {
            path: self.path.clone(),
            message: format!("cannot encode {key}: {e}"),
        })?;
        table.insert(key, json.as_str()).map_err(|e| self.db_error(e))?;
        Ok(())
    }

    fn commit_durably(&self, mut txn: redb::WriteTransaction) -> Result<(), BoardStoreError> {
        txn.set_durability(Durability::Immediate);
        txn.commit().map_err(|e| self.db_error(e))
    }

    fn db_error(&self, e: impl Into<redb::Error>) -> BoardStoreError {
        BoardStoreError::Database { path: self.path.clone(), message: e.into().to_string() }
    }
}

impl BoardStore for RedbBoardStore {
    fn load(&self) -> Result<Stored, BoardStoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error(e))?;
        let meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
        let revision = meta.get(REVISION_KEY).map_err(|e| self.db_error(e))?.map_or(0, |v| v.value());
        Ok(Stored { revision, records: self.read_all(&txn, RECORDS)?, locks: self.read_all(&txn, LOCKS)? })
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), BoardStoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_error(e))?;
        {
            let mut records = txn.open_table(RECORDS).map_err(|e| self.db_error(e))?;
            let mut locks = txn.open_table(LOCKS).map_err(|e| self.db_error(e))?;
            for write in &batch.writes {
                match write {
                    Write::PutRecord(record) => self.put(&mut records, &table_key(&record.key()), record)?,
                    Write::DeleteRecord(key) => {
                        records.remove(table_key(key).as_str()).map_err(|e| self.db_error(e))?;
                    }
                    Write::PutLock(entry) => self.put(&mut locks, &table_key(&entry.key), entry)?,
                    Write::DeleteLock(key) => {
                        locks.remove(table_key(key).as_str()).map_err(|e| self.db_error(e))?;
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
            meta.insert(REVISION_KEY, batch.revision).map_err(|e| self.db_error(e))?;
        }
        // An error above drops `txn` uncommitted, which aborts it.
        self.commit_durably(txn)
    }
}
