//! The config database on disk: one redb file, one table per record kind, values
//! as JSON text under stable keys, and a generation counter bumped in the same
//! write transaction as the records it counts. Config requests queued during an
//! upgrade live in the same file (`requests.rs`). Storage users keep their
//! secret in their record on disk only (`StoredUser`).
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use redb::{Durability, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::Serialize;

use switchyard_model::Change;
use switchyard_service::database::{open_whole, RedbFile};
use switchyard_model::{ConfigSnapshot, Vni};
use switchyard_model::{ImageId, ImageIntent, Secret, StorageRecords, StorageUser};
use super::requests::{RequestOutcome, FINISHED_REQUESTS, QUEUED_REQUESTS};
use switchyard_wire::MacAddr;

/// The layout this code reads and writes. A file with another version is refused,
/// except versions 1 (no request tables), 2 (no address migrations), 3 (no
/// storage users and images) and 4 (no image intents), which only lack tables
/// and are upgraded in place (so an older switchyard refuses the file rather
/// than ignore what it does not know).
pub const SCHEMA_VERSION: u64 = 5;

/// `schema_version`, `generation` and `next_request_id`.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Key: the VNI as 8 decimal digits ("00000100"), so text order is numeric order.
const NETWORKS: TableDefinition<&str, &str> = TableDefinition::new("networks");
/// Key: "<vni as 8 digits>/<mac>" ("00000100/02:00:00:00:00:01").
const ENDPOINTS: TableDefinition<&str, &str> = TableDefinition::new("endpoints");
/// Key: as for endpoints.
const REMOTES: TableDefinition<&str, &str> = TableDefinition::new("remotes");
/// Key: the port name.
const PORTS: TableDefinition<&str, &str> = TableDefinition::new("port_networks");
/// Key: "<vni as 8 digits>/<primary IP as 8 hex digits>" ("00000100/0a010005"),
/// so text order is (VNI, address) order.
const ADDRESS_MIGRATIONS: TableDefinition<&str, &str> = TableDefinition::new("address_migrations");
/// Key: the user name; the value is a `StoredUser` (the record and its secret).
const STORAGE_USERS: TableDefinition<&str, &str> = TableDefinition::new("storage_users");
/// Key: the image name.
const STORAGE_IMAGES: TableDefinition<&str, &str> = TableDefinition::new("storage_images");
/// Key: the image id as 10 decimal digits; the value is an `ImageIntent`: file
/// work on that image's file recorded before it is done.
const STORAGE_IMAGE_INTENTS: TableDefinition<&str, &str> = TableDefinition::new("storage_image_intents");

const SCHEMA_KEY: &str = "schema_version";
const GENERATION_KEY: &str = "generation";
/// The highest storage user and image ids ever assigned (ids are never reused).
const LAST_USER_ID_KEY: &str = "last_storage_user_id";
const LAST_IMAGE_ID_KEY: &str = "last_storage_image_id";

/// A storage user as stored: the record and, beside it, its secret as hex
/// (`StorageUser` itself never serializes the secret).
#[derive(Serialize, serde::Deserialize)]
struct StoredUser {
    #[serde(flatten)]
    user: StorageUser,
    secret: String,
}

fn network_key(vni: Vni) -> String {
    format!("{vni:08}")
}

fn mac_key(vni: Vni, mac: MacAddr) -> String {
    format!("{vni:08}/{mac}")
}

fn intent_key(id: ImageId) -> String {
    format!("{id:010}")
}

fn address_migration_key(vni: Vni, primary_ip: Ipv4Addr) -> String {
    format!("{vni:08}/{:08x}", primary_ip.to_bits())
}

/// Every error names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("config database {}: {message}", path.display())]
    Database { path: PathBuf, message: String },
    #[error(
        "config database {}: schema version {found} is not supported (this switchyard reads version {SCHEMA_VERSION}); \
         use the switchyard that wrote it, or move the file away to bootstrap again from the TOML config",
        path.display()
    )]
    Schema { path: PathBuf, found: u64 },
    #[error("config database {}: not a switchyard config database (it has tables {tables} but no schema version)", path.display())]
    Foreign { path: PathBuf, tables: String },
    #[error("config database {}: table {table}, key {key:?}: cannot decode the record: {message}", path.display())]
    Corrupt { path: PathBuf, table: String, key: String, message: String },
    #[error("config database {}: cannot delete {what}: there is no such record", path.display())]
    Missing { path: PathBuf, what: String },
}

