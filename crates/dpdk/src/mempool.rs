//! Packet-buffer pools.
use std::ffi::CString;
use std::ptr::NonNull;

use dpdk_ffi as ffi;

use super::error::DpdkError;

/// A pool of packet mbufs (`rte_pktmbuf_pool_create`), freed on drop.
#[derive(Debug)]
pub struct Mempool(NonNull<ffi::rte_mempool>);

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe (ring_mp_mc ops);
// the pointer is only used through DPDK's thread-safe API.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `mbufs` buffers of `data_room` bytes (headroom included), `cache` per lcore.
    pub fn create(name: &str, mbufs: u32, cache: u32, data_room: u16) -> Result<Mempool, DpdkError> {
        let op = format!("rte_pktmbuf_pool_create({name})");
        let c_name = CString::new(name).map_err(|_| DpdkError::new(op.clone(), 22))?;
        // SAFETY: the name is NUL-terminated; SOCKET_ID_ANY (-1) lets DPDK choose.
        let pool = unsafe { ffi::rte_pktmbuf_pool_create(c_name.as_ptr(), mbufs, cache, 0, data_room, -1) };
        NonNull::new(pool).map(Mempool).ok_or_else(|| DpdkError::last(op))
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.0.as_ptr()
    }

    /// An empty mbuf from the pool (`rte_pktmbuf_alloc`); `None` if the pool is empty.
    /// Not for per-packet use: the tunnel stage's in-advance ARP requests.
    pub fn alloc(&self) -> Option<super::Mbuf> {
        // SAFETY: the pool is valid while self lives; a null return means empty.
        let mbuf = NonNull::new(unsafe { ffi::rte_pktmbuf_alloc(self.0.as_ptr()) })?;
        // SAFETY: a fresh mbuf nobody else owns.
        Some(unsafe { super::Mbuf::from_raw(mbuf) })
    }

    /// Buffers currently taken from the pool (in rings, in flight, in caches' owners).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid while self lives.
        unsafe { ffi::rte_mempool_in_use_count(self.0.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: every port using the pool holds an Arc to it, so by now they are closed.
        unsafe { ffi::rte_mempool_free(self.0.as_ptr()) };
    }
}
