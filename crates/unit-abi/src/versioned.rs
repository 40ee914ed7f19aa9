//! A versioned pair of pointers, one for the VM-side ports and one for the
//! uplink ports, read by workers without a lock on the fast path.
//!
//! Workers keep their own `Arc` of what they use and look at the pair again
//! only when its generation moved, checked once per run-loop iteration; at that
//! point they announce the generation they hold (a quiescent state). A replaced
//! value is retired, and the control plane frees it once every worker announced
//! a generation at least as new as the swap (quiescent-state-based
//! reclamation), so a worker never frees a table or a unit.
//!
//! Used twice: for the switching units themselves (swapped by an upgrade) and,
//! inside the vRouter, for its table versions (swapped on every config change).
//! The slots are plain mutexes rather than an arc-swap: only the control plane
//! and a worker whose generation moved take them, and no thread-local state is
//! left behind, so a unit library that uses this can really be unloaded.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam::utils::CachePadded;

use super::Side;

/// What a reader announced last: the generation it holds, or `OFFLINE`.
type Announcement = Arc<CachePadded<AtomicU64>>;
const OFFLINE: u64 = u64::MAX;

pub struct Versioned<T: ?Sized> {
    vm: Mutex<Arc<T>>,
    uplink: Mutex<Arc<T>>,
    /// Bumped after every swap; readers compare it once per loop.
    generation: AtomicU64,
    readers: Mutex<Vec<Announcement>>,
    retired: Mutex<Vec<(u64, Arc<T>)>>,
}

impl<T: ?Sized> Versioned<T> {
    /// Both sides bound to `value`.
    pub fn new(value: Arc<T>) -> Self {
        Versioned {
            vm: Mutex::new(value.clone()),
            uplink: Mutex::new(value),
            generation: AtomicU64::new(1),
            readers: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// The value bound to `side` now.
    pub fn active(&self, side: Side) -> Arc<T> {
        lock(self.slot(side)).clone()
    }

    /// Binds `side` to `value` without pausing any reader; the value it
    /// replaces is freed once no reader can still be using it.
    pub fn publish(&self, side: Side, value: Arc<T>) {
        let old = std::mem::replace(&mut *lock(self.slot(side)), value);
        // Release: a reader that sees the new generation also sees the new value.
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        lock(&self.retired).push((generation, old));
        self.reclaim();
    }

    /// Binds both sides, VM side first (the order of the upgrade's port switch).
    pub fn publish_both(&self, value: Arc<T>) {
        self.publish(Side::Vm, value.clone());
        self.publish(Side::Uplink, value);
    }

    /// Frees retired values every reader has moved past. Returns how many are
    /// still waiting.
    pub fn reclaim(&self) -> usize {
        let oldest_announced =
            lock(&self.readers).iter().map(|a| a.load(Ordering::Acquire)).min().unwrap_or(OFFLINE);
        let freed: Vec<(u64, Arc<T>)>;
        let waiting = {
            let mut retired = lock(&self.retired);
            let (gone, kept) = retired.drain(..).partition(|(generation, _)| *generation <= oldest_announced);
            freed = gone;
            *retired = kept;
            retired.len()
        };
        // Dropped outside the lock: freeing a unit may take a while.
        drop(freed);
        waiting
    }

    /// Registers a reader (a worker) holding the current generation.
    pub fn reader(&self) -> Reader {
        let seen = self.generation.load(Ordering::Acquire);
        let announcement: Announcement = Arc::new(CachePadded::new(AtomicU64::new(seen)));
        lock(&self.readers).push(announcement.clone());
        Reader { seen, announcement }
    }

    /// The generation a reader must announce before what was retired at it can go.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn slot(&self, side: Side) -> &Mutex<Arc<T>> {
        match side {
            Side::Vm => &self.vm,
            Side::Uplink => &self.uplink,
        }
    }
}

/// One reader's view: the generation it loaded and its announcement slot.
/// Dropping it announces that the reader holds nothing any more.
pub struct Reader {
    seen: u64,
    announcement: Announcement,
}

impl Reader {
    /// The generation of `versioned` if it moved since this reader last looked.
    #[inline]
    pub fn moved<T: ?Sized>(&self, versioned: &Versioned<T>) -> Option<u64> {
        let generation = versioned.generation();
        (generation != self.seen).then_some(generation)
    }

    /// From here on this reader holds nothing older than `generation`.
    pub fn announce(&mut self, generation: u64) {
        self.seen = generation;
        self.announcement.store(generation, Ordering::Release);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.announcement.store(OFFLINE, Ordering::Release);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// Sets `freed` when dropped.
    struct Value {
        n: u32,
        freed: Arc<AtomicBool>,
    }

    impl Drop for Value {
        fn drop(&mut self) {
            self.freed.store(true, Ordering::SeqCst);
        }
    }

    fn value(n: u32) -> (Arc<Value>, Arc<AtomicBool>) {
        let freed = Arc::new(AtomicBool::new(false));
        (Arc::new(Value { n, freed: freed.clone() }), freed)
    }

    /// A worker's loop step: reload if the generation moved, then announce.
    fn quiescent(reader: &mut Reader, held: &mut Arc<Value>, pair: &Versioned<Value>, side: Side) {
        if let Some(generation) = reader.moved(pair) {
            *held = pair.active(side);
            reader.announce(generation);
        }
    }

    #[test]
    fn a_replaced_value_is_freed_only_after_every_reader_passed_a_quiescent_state() {
        let (first, first_freed) = value(1);
        let pair = Versioned::new(first);
        let (mut a, mut a_held) = (pair.reader(), pair.active(Side::Vm));
        let (mut b, mut b_held) = (pair.reader(), pair.active(Side::Vm));
        let (second, _) = value(2);
        pair.publish_both(second);
        assert_eq!(pair.reclaim(), 2, "both readers may still use the old value");
        assert_eq!(a_held.n, 1, "until its quiescent state a reader keeps its value");
        quiescent(&mut a, &mut a_held, &pair, Side::Vm);
        assert_eq!(a_held.n, 2);
        assert_eq!(pair.reclaim(), 2);
        drop(a_held);
        assert!(!first_freed.load(Ordering::SeqCst));
        quiescent(&mut b, &mut b_held, &pair, Side::Vm);
        assert_eq!(pair.reclaim(), 0);
        assert!(first_freed.load(Ordering::SeqCst), "freed by reclaim, on the control side");
    }

    #[test]
    fn sides_are_switched_separately_and_gone_readers_do_not_hold_back_reclaim() {
        let (first, first_freed) = value(1);
        let pair = Versioned::new(first);
        let reader = pair.reader();
        let (second, _) = value(2);
        pair.publish(Side::Vm, second);
        assert_eq!(pair.active(Side::Vm).n, 2, "VM side switched");
        assert_eq!(pair.active(Side::Uplink).n, 1, "uplink still on the old value");
        assert!(reader.moved(&pair).is_some());
        drop(reader);
        let (third, _) = value(3);
        pair.publish(Side::Uplink, third);
        assert_eq!(pair.reclaim(), 0);
        assert!(first_freed.load(Ordering::SeqCst));
    }
}
