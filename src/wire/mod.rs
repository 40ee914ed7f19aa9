//! Zero-copy, bounds-checked views of packet headers, and checksums.
//! Imports nothing of ours, works on plain byte slices (testable without EAL).

mod mac;

pub use mac::MacAddr;