/// The config database. Cheap to share behind an `Arc`: redb serialises writers and
/// lets readers run alongside them.
pub struct Store {
    pub(super) db: RedbFile,
    pub(super) path: PathBuf,
    #[cfg(any(test, feature = "test-util"))]
    fail_next_commit: std::sync::atomic::AtomicBool,
    /// `FINISHED_KEPT`, smaller in tests of the pruning.
    #[cfg(test)]
    pub(super) finished_kept: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the database at `path`, creating its directory and an empty database
    /// (generation 0) when absent. Only one process (and one `Store`) can hold it.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let error = |message| StoreError::Database { path: path.to_path_buf(), message };
        open_whole(path, "another switchyard process is using it", Store::open_file, error)
    }

    /// Checks the layout of the opened file, or writes it into a new one.
    fn open_file(db: RedbFile) -> Result<Store, StoreError> {
        let store = Store {
            path: db.path().to_path_buf(),
            db,
            #[cfg(any(test, feature = "test-util"))]
            fail_next_commit: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            finished_kept: std::sync::atomic::AtomicUsize::new(super::requests::FINISHED_KEPT),
        };
        store.initialise()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the schema version, or writes the empty layout into a new file.
    fn initialise(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_error(e))?;
        let tables: Vec<String> =
            txn.list_tables().map_err(|e| self.db_error(e))?.map(|t| t.name().to_string()).collect();
        if tables.iter().any(|t| t == META.name()) {
            let found = {
                let meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
                let version = meta.get(SCHEMA_KEY).map_err(|e| self.db_error(e))?;
                version.map(|v| v.value())
            };
            return match found {
                Some(SCHEMA_VERSION) => {
                    txn.abort().map_err(|e| self.db_error(e))?;
                    Ok(())
                }
                Some(old @ (1..=4)) => {
                    {
                        let mut meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
                        meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(|e| self.db_error(e))?;
                        // Version 2 added the request tables, version 3 the address
                        // migrations, version 4 the storage users and images,
                        // version 5 the image intents.
                        txn.open_table(QUEUED_REQUESTS).map_err(|e| self.db_error(e))?;
                        txn.open_table(FINISHED_REQUESTS).map_err(|e| self.db_error(e))?;
                        for table in [ADDRESS_MIGRATIONS, STORAGE_USERS, STORAGE_IMAGES, STORAGE_IMAGE_INTENTS] {
                            txn.open_table(table).map_err(|e| self.db_error(e))?;
                        }
                    }
                    self.commit_durably(txn)?;
                    log::info!(
                        "config database {}: upgraded from schema version {old} to {SCHEMA_VERSION}",
                        self.path.display()
                    );
                    Ok(())
                }
                Some(found) => Err(StoreError::Schema { path: self.path.clone(), found }),
                None => Err(StoreError::Foreign { path: self.path.clone(), tables: tables.join(", ") }),
            };
        }
        if !tables.is_empty() {
            return Err(StoreError::Foreign { path: self.path.clone(), tables: tables.join(", ") });
        }
        {
            let mut meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(|e| self.db_error(e))?;
            meta.insert(GENERATION_KEY, 0).map_err(|e| self.db_error(e))?;
            for table in [
                NETWORKS,
                ENDPOINTS,
                REMOTES,
                PORTS,
                ADDRESS_MIGRATIONS,
                STORAGE_USERS,
                STORAGE_IMAGES,
                STORAGE_IMAGE_INTENTS,
            ] {
                txn.open_table(table).map_err(|e| self.db_error(e))?;
            }
            txn.open_table(QUEUED_REQUESTS).map_err(|e| self.db_error(e))?;
            txn.open_table(FINISHED_REQUESTS).map_err(|e| self.db_error(e))?;
        }
        self.commit_durably(txn)
    }

    /// Everything, as of one read transaction.
    pub fn snapshot(&self) -> Result<ConfigSnapshot, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error(e))?;
        let meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
        let generation = meta.get(GENERATION_KEY).map_err(|e| self.db_error(e))?.map_or(0, |v| v.value());
        let last_id = |key: &str| -> Result<u32, StoreError> {
            let value = meta.get(key).map_err(|e| self.db_error(e))?.map_or(0, |v| v.value());
            u32::try_from(value).map_err(|_| StoreError::Corrupt {
                path: self.path.clone(),
                table: META.name().to_string(),
                key: key.to_string(),
                message: format!("{value} is not a 32-bit id"),
            })
        };
        let storage = StorageRecords {
            users: self.read_users(&txn)?,
            images: self.read_all(&txn, STORAGE_IMAGES)?,
            last_user_id: last_id(LAST_USER_ID_KEY)?,
            last_image_id: last_id(LAST_IMAGE_ID_KEY)?,
        };
        Ok(ConfigSnapshot {
            generation,
            networks: self.read_all(&txn, NETWORKS)?,
            endpoints: self.read_all(&txn, ENDPOINTS)?,
            remotes: self.read_all(&txn, REMOTES)?,
            ports: self.read_all(&txn, PORTS)?,
            address_migrations: self.read_all(&txn, ADDRESS_MIGRATIONS)?,
            storage,
        })
    }

    /// The storage users with their secrets.
    fn read_users(&self, txn: &redb::ReadTransaction) -> Result<Vec<StorageUser>, StoreError> {
        let stored: Vec<StoredUser> = self.read_all(txn, STORAGE_USERS)?;
        stored
            .into_iter()
            .map(|StoredUser { mut user, secret }| {
                user.secret = Secret::from_hex(&secret).map_err(|problem| StoreError::Corrupt {
                    path: self.path.clone(),
                    table: STORAGE_USERS.name().to_string(),
                    key: user.name.clone(),
                    message: format!("the secret is {problem}"),
                })?;
                Ok(user)
            })
            .collect()
    }

    fn read_all<T: DeserializeOwned>(
        &self,
        txn: &redb::ReadTransaction,
        definition: TableDefinition<&str, &str>,
    ) -> Result<Vec<T>, StoreError> {
        let table = txn.open_table(definition).map_err(|e| self.db_error(e))?;
        let mut records = Vec::with_capacity(usize::try_from(table.len().unwrap_or(0)).unwrap_or(0));
        for entry in table.iter().map_err(|e| self.db_error(e))? {
            let (key, value) = entry.map_err(|e| self.db_error(e))?;
            let record = serde_json::from_str(value.value()).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                table: definition.name().to_string(),
                key: key.value().to_string(),
                message: e.to_string(),
            })?;
            records.push(record);
        }
        Ok(records)
    }

    /// The generation of the last commit (0 when nothing was ever committed).
    pub fn generation(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error(e))?;
        let meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
        let generation = meta.get(GENERATION_KEY).map_err(|e| self.db_error(e))?.map_or(0, |v| v.value());
        Ok(generation)
    }

    /// Applies every change in one write transaction together with the generation
    /// bump, and returns once it is on disk (fsync'd, `Durability::Immediate`). On any
    /// error nothing is applied. Deleting an absent record is an error
    /// (`StoreError::Missing`), so a caller's stale view cannot go unnoticed.
    /// An empty list commits nothing and returns the current generation.
    pub fn commit(&self, changes: &[Change]) -> Result<u64, StoreError> {
        self.commit_and_finish(changes, None)
    }

    /// `commit`, recording `intent` in the same transaction (a deletion's:
    /// the record goes and the unlink it owes is recorded at once).
    pub fn commit_with_intent(&self, changes: &[Change], intent: &ImageIntent) -> Result<u64, StoreError> {
        self.commit_all(changes, None, Some(intent))
    }

    /// Records `intent` (durably) before its file work starts.
    pub fn record_image_intent(&self, intent: &ImageIntent) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_error(e))?;
        {
            let mut intents = txn.open_table(STORAGE_IMAGE_INTENTS).map_err(|e| self.db_error(e))?;
            self.put(&mut intents, &intent_key(intent.id()), intent)?;
        }
        self.commit_durably(txn)
    }

    /// The file work of image `id`'s intent is done (or undone): forgets it.
    pub fn clear_image_intent(&self, id: ImageId) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_error(e))?;
        {
            let mut intents = txn.open_table(STORAGE_IMAGE_INTENTS).map_err(|e| self.db_error(e))?;
            intents.remove(intent_key(id).as_str()).map_err(|e| self.db_error(e))?;
        }
        self.commit_durably(txn)
    }

    /// The intents whose file work is not known to be done, by image id.
    pub fn image_intents(&self) -> Result<Vec<ImageIntent>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error(e))?;
        self.read_all(&txn, STORAGE_IMAGE_INTENTS)
    }

    /// `commit`, and in the same transaction moves queued request `id` to the
    /// finished ones with `outcome` (an applied one gets the commit's generation):
    /// a crash can neither apply a queued request without recording it nor record
    /// it without applying it, so a restart never applies it twice. With no
    /// changes it only records the outcome, at the current generation.
    pub fn commit_and_finish(
        &self,
        changes: &[Change],
        finished: Option<(u64, RequestOutcome)>,
    ) -> Result<u64, StoreError> {
        self.commit_all(changes, finished, None)
    }

    fn commit_all(
        &self,
        changes: &[Change],
        finished: Option<(u64, RequestOutcome)>,
        intent: Option<&ImageIntent>,
    ) -> Result<u64, StoreError> {
        if changes.is_empty() && finished.is_none() && intent.is_none() {
            return self.generation();
        }
        let txn = self.db.begin_write().map_err(|e| self.db_error(e))?;
        let generation = if changes.is_empty() {
            let meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
            let generation = meta.get(GENERATION_KEY).map_err(|e| self.db_error(e))?.map_or(0, |v| v.value());
            generation
        } else {
            let mut networks = txn.open_table(NETWORKS).map_err(|e| self.db_error(e))?;
            let mut endpoints = txn.open_table(ENDPOINTS).map_err(|e| self.db_error(e))?;
            let mut remotes = txn.open_table(REMOTES).map_err(|e| self.db_error(e))?;
            let mut ports = txn.open_table(PORTS).map_err(|e| self.db_error(e))?;
            let mut migrations = txn.open_table(ADDRESS_MIGRATIONS).map_err(|e| self.db_error(e))?;
            let mut users = txn.open_table(STORAGE_USERS).map_err(|e| self.db_error(e))?;
            let mut images = txn.open_table(STORAGE_IMAGES).map_err(|e| self.db_error(e))?;
            let (mut last_user_id, mut last_image_id) = (None::<u32>, None::<u32>);
            for change in changes {
                match change {
                    Change::PutNetwork(n) => self.put(&mut networks, &network_key(n.vni), n)?,
                    Change::DeleteNetwork { vni } => {
                        self.delete(&mut networks, &network_key(*vni), || format!("network {vni}"))?
                    }
                    Change::PutEndpoint(e) => self.put(&mut endpoints, &mac_key(e.vni, e.mac), e)?,
                    Change::DeleteEndpoint { vni, mac } => {
                        self.delete(&mut endpoints, &mac_key(*vni, *mac), || format!("VM endpoint {mac} in VNI {vni}"))?
                    }
                    Change::PutRemote(r) => self.put(&mut remotes, &mac_key(r.vni, r.mac), r)?,
                    Change::DeleteRemote { vni, mac } => self
                        .delete(&mut remotes, &mac_key(*vni, *mac), || format!("remote endpoint {mac} in VNI {vni}"))?,
                    Change::PutPortNetwork(p) => self.put(&mut ports, &p.port, p)?,
                    Change::DeletePortNetwork { port } => {
                        self.delete(&mut ports, port, || format!("the network binding of port {port}"))?
                    }
                    Change::PutAddressMigration(m) => {
                        self.put(&mut migrations, &address_migration_key(m.vni, m.primary_ip), m)?
                    }
                    Change::DeleteAddressMigration { vni, primary_ip } => self.delete(
                        &mut migrations,
                        &address_migration_key(*vni, *primary_ip),
                        || format!("the address migration of {primary_ip} in VNI {vni}"),
                    )?,
                    Change::PutStorageUser(u) => {
                        let stored = StoredUser { user: u.clone(), secret: u.secret.to_hex() };
                        self.put(&mut users, &u.name, &stored)?;
                        last_user_id = last_user_id.max(Some(u.id));
                    }
                    Change::DeleteStorageUser { name } => {
                        self.delete(&mut users, name, || format!("storage user {name}"))?
                    }
                    Change::PutStorageImage(i) => {
                        self.put(&mut images, &i.name, i)?;
                        last_image_id = last_image_id.max(Some(i.id));
                    }
                    Change::DeleteStorageImage { name } => {
                        self.delete(&mut images, name, || format!("storage image {name}"))?
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
            let generation = meta.get(GENERATION_KEY).map_err(|e| self.db_error(e))?.map_or(0, |v| v.value()) + 1;
            meta.insert(GENERATION_KEY, generation).map_err(|e| self.db_error(e))?;
            for (key, id) in [(LAST_USER_ID_KEY, last_user_id), (LAST_IMAGE_ID_KEY, last_image_id)] {
                let Some(id) = id else { continue };
                let last = meta.get(key).map_err(|e| self.db_error(e))?.map_or(0, |v| v.value());
                meta.insert(key, last.max(u64::from(id))).map_err(|e| self.db_error(e))?;
            }
            generation
        };
        if let Some((id, outcome)) = finished {
            self.finish_in(&txn, id, outcome, generation)?;
        }
        if let Some(intent) = intent {
            let mut intents = txn.open_table(STORAGE_IMAGE_INTENTS).map_err(|e| self.db_error(e))?;
            self.put(&mut intents, &intent_key(intent.id()), intent)?;
        }
        #[cfg(any(test, feature = "test-util"))]
        if self.fail_next_commit.swap(false, std::sync::atomic::Ordering::Relaxed) {
            // Dropping an uncommitted write transaction aborts it.
            drop(txn);
            return Err(StoreError::Database { path: self.path.clone(), message: "injected commit failure".into() });
        }
        self.commit_durably(txn)?;
        Ok(generation)
    }

    /// On first start (generation 0) writes `seed` as generation 1 and returns true;
    /// otherwise leaves the database alone and returns false: after the first start
    /// the database, not the TOML file, is the record. An empty seed writes nothing.
    pub fn bootstrap_if_empty(&self, seed: &ConfigSnapshot) -> Result<bool, StoreError> {
        let empty = seed.networks.is_empty()
            && seed.endpoints.is_empty()
            && seed.remotes.is_empty()
            && seed.address_migrations.is_empty();
        if empty && seed.ports.is_empty() {
            return Ok(false);
        }
        // The generation check and the writes share one transaction: two starts
        // racing on one file cannot both seed (redb also locks the file).
        let txn = self.db.begin_write().map_err(|e| self.db_error(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.db_error(e))?;
            let generation = meta.get(GENERATION_KEY).map_err(|e| self.db_error(e))?.map_or(0, |v| v.value());
            if generation != 0 {
                drop(meta);
                txn.abort().map_err(|e| self.db_error(e))?;
                return Ok(false);
            }
            meta.insert(GENERATION_KEY, 1).map_err(|e| self.db_error(e))?;
            let mut networks = txn.open_table(NETWORKS).map_err(|e| self.db_error(e))?;
            for n in &seed.networks {
                self.put(&mut networks, &network_key(n.vni), n)?;
            }
            let mut endpoints = txn.open_table(ENDPOINTS).map_err(|e| self.db_error(e))?;
            for e in &seed.endpoints {
                self.put(&mut endpoints, &mac_key(e.vni, e.mac), e)?;
            }
            let mut remotes = txn.open_table(REMOTES).map_err(|e| self.db_error(e))?;
            for r in &seed.remotes {
                self.put(&mut remotes, &mac_key(r.vni, r.mac), r)?;
            }
            let mut ports = txn.open_table(PORTS).map_err(|e| self.db_error(e))?;
            for p in &seed.ports {
                self.put(&mut ports, &p.port, p)?;
            }
            let mut migrations = txn.open_table(ADDRESS_MIGRATIONS).map_err(|e| self.db_error(e))?;
            for m in &seed.address_migrations {
                self.put(&mut migrations, &address_migration_key(m.vni, m.primary_ip), m)?;
            }
        }
        self.commit_durably(txn)?;
        Ok(true)
    }

    fn put<T: Serialize>(&self, table: &mut redb::Table<&str, &str>, key: &str, record: &T) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Database {
            path: self.path.clone(),
            message: format!("cannot encode {key}: {e}"),
        })?;
        table.insert(key, json.as_str()).map_err(|e| self.db_error(e))?;
        Ok(())
    }

    fn delete(
        &self,
        table: &mut redb::Table<&str, &str>,
        key: &str,
        what: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        match table.remove(key).map_err(|e| self.db_error(e))? {
            Some(_) => Ok(()),
            None => Err(StoreError::Missing { path: self.path.clone(), what: what() }),
        }
    }

    pub(super) fn commit_durably(&self, mut txn: redb::WriteTransaction) -> Result<(), StoreError> {
        // Immediate: commit() returns only after the data and the new root are fsync'd.
        txn.set_durability(Durability::Immediate);
        txn.commit().map_err(|e| self.db_error(e))
    }

    pub(super) fn db_error(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Database { path: self.path.clone(), message: e.into().to_string() }
    }

    /// Makes the next `commit` fail after staging its changes (tests of all-or-nothing).
    #[cfg(any(test, feature = "test-util"))]
    pub fn fail_next_commit(&self) {
        self.fail_next_commit.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
