//! The address-migration report (docs/address-migration.md): after a migration
//! to another network a VM tells its switch "my primary IP was P, I now live at
//! Q" in a UDP datagram to `REPORT_ADDRESS`:`REPORT_PORT` sent on its VM port,
//! and the switch answers with the same message as a reply carrying a status
//! (and the status as text after the 20 bytes).
//!
//! ```text
//!  0..4   magic "SYAM"
//!  4      version 1
//!  5      kind: 1 report (VM -> switch), 2 reply (switch -> VM)
//!  6      status (replies; 0 in a report)
//!  7      reserved, 0
//!  8..12  request id, chosen by the VM and echoed in the reply
//! 12..16  primary IPv4 address
//! 16..20  post-migration IPv4 address
//! 20..    replies: the status as ASCII text; reports: ignored
//! ```
use core::net::Ipv4Addr;

use super::{read_u32, write_u32, Result, WireError};

/// The link-local address reports are sent to (RFC 3927 range; answered by the
/// switch on every VM port, never routed).
pub const REPORT_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 83, 89);
/// The UDP port reports are sent to (and replies come from).
pub const REPORT_PORT: u16 = 5359;
pub const MAGIC: [u8; 4] = *b"SYAM";
pub const VERSION: u8 = 1;
/// The fixed part of every message.
pub const HEADER_LEN: usize = 20;

/// Message kinds.
pub mod kind {
    pub const REPORT: u8 = 1;
    pub const REPLY: u8 = 2;
}

mod field {
    use core::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const VERSION: usize = 4;
    pub(super) const KIND: usize = 5;
    pub(super) const STATUS: usize = 6;
    pub(super) const RESERVED: usize = 7;
    pub(super) const REQUEST_ID: Range<usize> = 8..12;
    pub(super) const PRIMARY: Range<usize> = 12..16;
    pub(super) const POST: Range<usize> = 16..20;
}

