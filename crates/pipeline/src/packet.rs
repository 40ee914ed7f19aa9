//! The buffer a stage works on: a DPDK mbuf on a worker, a byte vector in tests.

/// A single contiguous packet buffer with headroom and tailroom.
/// Makes an empty packet buffer (an mbuf from the worker's pool), for stages that make packets.
pub type Allocator<P> = Box<dyn Fn() -> Option<P> + Send>;

pub trait PacketBuf {
    /// The packet, from its first header to its last byte.
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the packet at the front by `len` bytes (for a new outer header) and
    /// returns them, or `None` without change if the headroom is too small.
    fn prepend(&mut self, len: usize) -> Option<&mut [u8]>;
    /// Removes `len` bytes from the front (a stripped header); false without change
    /// if the packet is shorter.
    fn adj(&mut self, len: usize) -> bool;
    /// Removes `len` bytes from the end; false without change if the packet is shorter.
    fn trim(&mut self, len: usize) -> bool;
    /// Grows the packet at the end by `len` bytes and returns them, or `None`
    /// without change if the tailroom is too small.
    fn append(&mut self, len: usize) -> Option<&mut [u8]>;
    /// A copy in a new buffer from the same pool, with the same headroom (for
    /// flooding and head-end replication), or `None` if the pool is empty.
    fn duplicate(&self) -> Option<Self>
    where
        Self: Sized;

    fn len(&self) -> usize {
        self.data().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A packet in a plain vector, with headroom like an mbuf's: for tests and
/// criterion benches of stages, without EAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BytesPacket {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl BytesPacket {
    /// Same headroom as a DPDK mbuf (RTE_PKTMBUF_HEADROOM).
    pub const HEADROOM: usize = 128;
    /// Total buffer size, like the default mbuf data room.
    pub const BUFFER_LEN: usize = 2048 + Self::HEADROOM;

    /// Panics if `bytes` does not fit the buffer after the headroom.
    pub fn new(bytes: &[u8]) -> Self {
        let mut buf = vec![0; Self::BUFFER_LEN.max(Self::HEADROOM + bytes.len())];
        buf[Self::HEADROOM..Self::HEADROOM + bytes.len()].copy_from_slice(bytes);
        BytesPacket { buf, start: Self::HEADROOM, end: Self::HEADROOM + bytes.len() }
    }

    pub fn headroom(&self) -> usize {
        self.start
    }
}

impl PacketBuf for BytesPacket {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    fn prepend(&mut self, len: usize) -> Option<&mut [u8]> {
        let start = self.start.checked_sub(len)?;
        self.start = start;
        Some(&mut self.buf[start..start + len])
    }
    fn adj(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.start += len;
        true
    }
    fn trim(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.end -= len;
        true
    }
    fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        let end = self.end.checked_add(len).filter(|&end| end <= self.buf.len())?;
        let old = std::mem::replace(&mut self.end, end);
        Some(&mut self.buf[old..end])
    }
    fn duplicate(&self) -> Option<Self> {
        Some(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_adj_trim_respect_bounds() {
        let mut p = BytesPacket::new(&[1, 2, 3, 4]);
        assert_eq!(p.data(), &[1, 2, 3, 4]);
        p.prepend(2).unwrap().copy_from_slice(&[9, 9]);
        assert_eq!(p.data(), &[9, 9, 1, 2, 3, 4]);
        assert!(p.prepend(BytesPacket::HEADROOM).is_none());
        assert_eq!(p.len(), 6, "a refused prepend changes nothing");
        assert!(p.adj(3));
        assert_eq!(p.data(), &[2, 3, 4]);
        assert!(!p.adj(4));
        assert!(p.trim(1));
        assert_eq!(p.data(), &[2, 3]);
        assert!(!p.trim(3));
        assert!(p.trim(2) && p.is_empty());
        p.append(2).unwrap().copy_from_slice(&[7, 8]);
        assert_eq!(p.data(), &[7, 8]);
        assert!(p.append(BytesPacket::BUFFER_LEN).is_none());
        assert_eq!(p.duplicate().unwrap(), p);
    }
}
