//! Where the coordinator and a controller keep their tables: `IntercloudStore`
//! loads everything once at start and commits each accepted change as one
//! atomic, durable batch. `RedbIntercloudStore` is the default (a redb file of
//! the role's own); a distributed store can come later behind the same trait.
//! Rows are JSON values in named tables, so both roles share one layout.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Durability, ReadableTable, TableDefinition, TableHandle};

use crate::svc::database::{open_whole, RedbFile};

/// Everything a store holds: the owner's revision and, per table, key -> JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub revision: u64,
    pub tables: BTreeMap<String, BTreeMap<String, String>>,
}

impl Stored {
    pub fn rows(&self, table: &str) -> impl Iterator<Item = (&String, &String)> {
        self.tables.get(table).into_iter().flat_map(|rows| rows.iter())
    }
}

/// One write of a batch; `value` None deletes the row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub table: &'static str,
    pub key: String,
    pub value: Option<String>,
}

/// Writes that land together with the revision after them, or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub revision: u64,
    pub writes: Vec<Write>,
}

pub trait IntercloudStore: Send + 'static {
    fn load(&self) -> Result<Stored, StoreError>;
    /// Commits `batch` atomically; returns only once it survives a crash. On an
    /// error nothing of it is kept.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {}: {message}", path.display())]
    Database { path: PathBuf, message: String },
    #[error("database {}: it belongs to {found:?}, not {wanted:?}", path.display())]
    Owner { path: PathBuf, found: String, wanted: String },
    #[error("database {}: not an inter-cloud database (it has tables {tables})", path.display())]
    Foreign { path: PathBuf, tables: String },
    #[error("database {}: table {table}, key {key:?}: cannot decode the value: {message}", path.display())]
    Corrupt { path: PathBuf, table: String, key: String, message: String },
    /// A store that refuses commits (tests of "nothing half applied").
    #[error("the store refused the commit: {0}")]
    Refused(String),
}

/// `schema_version`, `owner` ("coordinator", "controller:NAME") and `revision`.
const META: TableDefinition<&str, &str> = TableDefinition::new("intercloud_meta");
/// Key "<table>/<row key>", value the row as JSON.
const ROWS: TableDefinition<&str, &str> = TableDefinition::new("intercloud_rows");
const SCHEMA_VERSION: &str = "1";

/// A redb file of its own, each commit fsync'd before it returns.
pub struct RedbIntercloudStore {
    db: RedbFile,
    path: PathBuf,
}

impl RedbIntercloudStore {
    /// Opens (creating it whole when absent) the database at `path` for
    /// `owner`; one that belongs to another role or cloud is refused.
    pub fn open(path: impl AsRef<Path>, owner: &str) -> Result<RedbIntercloudStore, StoreError> {
        let path = path.as_ref();
        let error = |message| StoreError::Database { path: path.to_path_buf(), message };
        open_whole(path, "is another process using it?", |db| RedbIntercloudStore::open_file(db, owner), error)
    }

    fn open_file(db: RedbFile, owner: &str) -> Result<RedbIntercloudStore, StoreError> {
        let store = RedbIntercloudStore { path: db.path().to_path_buf(), db };
        store.initialise(owner)?;
        Ok(store)
    }

