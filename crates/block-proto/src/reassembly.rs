//! Collects the fragments of one I/O into one buffer (docs/storage-protocol.md, "Fragments"): a WRITE's
//! request datagrams on the server (keyed by user and request id), a READ's reply datagrams on the client
//! (keyed by request id). Fixed capacity, every buffer allocated at construction: nothing is allocated per
//! datagram.
//!
//! What arrived is kept as a bitmap of 64-byte granules (fragments lie on that grid, `check_fragment`), so a
//! duplicate or an overlapping retransmission is never counted twice, and an I/O is complete only when every
//! granule of its length is there: a reused buffer never shows bytes of an earlier I/O.

use switchyard_wire::block::{BlockRepr, FRAGMENT_GRANULE, MAX_IO_LEN};

const GRANULES: usize = (MAX_IO_LEN / FRAGMENT_GRANULE) as usize;
const BITMAP_WORDS: usize = GRANULES / 64;
const BUFFER_LEN: usize = MAX_IO_LEN as usize;

/// What became of a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// It brought the last missing bytes: `data(handle)` holds the whole I/O until `release(handle)`.
    Complete(SlotHandle),
    /// Taken; bytes are still missing.
    Incomplete,
    /// Every byte of it was here already, or the I/O is complete and not released yet: nothing changed.
    Duplicate,
    /// No free slot, not even a stale one: dropped (the sender retransmits).
    TableFull,
    /// Its header differs from the first fragment's in more than fragment offset and payload length: dropped.
    Inconsistent,
    /// Not a data fragment: the op and direction carry no data, the header fails `BlockRepr::validate` (off the
    /// grid, beyond the I/O, an I/O over `MAX_IO_LEN`), or `payload` is not `payload_len` bytes. Dropped;
    /// `BlockRepr::parse` already refuses all of these.
    NotAFragment,
}

/// A completed I/O's slot. A handle outlived by `release` (or by the slot's reuse) finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotHandle {
    index: usize,
    generation: u32,
}

struct Slot {
    /// The first fragment's header with fragment offset and payload length zeroed.
    header: Option<BlockRepr>,
    received: [u64; BITMAP_WORDS],
    received_granules: u32,
    /// When a fragment of it last arrived (a duplicate too: the sender is still at it).
    last_activity: u64,
    generation: u32,
    complete: bool,
}

/// The reassembly table. `K` names an I/O: (user id, request id) on the server, request id on the client.
/// Times are the caller's monotonic clock, in the unit of `timeout`.
pub struct Reassembly<K> {
    /// Scanned per fragment: kept apart from the slots' bulk. A slot is in use when its key is `Some`.
    keys: Box<[Option<K>]>,
    slots: Box<[Slot]>,
    buffers: Box<[u8]>,
    timeout: u64,
    in_use: usize,
}

