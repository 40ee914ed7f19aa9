//! When each storage image was last used: the block-I/O stage records it, the
//! control plane reads it to tell whether an image is attached (a client used
//! it within `storage.attach_lease_ms`) and refuses to delete an attached one.
//!
//! One `LastUse` (an atomic "ms since the Unix epoch") per image id, shared by
//! `Arc`: the catalog hands each image's to the workers, which store into it
//! without a lock or an allocation; the map from id to `LastUse` is touched only
//! by the control plane (building a catalog, reading, forgetting a deleted image).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::storage::ImageId;

/// A worker stores a new time only when the stored one is older than this, so
/// workers serving one image do not write its cache line on every request.
pub const TOUCH_EVERY_MS: u64 = 250;

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Wall-clock time as microseconds since the Unix epoch (0 before it).
pub fn unix_us(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The last use of one image, ms since the Unix epoch; 0: never used.
#[derive(Debug, Default)]
pub struct LastUse(AtomicU64);

impl LastUse {
    /// A request for the image was served at `now_ms` (the data plane's call).
    pub fn touch(&self, now_ms: u64) {
        if now_ms >= self.0.load(Ordering::Relaxed).saturating_add(TOUCH_EVERY_MS) {
            self.0.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Sets the time outright (tests, and a stage that keeps its own clock).
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every image's `LastUse`, by id.
#[derive(Debug, Default)]
pub struct ImageUse {
    slots: Mutex<BTreeMap<ImageId, Arc<LastUse>>>,
}

impl ImageUse {
    pub fn new() -> ImageUse {
        ImageUse::default()
    }

    /// Image `id`'s record, created (never used) on first ask: every catalog
    /// version hands the same one to the workers.
    pub fn slot(&self, id: ImageId) -> Arc<LastUse> {
        self.lock().entry(id).or_default().clone()
    }

    /// When image `id` was last used (ms since the Unix epoch); `None`: never.
    pub fn last_used_ms(&self, id: ImageId) -> Option<u64> {
        self.lock().get(&id).map(|slot| slot.get()).filter(|ms| *ms != 0)
    }

    /// Records a use of image `id` at `ms` (tests set attachment with it).
    pub fn set_last_used(&self, id: ImageId, ms: u64) {
        self.slot(id).set(ms);
    }

    /// Whether a client used image `id` less than `lease_ms` before `now_ms`.
    pub fn is_attached(&self, id: ImageId, now_ms: u64, lease_ms: u64) -> bool {
        self.last_used_ms(id).is_some_and(|last| now_ms.saturating_sub(last) < lease_ms)
    }

    /// Drops the record of a deleted image (ids are never reused).
    pub fn forget(&self, id: ImageId) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ImageId, Arc<LastUse>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_follows_the_lease() {
        let uses = ImageUse::new();
        assert!(!uses.is_attached(7, 100_000, 15_000), "never used");
        assert_eq!(uses.last_used_ms(7), None);
        uses.set_last_used(7, 90_000);
        assert!(uses.is_attached(7, 100_000, 15_000));
        assert!(uses.is_attached(7, 104_999, 15_000));
        assert!(!uses.is_attached(7, 105_000, 15_000), "the lease ran out");
        // A clock that went back still counts as attached.
        assert!(uses.is_attached(7, 80_000, 15_000));
        uses.forget(7);
        assert!(!uses.is_attached(7, 100_000, 15_000));
    }

    #[test]
    fn workers_share_one_slot_and_write_it_only_when_it_moved_on() {
        let uses = ImageUse::new();
        let worker = uses.slot(3);
        worker.touch(1_000);
        assert_eq!(uses.last_used_ms(3), Some(1_000));
        worker.touch(1_000 + TOUCH_EVERY_MS - 1);
        assert_eq!(uses.last_used_ms(3), Some(1_000), "too soon to write again");
        worker.touch(1_000 + TOUCH_EVERY_MS);
        assert_eq!(uses.last_used_ms(3), Some(1_000 + TOUCH_EVERY_MS));
        assert!(Arc::ptr_eq(&worker, &uses.slot(3)));
    }
}
