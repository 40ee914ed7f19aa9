//! Storage users and images through the control core
//! (docs/storage-management.md): validated against the committed
//! configuration, their file work ordered around the commit (`image_files.rs`),
//! then handed to the runtime with a new `StorageCatalog`.
//!
//! Storage changes are not queued during an upgrade of the switching unit: an
//! image's file is written with its commit, which cannot wait in a queue, and a
//! queued user's reply (its secret) would have to be kept in the database.
//! They are refused with 409 then. Without `[storage]` every storage route is
//! refused with 409.
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::core::{count, join_and, parse_ipv4, Control};
use super::error::{ApiError, ErrorKind};
use super::image_files::{file_id, parse_id, round_up_to_sector, FileWork, ImageFiles, ImageSource};
pub use super::image_files::StorageOrphan;
use crate::config::StorageConfig;
use crate::model::rules::{check_image_size, check_storage_ips, check_storage_name, IMAGE_SIZE_MAX};
use crate::configdb::Store;
use crate::model::{unix_ms, Change, ConfigSnapshot, ImageUse, Secret, StorageCatalog, StorageImage, StorageRecords, StorageUser};

/// `POST /v1/storage/users`. The server assigns the id and the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageUserCreate {
    pub name: String,
    pub ips: Vec<String>,
    pub quota_bytes: u64,
}

/// `PUT /v1/storage/users/{name}/ips`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageUserIps {
    pub ips: Vec<String>,
}

/// `PUT /v1/storage/users/{name}/quota`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageUserQuota {
    pub quota_bytes: u64,
}

/// `POST /v1/storage/images`: a sparse image of `size` bytes, or a copy of the
/// file `import_from`, a path relative to `storage.import_dir` (its size
/// rounded up to a sector).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageImageCreate {
    pub name: String,
    pub owner: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub import_from: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// `POST /v1/storage/images/{name}/grow`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageImageGrow {
    pub size: u64,
}

/// `POST /v1/storage/images/{name}/clone`: a new image with the same size and
/// data, owned by `owner` (the source's owner when absent); writable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageImageClone {
    pub name: String,
    #[serde(default)]
    pub owner: Option<String>,
}

/// `PUT /v1/storage/images/{name}/read-only`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageImageReadOnly {
    pub read_only: bool,
}

/// `POST /v1/storage/orphans/{file}/adopt`: makes an unknown file of the
/// images directory an image of `owner` named `name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageOrphanAdopt {
    pub name: String,
    pub owner: String,
    #[serde(default)]
    pub read_only: bool,
}

/// A storage user as the API shows it: never with its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUserView {
    pub name: String,
    pub id: u32,
    pub ips: Vec<Ipv4Addr>,
    pub quota_bytes: u64,
    /// The sum of the sizes of the user's images.
    pub used_bytes: u64,
    /// The user's images, by name.
    pub images: Vec<String>,
}

/// The reply to a create or a secret rotation: the only time the secret is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUserWithSecret {
    #[serde(flatten)]
    pub user: StorageUserView,
    /// 64 hex characters: the key of the protocol's keyed MAC.
    pub secret: String,
}

/// A storage image as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageImageView {
    pub name: String,
    pub id: u32,
    pub owner: String,
    pub size: u64,
    pub read_only: bool,
    pub file: PathBuf,
    /// Bytes the file occupies on disk (`st_blocks` x 512); null when it is missing.
    pub usage: Option<u64>,
    /// A client used it within `storage.attach_lease_ms`.
    pub attached: bool,
    /// The last use, ms since the Unix epoch; null: never since switchyard started.
    pub last_used_unix_ms: Option<u64>,
}

/// `[storage]` as the control plane serves it.
pub(super) struct StorageSetup {
    pub config: StorageConfig,
    pub files: ImageFiles,
    pub uses: Arc<ImageUse>,
}