/// A view of a report or reply (the UDP payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressReport<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AddressReport<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        AddressReport { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let report = Self::new_unchecked(buffer);
        report.check_len()?;
        Ok(report)
    }

    /// 20 bytes, the magic and version 1 (`Unsupported` otherwise).
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if data[field::MAGIC] != MAGIC || data[field::VERSION] != VERSION {
            return Err(WireError::Unsupported);
        }
        Ok(())
    }

    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::KIND]
    }

    /// The raw status code (see [`ReportStatus::from_code`]).
    pub fn status(&self) -> u8 {
        self.buffer.as_ref()[field::STATUS]
    }

    pub fn request_id(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REQUEST_ID)
    }

    pub fn primary_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(read_u32(self.buffer.as_ref(), field::PRIMARY))
    }

    pub fn post_migration_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(read_u32(self.buffer.as_ref(), field::POST))
    }

    /// What follows the fixed part (a reply's status text).
    pub fn text(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AddressReport<T> {
    /// Writes magic, version, `kind`, `status`, the reserved byte and the rest
    /// of the fixed part (`HEADER_LEN` bytes must be there).
    pub fn emit(&mut self, kind: u8, status: u8, request_id: u32, primary: Ipv4Addr, post: Ipv4Addr) {
        let data = self.buffer.as_mut();
        data[field::MAGIC].copy_from_slice(&MAGIC);
        data[field::VERSION] = VERSION;
        data[field::KIND] = kind;
        data[field::STATUS] = status;
        data[field::RESERVED] = 0;
        write_u32(data, field::REQUEST_ID, request_id);
        write_u32(data, field::PRIMARY, primary.to_bits());
        write_u32(data, field::POST, post.to_bits());
    }
}

macro_rules! report_statuses {
    ($($(#[doc = $doc:literal])+ $variant:ident = $code:literal => $name:literal,)+) => {
        /// How the switch judged a report: the code in the reply, a stable name
        /// (counters, the API) and a sentence (the reply's text).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ReportStatus {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ReportStatus {
            pub const ALL: &'static [ReportStatus] = &[$(ReportStatus::$variant,)+];
            pub const COUNT: usize = Self::ALL.len();

            pub fn code(self) -> u8 {
                match self {
                    $(ReportStatus::$variant => $code,)+
                }
            }

            pub fn from_code(code: u8) -> Option<ReportStatus> {
                match code {
                    $($code => Some(ReportStatus::$variant),)+
                    _ => None,
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $(ReportStatus::$variant => $name,)+
                }
            }

            /// The doc line: the reply's text.
            pub fn text(self) -> &'static str {
                match self {
                    $(ReportStatus::$variant => concat!($($doc),+).trim_ascii(),)+
                }
            }
        }
    };
}

report_statuses! {
    /// accepted: the switch is applying it
    Accepted = 0 => "accepted",
    /// in effect: the switch already rewrites this primary IP to this post-migration IP for this port
    InEffect = 1 => "in_effect",
    /// busy: the switch could not take the report now; send it again
    Busy = 2 => "busy",
    /// refused: the report must be sent from the post-migration IP it reports
    SourceNotPostMigrationIp = 16 => "source_not_post_migration_ip",
    /// refused: no VM endpoint of this port's network has the post-migration IP
    PostMigrationIpNotBound = 17 => "post_migration_ip_not_bound",
    /// refused: the post-migration IP is bound to another VM port
    PostMigrationIpOnOtherPort = 18 => "post_migration_ip_on_other_port",
    /// refused: the primary IP is not registered in this port's network
    PrimaryIpNotRegistered = 19 => "primary_ip_not_registered",
    /// refused: the primary IP is registered for another VM port
    PrimaryIpOfOtherPort = 20 => "primary_ip_of_other_port",
    /// refused: the post-migration IP is already used by another address migration
    PostMigrationIpInUse = 21 => "post_migration_ip_in_use",
}

impl ReportStatus {
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&s| s == self).unwrap_or(0)
    }

    /// The report passed every check (accepted, in effect, or busy).
    pub fn is_valid(self) -> bool {
        matches!(self, ReportStatus::Accepted | ReportStatus::InEffect | ReportStatus::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::fuzz;

    #[rustfmt::skip]
    const REPORT: [u8; 20] = [
        b'S', b'Y', b'A', b'M', 1, 1, 0, 0, 0, 0, 0x30, 0x39, 10, 1, 0, 5, 10, 2, 0, 5,
    ];

    #[test]
    fn parse_and_emit_agree() {
        let r = AddressReport::new_checked(&REPORT[..]).unwrap();
        assert_eq!((r.kind(), r.status(), r.request_id()), (kind::REPORT, 0, 12345));
        assert_eq!(r.primary_ip(), Ipv4Addr::new(10, 1, 0, 5));
        assert_eq!(r.post_migration_ip(), Ipv4Addr::new(10, 2, 0, 5));
        assert!(r.text().is_empty());
        let mut buf = [0xffu8; 24];
        AddressReport::new_unchecked(&mut buf[..]).emit(
            kind::REPORT,
            0,
            12345,
            Ipv4Addr::new(10, 1, 0, 5),
            Ipv4Addr::new(10, 2, 0, 5),
        );
        assert_eq!(&buf[..20], &REPORT);
        assert_eq!(AddressReport::new_checked(&buf[..]).unwrap().text(), &[0xff; 4]);
    }

    #[test]
    fn short_foreign_and_other_versions_are_refused() {
        for len in 0..HEADER_LEN {
            assert_eq!(AddressReport::new_checked(&REPORT[..len]), Err(WireError::Truncated));
        }
        let mut bad = REPORT;
        bad[0] = b'X';
        assert_eq!(AddressReport::new_checked(&bad[..]), Err(WireError::Unsupported));
        let mut v2 = REPORT;
        v2[4] = 2;
        assert_eq!(AddressReport::new_checked(&v2[..]), Err(WireError::Unsupported));
    }

    #[test]
    fn statuses_have_distinct_codes_names_and_text() {
        for (i, status) in ReportStatus::ALL.iter().enumerate() {
            assert_eq!(status.index(), i);
            assert_eq!(ReportStatus::from_code(status.code()), Some(*status));
            assert_eq!(status.text().starts_with("refused: "), !status.is_valid(), "{status:?}");
        }
        let mut names: Vec<_> = ReportStatus::ALL.iter().map(|s| s.name()).collect();
        names.dedup();
        assert_eq!(names.len(), ReportStatus::COUNT);
        assert_eq!(ReportStatus::from_code(3), None);
        assert_eq!(ReportStatus::PrimaryIpOfOtherPort.text(), "refused: the primary IP is registered for another VM port");
        assert!(!ReportStatus::PostMigrationIpInUse.is_valid() && ReportStatus::InEffect.is_valid());
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&REPORT], |buf| {
            if let Ok(r) = AddressReport::new_checked(&buf[..]) {
                let _ = (r.kind(), r.status(), r.request_id(), r.primary_ip(), r.post_migration_ip(), r.text());
            }
        });
    }
}
