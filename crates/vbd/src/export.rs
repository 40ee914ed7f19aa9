//! Exports: a name, an optional description and a backend, and the set a server offers.
//! Exports can be added and removed while the server runs (a VM host attaches and detaches
//! images); a connection keeps the export it chose until it ends.

use std::sync::{Arc, PoisonError, RwLock};

use super::backend::BlockBackend;
use super::nbd_wire::{transmission_flag, BlockSizes, ExportLimits, MAX_STRING_LEN};

/// The largest READ / WRITE / WRITE_ZEROES length: 32 MiB, the size proto.md says clients
/// may count on and that no server should take for a denial of service.
pub const MAX_PAYLOAD: u32 = 1 << 25;

/// proto.md "Block size constraints": any alignment (a file backs the export), 4 KiB for
/// efficient I/O, `MAX_PAYLOAD` at most.
pub const BLOCK_SIZES: BlockSizes = BlockSizes { minimum: 1, preferred: 4096, maximum: MAX_PAYLOAD };

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("export name of {0} bytes is longer than the {MAX_STRING_LEN} the NBD protocol allows")]
    NameTooLong(usize),
    #[error("export description of {0} bytes is longer than the {MAX_STRING_LEN} the NBD protocol allows")]
    DescriptionTooLong(usize),
    #[error("export name {0:?} contains a NUL byte")]
    NameHasNul(String),
    #[error("an export named {0:?} is already served")]
    Duplicate(String),
}

/// One export. The empty name is the protocol's "default export".
#[derive(Debug)]
pub struct Export<B> {
    name: String,
    description: String,
    backend: Arc<B>,
}

impl<B: BlockBackend> Export<B> {
    pub fn new(name: impl Into<String>, backend: Arc<B>) -> Result<Export<B>, ExportError> {
        let name = name.into();
        if name.len() > MAX_STRING_LEN {
            return Err(ExportError::NameTooLong(name.len()));
        }
        if name.contains('\0') {
            return Err(ExportError::NameHasNul(name));
        }
        Ok(Export { name, description: String::new(), backend })
    }

    /// Shown by `nbdinfo --list` (NBD_OPT_LIST details and NBD_INFO_DESCRIPTION).
    pub fn with_description(mut self, description: impl Into<String>) -> Result<Export<B>, ExportError> {
        let description = description.into();
        if description.len() > MAX_STRING_LEN {
            return Err(ExportError::DescriptionTooLong(description.len()));
        }
        self.description = description;
        Ok(self)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    pub fn size(&self) -> u64 {
        self.backend.size()
    }

    /// What the client is told it may send (proto.md "Transmission flags"). Trim and
    /// write-zeroes stay advertised on a read-only export: they are answered with EPERM.
    pub fn transmission_flags(&self) -> u16 {
        let mut flags = transmission_flag::HAS_FLAGS
            | transmission_flag::SEND_FLUSH
            | transmission_flag::SEND_FUA
            | transmission_flag::SEND_TRIM
            | transmission_flag::SEND_WRITE_ZEROES;
        if self.backend.read_only() {
            flags |= transmission_flag::READ_ONLY;
        }
        if self.backend.can_multi_conn() {
            flags |= transmission_flag::CAN_MULTI_CONN;
        }
        flags
    }

    pub fn limits(&self) -> ExportLimits {
        ExportLimits { size: self.size(), max_payload: MAX_PAYLOAD, read_only: self.backend.read_only() }
    }
}

/// The exports a server offers, in the order they were added (the order NBD_OPT_LIST uses).
/// Read once per option during a handshake, never per request.
#[derive(Debug)]
pub struct ExportSet<B> {
    exports: RwLock<Vec<Arc<Export<B>>>>,
}

impl<B: BlockBackend> ExportSet<B> {
    pub fn new() -> ExportSet<B> {
        ExportSet { exports: RwLock::new(Vec::new()) }
    }