impl StorageSetup {
    /// Creates the images directory and brings it to what `snapshot` and the
    /// image intents in `store` say; clears the intents it settled.
    pub(super) fn open(
        config: StorageConfig,
        uses: Arc<ImageUse>,
        snapshot: &ConfigSnapshot,
        store: &Store,
    ) -> Result<StorageSetup, String> {
        let files = ImageFiles::open(&config.images, config.image_group.clone())?;
        let intents = store.image_intents().map_err(|e| e.to_string())?;
        let done = files.reconcile(&snapshot.storage, &intents)?;
        for id in &done.settled {
            store.clear_image_intent(*id).map_err(|e| e.to_string())?;
        }
        if !done.is_quiet() {
            log::warn!(
                "control: storage: the images directory was brought to the database's records: {} finished, {} undone, \
                 {} removed by committed deletions, {} extended, {} missing, {} made private, {} unknown files left alone",
                done.finished.len(),
                done.undone.len(),
                done.removed.len(),
                done.extended.len(),
                done.missing.len(),
                done.restricted.len(),
                done.unknown.len()
            );
        }
        log::info!(
            "control: storage: {} users, {} images in {}",
            snapshot.storage.users.len(),
            snapshot.storage.images.len(),
            files.dir().display()
        );
        Ok(StorageSetup { config, files, uses })
    }

    pub(super) fn catalog(&self, snapshot: &ConfigSnapshot) -> Arc<StorageCatalog> {
        Arc::new(StorageCatalog::from_snapshot(snapshot, self.files.dir(), &self.uses))
    }

    fn is_attached(&self, id: u32) -> bool {
        self.uses.is_attached(id, unix_ms(SystemTime::now()), self.config.attach_lease_ms)
    }

    fn image_view(&self, image: &StorageImage) -> StorageImageView {
        StorageImageView {
            name: image.name.clone(),
            id: image.id,
            owner: image.owner.clone(),
            size: image.size,
            read_only: image.read_only,
            file: self.files.path(image.id),
            usage: self.files.usage(image.id),
            attached: self.is_attached(image.id),
            last_used_unix_ms: self.uses.last_used_ms(image.id),
        }
    }

    /// 409 when image `image` is attached.
    fn not_attached(&self, image: &StorageImage, what: &str) -> Result<(), ApiError> {
        if !self.is_attached(image.id) {
            return Ok(());
        }
        let ago = self.uses.last_used_ms(image.id).map_or(0, |last| unix_ms(SystemTime::now()).saturating_sub(last));
        let problem = format!(
            "image {} is attached: a client used it {ago} ms ago (within storage.attach_lease_ms = {}); {what}",
            image.name, self.config.attach_lease_ms
        );
        Err(ApiError::conflict("name", problem))
    }
}

fn user_view(storage: &StorageRecords, user: &StorageUser) -> StorageUserView {
    StorageUserView {
        name: user.name.clone(),
        id: user.id,
        ips: user.ips.clone(),
        quota_bytes: user.quota_bytes,
        used_bytes: storage.used_bytes(&user.name),
        images: storage.images_of(&user.name).map(|i| i.name.clone()).collect(),
    }
}

