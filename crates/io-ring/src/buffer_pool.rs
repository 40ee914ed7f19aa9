//! The ring's fixed buffers: one page-aligned allocation cut into equal buffers and
//! registered with the kernel (IORING_REGISTER_BUFFERS), so reads and writes are
//! READ_FIXED / WRITE_FIXED without a per-op page walk.
//!
//! Every buffer is in exactly one place: the free list, a caller's `BufferLease`, an op in
//! flight (its id in the ring's pending table), or a `ReturnedBuffer` inside a completion
//! callback. Leases are tokens, not pointers: bytes are reached through the ring with the
//! lease as proof, so a buffer whose lease was moved into an op cannot be touched until
//! its completion gives it back.
use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::slice;

use super::errors::IoRingError;

/// Buffers start on a 4 KiB boundary: page-aligned for the kernel's pinning and aligned
/// enough for O_DIRECT on 512-byte and 4 KiB logical blocks.
pub(super) const BUFFER_ALIGN: usize = 4096;
/// IORING_MAX_REG_BUFFERS (io_uring/rsrc.c).
const MAX_BUFFERS: u32 = 1 << 14;
/// A registered buffer may not exceed 1 GiB (io_uring/rsrc.c, io_buffer_validate).
const MAX_BUFFER_SIZE: usize = 1 << 30;

/// Which buffer of the pool (the fixed-buffer index given to the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BufferId(pub u16);

/// The right to use one buffer of one ring. Not `Clone`: whoever holds the lease is the
/// only one who can reach the bytes; an op takes it by value and its completion gives it
/// back. Dropping a lease keeps its buffer out of the pool until the ring is dropped.
#[must_use = "a dropped lease takes its buffer out of the pool; give it back with IoRing::release_buffer"]
#[derive(Debug, PartialEq, Eq)]
pub struct BufferLease {
    ring: u64,
    id: u16,
}

impl BufferLease {
    pub fn id(&self) -> BufferId {
        BufferId(self.id)
    }

    /// The fixed-buffer index, for an op that consumes the lease.
    pub(super) fn index(&self) -> u16 {
        self.id
    }
}

pub(super) struct BufferPool {
    memory: NonNull<u8>,
    layout: Layout,
    buffer_size: usize,
    /// Capacity is the buffer count, so pushing a returned id never reallocates.
    free: Vec<u16>,
    ring: u64,
    /// Set when the ring could not confirm that the kernel is done with every buffer:
    /// the memory is then never freed (see `IoRing`'s drop).
    leaked: bool,
}

// SAFETY: the pool exclusively owns its allocation and holds nothing tied to a thread; the
// kernel's access to the memory is bounded by the ring's ops, which move with the ring.
unsafe impl Send for BufferPool {}

impl BufferPool {
    pub(super) fn new(ring: u64, count: u32, buffer_size: usize) -> Result<BufferPool, IoRingError> {
        if count == 0 || count > MAX_BUFFERS {
            return Err(IoRingError::BufferCountOutOfRange(count));
        }
        if buffer_size == 0 || buffer_size % BUFFER_ALIGN != 0 || buffer_size > MAX_BUFFER_SIZE {
            return Err(IoRingError::BadBufferSize(buffer_size));
        }
        let total = buffer_size.checked_mul(count as usize).ok_or(IoRingError::PoolAllocation(usize::MAX))?;
        let layout = Layout::from_size_align(total, BUFFER_ALIGN).map_err(|_| IoRingError::PoolAllocation(total))?;
        // SAFETY: the layout has a non-zero size (count and buffer_size are both non-zero).
        // Zeroed, so every byte a caller can read is initialised even before any I/O.
        let memory = NonNull::new(unsafe { alloc::alloc_zeroed(layout) }).ok_or(IoRingError::PoolAllocation(total))?;
        let free = (0..count as u16).rev().collect();
        Ok(BufferPool { memory, layout, buffer_size, free, ring, leaked: false })
    }

