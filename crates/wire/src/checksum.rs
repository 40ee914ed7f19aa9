//! Internet checksum (RFC 1071) and incremental update (RFC 1624).
//!
//! The bulk sum adds 8 bytes at a time as two 32-bit little-endian halves
//! into a `u64`, and folds once at the end. Summing in little-endian order
//! and byte-swapping the folded result is exact: the one's complement sum is
//! byte-order independent (RFC 1071 section 2(B)).
//!
//! Stored checksum convention: `checksum(data)` is the value to write in the
//! field (with the field zeroed while summing); a received header verifies
//! when `checksum(header_including_field) == 0`.

use core::net::Ipv4Addr;

/// Unfolded one's complement sum of `data` as little-endian 16-bit words
/// (a trailing odd byte is padded with zero, RFC 1071).
#[inline]
fn sum_le(data: &[u8]) -> u64 {
    // Each step adds < 2^33: no overflow below 2^31 chunks (16 GiB).
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w & 0xffff_ffff) + (w >> 32);
    }
    // Tail without a variable-length memcpy (it dominates 20-byte headers).
    let mut rest = chunks.remainder();
    if let [a, b, c, d, tail @ ..] = rest {
        acc += u32::from_le_bytes([*a, *b, *c, *d]) as u64;
        rest = tail;
    }
    if let [a, b, tail @ ..] = rest {
        acc += u16::from_le_bytes([*a, *b]) as u64;
        rest = tail;
    }
    if let [a] = rest {
        acc += *a as u64;
    }
    acc
}

/// Folds a sum to 16 bits with end-around carry. Zero only if `sum` is zero.
#[inline]
fn fold(sum: u64) -> u16 {
    let mut s = (sum & 0xffff_ffff) + (sum >> 32);
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// One's complement sum of `data` as big-endian words, folded (not inverted).
#[inline]
fn sum_be(data: &[u8]) -> u16 {
    fold(sum_le(data)).swap_bytes()
}

/// The checksum to store over `data` (the checksum field itself zeroed):
/// `!fold(sum)`, RFC 1071.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum_be(data)
}

/// Partial one's complement sum of the IPv4 pseudo-header (RFC 768, RFC 793
/// section 3.1): feed it to [`Checksum::add_u32`]. Not folded, not inverted.
#[inline]
pub fn pseudo_header_ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let (s, d) = (src.to_bits(), dst.to_bits());
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + protocol as u32 + length as u32
}

/// Accumulator for checksums over several pieces (pseudo-header + header +
/// payload).
///
/// `add_bytes` chunks may have any length, odd ones included, and may be
/// followed by more chunks: the sum is the same as over their concatenation.
/// `add_u16`/`add_u32` add numeric 16-bit words; they equal
/// `add_bytes(&v.to_be_bytes())` when the bytes added so far are even in
/// number (use them for pseudo-header fields, before any odd chunk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    sum: u64,
    odd: bool,
}

impl Checksum {
    pub const fn new() -> Self {
        Checksum { sum: 0, odd: false }
    }

    #[inline]
    pub fn add_bytes(&mut self, data: &[u8]) {
        let s = fold(sum_le(data));
        // After an odd count, this chunk's bytes sit one position later:
        // its words are byte-swapped, so skip the LE->BE swap.
        self.sum += if self.odd { s } else { s.swap_bytes() } as u64;
        self.odd ^= data.len() % 2 == 1;
    }

    #[inline]
    pub fn add_u16(&mut self, value: u16) {
        self.sum += value as u64;
    }

    #[inline]
    pub fn add_u32(&mut self, value: u32) {
        self.sum += (value >> 16) as u64 + (value & 0xffff) as u64;
    }

    /// Adds the IPv4 pseudo-header (see [`pseudo_header_ipv4`]).
    #[inline]
    pub fn add_pseudo_header_ipv4(&mut self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) {
        self.add_u32(pseudo_header_ipv4(src, dst, protocol, length));
    }