impl Control {
    fn storage_setup(&self) -> Result<&StorageSetup, ApiError> {
        self.storage.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Conflict,
                None,
                "storage is not configured on this switch: its config has no [storage] table (images = \"<dir>\")",
            )
        })
    }

    /// The one path of every storage change: refused while an upgrade runs, else
    /// under the writer's turn: plan, the file work before the commit, commit
    /// (or undo that file work), the file work after it, publish. Returns the
    /// snapshot after it (the current one when `plan` changes nothing).
    fn change_storage(
        &self,
        plan: impl FnOnce(&ConfigSnapshot, &StorageSetup) -> Result<(Vec<Change>, FileWork), ApiError>,
    ) -> Result<Arc<ConfigSnapshot>, ApiError> {
        let storage = self.storage_setup()?;
        // The turn of change requests, held throughout, as `submit` holds it.
        let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        if *paused {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                None,
                "an upgrade of the switching unit is running; storage changes are not queued (image files are \
                 written with the commit): try again when it ends",
            ));
        }
        let _turn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        let (changes, work) = plan(&current, storage)?;
        if changes.is_empty() {
            return Ok(current);
        }
        // A creation's intent is on disk before its staging file exists, so a
        // start can tell this database's unfinished creation from any other file.
        let intent = work.intent();
        if let (FileWork::Create { .. }, Some(intent)) = (&work, &intent) {
            self.store.record_image_intent(intent).map_err(|e| {
                log::error!("control: cannot record the image intent: {e}");
                ApiError::internal(format!("the change was not made: {e}"))
            })?;
        }
        let forget_intent = |id| {
            if let Err(e) = self.store.clear_image_intent(id) {
                log::error!("control: storage: cannot clear the intent of image {id}: {e}; it is cleared at the next start");
            }
        };
        if let Err(e) = storage.files.prepare(&work) {
            // prepare leaves nothing behind on failure.
            intent.as_ref().inspect(|i| forget_intent(i.id()));
            return Err(e);
        }
        let committed = match (&work, &intent) {
            // A deletion and the unlink it owes are one commit.
            (FileWork::Remove { .. }, Some(intent)) => self.store.commit_with_intent(&changes, intent),
            _ => self.store.commit(&changes),
        };
        let generation = match committed {
            Ok(generation) => generation,
            Err(e) => {
                let undone = storage.files.discard(&work);
                if let (FileWork::Create { .. }, Some(intent), true) = (&work, &intent, undone) {
                    forget_intent(intent.id());
                }
                log::error!("control: commit failed: {e}");
                return Err(ApiError::internal(format!("the change was not made: {e}")));
            }
        };
        if storage.files.finish(&work) {
            intent.as_ref().inspect(|i| forget_intent(i.id()));
        }
        if let FileWork::Remove { id } = work {
            storage.uses.forget(id);
        }
        Ok(self.publish(&current, &changes, generation))
    }

    // Users.

    pub fn storage_users(&self) -> Result<Vec<StorageUserView>, ApiError> {
        self.storage_setup()?;
        let snapshot = self.snapshot();
        Ok(snapshot.storage.users.iter().map(|u| user_view(&snapshot.storage, u)).collect())
    }

    pub fn storage_user(&self, name: &str) -> Result<StorageUserView, ApiError> {
        self.storage_setup()?;
        let snapshot = self.snapshot();
        Ok(user_view(&snapshot.storage, find_user(&snapshot.storage, name)?))
    }

    /// Creates a user with a new id and a new secret, returned this once.
    pub fn create_storage_user(&self, body: StorageUserCreate) -> Result<StorageUserWithSecret, ApiError> {
        self.storage_setup()?;
        let name = checked_name("user", "name", &body.name)?;
        let ips = checked_ips(&body.ips)?;
        let snapshot = self.change_storage(|current, _| {
            let storage = &current.storage;
            if storage.user(&name).is_some() {
                return Err(ApiError::conflict("name", format!("there is already a storage user named {name}")));
            }
            ips_are_free(storage, &ips, &name)?;
            let id = storage.last_user_id.checked_add(1).ok_or_else(|| {
                ApiError::conflict("name", "every storage user id (1 to 4294967295) has been given out")
            })?;
            let secret = Secret::generate().map_err(ApiError::internal)?;
            let user = StorageUser { name: name.clone(), id, ips: ips.clone(), quota_bytes: body.quota_bytes, secret };
            Ok((vec![Change::PutStorageUser(user)], FileWork::None))
        })?;
        with_secret(&snapshot, &name)
    }

    /// Refused while the user owns images.
    pub fn delete_storage_user(&self, name: &str) -> Result<(), ApiError> {
        self.change_storage(|current, _| {
            let user = find_user(&current.storage, name)?;
            let images: Vec<String> = current.storage.images_of(name).map(|i| i.name.clone()).collect();
            if !images.is_empty() {
                let problem = format!(
                    "storage user {name} still owns {} ({}); delete them first",
                    count(images.len(), "image"),
                    join_and(&images)
                );
                return Err(ApiError::conflict("name", problem));
            }
            Ok((vec![Change::DeleteStorageUser { name: user.name.clone() }], FileWork::None))
        })
        .map(drop)
    }

    pub fn set_storage_user_ips(&self, name: &str, body: StorageUserIps) -> Result<StorageUserView, ApiError> {
        self.storage_setup()?;
        let ips = checked_ips(&body.ips)?;
        let snapshot = self.change_storage(|current, _| {
            let user = find_user(&current.storage, name)?;
            ips_are_free(&current.storage, &ips, name)?;
            if user.ips == ips {
                return Ok((vec![], FileWork::None));
            }
            Ok((vec![Change::PutStorageUser(StorageUser { ips: ips.clone(), ..user.clone() })], FileWork::None))
        })?;
        Ok(user_view(&snapshot.storage, find_user(&snapshot.storage, name)?))
    }

    /// Refused below what the user's images already take.
    pub fn set_storage_user_quota(&self, name: &str, body: StorageUserQuota) -> Result<StorageUserView, ApiError> {
        let quota_bytes = body.quota_bytes;
        let snapshot = self.change_storage(|current, _| {
            let user = find_user(&current.storage, name)?;
            let used = current.storage.used_bytes(name);
            if quota_bytes < used {
                let problem = format!(
                    "{quota_bytes} bytes is less than the {used} bytes storage user {name}'s images already take; \
                     delete images first"
                );
                return Err(ApiError::conflict("quota_bytes", problem));
            }
            if user.quota_bytes == quota_bytes {
                return Ok((vec![], FileWork::None));
            }
            Ok((vec![Change::PutStorageUser(StorageUser { quota_bytes, ..user.clone() })], FileWork::None))
        })?;
        Ok(user_view(&snapshot.storage, find_user(&snapshot.storage, name)?))
    }

    /// Replaces the user's secret with a new one, returned this once.
    pub fn rotate_storage_user_secret(&self, name: &str) -> Result<StorageUserWithSecret, ApiError> {
        let snapshot = self.change_storage(|current, _| {
            let user = find_user(&current.storage, name)?;
            let secret = Secret::generate().map_err(ApiError::internal)?;
            Ok((vec![Change::PutStorageUser(StorageUser { secret, ..user.clone() })], FileWork::None))
        })?;
        with_secret(&snapshot, name)
    }

    // Images.

    pub fn storage_images(&self) -> Result<Vec<StorageImageView>, ApiError> {
        let setup = self.storage_setup()?;
        Ok(self.snapshot().storage.images.iter().map(|i| setup.image_view(i)).collect())
    }

    pub fn storage_image(&self, name: &str) -> Result<StorageImageView, ApiError> {
        let setup = self.storage_setup()?;
        Ok(setup.image_view(find_image(&self.snapshot().storage, name)?))
    }

    /// A sparse image of `size` bytes, or a copy of the file `import_from`.
    pub fn create_storage_image(&self, body: StorageImageCreate) -> Result<StorageImageView, ApiError> {
        self.storage_setup()?;
        let name = checked_name("image", "name", &body.name)?;
        let (source, field) = match (body.size, body.import_from.as_deref()) {
            (Some(_), Some(_)) => {
                let problem = "give either size (a new sparse image) or import_from (a copy of a file), not both";
                return Err(ApiError::bad_request("import_from", problem));
            }
            (None, None) => {
                let problem = "give size (the bytes of a new sparse image) or import_from (a file to copy)";
                return Err(ApiError::bad_request("size", problem));
            }
            (Some(size), None) => {
                check_image_size(size).map_err(|problem| ApiError::bad_request("size", problem))?;
                (ImageSource::Sparse { size }, "size")
            }
            (None, Some(path)) => (import_source(self.storage_setup()?.config.import_dir.as_deref(), path)?, "import_from"),
        };
        let size = source.size();
        let snapshot = self.change_storage(|current, setup| {
            let storage = &current.storage;
            name_is_free(storage, &name)?;
            let owner = find_owner(storage, "owner", &body.owner)?;
            fits_quota(storage, owner, size, field)?;
            let id = setup.files.free_id(storage.last_image_id)?;
            let image =
                StorageImage { name: name.clone(), id, owner: owner.name.clone(), size, read_only: body.read_only };
            Ok((vec![Change::PutStorageImage(image)], FileWork::create(id, source.clone())?))
        })?;
        self.image_after(&snapshot, &name)
    }

    /// Refused while the image is attached.
    pub fn delete_storage_image(&self, name: &str) -> Result<(), ApiError> {
        self.change_storage(|current, setup| {
            let image = find_image(&current.storage, name)?;
            setup.not_attached(image, "delete it once no client uses it")?;
            Ok((vec![Change::DeleteStorageImage { name: image.name.clone() }], FileWork::Remove { id: image.id }))
        })
        .map(drop)
    }

    /// Makes the image `size` bytes; it never shrinks.
    pub fn grow_storage_image(&self, name: &str, body: StorageImageGrow) -> Result<StorageImageView, ApiError> {
        self.storage_setup()?;
        let size = body.size;
        check_image_size(size).map_err(|problem| ApiError::bad_request("size", problem))?;
        let snapshot = self.change_storage(|current, _| {
            let storage = &current.storage;
            let image = find_image(storage, name)?;
            if size < image.size {
                let problem =
                    format!("{size} bytes is less than image {name}'s size of {} bytes; images only grow", image.size);
                return Err(ApiError::bad_request("size", problem));
            }
            if size == image.size {
                return Ok((vec![], FileWork::None));
            }
            let owner = find_owner(storage, "owner", &image.owner)?;
            fits_quota(storage, owner, size - image.size, "size")?;
            let grown = StorageImage { size, ..image.clone() };
            Ok((vec![Change::PutStorageImage(grown)], FileWork::Grow { id: image.id, size }))
        })?;
        self.image_after(&snapshot, name)
    }

    /// A new image with the same size and data, writable, owned by `owner`
    /// (the source's owner when absent). Refused while the source is attached
    /// and writable: a copy taken while a client writes could be torn.
    pub fn clone_storage_image(&self, name: &str, body: StorageImageClone) -> Result<StorageImageView, ApiError> {
        self.storage_setup()?;
        let new_name = checked_name("image", "name", &body.name)?;
        let snapshot = self.change_storage(|current, setup| {
            let storage = &current.storage;
            let source = find_image(storage, name)?;
            name_is_free(storage, &new_name)?;
            let owner = find_owner(storage, "owner", body.owner.as_deref().unwrap_or(&source.owner))?;
            fits_quota(storage, owner, source.size, "owner")?;
            if !source.read_only {
                setup.not_attached(source, "a copy taken while a client writes could be torn; clone it once no \
                    client uses it, or set it read-only first")?;
            }
            let id = setup.files.free_id(storage.last_image_id)?;
            let image =
                StorageImage { name: new_name.clone(), id, owner: owner.name.clone(), size: source.size, read_only: false };
            let copy = ImageSource::Copy { from: setup.files.path(source.id), size: source.size };
            Ok((vec![Change::PutStorageImage(image)], FileWork::create(id, copy)?))
        })?;
        self.image_after(&snapshot, &new_name)
    }

    pub fn set_storage_image_read_only(&self, name: &str, body: StorageImageReadOnly) -> Result<StorageImageView, ApiError> {
        let snapshot = self.change_storage(|current, _| {
            let image = find_image(&current.storage, name)?;
            if image.read_only == body.read_only {
                return Ok((vec![], FileWork::None));
            }
            let changed = StorageImage { read_only: body.read_only, ..image.clone() };
            Ok((vec![Change::PutStorageImage(changed)], FileWork::None))
        })?;
        self.image_after(&snapshot, name)
    }

    // Unknown files.

    /// The files of the images directory that no image of this database and no
    /// unfinished change accounts for (left there by another database, or
    /// before this one was started over).
    pub fn storage_orphans(&self) -> Result<Vec<StorageOrphan>, ApiError> {
        let setup = self.storage_setup()?;
        setup
            .files
            .orphans(|| {
                let records = self.store.snapshot().map_err(|e| e.to_string())?;
                Ok((records.storage, self.store.image_intents().map_err(|e| e.to_string())?))
            })
            .map_err(ApiError::internal)
    }

    /// The unknown file `file` (or `<file>.img` for a bare id), found under the writer's turn.
    fn find_orphan(&self, setup: &StorageSetup, current: &ConfigSnapshot, file: &str) -> Result<StorageOrphan, ApiError> {
        let file = if parse_id(file).is_some() { format!("{file}.img") } else { file.to_string() };
        let orphans = setup
            .files
            .orphans(|| Ok((current.storage.clone(), self.store.image_intents().map_err(|e| e.to_string())?)))
            .map_err(ApiError::internal)?;
        orphans.into_iter().find(|o| o.file == file).ok_or_else(|| {
            ApiError::not_found(
                "file",
                format!(
                    "{file:?} is not an unknown file of storage.images {}; `switchyard ctl storage orphans` lists them",
                    setup.files.dir().display()
                ),
            )
        })
    }

    /// Removes unknown file `file` at the operator's request.
    pub fn remove_storage_orphan(&self, file: &str) -> Result<(), ApiError> {
        let setup = self.storage_setup()?;
        let _turn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let orphan = self.find_orphan(setup, &self.snapshot(), file)?;
        setup.files.remove_orphan(&orphan.file).map_err(|e| {
            ApiError::internal(format!("cannot remove {}: {e}", orphan.path.display()))
        })?;
        log::warn!("control: storage: removed unknown file {} ({} bytes) as asked", orphan.path.display(), orphan.bytes);
        Ok(())
    }

    /// Makes unknown file `file` an image: its size is the file's rounded up to
    /// a sector (padded with zeros). It keeps its id when it is named
    /// `<id>.img` with an id this database never gave out, else it gets a new
    /// one and is renamed.
    pub fn adopt_storage_orphan(&self, file: &str, body: StorageOrphanAdopt) -> Result<StorageImageView, ApiError> {
        self.storage_setup()?;
        let name = checked_name("image", "name", &body.name)?;
        let snapshot = self.change_storage(|current, setup| {
            let storage = &current.storage;
            let orphan = self.find_orphan(setup, current, file)?;
            name_is_free(storage, &name)?;
            let owner = find_owner(storage, "owner", &body.owner)?;
            let size = round_up_to_sector(orphan.bytes);
            check_image_size(size).map_err(|problem| {
                ApiError::new(ErrorKind::Conflict, None, format!("{} cannot be an image: {problem}", orphan.file))
            })?;
            fits_quota(storage, owner, size, "owner")?;
            let id = match file_id(&orphan.file) {
                Some(id) if id > storage.last_image_id && orphan.file == format!("{id}.img") => id,
                _ => setup.files.free_id(storage.last_image_id)?,
            };
            let image = StorageImage { name: name.clone(), id, owner: owner.name.clone(), size, read_only: body.read_only };
            let source = ImageSource::Adopt { file_name: orphan.file.clone(), size };
            log::warn!("control: storage: adopting unknown file {} as image {name} ({id})", orphan.path.display());
            Ok((vec![Change::PutStorageImage(image)], FileWork::create(id, source)?))
        })?;
        self.image_after(&snapshot, &name)
    }

    /// The view of image `name` in the snapshot a change left.
    fn image_after(&self, snapshot: &ConfigSnapshot, name: &str) -> Result<StorageImageView, ApiError> {
        Ok(self.storage_setup()?.image_view(find_image(&snapshot.storage, name)?))
    }
}