    /// One iovec per buffer, for IORING_REGISTER_BUFFERS (construction only).
    pub(super) fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.free.capacity())
            .map(|index| libc::iovec { iov_base: self.start(index as u16).cast(), iov_len: self.buffer_size })
            .collect()
    }

    pub(super) fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    pub(super) fn free_count(&self) -> usize {
        self.free.len()
    }

    pub(super) fn take(&mut self) -> Option<BufferLease> {
        self.free.pop().map(|id| BufferLease { ring: self.ring, id })
    }

    /// A buffer whose lease or completion ended here; at most once per id, since every id
    /// has a single owner, so the free list never outgrows its capacity.
    pub(super) fn put_back(&mut self, id: u16) {
        self.free.push(id);
    }

    pub(super) fn check(&self, lease: &BufferLease) -> Result<(), IoRingError> {
        if lease.ring == self.ring {
            Ok(())
        } else {
            Err(IoRingError::ForeignBuffer)
        }
    }

    /// The first byte of buffer `id`, which must be below the buffer count.
    pub(super) fn start(&self, id: u16) -> *mut u8 {
        // SAFETY: id < count (ids come from the free list or from leases of this pool), so
        // the offset lies inside the allocation of count * buffer_size bytes.
        unsafe { self.memory.as_ptr().add(usize::from(id) * self.buffer_size) }
    }

    /// The bytes of buffer `id`, whose owner (a lease or a completion) the caller holds.
    pub(super) fn bytes(&self, id: u16) -> &[u8] {
        // SAFETY: the buffer lies inside the live, initialised allocation (zeroed at
        // construction, since then written by us or the kernel). The caller holds the
        // buffer's single owner, which proves no op is in flight on it; a mutable view
        // needs that owner by `&mut`, so none exists while this one lives.
        unsafe { slice::from_raw_parts(self.start(id), self.buffer_size) }
    }

    pub(super) fn lease_bytes(&self, lease: &BufferLease) -> Result<&[u8], IoRingError> {
        self.check(lease)?;
        Ok(self.bytes(lease.id))
    }

    pub(super) fn lease_bytes_mut<'a>(&'a self, lease: &'a mut BufferLease) -> Result<&'a mut [u8], IoRingError> {
        self.check(lease)?;
        // SAFETY: as in bytes(); the lease is this buffer's single owner and is borrowed
        // exclusively for the slice's life, so no other view of the buffer exists (buffers
        // never overlap, so views of other buffers do not alias this one).
        Ok(unsafe { slice::from_raw_parts_mut(self.start(lease.id), self.buffer_size) })
    }

    /// Keeps the memory for the rest of the process: the kernel may still write into it.
    pub(super) fn leak(&mut self) {
        self.leaked = true;
    }

    #[cfg(test)]
    pub(super) fn leaked(&self) -> bool {
        self.leaked
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        if !self.leaked {
            // SAFETY: allocated in new() with this layout; the ring drops the pool only
            // after every op that used a buffer has completed (or sets `leaked`).
            unsafe { alloc::dealloc(self.memory.as_ptr(), self.layout) };
        }
    }
}

/// A buffer given back by a completion. It returns to the pool when dropped, unless
/// `keep` turns it into a lease again (to reuse it for the next op without a free-list trip).
pub struct ReturnedBuffer<'ring> {
    pool: &'ring mut BufferPool,
    id: u16,
    kept: bool,
}

impl<'ring> ReturnedBuffer<'ring> {
    pub(super) fn new(pool: &'ring mut BufferPool, id: u16) -> ReturnedBuffer<'ring> {
        ReturnedBuffer { pool, id, kept: false }
    }

    pub fn id(&self) -> BufferId {
        BufferId(self.id)
    }

    pub fn keep(mut self) -> BufferLease {
        self.kept = true;
        BufferLease { ring: self.pool.ring, id: self.id }
    }
}

impl Deref for ReturnedBuffer<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.pool.bytes(self.id)
    }
}

impl DerefMut for ReturnedBuffer<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: this returned buffer is the single owner of its id (its op completed) and
        // `&mut self` borrows it exclusively, so no other view of the buffer exists.
        unsafe { slice::from_raw_parts_mut(self.pool.start(self.id), self.pool.buffer_size) }
    }
}

impl Drop for ReturnedBuffer<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.pool.put_back(self.id);
        }
    }
}

impl std::fmt::Debug for ReturnedBuffer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReturnedBuffer").field("id", &self.id).finish()
    }
}