    pub fn add(&self, export: Export<B>) -> Result<(), ExportError> {
        let mut exports = self.exports.write().unwrap_or_else(PoisonError::into_inner);
        if exports.iter().any(|served| served.name == export.name) {
            return Err(ExportError::Duplicate(export.name));
        }
        exports.push(Arc::new(export));
        Ok(())
    }

    /// Stops offering `name` to new connections; open ones keep it. False if it was not there.
    pub fn remove(&self, name: &str) -> bool {
        let mut exports = self.exports.write().unwrap_or_else(PoisonError::into_inner);
        let before = exports.len();
        exports.retain(|served| served.name != name);
        exports.len() != before
    }

    pub fn find(&self, name: &str) -> Option<Arc<Export<B>>> {
        let exports = self.exports.read().unwrap_or_else(PoisonError::into_inner);
        exports.iter().find(|served| served.name == name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Export<B>>> {
        self.exports.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl<B: BlockBackend> Default for ExportSet<B> {
    fn default() -> Self {
        ExportSet::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileBackend;

    fn backend(read_only: bool) -> (tempfile::TempDir, Arc<FileBackend>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        std::fs::File::create(&path).unwrap().set_len(8192).unwrap();
        (dir, Arc::new(FileBackend::open(&path, read_only).unwrap()))
    }

    #[test]
    fn names_and_descriptions_follow_the_protocol_string_rules() {
        let (_dir, file) = backend(false);
        assert!(Export::new("", Arc::clone(&file)).is_ok(), "the default export");
        assert!(Export::new("n".repeat(MAX_STRING_LEN), Arc::clone(&file)).is_ok());
        assert_eq!(Export::new("n".repeat(4097), Arc::clone(&file)).unwrap_err(), ExportError::NameTooLong(4097));
        assert_eq!(Export::new("a\0b", Arc::clone(&file)).unwrap_err(), ExportError::NameHasNul("a\0b".into()));
        let described = Export::new("d", Arc::clone(&file)).unwrap().with_description("a disk").unwrap();
        assert_eq!((described.name(), described.description(), described.size()), ("d", "a disk", 8192));
        let refused = Export::new("d", file).unwrap().with_description("x".repeat(4097)).unwrap_err();
        assert_eq!(refused, ExportError::DescriptionTooLong(4097));
    }

    #[test]
    fn flags_and_limits_follow_the_backend() {
        let (_dir, file) = backend(false);
        let export = Export::new("rw", file).unwrap();
        assert_eq!(export.transmission_flags(), 0b1_0110_1101, "HAS_FLAGS FLUSH FUA TRIM WRITE_ZEROES MULTI_CONN");
        assert_eq!(export.limits(), ExportLimits { size: 8192, max_payload: MAX_PAYLOAD, read_only: false });
        let (_dir, file) = backend(true);
        let export = Export::new("ro", file).unwrap();
        assert_ne!(export.transmission_flags() & transmission_flag::READ_ONLY, 0);
        assert!(export.limits().read_only);
    }

    #[test]
    fn a_set_refuses_duplicates_and_forgets_removed_exports() {
        let (_dir, file) = backend(false);
        let set = ExportSet::new();
        set.add(Export::new("a", Arc::clone(&file)).unwrap()).unwrap();
        set.add(Export::new("b", Arc::clone(&file)).unwrap()).unwrap();
        let again = set.add(Export::new("a", Arc::clone(&file)).unwrap()).unwrap_err();
        assert_eq!(again, ExportError::Duplicate("a".into()));
        let names: Vec<_> = set.all().iter().map(|e| e.name().to_string()).collect();
        assert_eq!(names, ["a", "b"]);
        let kept = set.find("a").unwrap();
        assert!(set.remove("a"));
        assert!(!set.remove("a"));
        assert!(set.find("a").is_none());
        assert_eq!(kept.name(), "a", "a connection keeps what it found");
    }
}