fn with_secret(snapshot: &ConfigSnapshot, name: &str) -> Result<StorageUserWithSecret, ApiError> {
    let user = find_user(&snapshot.storage, name)?;
    Ok(StorageUserWithSecret { user: user_view(&snapshot.storage, user), secret: user.secret.to_hex() })
}

fn checked_name(noun: &str, field: &str, name: &str) -> Result<String, ApiError> {
    check_storage_name(noun, name).map_err(|problem| ApiError::bad_request(field, problem))?;
    Ok(name.to_string())
}

fn checked_ips(texts: &[String]) -> Result<Vec<Ipv4Addr>, ApiError> {
    let ips = texts.iter().map(|t| parse_ipv4("ips", t)).collect::<Result<Vec<_>, _>>()?;
    check_storage_ips(&ips).map_err(|problem| ApiError::bad_request("ips", problem))?;
    Ok(ips)
}

/// An address belongs to one user: none of `ips` may be another's than `user`'s.
fn ips_are_free(storage: &StorageRecords, ips: &[Ipv4Addr], user: &str) -> Result<(), ApiError> {
    for ip in ips {
        if let Some(other) = storage.ip_owner(*ip).filter(|u| u.name != user) {
            return Err(ApiError::conflict("ips", format!("{ip} is already assigned to storage user {}", other.name)));
        }
    }
    Ok(())
}

