//! Zero-copy, bounds-checked views of packet headers, and checksums.
//! Imports nothing of ours, works on plain byte slices (testable without EAL).
//!
//! # Conventions (modelled on smoltcp's `wire`)
//!
//! * A view (`EthernetFrame<T>`, `Ipv4Packet<T>`, ...) wraps `T: AsRef<[u8]>`
//!   and never allocates. `new_checked` does the one length/sanity check at
//!   the boundary; after it succeeded **no accessor panics**, whatever the
//!   bytes. `new_unchecked` skips the check (fixed-offset accessors may then
//!   panic on a short buffer). Setters exist when `T: AsMut<[u8]>`.
//! * Setters that change the layout (IPv4 `set_header_len`/`set_total_len`,
//!   TCP `set_header_len`, UDP `set_len`, Ethernet `set_ethertype` to a TPID)
//!   may leave a buffer that `new_checked` would refuse. Accessors still do
//!   not panic then: variable-length slices (`payload`, `options`) are clamped
//!   to the buffer, so they may come back shorter than the header claims.
//! * Multi-byte fields are big-endian (network order) on the wire; accessors
//!   return host values.
//!
//! # `Repr` emit convention
//!
//! Every `XRepr` has `parse(&view) -> Result<XRepr>`, `header_len()` and
//! `emit(&self, buf: &mut [u8]) -> Result<usize>`. `emit` writes **only the
//! header** at the start of `buf` (every header byte, so stale contents never
//! leak), leaves the rest of `buf` alone and returns `header_len()`. It
//! returns `Err(Truncated)` without writing anything if `buf` is shorter than
//! `header_len()`, and never panics. Checksums: `Ipv4Repr::emit` fills the
//! header checksum; `UdpRepr::emit` writes checksum 0 ("none", RFC 768) since
//! the payload is not written yet, call `UdpDatagram::fill_checksum` after it.

mod mac;

pub mod address_report;
pub mod arp;
pub mod block;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;
pub mod vxlan;

use core::fmt;
use core::ops::Range;

pub use address_report::{AddressReport, ReportStatus};
pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use block::{BlockError, BlockPacket, BlockRepr};
pub use checksum::Checksum;
pub use ethernet::{EthernetFrame, EthernetRepr, VlanTag};
pub use icmp::Icmpv4Packet;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use mac::MacAddr;
pub use tcp::TcpSegment;
pub use udp::{UdpDatagram, UdpRepr};
pub use vxlan::{VxlanHeader, VxlanRepr};

/// Why a header view refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer is shorter than the header (or than a length field claims).
    Truncated,
    /// IPv4 version field is not 4.
    BadVersion,
    /// Header length field below the protocol minimum (IPv4 IHL, TCP data offset).
    BadHeaderLength,
    /// IPv4 total length smaller than the header length.
    BadTotalLength,
    /// A length field below its minimum (UDP length < 8), or a value too
    /// large to emit.
    BadLength,
    /// Well-formed but outside what we handle (non Ethernet/IPv4 ARP, ...).
    Unsupported,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "buffer truncated",
            WireError::BadVersion => "bad IP version",
            WireError::BadHeaderLength => "bad header length",
            WireError::BadTotalLength => "bad IP total length",
            WireError::BadLength => "bad length field",
            WireError::Unsupported => "unsupported header contents",
        })
    }
}

impl std::error::Error for WireError {}

pub type Result<T> = core::result::Result<T, WireError>;

// Field helpers. Callers pass constant ranges inside the length that
// `new_checked` verified, so the indexing never fails after that check.

#[inline(always)]
fn read_u16(data: &[u8], r: Range<usize>) -> u16 {
    let b = &data[r];
    u16::from_be_bytes([b[0], b[1]])
}

#[inline(always)]
fn read_u32(data: &[u8], r: Range<usize>) -> u32 {
    let b = &data[r];
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[inline(always)]
fn read_u64(data: &[u8], r: Range<usize>) -> u64 {
    let b = &data[r];
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[inline(always)]
fn write_u16(data: &mut [u8], r: Range<usize>, value: u16) {
    data[r].copy_from_slice(&value.to_be_bytes());
}

#[inline(always)]
fn write_u32(data: &mut [u8], r: Range<usize>, value: u32) {
    data[r].copy_from_slice(&value.to_be_bytes());
}

#[inline(always)]
fn write_u64(data: &mut [u8], r: Range<usize>, value: u64) {
    data[r].copy_from_slice(&value.to_be_bytes());
}

/// `data[start..end]` clamped to the buffer: never panics, may be shorter.
#[inline(always)]
fn clamped(data: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(data.len());
    &data[start.min(end)..end]
}

#[inline(always)]
fn clamped_mut(data: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    let end = end.min(data.len());
    &mut data[start.min(end)..end]
}

// Also for the tests of the crates above: their dev-dependencies turn on `test-util`.
#[cfg(any(test, feature = "test-util"))]
pub mod test_util {
    //! Deterministic pseudo-random inputs (no extra crates).

    /// xorshift64* (Vigna); plenty for fuzz-style inputs.
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> Self {
            XorShift(seed | 1)
        }
        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
        pub fn u8(&mut self) -> u8 {
            self.next_u64() as u8
        }
        pub fn u16(&mut self) -> u16 {
            self.next_u64() as u16
        }
        pub fn u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        pub fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.u8();
            }
        }
    }

    /// Calls `f` on thousands of buffers: random bytes of length 0..128, and
    /// mutations (byte flips, truncation, extension) of the `good` packets.
    pub fn fuzz(good: &[&[u8]], mut f: impl FnMut(&mut [u8])) {
        let mut rng = XorShift::new(0x5eed_cafe_f00d_d00d);
        for _ in 0..4000 {
            let mut buf = vec![0u8; rng.below(128)];
            rng.fill(&mut buf);
            f(&mut buf);
        }
        for pkt in good {
            for _ in 0..3000 {
                let mut buf = pkt.to_vec();
                for _ in 0..1 + rng.below(4) {
                    if !buf.is_empty() {
                        let i = rng.below(buf.len());
                        buf[i] = match rng.below(3) {
                            0 => rng.u8(),
                            1 => buf[i] ^ (1 << rng.below(8)),
                            _ => [0, 0xff, 0x08, 0x81, 0x45][rng.below(5)],
                        };
                    }
                }
                match rng.below(4) {
                    0 => buf.truncate(rng.below(buf.len() + 1)),
                    1 => buf.extend((0..rng.below(32)).map(|_| rng.u8())),
                    _ => {}
                }
                f(&mut buf);
            }
        }
    }

    #[test]
    fn clamped_never_panics() {
        let d = [1u8, 2, 3];
        assert_eq!(super::clamped(&d, 1, 2), &[2]);
        assert_eq!(super::clamped(&d, 2, 9), &[3]);
        assert_eq!(super::clamped(&d, 5, 9), &[] as &[u8]);
        assert_eq!(super::clamped(&d, 3, 1), &[] as &[u8]);
        let mut d = d;
        assert_eq!(super::clamped_mut(&mut d, 7, 2), &mut [] as &mut [u8]);
    }

    #[test]
    fn error_display() {
        assert_eq!(super::WireError::Truncated.to_string(), "buffer truncated");
        let e: Box<dyn std::error::Error> = Box::new(super::WireError::BadVersion);
        assert_eq!(e.to_string(), "bad IP version");
    }
}