impl<K: Copy + Eq> Reassembly<K> {
    /// Room for `capacity` I/Os in progress (`capacity` x 64 KiB is allocated now). A partial I/O with no new
    /// fragment for `timeout` is stale: `evict_stale` drops it, and so does `insert` when it needs the slot.
    pub fn new(capacity: usize, timeout: u64) -> Self {
        let empty = || Slot {
            header: None,
            received: [0; BITMAP_WORDS],
            received_granules: 0,
            last_activity: 0,
            generation: 0,
            complete: false,
        };
        Reassembly {
            keys: vec![None; capacity].into_boxed_slice(),
            slots: (0..capacity).map(|_| empty()).collect(),
            buffers: vec![0; capacity * BUFFER_LEN].into_boxed_slice(),
            timeout,
            in_use: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.keys.len()
    }

    /// Slots in use, partial or complete.
    pub fn len(&self) -> usize {
        self.in_use
    }

    pub fn is_empty(&self) -> bool {
        self.in_use == 0
    }

    /// Takes the fragment `payload` of the I/O `key`, whose (parsed) header is `header`.
    pub fn insert(&mut self, key: K, header: &BlockRepr, payload: &[u8], now: u64) -> Insert {
        // `validate` bounds the length by MAX_IO_LEN and the fragment by the length: the copy stays in the buffer.
        let fits = header.validate().is_ok();
        if !header.carries_data() || !fits || payload.len() != usize::from(header.payload_len) {
            return Insert::NotAFragment;
        }
        let index = match self.find(key) {
            Some(index) => index,
            None => match self.allocate(key, header, now) {
                Some(index) => index,
                None => return Insert::TableFull,
            },
        };
        let slot = &mut self.slots[index];
        if slot.header != Some(io_header(header)) {
            return Insert::Inconsistent;
        }
        slot.last_activity = now;
        if slot.complete {
            return Insert::Duplicate;
        }
        let start = header.fragment_offset as usize;
        let granules = start / FRAGMENT_GRANULE as usize..(start + payload.len()).div_ceil(FRAGMENT_GRANULE as usize);
        let new_granules = mark(&mut slot.received, granules);
        if new_granules == 0 {
            return Insert::Duplicate;
        }
        let base = index * BUFFER_LEN + start;
        self.buffers[base..base + payload.len()].copy_from_slice(payload);
        slot.received_granules += new_granules;
        if slot.received_granules < header.length.div_ceil(FRAGMENT_GRANULE) {
            return Insert::Incomplete;
        }
        slot.complete = true;
        Insert::Complete(SlotHandle { index, generation: slot.generation })
    }

    /// The whole I/O of a completed slot (its length in bytes).
    pub fn data(&self, handle: SlotHandle) -> Option<&[u8]> {
        let header = self.completed(handle)?;
        let base = handle.index * BUFFER_LEN;
        self.buffers.get(base..base + header.length as usize)
    }

    /// The header of a completed slot's I/O (fragment offset and payload length 0).
    pub fn header(&self, handle: SlotHandle) -> Option<&BlockRepr> {
        self.completed(handle)
    }

    pub fn key(&self, handle: SlotHandle) -> Option<K> {
        self.completed(handle)?;
        self.keys[handle.index]
    }

    /// Frees a completed slot (after the I/O was executed, or copied out). `false` for a stale handle.
    pub fn release(&mut self, handle: SlotHandle) -> bool {
        if self.completed(handle).is_none() {
            return false;
        }
        self.free(handle.index);
        true
    }

    /// Drops the partial I/O `key` (its sender gave up on it). `false` if there is none; a completed one is
    /// not touched (its buffer may be in use: `release` it).
    pub fn discard(&mut self, key: K) -> bool {
        match self.find(key) {
            Some(index) if !self.slots[index].complete => {
                self.free(index);
                true
            }
            _ => false,
        }
    }

    /// Drops every partial I/O that had no fragment for `timeout`; returns how many.
    pub fn evict_stale(&mut self, now: u64) -> usize {
        let mut evicted = 0;
        for index in 0..self.keys.len() {
            if self.keys[index].is_some() && self.is_stale(index, now) {
                self.free(index);
                evicted += 1;
            }
        }
        evicted
    }

    fn is_stale(&self, index: usize, now: u64) -> bool {
        let slot = &self.slots[index];
        !slot.complete && now.saturating_sub(slot.last_activity) >= self.timeout
    }

    fn find(&self, key: K) -> Option<usize> {
        self.keys.iter().position(|k| *k == Some(key))
    }

    /// A free slot for `key`, evicting a stale one if none is free.
    fn allocate(&mut self, key: K, header: &BlockRepr, now: u64) -> Option<usize> {
        let index = match self.keys.iter().position(Option::is_none) {
            Some(index) => index,
            None => (0..self.keys.len()).find(|&index| self.is_stale(index, now))?,
        };
        if self.keys[index].is_none() {
            self.in_use += 1;
        }
        self.keys[index] = Some(key);
        let slot = &mut self.slots[index];
        slot.header = Some(io_header(header));
        slot.received = [0; BITMAP_WORDS];
        slot.received_granules = 0;
        slot.last_activity = now;
        slot.generation = slot.generation.wrapping_add(1);
        slot.complete = false;
        Some(index)
    }

    fn free(&mut self, index: usize) {
        self.keys[index] = None;
        self.slots[index].header = None;
        self.in_use -= 1;
    }

    fn completed(&self, handle: SlotHandle) -> Option<&BlockRepr> {
        let slot = self.slots.get(handle.index)?;
        if !slot.complete || slot.generation != handle.generation {
            return None;
        }
        slot.header.as_ref()
    }
}

/// What every fragment of one I/O shares.
fn io_header(header: &BlockRepr) -> BlockRepr {
    BlockRepr { fragment_offset: 0, payload_len: 0, ..*header }
}

/// Sets the bits `granules` (within `GRANULES`) and returns how many were clear.
fn mark(bitmap: &mut [u64; BITMAP_WORDS], granules: core::ops::Range<usize>) -> u32 {
    let mut newly_set = 0;
    for granule in granules.take_while(|&granule| granule < GRANULES) {
        let (word, bit) = (granule / 64, 1u64 << (granule % 64));
        if bitmap[word] & bit == 0 {
            bitmap[word] |= bit;
            newly_set += 1;
        }
    }
    newly_set
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_wire::block::{Flags, FragmentSize, Op, Status};
    use switchyard_wire::test_util::XorShift;

    const TIMEOUT: u64 = 1_000;
    type ServerKey = (u32, u64);

    fn write(user_id: u32, request_id: u64, length: u32) -> BlockRepr {
        BlockRepr {
            op: Op::Write,
            flags: Flags::NONE,
            user_id,
            image_id: 1,
            request_id,
            offset: 8192,
            length,
            fragment_offset: 0,
            payload_len: 0,
            status: Status::Ok,
        }
    }

    fn data(length: u32, seed: u8) -> Vec<u8> {
        (0..length).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// The fragments of `io` carrying `bytes`, cut by `size`.
    fn fragments(io: &BlockRepr, bytes: &[u8], size: FragmentSize) -> Vec<(BlockRepr, Vec<u8>)> {
        size.ranges(io.length)
            .map(|r| {
                let header = BlockRepr { fragment_offset: r.start, payload_len: (r.end - r.start) as u16, ..*io };
                (header, bytes[r.start as usize..r.end as usize].to_vec())
            })
            .collect()
    }

    fn insert_all<K: Copy + Eq>(table: &mut Reassembly<K>, key: K, frags: &[(BlockRepr, Vec<u8>)]) -> Vec<Insert> {
        frags.iter().map(|(h, p)| table.insert(key, h, p, 0)).collect()
    }

    fn complete_handle(outcome: Insert) -> SlotHandle {
        match outcome {
            Insert::Complete(handle) => handle,
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn in_order() {
        let mut table = Reassembly::<ServerKey>::new(2, TIMEOUT);
        let io = write(7, 100, 65536);
        let bytes = data(65536, 1);
        let frags = fragments(&io, &bytes, FragmentSize::STANDARD);
        assert_eq!(frags.len(), 47);
        let outcomes = insert_all(&mut table, (7, 100), &frags);
        assert!(outcomes[..46].iter().all(|o| *o == Insert::Incomplete));
        let handle = complete_handle(outcomes[46]);
        assert_eq!(table.data(handle), Some(&bytes[..]));
        assert_eq!(table.header(handle), Some(&io));
        assert_eq!((table.key(handle), table.len()), (Some((7, 100)), 1));
        assert!(table.release(handle));
        assert!(!table.release(handle));
        assert_eq!((table.data(handle), table.len(), table.is_empty()), (None, 0, true));
    }

    #[test]
    fn out_of_order_and_mixed_fragment_sizes() {
        let mut rng = XorShift::new(42);
        for length in [1u32, 100, 4096, 5000, 65536] {
            let io = write(7, u64::from(length), length);
            let bytes = data(length, 9);
            let mut frags = fragments(&io, &bytes, FragmentSize::STANDARD);
            // Some of it again, cut finer, as a retransmission over a smaller MTU would be.
            frags.extend(fragments(&io, &bytes, FragmentSize::new(64).unwrap()).into_iter().step_by(3));
            for i in (1..frags.len()).rev() {
                frags.swap(i, rng.below(i + 1));
            }
            let mut table = Reassembly::new(1, TIMEOUT);
            let outcomes = insert_all(&mut table, 5u64, &frags);
            let completions: Vec<_> = outcomes.iter().filter(|o| matches!(o, Insert::Complete(_))).collect();
            assert_eq!(completions.len(), 1, "length {length}: {outcomes:?}");
            let at = outcomes.iter().position(|o| matches!(o, Insert::Complete(_))).unwrap();
            assert!(outcomes[at + 1..].iter().all(|o| *o == Insert::Duplicate));
            assert_eq!(table.data(complete_handle(outcomes[at])), Some(&bytes[..]));
        }
    }

    #[test]
    fn duplicates_count_once() {
        let mut table = Reassembly::<ServerKey>::new(1, TIMEOUT);
        let io = write(7, 1, 4096);
        let bytes = data(4096, 3);
        let frags = fragments(&io, &bytes, FragmentSize::STANDARD);
        assert_eq!(table.insert((7, 1), &frags[0].0, &frags[0].1, 0), Insert::Incomplete);
        assert_eq!(table.insert((7, 1), &frags[0].0, &frags[0].1, 0), Insert::Duplicate);
        assert_eq!(table.insert((7, 1), &frags[1].0, &frags[1].1, 0), Insert::Incomplete);
        assert_eq!(table.insert((7, 1), &frags[1].0, &frags[1].1, 0), Insert::Duplicate);
        let handle = complete_handle(table.insert((7, 1), &frags[2].0, &frags[2].1, 0));
        // Completed and held: more copies change nothing.
        assert_eq!(table.insert((7, 1), &frags[2].0, &frags[2].1, 0), Insert::Duplicate);
        assert_eq!(table.data(handle), Some(&bytes[..]));
    }

    #[test]
    fn inconsistent_fragments_are_dropped() {
        let mut table = Reassembly::<ServerKey>::new(1, TIMEOUT);
        let io = write(7, 1, 4096);
        let bytes = data(4096, 3);
        let frags = fragments(&io, &bytes, FragmentSize::STANDARD);
        assert_eq!(table.insert((7, 1), &frags[0].0, &frags[0].1, 0), Insert::Incomplete);
        let (second, payload) = &frags[1];
        let changed = [
            BlockRepr { offset: 0, ..*second },
            BlockRepr { image_id: 2, ..*second },
            BlockRepr { flags: Flags::FUA, ..*second },
            BlockRepr { length: 4160, ..*second },
            BlockRepr { op: Op::Read, flags: Flags::REPLY, ..*second },
        ];
        for header in changed {
            assert_eq!(table.insert((7, 1), &header, payload, 0), Insert::Inconsistent, "{header:?}");
        }
        // The slot is as it was: the two right fragments complete it.
        assert_eq!(table.insert((7, 1), &frags[1].0, &frags[1].1, 0), Insert::Incomplete);
        let handle = complete_handle(table.insert((7, 1), &frags[2].0, &frags[2].1, 0));
        assert_eq!(table.data(handle), Some(&bytes[..]));
    }

    #[test]
    fn what_is_not_a_fragment() {
        let mut table = Reassembly::<ServerKey>::new(1, TIMEOUT);
        let read = BlockRepr { op: Op::Read, ..write(7, 1, 4096) };
        assert_eq!(table.insert((7, 1), &read, &[], 0), Insert::NotAFragment);
        let frag = BlockRepr { payload_len: 128, ..write(7, 1, 4096) };
        assert_eq!(table.insert((7, 1), &frag, &[0; 127], 0), Insert::NotAFragment);
        let beyond = BlockRepr { fragment_offset: 4096 - 64, ..frag };
        assert_eq!(table.insert((7, 1), &beyond, &[0; 128], 0), Insert::NotAFragment);
        let misaligned = BlockRepr { fragment_offset: 32, ..frag };
        assert_eq!(table.insert((7, 1), &misaligned, &[0; 128], 0), Insert::NotAFragment);
        let too_long = BlockRepr { length: MAX_IO_LEN + 64, fragment_offset: MAX_IO_LEN, payload_len: 64, ..frag };
        assert_eq!(table.insert((7, 1), &too_long, &[0; 64], 0), Insert::NotAFragment);
        let error_reply = BlockRepr { flags: Flags::REPLY, status: Status::IoError, ..read };
        assert_eq!(table.insert((7, 1), &error_reply, &[], 0), Insert::NotAFragment);
        assert!(table.is_empty());
    }

    #[test]
    fn table_full_then_stale_slots_make_room() {
        let mut table = Reassembly::<ServerKey>::new(2, TIMEOUT);
        let first = |user, id| {
            let io = write(user, id, 4096);
            let (header, payload) = fragments(&io, &data(4096, 0), FragmentSize::STANDARD).swap_remove(0);
            (header, payload)
        };
        let (a, pa) = first(7, 1);
        let (b, pb) = first(8, 1);
        let (c, pc) = first(7, 2);
        assert_eq!(table.insert((7, 1), &a, &pa, 0), Insert::Incomplete);
        assert_eq!(table.insert((8, 1), &b, &pb, 500), Insert::Incomplete);
        assert_eq!(table.insert((7, 2), &c, &pc, 999), Insert::TableFull);
        // At 1000 the first is stale: the new I/O takes its slot.
        assert_eq!(table.insert((7, 2), &c, &pc, 1000), Insert::Incomplete);
        assert_eq!(table.len(), 2);
        assert!(!table.discard((7, 1)));
        assert!(table.discard((7, 2)) && !table.discard((7, 2)));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn eviction_spares_active_and_completed_slots() {
        let mut table = Reassembly::<ServerKey>::new(3, TIMEOUT);
        let io = write(7, 1, 4096);
        let frags = fragments(&io, &data(4096, 0), FragmentSize::STANDARD);
        assert_eq!(table.insert((7, 1), &frags[0].0, &frags[0].1, 0), Insert::Incomplete);
        // A duplicate at 600 shows the sender is still at it.
        assert_eq!(table.insert((7, 1), &frags[0].0, &frags[0].1, 600), Insert::Duplicate);
        let small = write(7, 2, 64);
        let handle = complete_handle(table.insert((7, 2), &BlockRepr { payload_len: 64, ..small }, &[1; 64], 0));
        let other = write(8, 1, 4096);
        let other_first = BlockRepr { payload_len: 1408, ..other };
        assert_eq!(table.insert((8, 1), &other_first, &[2; 1408], 100), Insert::Incomplete);
        assert_eq!(table.evict_stale(1099), 0);
        assert_eq!(table.evict_stale(1100), 1);
        assert_eq!(table.evict_stale(1600), 1);
        assert_eq!(table.evict_stale(1_000_000), 0);
        assert_eq!((table.len(), table.data(handle)), (1, Some(&[1u8; 64][..])));
        // The evicted I/O starts over when its fragments come again.
        assert_eq!(table.insert((8, 1), &other_first, &[2; 1408], 2000), Insert::Incomplete);
    }

    #[test]
    fn a_reused_buffer_shows_only_the_new_io() {
        let mut table = Reassembly::<ServerKey>::new(1, TIMEOUT);
        let big = write(7, 1, 65536);
        for (h, p) in fragments(&big, &[0xaa; 65536], FragmentSize::STANDARD) {
            table.insert((7, 1), &h, &p, 0);
        }
        let old = table.data(SlotHandle { index: 0, generation: 1 }).map(<[u8]>::len);
        assert_eq!(old, Some(65536));
        assert!(table.release(SlotHandle { index: 0, generation: 1 }));
        // Another user's 100-byte WRITE in the same buffer: exactly its bytes, and the old handle finds nothing.
        let small = write(8, 1, 100);
        let frags = fragments(&small, &[0x55; 100], FragmentSize::new(64).unwrap());
        assert_eq!(table.insert((8, 1), &frags[1].0, &frags[1].1, 0), Insert::Incomplete);
        let handle = complete_handle(table.insert((8, 1), &frags[0].0, &frags[0].1, 0));
        assert_eq!(table.data(handle), Some(&[0x55u8; 100][..]));
        assert_eq!(table.data(SlotHandle { index: 0, generation: 1 }), None);
        assert_eq!(table.data(SlotHandle { index: 5, generation: 2 }), None);
    }

    #[test]
    fn client_collects_read_replies_by_request_id() {
        let mut table = Reassembly::<u64>::new(4, TIMEOUT);
        let reply = BlockRepr { op: Op::Read, flags: Flags::REPLY, ..write(7, 77, 8192) };
        let bytes = data(8192, 4);
        let mut frags = fragments(&reply, &bytes, FragmentSize::STANDARD);
        frags.reverse();
        let outcomes = insert_all(&mut table, 77, &frags);
        let handle = complete_handle(*outcomes.last().unwrap());
        assert_eq!(table.data(handle), Some(&bytes[..]));
        assert_eq!(table.key(handle), Some(77));
    }

    #[test]
    fn a_table_without_slots_refuses_everything() {
        let mut table = Reassembly::<u64>::new(0, TIMEOUT);
        let io = BlockRepr { payload_len: 64, ..write(7, 1, 64) };
        assert_eq!(table.insert(1, &io, &[0; 64], 0), Insert::TableFull);
        assert_eq!((table.capacity(), table.evict_stale(5000)), (0, 0));
    }
}