fn find_user<'a>(storage: &'a StorageRecords, name: &str) -> Result<&'a StorageUser, ApiError> {
    storage.user(name).ok_or_else(|| ApiError::not_found("name", format!("there is no storage user named {name:?}")))
}

/// A user named in a body must exist already (400: the request is invalid).
fn find_owner<'a>(storage: &'a StorageRecords, field: &str, name: &str) -> Result<&'a StorageUser, ApiError> {
    storage
        .user(name)
        .ok_or_else(|| ApiError::bad_request(field, format!("there is no storage user named {name:?}; create it first")))
}

fn find_image<'a>(storage: &'a StorageRecords, name: &str) -> Result<&'a StorageImage, ApiError> {
    storage.image(name).ok_or_else(|| ApiError::not_found("name", format!("there is no storage image named {name:?}")))
}

fn name_is_free(storage: &StorageRecords, name: &str) -> Result<(), ApiError> {
    match storage.image(name) {
        Some(_) => Err(ApiError::conflict("name", format!("there is already a storage image named {name}"))),
        None => Ok(()),
    }
}

/// 409 naming `field` when `more` bytes of images would take `owner` past its quota.
fn fits_quota(storage: &StorageRecords, owner: &StorageUser, more: u64, field: &str) -> Result<(), ApiError> {
    let used = storage.used_bytes(&owner.name);
    if used.saturating_add(more) <= owner.quota_bytes {
        return Ok(());
    }
    let problem = format!(
        "storage user {}'s quota of {} bytes would be exceeded: its images take {used} bytes, and {more} more do not fit",
        owner.name, owner.quota_bytes
    );
    Err(ApiError::conflict(field, problem))
}

