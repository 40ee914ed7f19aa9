//! The owning packet buffer, and a batch for freeing many at once.
use std::ptr::NonNull;
use std::slice;

use dpdk_ffi as ffi;

use switchyard_pipeline::{PacketBuf, BURST_SIZE};

/// An owned `rte_mbuf`, returned to its pool on drop.
///
/// Per-packet work (data pointer, lengths, prepend/adj) is done here in Rust on
/// the mbuf fields; C is called per burst (rx, tx, bulk free), not per packet.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

// SAFETY: an Mbuf is the only owner of its buffer; mbufs move between lcores
// by design (rx on one core, tx on another) and their pool is thread-safe.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of an mbuf DPDK handed over (rx burst, alloc).
    ///
    /// # Safety
    /// `ptr` must be a valid mbuf that nobody else owns or frees.
    pub unsafe fn from_raw(ptr: NonNull<ffi::rte_mbuf>) -> Mbuf {
        Mbuf(ptr)
    }

    /// Gives up ownership, for handing the mbuf to DPDK (tx, bulk free) or to a unit library (`unit-abi`).
    pub fn into_raw(self) -> *mut ffi::rte_mbuf {
        let ptr = self.0.as_ptr();
        std::mem::forget(self);
        ptr
    }

    fn raw(&self) -> &ffi::rte_mbuf {
        // SAFETY: self owns a valid mbuf for its whole life.
        unsafe { self.0.as_ref() }
    }

    fn raw_mut(&mut self) -> &mut ffi::rte_mbuf {
        // SAFETY: self owns a valid mbuf, and &mut self makes this access unique.
        unsafe { self.0.as_mut() }
    }

    /// More than one segment: stages refuse these (`DropReason::MultiSegmentMbuf`).
    #[inline]
    pub fn is_multi_segment(&self) -> bool {
        self.raw().nb_segs > 1
    }

    /// Length of the whole packet, all segments.
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    fn data_ptr(&self) -> *mut u8 {
        let m = self.raw();
        // SAFETY: data_off is within the buffer of buf_len bytes at buf_addr (mbuf invariant).
        unsafe { m.buf_addr.cast::<u8>().add(usize::from(m.data_off)) }
    }
}

impl PacketBuf for Mbuf {
    /// The first segment's data (the whole packet: multi-segment mbufs are refused before stages).
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: data_len bytes from data_off lie inside the segment's buffer (mbuf
        // invariant), initialised by the driver or by us, and borrowed with self.
        unsafe { slice::from_raw_parts(self.data_ptr(), usize::from(self.raw().data_len)) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.raw().data_len);
        // SAFETY: as in data(); &mut self makes the borrow unique and the mbuf is not
        // shared (refcnt 1: we never clone or attach mbufs).
        unsafe { slice::from_raw_parts_mut(self.data_ptr(), len) }
    }

    /// `rte_pktmbuf_prepend` on the mbuf fields.
    fn prepend(&mut self, len: usize) -> Option<&mut [u8]> {
        let len16 = u16::try_from(len).ok()?;
        let m = self.raw_mut();
        if len16 > m.data_off {
            return None;
        }
        m.data_off -= len16;
        m.data_len = m.data_len.checked_add(len16)?;
        m.pkt_len += u32::from(len16);
        Some(&mut self.data_mut()[..len])
    }

    /// `rte_pktmbuf_adj` on the mbuf fields.
    fn adj(&mut self, len: usize) -> bool {
        let m = self.raw_mut();
        let Ok(len16) = u16::try_from(len) else { return false };
        if len16 > m.data_len {
            return false;
        }
        m.data_off += len16;
        m.data_len -= len16;
        m.pkt_len -= u32::from(len16);
        true
    }

    /// `rte_pktmbuf_trim`, single-segment only.
    fn trim(&mut self, len: usize) -> bool {
        if self.is_multi_segment() {
            return false;
        }
        let m = self.raw_mut();
        let Ok(len16) = u16::try_from(len) else { return false };
        if len16 > m.data_len {
            return false;
        }
        m.data_len -= len16;
        m.pkt_len -= u32::from(len16);
        true
    }

    /// `rte_pktmbuf_append`, single-segment only.
    fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.is_multi_segment() {
            return None;
        }
        let len16 = u16::try_from(len).ok()?;
        let m = self.raw_mut();
        let tailroom = m.buf_len - m.data_off - m.data_len;
        if len16 > tailroom {
            return None;
        }
        let old = usize::from(m.data_len);
        m.data_len += len16;
        m.pkt_len += u32::from(len16);
        Some(&mut self.data_mut()[old..])
    }

    /// A new mbuf from the same pool holding a copy of this one's data at the
    /// same offset (one `rte_pktmbuf_alloc` and a memcpy; single-segment only).
    fn duplicate(&self) -> Option<Mbuf> {
        if self.is_multi_segment() {
            return None;
        }
        let m = self.raw();
        // SAFETY: m.pool is the valid pool this mbuf came from; a null return means empty.
        let copy = NonNull::new(unsafe { ffi::rte_pktmbuf_alloc(m.pool) })?;
        // SAFETY: rte_pktmbuf_alloc returned a fresh mbuf that nobody else owns.
        let mut copy = unsafe { Mbuf::from_raw(copy) };
        let c = copy.raw_mut();
        if c.buf_len < m.data_off + m.data_len {
            return None;
        }
        c.data_off = m.data_off;
        c.data_len = m.data_len;
        c.pkt_len = u32::from(m.data_len);
        c.port = m.port;
        copy.data_mut().copy_from_slice(self.data());
        Some(copy)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; after this nobody uses the pointer.
        unsafe { ffi::rte_pktmbuf_free(self.0.as_ptr()) };
    }
}

/// Mbufs to free together with one `rte_pktmbuf_free_bulk` call.
pub struct MbufBatch {
    len: usize,
    mbufs: [*mut ffi::rte_mbuf; BURST_SIZE],
}

// SAFETY: the batch owns the mbufs it holds, and mbufs may move between threads.
unsafe impl Send for MbufBatch {}

impl Default for MbufBatch {
    fn default() -> Self {
        MbufBatch { len: 0, mbufs: [std::ptr::null_mut(); BURST_SIZE] }
    }
}

impl MbufBatch {
    #[inline]
    pub fn push(&mut self, mbuf: Mbuf) {
        if self.len == BURST_SIZE {
            self.free_all();
        }
        self.mbufs[self.len] = mbuf.into_raw();
        self.len += 1;
    }

    pub fn free_all(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: the first len pointers are owned mbufs (pushed via into_raw); len <= 32.
        unsafe { ffi::rte_pktmbuf_free_bulk(self.mbufs.as_mut_ptr(), self.len as u32) };
        self.len = 0;
    }
}

impl Drop for MbufBatch {
    fn drop(&mut self) {
        self.free_all();
    }
}