    fn initialise(&self, owner: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_error(e))?;
        let tables: Vec<String> =
            txn.list_tables().map_err(|e| self.db_error(e))?.map(|t| t.name().to_string()).collect();
        if tables.iter().any(|t| t == META.name()) {
            let found = {
                let meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
                let found = meta.get("owner").map_err(|e| self.db_error(e))?.map(|v| v.value().to_string());
                found
            };
            txn.abort().map_err(|e| self.db_error(e))?;
            return match found {
                Some(found) if found == owner => Ok(()),
                Some(found) => Err(StoreError::Owner { path: self.path.clone(), found, wanted: owner.to_string() }),
                None => Err(StoreError::Foreign { path: self.path.clone(), tables: tables.join(", ") }),
            };
        }
        if !tables.is_empty() {
            return Err(StoreError::Foreign { path: self.path.clone(), tables: tables.join(", ") });
        }
        {
            let mut meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
            meta.insert("schema_version", SCHEMA_VERSION).map_err(|e| self.db_error(e))?;
            meta.insert("owner", owner).map_err(|e| self.db_error(e))?;
            meta.insert("revision", "0").map_err(|e| self.db_error(e))?;
            txn.open_table(ROWS).map_err(|e| self.db_error(e))?;
        }
        self.commit_durably(txn)
    }

    fn commit_durably(&self, mut txn: redb::WriteTransaction) -> Result<(), StoreError> {
        txn.set_durability(Durability::Immediate);
        txn.commit().map_err(|e| self.db_error(e))
    }

    fn db_error(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Database { path: self.path.clone(), message: e.into().to_string() }
    }
}

impl IntercloudStore for RedbIntercloudStore {
    fn load(&self) -> Result<Stored, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error(e))?;
        let meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
        let revision = meta.get("revision").map_err(|e| self.db_error(e))?.map(|v| v.value().to_string());
        let revision = revision.unwrap_or_default().parse().unwrap_or(0);
        let rows = txn.open_table(ROWS).map_err(|e| self.db_error(e))?;
        let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for row in rows.iter().map_err(|e| self.db_error(e))? {
            let (key, value) = row.map_err(|e| self.db_error(e))?;
            let Some((table, key)) = key.value().split_once('/') else {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    table: ROWS.name().into(),
                    key: key.value().into(),
                    message: "the key names no table".into(),
                });
            };
            tables.entry(table.to_string()).or_default().insert(key.to_string(), value.value().to_string());
        }
        Ok(Stored { revision, tables })
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_error(e))?;
        {
            let mut rows = txn.open_table(ROWS).map_err(|e| self.db_error(e))?;
            for write in &batch.writes {
                let key = format!("{}/{}", write.table, write.key);
                match &write.value {
                    Some(value) => rows.insert(key.as_str(), value.as_str()).map_err(|e| self.db_error(e))?,
                    None => rows.remove(key.as_str()).map_err(|e| self.db_error(e))?,
                };
            }
            let mut meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
            meta.insert("revision", batch.revision.to_string().as_str()).map_err(|e| self.db_error(e))?;
        }
        // An error above drops `txn` uncommitted, which aborts it.
        self.commit_durably(txn)
    }
}

/// A store in memory (tests); `refuse` makes every commit fail.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    pub stored: std::sync::Arc<std::sync::Mutex<Stored>>,
    pub refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl IntercloudStore for MemoryStore {
    fn load(&self) -> Result<Stored, StoreError> {
        Ok(self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Refused("the disk is full (test)".into()));
        }
        let mut stored = self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        stored.revision = batch.revision;
        for write in &batch.writes {
            let table = stored.tables.entry(write.table.to_string()).or_default();
            match &write.value {
                Some(value) => table.insert(write.key.clone(), value.clone()),
                None => table.remove(&write.key),
            };
        }
        Ok(())
    }
}

/// "<vni as 8 digits>/<mac>": rows of one VM sort by VNI, then MAC.
pub fn row_key(vni: u32, mac: &crate::wire::MacAddr) -> String {
    format!("{vni:08}/{mac}")
}

/// Decodes every row of `table`.
pub fn decode_rows<T: serde::de::DeserializeOwned>(stored: &Stored, table: &str) -> Result<Vec<T>, StoreError> {
    stored
        .rows(table)
        .map(|(key, value)| {
            serde_json::from_str(value).map_err(|e| StoreError::Corrupt {
                path: PathBuf::new(),
                table: table.to_string(),
                key: key.clone(),
                message: e.to_string(),
            })
        })
        .collect()
}

pub fn encode<T: serde::Serialize>(value: &T) -> String {
    // Our own model types: serializing them cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}