    /// The checksum to store (`!fold(sum)`); 0 means "verifies" when the
    /// stored checksum was included in the sum.
    #[inline]
    pub fn finish(self) -> u16 {
        !fold(self.sum)
    }
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Summed in u32/u64 then folded:
// the folded value is the unique representative in 1..=0xFFFF of the new
// sum, exactly what a full recomputation yields for any header that is not
// all zeros (e.g. every valid IPv4 header, which has version 4). So, unlike
// eqn. 2, it never returns 0xFFFF where recomputation gives 0x0000 (RFC 1624
// section 4). The only mismatch: if the new data is all zeros, recomputation
// gives 0xFFFF and this gives 0x0000 (the two zeros of one's complement).

/// Updates checksum `checksum` after a 16-bit field changed `old` -> `new`.
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold((!checksum) as u64 + (!old) as u64 + new as u64)
}

/// Updates `checksum` after a 32-bit field (an IPv4 address) changed,
/// e.g. the IPv4 header checksum and the UDP/TCP checksum on NAT.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let sum = (!checksum) as u64
        + (!(old >> 16) & 0xffff) as u64
        + (!old & 0xffff) as u64
        + (new >> 16) as u64
        + (new & 0xffff) as u64;
    !fold(sum)
}

/// Updates `checksum` after the bytes `old` were replaced by `new`.
///
/// Both slices must have equal length and start at an even offset of the
/// checksummed data; an odd trailing byte is treated as padded with zero,
/// which is correct only at the end of the data.
#[inline]
pub fn update_bytes(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len(), "update_bytes needs equal lengths");
    !fold((!checksum) as u64 + (!sum_be(old)) as u64 + sum_be(new) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::XorShift;

    /// Byte-at-a-time reference (RFC 1071 section 4.1).
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            sum += u16::from_be_bytes([data[i], data[i + 1]]) as u32;
            i += 2;
        }
        if i < data.len() {
            sum += (data[i] as u32) << 8;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum_be(&data), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
        // Storing it makes the whole thing verify.
        let mut with = data.to_vec();
        with.extend_from_slice(&0x220du16.to_be_bytes());
        assert_eq!(checksum(&with), 0);
    }

    #[test]
    fn odd_lengths_and_every_size() {
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(checksum(&[0xab]), !0xab00);
        assert_eq!(checksum(&[0x12, 0x34, 0x56]), !(0x1234u16 + 0x5600));
        let mut rng = XorShift::new(7);
        for len in 0..300 {
            let mut buf = vec![0u8; len];
            rng.fill(&mut buf);
            assert_eq!(checksum(&buf), reference(&buf), "len {len}");
        }
        // Carries: all-ones data.
        let ones = vec![0xffu8; 1501];
        assert_eq!(checksum(&ones), reference(&ones));
    }

    #[test]
    fn accumulator_any_chunking() {
        let mut rng = XorShift::new(11);
        for _ in 0..2000 {
            let mut buf = vec![0u8; rng.below(200)];
            rng.fill(&mut buf);
            let mut c = Checksum::new();
            let mut rest = &buf[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len().min(17));
                c.add_bytes(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(c.finish(), reference(&buf));
        }
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let (src, dst) = (Ipv4Addr::new(192, 168, 1, 10), Ipv4Addr::new(8, 8, 8, 8));
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 17, 0x00, 0x25]);
        let mut c = Checksum::new();
        c.add_pseudo_header_ipv4(src, dst, 17, 0x25);
        assert_eq!(c.finish(), checksum(&bytes));
        let mut c = Checksum::new();
        c.add_u16(0x1234);
        c.add_u32(0xdead_beef);
        assert_eq!(c.finish(), checksum(&[0x12, 0x34, 0xde, 0xad, 0xbe, 0xef]));
    }

    #[test]
    fn rfc1624_section4_example() {
        // m = 0x5555 -> 0x3285, other words sum to 0xCD7A: HC = 0xDD2F,
        // recomputation gives 0x0000; eqn. 2 would wrongly give 0xFFFF.
        assert_eq!(update_u16(0xdd2f, 0x5555, 0x3285), 0x0000);
        assert_eq!(!fold(0xcd7a + 0x3285), 0x0000);
    }

    fn random_ipv4_header(rng: &mut XorShift) -> [u8; 20] {
        let mut h = [0u8; 20];
        rng.fill(&mut h);
        // Sparse headers too, so sums land near 0x0000/0xFFFF.
        if rng.below(2) == 0 {
            for b in h.iter_mut() {
                if rng.below(4) != 0 {
                    *b = 0;
                }
            }
        }
        h[0] = 0x45;
        h[10] = 0;
        h[11] = 0;
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn recompute(h: &[u8; 20]) -> u16 {
        let mut z = *h;
        z[10] = 0;
        z[11] = 0;
        checksum(&z)
    }

    #[test]
    fn incremental_equals_full_recomputation() {
        let mut rng = XorShift::new(0x1624);
        let mut zero_results = 0;
        for _ in 0..200_000 {
            let mut h = random_ipv4_header(&mut rng);
            let hc = u16::from_be_bytes([h[10], h[11]]);
            let new_hc = match rng.below(3) {
                0 => {
                    // 16-bit word other than version/IHL word and checksum.
                    let w = [1, 2, 3, 4, 6, 7, 8, 9][rng.below(8)] * 2;
                    let old = u16::from_be_bytes([h[w], h[w + 1]]);
                    let new = [0, 0xffff, rng.u16()][rng.below(3)];
                    h[w..w + 2].copy_from_slice(&new.to_be_bytes());
                    update_u16(hc, old, new)
                }
                1 => {
                    // Source or destination address (NAT rewrite).
                    let at = [12, 16][rng.below(2)];
                    let old = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
                    let new = [0, u32::MAX, rng.u32()][rng.below(3)];
                    h[at..at + 4].copy_from_slice(&new.to_be_bytes());
                    update_u32(hc, old, new)
                }
                _ => {
                    // TTL + protocol word and both addresses at once.
                    let mut new = [0u8; 10];
                    rng.fill(&mut new);
                    let old: [u8; 2] = [h[8], h[9]];
                    let old_addrs: [u8; 8] = h[12..20].try_into().unwrap();
                    h[8..10].copy_from_slice(&new[..2]);
                    h[12..20].copy_from_slice(&new[2..]);
                    let c = update_bytes(hc, &old, &new[..2]);
                    update_bytes(c, &old_addrs, &new[2..])
                }
            };
            let full = recompute(&h);
            assert_eq!(new_hc, full, "header {h:02x?}");
            zero_results += (full == 0) as u32;
            // Storing it verifies.
            h[10..12].copy_from_slice(&new_hc.to_be_bytes());
            assert_eq!(checksum(&h), 0);
        }
        // The sparse headers must have exercised the 0x0000 edge case.
        assert!(zero_results > 0);
    }

    #[test]
    fn incremental_on_arbitrary_data_only_differs_on_all_zero() {
        let mut rng = XorShift::new(99);
        for _ in 0..50_000 {
            let mut d = [0u8; 4];
            for b in d.iter_mut() {
                *b = if rng.below(2) == 0 { 0 } else { rng.u8() };
            }
            let hc = checksum(&d);
            let old = u16::from_be_bytes([d[2], d[3]]);
            let new = if rng.below(2) == 0 { 0 } else { rng.u16() };
            d[2..].copy_from_slice(&new.to_be_bytes());
            let inc = update_u16(hc, old, new);
            if d == [0; 4] {
                assert_eq!((inc, checksum(&d)), (0x0000, 0xffff));
            } else {
                assert_eq!(inc, checksum(&d), "{d:02x?}");
            }
        }
    }
}