/// The file an import copies: `text` is a path relative to `storage.import_dir`
/// (no `..`, no absolute path, no symbolic link on the way), opened beneath it
/// with openat2 (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so the file read is
/// the one checked and nothing outside the directory can be reached. The
/// image is its size rounded up to a sector.
fn import_source(import_dir: Option<&Path>, text: &str) -> Result<ImageSource, ApiError> {
    let bad = |problem: String| Err(ApiError::bad_request("import_from", problem));
    let Some(dir) = import_dir else {
        return bad("imports are off on this switch: storage.import_dir is not set in its config (the directory \
             image files are imported from)"
            .to_string());
    };
    let path = Path::new(text);
    if text.is_empty() || text.contains('\0') {
        return bad(format!("{text:?} is not a file name"));
    }
    if path.is_absolute() {
        return bad(format!("{text:?} is an absolute path; give the path relative to storage.import_dir {}", dir.display()));
    }
    if path.components().any(|c| c == std::path::Component::ParentDir) {
        return bad(format!("{text:?} contains \"..\"; files are imported only from beneath storage.import_dir {}", dir.display()));
    }
    let dir_file = match std::fs::File::open(dir) {
        Ok(file) => file,
        Err(e) => return bad(format!("storage.import_dir {}: cannot open it: {e}", dir.display())),
    };
    let dir_meta = dir_file.metadata().map_err(|e| ApiError::internal(format!("storage.import_dir {}: {e}", dir.display())))?;
    let euid = nix::unistd::geteuid().as_raw();
    if !dir_meta.is_dir() {
        return bad(format!("storage.import_dir {} is not a directory", dir.display()));
    }
    if dir_meta.mode() & 0o022 != 0 || dir_meta.uid() != euid {
        return bad(format!(
            "storage.import_dir {} must be owned by the switch's user (uid {euid}) and not writable by group or others \
             (it is uid {}, mode {:04o}): anyone who can write there could link any file in",
            dir.display(),
            dir_meta.uid(),
            dir_meta.mode() & 0o7777
        ));
    }
    let shown = dir.join(path).display().to_string();
    let file = match crate::dpdk::open_beneath(&dir_file, path) {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) || e.raw_os_error() == Some(nix::libc::EXDEV) => {
            return bad(format!("{text:?}: a symbolic link or a path out of storage.import_dir {} is not followed", dir.display()));
        }
        Err(e) => return bad(format!("cannot read {shown}: {e}")),
    };
    let meta = file.metadata().map_err(|e| ApiError::internal(format!("{shown}: {e}")))?;
    if meta.is_dir() {
        return bad(format!("{shown} is a directory, not a file"));
    }
    if !meta.is_file() {
        return bad(format!("{shown} is not a regular file"));
    }
    if meta.len() == 0 {
        return bad(format!("{shown} is empty; an image has at least one 512-byte sector"));
    }
    let size = round_up_to_sector(meta.len());
    if size > IMAGE_SIZE_MAX {
        return bad(format!("{shown} is {} bytes, more than the largest image, {IMAGE_SIZE_MAX} bytes", meta.len()));
    }
    Ok(ImageSource::Import { file: Arc::new(file), shown, size })
}
