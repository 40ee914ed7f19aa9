//! The Switchyard storage protocol (docs/storage-protocol.md): a 64-byte header, then the payload, in one UDP
//! datagram. Big-endian.
//!
//! ```text
//!  0..4   magic "SYBD"          4 version 1     5 op      6..8 flags (FUA 0x0001, REPLY 0x8000)
//!  8..12  user id              12..16 image id
//! 16..24  request id
//! 24..32  offset of the whole I/O in the image
//! 32..36  length of the whole I/O   36..40 fragment offset (where this payload sits in the I/O)
//! 40..42  payload length       42..44 status (replies)    44..48 reserved, 0
//! 48..64  MAC: keyed BLAKE3 (the user's secret) over bytes 0..48 and the payload, first 16 bytes
//! ```
//!
//! Checks come in two steps so that a server can authenticate before it judges: `BlockPacket::new_checked`
//! checks only what the accessors and the MAC need (length, magic, version, payload length); after
//! `verify_mac`, `BlockRepr::parse` checks the meaning (op, flags, fragment, ranges), and its errors name the
//! status of the reply (`BlockError::reply_status`).

use core::fmt;
use core::ops::Range;

use super::{clamped, clamped_mut, read_u16, read_u32, read_u64, write_u16, write_u32, write_u64};

/// The server's default UDP port.
pub const UDP_PORT: u16 = 10810;
pub const MAGIC: u32 = 0x5359_4244;
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 64;
pub const MAC_LEN: usize = 16;
/// The user's secret: a BLAKE3 key.
pub const KEY_LEN: usize = 32;
/// What a datagram costs besides its payload: IPv4 without options, UDP, our header.
pub const DATAGRAM_OVERHEAD: usize = 20 + 8 + HEADER_LEN;
/// The largest payload of one datagram: a 1500-byte IP packet, never IP-fragmented at the standard MTU.
pub const MAX_FRAGMENT_PAYLOAD: u16 = (1500 - DATAGRAM_OVERHEAD) as u16;
/// The largest READ or WRITE (clients split larger ones).
pub const MAX_IO_LEN: u32 = 64 * 1024;
/// Fragments start at multiples of this, and all but the last of an I/O are multiples of it, so a receiver
/// tracks what arrived in a bitmap of granules whatever fragment size the sender chose.
pub const FRAGMENT_GRANULE: u32 = 64;
/// The length of an INFO: its reply's payload (`ImageInfo`).
pub const INFO_LEN: u32 = ImageInfo::LEN as u32;

mod field {
    use core::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const VERSION: usize = 4;
    pub(super) const OP: usize = 5;
    pub(super) const FLAGS: Range<usize> = 6..8;
    pub(super) const USER_ID: Range<usize> = 8..12;
    pub(super) const IMAGE_ID: Range<usize> = 12..16;
    pub(super) const REQUEST_ID: Range<usize> = 16..24;
    pub(super) const OFFSET: Range<usize> = 24..32;
    pub(super) const LENGTH: Range<usize> = 32..36;
    pub(super) const FRAGMENT_OFFSET: Range<usize> = 36..40;
    pub(super) const PAYLOAD_LEN: Range<usize> = 40..42;
    pub(super) const STATUS: Range<usize> = 42..44;
    pub(super) const RESERVED: Range<usize> = 44..48;
    /// The bytes the MAC covers (with the payload).
    pub(super) const MAC_COVERED: Range<usize> = 0..48;
    pub(super) const MAC: Range<usize> = 48..64;
}

/// Why a datagram of the storage protocol was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockError {
    /// Shorter than the header, or than the header plus the payload length it claims.
    Truncated,
    /// Bytes after the payload the payload length claims.
    TrailingBytes,
    BadMagic,
    BadVersion,
    /// The MAC does not match (unknown key, a modified byte): the datagram gets no reply.
    BadMac,
    UnknownOp,
    /// A flag bit other than FUA and REPLY.
    UnknownFlags,
    UnknownStatus,
    /// The reserved field is not zero.
    ReservedNotZero,
    /// A reply where a request was expected.
    ReplyFlagInRequest,
    /// A request where a reply was expected.
    RequestWhereReplyExpected,
    /// A request with a non-zero status.
    StatusInRequest,
    /// FUA on an op that does not write.
    FuaNotAllowed,
    /// READ, WRITE, TRIM or WRITE_ZEROES of length 0.
    EmptyIo,
    /// READ or WRITE longer than `MAX_IO_LEN`.
    IoTooLong,
    /// offset + length beyond 2^64.
    RangeOverflow,
    /// FLUSH not of offset 0 and length 0, or INFO not of offset 0 and length `INFO_LEN`.
    UnexpectedRange,
    /// Data where the op and direction carry none (or an error reply with data).
    UnexpectedPayload,
    /// No data where the op and direction carry some.
    MissingPayload,
    /// A fragment offset or payload length off the `FRAGMENT_GRANULE` grid.
    FragmentMisaligned,
    /// A payload longer than `MAX_FRAGMENT_PAYLOAD`.
    FragmentTooLong,
    /// A fragment reaching past the I/O's length (or a fragment offset where no data is carried).
    FragmentOutOfRange,
}

impl BlockError {
    /// The status an authenticated request refused with this error is answered with (NBD's choices: EOVERFLOW
    /// for a request over the largest size, ENOTSUP for an unknown command, EINVAL otherwise).
    pub fn reply_status(self) -> Status {
        match self {
            BlockError::UnknownOp | BlockError::UnknownFlags => Status::NotSupported,
            BlockError::IoTooLong => Status::Overflow,
            _ => Status::Invalid,
        }
    }
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockError::Truncated => "storage datagram truncated",
            BlockError::TrailingBytes => "bytes after the storage payload",
            BlockError::BadMagic => "bad storage protocol magic",
            BlockError::BadVersion => "unsupported storage protocol version",
            BlockError::BadMac => "storage MAC does not match",
            BlockError::UnknownOp => "unknown storage op",
            BlockError::UnknownFlags => "unknown storage flag bits",
            BlockError::UnknownStatus => "unknown storage status",
            BlockError::ReservedNotZero => "storage reserved field not zero",
            BlockError::ReplyFlagInRequest => "reply flag in a storage request",
            BlockError::RequestWhereReplyExpected => "storage request where a reply was expected",
            BlockError::StatusInRequest => "status in a storage request",
            BlockError::FuaNotAllowed => "FUA on an op that does not write",
            BlockError::EmptyIo => "storage I/O of length 0",
            BlockError::IoTooLong => "storage I/O longer than 64 KiB",
            BlockError::RangeOverflow => "storage offset + length overflows",
            BlockError::UnexpectedRange => "offset/length not allowed for this op",
            BlockError::UnexpectedPayload => "payload not allowed for this op",
            BlockError::MissingPayload => "payload missing",
            BlockError::FragmentMisaligned => "fragment off the 64-byte grid",
            BlockError::FragmentTooLong => "fragment payload over 1408 bytes",
            BlockError::FragmentOutOfRange => "fragment beyond the I/O",
        })
    }
}

impl std::error::Error for BlockError {}

pub type Result<T> = core::result::Result<T, BlockError>;

/// Operations (NBD's commands; INFO replaces NBD's option haggling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    Read = 1,
    Write = 2,
    Flush = 3,
    Trim = 4,
    WriteZeroes = 5,
    /// The image's size, flags and preferred block size (`ImageInfo`).
    Info = 6,
}

impl Op {
    pub const ALL: [Op; 6] = [Op::Read, Op::Write, Op::Flush, Op::Trim, Op::WriteZeroes, Op::Info];

    pub const fn code(self) -> u8 {
        self as u8
    }

    pub const fn from_code(code: u8) -> Option<Op> {
        Some(match code {
            1 => Op::Read,
            2 => Op::Write,
            3 => Op::Flush,
            4 => Op::Trim,
            5 => Op::WriteZeroes,
            6 => Op::Info,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Trim => "trim",
            Op::WriteZeroes => "write_zeroes",
            Op::Info => "info",
        }
    }

    /// Changes the image: FUA is allowed, and a read-only image refuses it.
    pub const fn writes(self) -> bool {
        matches!(self, Op::Write | Op::Trim | Op::WriteZeroes)
    }

    /// The request carries data (in fragments).
    pub const fn has_request_data(self) -> bool {
        matches!(self, Op::Write)
    }

    /// A successful reply carries data (in fragments).
    pub const fn has_reply_data(self) -> bool {
        matches!(self, Op::Read | Op::Info)
    }
}

/// The flags field: FUA and REPLY; every other bit is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    pub const NONE: Flags = Flags(0);
    /// Forced unit access: the write is on stable storage before the reply (NBD_CMD_FLAG_FUA).
    pub const FUA: Flags = Flags(0x0001);
    /// The datagram is a reply (server to client). Under the MAC, so a request is never taken for a reply.
    pub const REPLY: Flags = Flags(0x8000);
    const KNOWN: u16 = Flags::FUA.0 | Flags::REPLY.0;

    /// `None` if an unknown bit is set.
    pub const fn from_bits(bits: u16) -> Option<Flags> {
        if bits & !Flags::KNOWN != 0 {
            return None;
        }
        Some(Flags(bits))
    }

    pub const fn bits(self) -> u16 {
        self.0
    }

    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, other: Flags) -> Flags {
        self.union(other)
    }
}

/// The status of a reply: NBD's error numbers (the Linux errno values), plus EACCES and ESTALE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Status {
    Ok = 0,
    /// EPERM: a write to a read-only image.
    NotPermitted = 1,
    /// EIO: the image file failed.
    IoError = 5,
    /// ENOMEM: the server has no room for the request now.
    NoMemory = 12,
    /// EACCES: the user has no image of this id (another user's image, or none: the two are not told apart).
    AccessDenied = 13,
    /// EINVAL: a malformed request, or a READ/TRIM beyond the image.
    Invalid = 22,
    /// ENOSPC: a write beyond the image, or the disk is full.
    NoSpace = 28,
    /// EOVERFLOW: a READ/WRITE longer than `MAX_IO_LEN`.
    Overflow = 75,
    /// ENOTSUP: an op or flag the server does not do.
    NotSupported = 95,
    /// ESHUTDOWN: the server is stopping.
    ShuttingDown = 108,
    /// ESTALE: the request id is older than the server's anti-replay window; the reply's offset field holds the
    /// highest request id the server has seen from the user, and the client continues above it.
    StaleRequestId = 116,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Ok,
        Status::NotPermitted,
        Status::IoError,
        Status::NoMemory,
        Status::AccessDenied,
        Status::Invalid,
        Status::NoSpace,
        Status::Overflow,
        Status::NotSupported,
        Status::ShuttingDown,
        Status::StaleRequestId,
    ];

    pub const fn code(self) -> u16 {
        self as u16
    }

    pub const fn from_code(code: u16) -> Option<Status> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::NotPermitted,
            5 => Status::IoError,
            12 => Status::NoMemory,
            13 => Status::AccessDenied,
            22 => Status::Invalid,
            28 => Status::NoSpace,
            75 => Status::Overflow,
            95 => Status::NotSupported,
            108 => Status::ShuttingDown,
            116 => Status::StaleRequestId,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotPermitted => "eperm",
            Status::IoError => "eio",
            Status::NoMemory => "enomem",
            Status::AccessDenied => "eacces",
            Status::Invalid => "einval",
            Status::NoSpace => "enospc",
            Status::Overflow => "eoverflow",
            Status::NotSupported => "enotsup",
            Status::ShuttingDown => "eshutdown",
            Status::StaleRequestId => "estale",
        }
    }
}

/// A user's secret, the key of the MAC. `Debug` does not print it.
#[derive(Clone)]
pub struct UserKey([u8; KEY_LEN]);

impl UserKey {
    pub const fn new(bytes: [u8; KEY_LEN]) -> Self {
        UserKey(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserKey(..)")
    }
}

/// The MAC of a datagram: keyed BLAKE3 over the first 48 header bytes (`header` may be the whole header; the
/// MAC field itself is not covered) and the payload, truncated to 16 bytes.
pub fn compute_mac(key: &UserKey, header: &[u8], payload: &[u8]) -> [u8; MAC_LEN] {
    let mut hasher = blake3::Hasher::new_keyed(key.as_bytes());
    hasher.update(clamped(header, field::MAC_COVERED.start, field::MAC_COVERED.end));
    hasher.update(payload);
    let mut mac = [0u8; MAC_LEN];
    hasher.finalize_xof().fill(&mut mac);
    mac
}

/// Compares `mac` with the MAC of `header` and `payload` in constant time.
pub fn verify_mac(key: &UserKey, header: &[u8], payload: &[u8], mac: &[u8; MAC_LEN]) -> Result<()> {
    if constant_time_eq::constant_time_eq_16(&compute_mac(key, header, payload), mac) {
        Ok(())
    } else {
        Err(BlockError::BadMac)
    }
}

/// How many bytes a sender puts in each datagram: a multiple of `FRAGMENT_GRANULE`, at most
/// `MAX_FRAGMENT_PAYLOAD` (the last fragment of an I/O holds the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentSize(u16);

impl FragmentSize {
    /// 1408 bytes: the largest, for a 1500-byte path MTU.
    pub const STANDARD: FragmentSize = FragmentSize(MAX_FRAGMENT_PAYLOAD);

    /// `None` unless `bytes` is a non-zero multiple of `FRAGMENT_GRANULE` up to `MAX_FRAGMENT_PAYLOAD`.
    pub const fn new(bytes: u16) -> Option<FragmentSize> {
        if bytes == 0 || bytes as u32 % FRAGMENT_GRANULE != 0 || bytes > MAX_FRAGMENT_PAYLOAD {
            return None;
        }
        Some(FragmentSize(bytes))
    }

    /// The largest size whose datagrams fit a path MTU (IPv4 without options): 1408 for 1500, 1344 for a
    /// 1450-byte VXLAN overlay. `None` below 156.
    pub const fn for_mtu(mtu: u16) -> Option<FragmentSize> {
        let room = (mtu as usize).saturating_sub(DATAGRAM_OVERHEAD);
        let room = if room > MAX_FRAGMENT_PAYLOAD as usize { MAX_FRAGMENT_PAYLOAD as usize } else { room };
        FragmentSize::new((room - room % FRAGMENT_GRANULE as usize) as u16)
    }

    pub const fn get(self) -> u16 {
        self.0
    }

    /// The number of datagrams an I/O of `length` bytes travels in (1 for length 0: the datagram without data).
    pub const fn count(self, length: u32) -> u32 {
        if length == 0 {
            return 1;
        }
        length.div_ceil(self.0 as u32)
    }

    /// The bytes of the I/O that fragment `index` carries; `None` past the last one.
    pub fn range(self, length: u32, index: u32) -> Option<Range<u32>> {
        let start = index.checked_mul(u32::from(self.0)).filter(|&start| start < length)?;
        Some(start..length.min(start.saturating_add(u32::from(self.0))))
    }

    /// The fragments of an I/O of `length` bytes, in order.
    pub fn ranges(self, length: u32) -> impl Iterator<Item = Range<u32>> {
        (0..self.count(length)).map_while(move |index| self.range(length, index))
    }
}

/// A fragment of `payload_len` bytes at `fragment_offset` lies inside an I/O of `length` bytes, on the granule
/// grid (a payload off the grid must end the I/O), and is not empty.
pub fn check_fragment(length: u32, fragment_offset: u32, payload_len: u16) -> Result<()> {
    if payload_len == 0 {
        return Err(BlockError::MissingPayload);
    }
    if payload_len > MAX_FRAGMENT_PAYLOAD {
        return Err(BlockError::FragmentTooLong);
    }
    let end = u64::from(fragment_offset) + u64::from(payload_len);
    if end > u64::from(length) {
        return Err(BlockError::FragmentOutOfRange);
    }
    if fragment_offset % FRAGMENT_GRANULE != 0
        || (u32::from(payload_len) % FRAGMENT_GRANULE != 0 && end != u64::from(length))
    {
        return Err(BlockError::FragmentMisaligned);
    }
    Ok(())
}

/// A view of one datagram (the UDP payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> BlockPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        BlockPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// What the accessors and the MAC need: the header, magic, version 1, and exactly the payload the payload
    /// length field claims. The meaning of the fields is `BlockRepr::parse`'s.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(BlockError::Truncated);
        }
        if self.magic() != MAGIC {
            return Err(BlockError::BadMagic);
        }
        if self.version() != VERSION {
            return Err(BlockError::BadVersion);
        }
        let total = HEADER_LEN + usize::from(self.payload_len());
        if len < total {
            return Err(BlockError::Truncated);
        }
        if len > total {
            return Err(BlockError::TrailingBytes);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn magic(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::MAGIC)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// The raw op (see `Op::from_code`).
    pub fn op_code(&self) -> u8 {
        self.buffer.as_ref()[field::OP]
    }

    /// The raw flags (see `Flags::from_bits`).
    pub fn flag_bits(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS)
    }

    pub fn is_reply(&self) -> bool {
        self.flag_bits() & Flags::REPLY.bits() != 0
    }

    pub fn user_id(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::USER_ID)
    }

    pub fn image_id(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::IMAGE_ID)
    }

    pub fn request_id(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::REQUEST_ID)
    }

    pub fn offset(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::OFFSET)
    }

    pub fn length(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn fragment_offset(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::FRAGMENT_OFFSET)
    }

    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The raw status (see `Status::from_code`).
    pub fn status_code(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::STATUS)
    }

    pub fn reserved(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::RESERVED)
    }

    pub fn mac(&self) -> [u8; MAC_LEN] {
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&self.buffer.as_ref()[field::MAC]);
        mac
    }

    /// The payload-length bytes after the header (clamped to the buffer).
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, HEADER_LEN + usize::from(self.payload_len()))
    }

    /// `Err(BadMac)` unless the MAC field is the MAC of this datagram under `key`.
    pub fn verify_mac(&self, key: &UserKey) -> Result<()> {
        verify_mac(key, self.buffer.as_ref(), self.payload(), &self.mac())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> BlockPacket<T> {
    pub fn set_magic(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::MAGIC, value);
    }

    pub fn set_version(&mut self, value: u8) {
        self.buffer.as_mut()[field::VERSION] = value;
    }

    pub fn set_op_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::OP] = value;
    }

    pub fn set_flag_bits(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::FLAGS, value);
    }

    pub fn set_user_id(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::USER_ID, value);
    }

    pub fn set_image_id(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::IMAGE_ID, value);
    }

    pub fn set_request_id(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::REQUEST_ID, value);
    }

    pub fn set_offset(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::OFFSET, value);
    }

    pub fn set_length(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::LENGTH, value);
    }

    pub fn set_fragment_offset(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::FRAGMENT_OFFSET, value);
    }

    pub fn set_payload_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, value);
    }

    pub fn set_status_code(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::STATUS, value);
    }

    pub fn set_reserved(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::RESERVED, value);
    }

    pub fn set_mac(&mut self, mac: &[u8; MAC_LEN]) {
        self.buffer.as_mut()[field::MAC].copy_from_slice(mac);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }

    /// Writes the MAC of the header and the payload under `key` (call it last).
    pub fn fill_mac(&mut self, key: &UserKey) {
        let mac = compute_mac(key, self.buffer.as_ref(), self.payload());
        self.set_mac(&mac);
    }

    /// Turns a request's header, in place, into the header of an error reply: REPLY set (unknown flag bits
    /// cleared), `status`, no payload; every other field echoed. The MAC is left for `fill_mac`.
    pub fn make_error_reply(&mut self, status: Status) {
        let flags = (self.flag_bits() & Flags::KNOWN) | Flags::REPLY.bits();
        self.set_flag_bits(flags);
        self.set_status_code(status.code());
        self.set_fragment_offset(0);
        self.set_payload_len(0);
        self.set_reserved(0);
    }
}

/// An owned header. `fragment_offset` and `payload_len` place this datagram's payload in the I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRepr {
    pub op: Op,
    pub flags: Flags,
    pub user_id: u32,
    pub image_id: u32,
    pub request_id: u64,
    pub offset: u64,
    pub length: u32,
    pub fragment_offset: u32,
    pub payload_len: u16,
    pub status: Status,
}

impl BlockRepr {
    /// Parses a request or a reply (by its REPLY flag) and checks it (`validate`). The MAC is not checked here.
    pub fn parse<T: AsRef<[u8]>>(packet: &BlockPacket<T>) -> Result<BlockRepr> {
        let repr = Self::parse_fields(packet)?;
        repr.validate()?;
        Ok(repr)
    }

    /// `parse`, refusing replies (what a server reads).
    pub fn parse_request<T: AsRef<[u8]>>(packet: &BlockPacket<T>) -> Result<BlockRepr> {
        Self::parse_direction(packet, false)
    }

    /// `parse`, refusing requests (what a client reads).
    pub fn parse_reply<T: AsRef<[u8]>>(packet: &BlockPacket<T>) -> Result<BlockRepr> {
        Self::parse_direction(packet, true)
    }

    /// The direction is checked before `validate`, whose rules depend on it.
    fn parse_direction<T: AsRef<[u8]>>(packet: &BlockPacket<T>, reply: bool) -> Result<BlockRepr> {
        let repr = Self::parse_fields(packet)?;
        match (repr.is_reply(), reply) {
            (true, false) => return Err(BlockError::ReplyFlagInRequest),
            (false, true) => return Err(BlockError::RequestWhereReplyExpected),
            _ => {}
        }
        repr.validate()?;
        Ok(repr)
    }

    /// The fields as types, and the reserved field zero.
    fn parse_fields<T: AsRef<[u8]>>(packet: &BlockPacket<T>) -> Result<BlockRepr> {
        packet.check_len()?;
        if packet.reserved() != 0 {
            return Err(BlockError::ReservedNotZero);
        }
        Ok(BlockRepr {
            op: Op::from_code(packet.op_code()).ok_or(BlockError::UnknownOp)?,
            flags: Flags::from_bits(packet.flag_bits()).ok_or(BlockError::UnknownFlags)?,
            user_id: packet.user_id(),
            image_id: packet.image_id(),
            request_id: packet.request_id(),
            offset: packet.offset(),
            length: packet.length(),
            fragment_offset: packet.fragment_offset(),
            payload_len: packet.payload_len(),
            status: Status::from_code(packet.status_code()).ok_or(BlockError::UnknownStatus)?,
        })
    }

    pub const fn is_reply(&self) -> bool {
        self.flags.contains(Flags::REPLY)
    }

    /// This datagram carries (a fragment of) the I/O's data: a WRITE request, a successful READ or INFO reply.
    pub const fn carries_data(&self) -> bool {
        if self.is_reply() {
            matches!(self.status, Status::Ok) && self.op.has_reply_data()
        } else {
            self.op.has_request_data()
        }
    }

    /// The rules of docs/storage-protocol.md ("What a receiver refuses"). An error reply is only checked for
    /// having no payload: it echoes its request's fields, whatever they were.
    pub fn validate(&self) -> Result<()> {
        let error_reply = self.is_reply() && !matches!(self.status, Status::Ok);
        if !self.is_reply() && !matches!(self.status, Status::Ok) {
            return Err(BlockError::StatusInRequest);
        }
        if !error_reply {
            self.validate_range()?;
        }
        if self.carries_data() {
            return check_fragment(self.length, self.fragment_offset, self.payload_len);
        }
        if self.payload_len != 0 {
            return Err(BlockError::UnexpectedPayload);
        }
        if self.fragment_offset != 0 {
            return Err(BlockError::FragmentOutOfRange);
        }
        Ok(())
    }

    fn validate_range(&self) -> Result<()> {
        if self.flags.contains(Flags::FUA) && !self.op.writes() {
            return Err(BlockError::FuaNotAllowed);
        }
        match self.op {
            Op::Read | Op::Write if self.length > MAX_IO_LEN => return Err(BlockError::IoTooLong),
            Op::Read | Op::Write | Op::Trim | Op::WriteZeroes if self.length == 0 => {
                return Err(BlockError::EmptyIo)
            }
            Op::Flush if self.offset != 0 || self.length != 0 => return Err(BlockError::UnexpectedRange),
            Op::Info if self.offset != 0 || self.length != INFO_LEN => return Err(BlockError::UnexpectedRange),
            _ => {}
        }
        if self.offset.checked_add(u64::from(self.length)).is_none() {
            return Err(BlockError::RangeOverflow);
        }
        Ok(())
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 64 header bytes with a zero MAC (module convention: the payload is written after, then
    /// `BlockPacket::fill_mac`). Refuses a header `validate` refuses.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        self.validate()?;
        let Some(header) = buf.get_mut(..HEADER_LEN) else {
            return Err(BlockError::Truncated);
        };
        let mut packet = BlockPacket::new_unchecked(header);
        packet.set_magic(MAGIC);
        packet.set_version(VERSION);
        packet.set_op_code(self.op.code());
        packet.set_flag_bits(self.flags.bits());
        packet.set_user_id(self.user_id);
        packet.set_image_id(self.image_id);
        packet.set_request_id(self.request_id);
        packet.set_offset(self.offset);
        packet.set_length(self.length);
        packet.set_fragment_offset(self.fragment_offset);
        packet.set_payload_len(self.payload_len);
        packet.set_status_code(self.status.code());
        packet.set_reserved(0);
        packet.set_mac(&[0; MAC_LEN]);
        Ok(HEADER_LEN)
    }
}

/// The payload of a successful INFO reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageInfo {
    /// Bytes.
    pub size: u64,
    /// `ImageInfo::READ_ONLY`; other bits are refused.
    pub flags: u32,
    /// The I/O size the server handles best (a power of two, bytes).
    pub block_size: u32,
}

impl ImageInfo {
    pub const LEN: usize = 16;
    /// WRITE, TRIM and WRITE_ZEROES are refused with EPERM.
    pub const READ_ONLY: u32 = 1;

    pub fn parse(payload: &[u8]) -> Result<ImageInfo> {
        if payload.len() < Self::LEN {
            return Err(BlockError::Truncated);
        }
        if payload.len() > Self::LEN {
            return Err(BlockError::TrailingBytes);
        }
        let info = ImageInfo {
            size: read_u64(payload, 0..8),
            flags: read_u32(payload, 8..12),
            block_size: read_u32(payload, 12..16),
        };
        if info.flags & !Self::READ_ONLY != 0 {
            return Err(BlockError::UnknownFlags);
        }
        Ok(info)
    }

    /// Writes the 16 bytes at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let Some(out) = buf.get_mut(..Self::LEN) else {
            return Err(BlockError::Truncated);
        };
        write_u64(out, 0..8, self.size);
        write_u32(out, 8..12, self.flags);
        write_u32(out, 12..16, self.block_size);
        Ok(Self::LEN)
    }

    pub const fn is_read_only(&self) -> bool {
        self.flags & Self::READ_ONLY != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::fuzz;

    const KEY: UserKey = UserKey::new(*b"the secret of user 7, 32 bytes!!");
    const OTHER_KEY: UserKey = UserKey::new(*b"the secret of user 8, 32 bytes!!");

    // READ request: user 7, image 2, request id 0x0102030405060708, 4 KiB at offset 1 MiB; MAC under KEY.
    #[rustfmt::skip]
    const READ_4K: [u8; 64] = [
        0x53, 0x59, 0x42, 0x44, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x02,
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00,
        0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x68, 0xac, 0x3f, 0x6c, 0x47, 0xca, 0x8b, 0x00, 0x59, 0x93, 0x12, 0xa5, 0x53, 0x09, 0x14, 0xd1,
    ];

    fn read_4k() -> BlockRepr {
        BlockRepr {
            op: Op::Read,
            flags: Flags::NONE,
            user_id: 7,
            image_id: 2,
            request_id: 0x0102_0304_0506_0708,
            offset: 1 << 20,
            length: 4096,
            fragment_offset: 0,
            payload_len: 0,
            status: Status::Ok,
        }
    }

    fn write_fragment(length: u32, fragment_offset: u32, payload_len: u16) -> BlockRepr {
        BlockRepr { op: Op::Write, length, fragment_offset, payload_len, ..read_4k() }
    }

    /// A datagram of `repr` with `payload`, MAC'd under `key`.
    fn datagram(repr: &BlockRepr, payload: &[u8], key: &UserKey) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN + payload.len()];
        assert_eq!(repr.emit(&mut buf), Ok(HEADER_LEN));
        let mut packet = BlockPacket::new_unchecked(&mut buf[..]);
        packet.payload_mut().copy_from_slice(payload);
        packet.fill_mac(key);
        buf
    }

    #[test]
    fn parse_literal_read_request() {
        let packet = BlockPacket::new_checked(&READ_4K[..]).unwrap();
        assert_eq!((packet.magic(), packet.version(), packet.op_code(), packet.flag_bits()), (MAGIC, 1, 1, 0));
        assert_eq!((packet.user_id(), packet.image_id(), packet.request_id()), (7, 2, 0x0102_0304_0506_0708));
        assert_eq!((packet.offset(), packet.length(), packet.fragment_offset()), (1 << 20, 4096, 0));
        assert_eq!((packet.payload_len(), packet.status_code(), packet.reserved()), (0, 0, 0));
        assert!(!packet.is_reply() && packet.payload().is_empty());
        assert_eq!(packet.verify_mac(&KEY), Ok(()));
        assert_eq!(BlockRepr::parse_request(&packet), Ok(read_4k()));
        // emit + fill_mac give the same bytes.
        assert_eq!(datagram(&read_4k(), &[], &KEY), READ_4K);
    }

    #[test]
    fn mac_is_keyed_blake3_over_the_first_48_bytes_and_the_payload() {
        let payload: Vec<u8> = (0..1408u32).map(|i| i as u8).collect();
        let buf = datagram(&write_fragment(4096, 1408, 1408), &payload, &KEY);
        let mut covered = buf[..48].to_vec();
        covered.extend_from_slice(&payload);
        let full = blake3::keyed_hash(KEY.as_bytes(), &covered);
        let packet = BlockPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.mac(), full.as_bytes()[..16]);
        assert_eq!(compute_mac(&KEY, &buf[..48], &payload), packet.mac());
        assert_eq!(verify_mac(&KEY, &buf, &payload, &packet.mac()), Ok(()));
        assert_eq!(format!("{KEY:?}"), "UserKey(..)");
    }

    #[test]
    fn any_modified_byte_or_another_key_fails_the_mac() {
        let payload = [0x5au8; 200];
        let good = datagram(&write_fragment(200, 0, 200), &payload, &KEY);
        assert_eq!(BlockPacket::new_checked(&good[..]).unwrap().verify_mac(&OTHER_KEY), Err(BlockError::BadMac));
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                // Some flips break the framing first (magic, version, payload length): no MAC is computed then.
                if let Ok(packet) = BlockPacket::new_checked(&bad[..]) {
                    assert_eq!(packet.verify_mac(&KEY), Err(BlockError::BadMac), "byte {i} bit {bit:#x}");
                }
            }
        }
        // A forged user id with the forger's own key: the server checks with user 7's key.
        let mut forged = BlockRepr { user_id: 8, ..write_fragment(200, 0, 200) };
        let buf = datagram(&forged, &payload, &OTHER_KEY);
        assert_eq!(BlockPacket::new_checked(&buf[..]).unwrap().verify_mac(&KEY), Err(BlockError::BadMac));
        // A request MAC'd by the client does not pass as a reply: the REPLY flag is covered.
        forged = write_fragment(200, 0, 200);
        let mut buf = datagram(&forged, &payload, &KEY);
        buf[6] |= 0x80;
        assert_eq!(BlockPacket::new_checked(&buf[..]).unwrap().verify_mac(&KEY), Err(BlockError::BadMac));
    }

    #[test]
    fn framing_refusals() {
        for len in 0..HEADER_LEN {
            assert_eq!(BlockPacket::new_checked(&READ_4K[..len]), Err(BlockError::Truncated), "len {len}");
        }
        let mut bad = READ_4K;
        bad[3] = b'X';
        assert_eq!(BlockPacket::new_checked(&bad[..]), Err(BlockError::BadMagic));
        for version in [0u8, 2, 0xff] {
            let mut bad = READ_4K;
            bad[4] = version;
            assert_eq!(BlockPacket::new_checked(&bad[..]), Err(BlockError::BadVersion));
        }
        // Payload length beyond the buffer, and bytes beyond the payload length.
        let buf = datagram(&write_fragment(100, 0, 100), &[1; 100], &KEY);
        assert_eq!(BlockPacket::new_checked(&buf[..163]), Err(BlockError::Truncated));
        let mut longer = buf.clone();
        longer.push(0);
        assert_eq!(BlockPacket::new_checked(&longer[..]), Err(BlockError::TrailingBytes));
        let mut bad = READ_4K.to_vec();
        bad[40..42].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(BlockPacket::new_checked(&bad[..]), Err(BlockError::Truncated));
        bad[40..42].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(BlockPacket::new_checked(&bad[..]), Err(BlockError::Truncated));
        // The view still answers without panicking.
        let view = BlockPacket::new_unchecked(&bad[..]);
        assert!(view.payload().is_empty());
        assert_eq!(view.verify_mac(&KEY), Err(BlockError::BadMac));
    }

    /// `READ_4K` with bytes changed (MAC left stale: these checks come after it).
    fn read_with(change: impl FnOnce(&mut [u8])) -> core::result::Result<BlockRepr, BlockError> {
        let mut buf = READ_4K;
        change(&mut buf);
        BlockRepr::parse_request(&BlockPacket::new_checked(&buf[..])?)
    }

    #[test]
    fn header_field_refusals() {
        for op in [0u8, 7, 0xff] {
            assert_eq!(read_with(|b| b[5] = op), Err(BlockError::UnknownOp), "op {op}");
        }
        for bit in 1..15 {
            let flag = 1u16 << bit;
            assert_eq!(read_with(|b| b[6..8].copy_from_slice(&flag.to_be_bytes())), Err(BlockError::UnknownFlags));
        }
        for byte in 44..48 {
            assert_eq!(read_with(|b| b[byte] = 1), Err(BlockError::ReservedNotZero), "byte {byte}");
        }
        assert_eq!(read_with(|b| b[6] = 0x80), Err(BlockError::ReplyFlagInRequest));
        assert_eq!(read_with(|b| b[43] = 5), Err(BlockError::StatusInRequest));
        assert_eq!(read_with(|b| b[43] = 6), Err(BlockError::UnknownStatus));
        assert_eq!(read_with(|b| b[7] = 1), Err(BlockError::FuaNotAllowed));
        let packet = BlockPacket::new_checked(&READ_4K[..]).unwrap();
        assert_eq!(BlockRepr::parse_reply(&packet), Err(BlockError::RequestWhereReplyExpected));
    }

    #[test]
    fn range_refusals() {
        let read = read_4k();
        let refused = |repr: BlockRepr| repr.validate().err();
        assert_eq!(refused(BlockRepr { length: MAX_IO_LEN, ..read }), None);
        assert_eq!(refused(BlockRepr { length: MAX_IO_LEN + 1, ..read }), Some(BlockError::IoTooLong));
        assert_eq!(refused(BlockRepr { length: 0, ..read }), Some(BlockError::EmptyIo));
        assert_eq!(refused(BlockRepr { offset: u64::MAX - 4095, ..read }), Some(BlockError::RangeOverflow));
        assert_eq!(refused(BlockRepr { offset: u64::MAX - 4096, ..read }), None);
        // TRIM and WRITE_ZEROES carry no data: any length but 0, FUA allowed.
        for op in [Op::Trim, Op::WriteZeroes] {
            let zero = BlockRepr { op, length: u32::MAX, flags: Flags::FUA, ..read };
            assert_eq!(refused(zero), None);
            assert_eq!(refused(BlockRepr { length: 0, ..zero }), Some(BlockError::EmptyIo));
            assert_eq!(refused(BlockRepr { payload_len: 1, ..zero }), Some(BlockError::UnexpectedPayload));
        }
        let flush = BlockRepr { op: Op::Flush, offset: 0, length: 0, ..read };
        assert_eq!(refused(flush), None);
        assert_eq!(refused(BlockRepr { length: 1, ..flush }), Some(BlockError::UnexpectedRange));
        assert_eq!(refused(BlockRepr { offset: 512, ..flush }), Some(BlockError::UnexpectedRange));
        assert_eq!(refused(BlockRepr { flags: Flags::FUA, ..flush }), Some(BlockError::FuaNotAllowed));
        let info = BlockRepr { op: Op::Info, offset: 0, length: INFO_LEN, ..read };
        assert_eq!(refused(info), None);
        assert_eq!(refused(BlockRepr { length: 0, ..info }), Some(BlockError::UnexpectedRange));
        // A READ request carries nothing.
        assert_eq!(refused(BlockRepr { payload_len: 64, ..read }), Some(BlockError::UnexpectedPayload));
        assert_eq!(refused(BlockRepr { fragment_offset: 64, ..read }), Some(BlockError::FragmentOutOfRange));
        // Each refusal names the status of its reply.
        assert_eq!(BlockError::IoTooLong.reply_status(), Status::Overflow);
        assert_eq!(BlockError::UnknownOp.reply_status(), Status::NotSupported);
        assert_eq!(BlockError::EmptyIo.reply_status(), Status::Invalid);
    }

    #[test]
    fn fragment_refusals() {
        let ok = |length, offset, len| check_fragment(length, offset, len);
        assert_eq!(ok(65536, 0, 1408), Ok(()));
        assert_eq!(ok(65536, 64768, 768), Ok(()));
        assert_eq!(ok(100, 64, 36), Ok(()));
        assert_eq!(ok(100, 0, 100), Ok(()));
        assert_eq!(ok(100, 0, 0), Err(BlockError::MissingPayload));
        assert_eq!(ok(65536, 0, 1409), Err(BlockError::FragmentTooLong));
        assert_eq!(ok(65536, 65536 - 1344, 1408), Err(BlockError::FragmentOutOfRange));
        assert_eq!(ok(100, 64, 37), Err(BlockError::FragmentOutOfRange));
        assert_eq!(ok(100, u32::MAX, 1), Err(BlockError::FragmentOutOfRange));
        assert_eq!(ok(4096, 32, 64), Err(BlockError::FragmentMisaligned));
        assert_eq!(ok(4096, 0, 100), Err(BlockError::FragmentMisaligned));
        // Through parse: a WRITE fragment beyond the I/O, and a WRITE without data.
        let beyond = write_fragment(4096, 4096 - 64, 128);
        let mut buf = vec![0u8; HEADER_LEN + 128];
        assert_eq!(beyond.emit(&mut buf), Err(BlockError::FragmentOutOfRange));
        buf[..64].copy_from_slice(&datagram(&write_fragment(4096, 0, 128), &[0; 128], &KEY)[..64]);
        buf[36..40].copy_from_slice(&(4096u32 - 64).to_be_bytes());
        let packet = BlockPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(BlockRepr::parse_request(&packet), Err(BlockError::FragmentOutOfRange));
        let empty = datagram(&read_4k(), &[], &KEY);
        let mut empty_write = empty.clone();
        empty_write[5] = Op::Write.code();
        let packet = BlockPacket::new_checked(&empty_write[..]).unwrap();
        assert_eq!(BlockRepr::parse_request(&packet), Err(BlockError::MissingPayload));
    }

    #[test]
    fn fragment_size_math() {
        let standard = FragmentSize::STANDARD;
        assert_eq!(standard.get(), 1408);
        assert_eq!(FragmentSize::for_mtu(1500), Some(standard));
        assert_eq!(FragmentSize::for_mtu(9000), Some(standard));
        assert_eq!(FragmentSize::for_mtu(1450).map(FragmentSize::get), Some(1344));
        assert_eq!(FragmentSize::for_mtu(156).map(FragmentSize::get), Some(64));
        assert_eq!(FragmentSize::for_mtu(155), None);
        assert_eq!(FragmentSize::for_mtu(0), None);
        assert_eq!(FragmentSize::new(0), None);
        assert_eq!(FragmentSize::new(100), None);
        assert_eq!(FragmentSize::new(1472), None);
        assert_eq!((standard.count(4096), standard.count(65536), standard.count(1), standard.count(0)), (3, 47, 1, 1));
        assert_eq!(standard.range(4096, 0), Some(0..1408));
        assert_eq!(standard.range(4096, 2), Some(2816..4096));
        assert_eq!(standard.range(4096, 3), None);
        assert_eq!(standard.range(u32::MAX, u32::MAX), None);
        for length in [1, 63, 64, 1408, 1409, 4096, 65535, 65536] {
            for size in [standard, FragmentSize::new(64).unwrap(), FragmentSize::new(1344).unwrap()] {
                let ranges: Vec<_> = size.ranges(length).collect();
                assert_eq!(ranges.len() as u32, size.count(length));
                assert_eq!((ranges[0].start, ranges.last().unwrap().end), (0, length));
                for pair in ranges.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                }
                for range in ranges {
                    assert_eq!(check_fragment(length, range.start, (range.end - range.start) as u16), Ok(()));
                }
            }
        }
    }

    #[test]
    fn write_fragments_round_trip() {
        let data: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
        let mut joined = vec![0u8; data.len()];
        for range in FragmentSize::STANDARD.ranges(65536) {
            let (start, end) = (range.start as usize, range.end as usize);
            let repr = write_fragment(65536, range.start, (end - start) as u16);
            let buf = datagram(&repr, &data[start..end], &KEY);
            assert!(buf.len() + 28 <= 1500);
            let packet = BlockPacket::new_checked(&buf[..]).unwrap();
            packet.verify_mac(&KEY).unwrap();
            let parsed = BlockRepr::parse_request(&packet).unwrap();
            assert_eq!(parsed, repr);
            assert!(parsed.carries_data());
            joined[start..end].copy_from_slice(packet.payload());
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn replies_round_trip() {
        let reply = Flags::REPLY;
        // A READ reply fragment.
        let read = BlockRepr { flags: reply, fragment_offset: 2816, payload_len: 1280, ..read_4k() };
        let buf = datagram(&read, &[9; 1280], &KEY);
        let packet = BlockPacket::new_checked(&buf[..]).unwrap();
        assert_eq!((packet.is_reply(), packet.verify_mac(&KEY)), (true, Ok(())));
        assert_eq!(BlockRepr::parse_reply(&packet), Ok(read));
        assert_eq!(BlockRepr::parse_request(&packet), Err(BlockError::ReplyFlagInRequest));
        // An INFO reply.
        let info = ImageInfo { size: 10 << 30, flags: ImageInfo::READ_ONLY, block_size: 4096 };
        let mut payload = [0u8; 16];
        assert_eq!(info.emit(&mut payload), Ok(16));
        let info_reply = BlockRepr { op: Op::Info, flags: reply, offset: 0, length: INFO_LEN, payload_len: 16, ..read_4k() };
        let buf = datagram(&info_reply, &payload, &KEY);
        let packet = BlockPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(BlockRepr::parse_reply(&packet), Ok(info_reply));
        assert_eq!(ImageInfo::parse(packet.payload()), Ok(info));
        assert!(info.is_read_only());
        assert_eq!(ImageInfo::parse(&payload[..15]), Err(BlockError::Truncated));
        assert_eq!(ImageInfo::parse(&[0; 17]), Err(BlockError::TrailingBytes));
        payload[11] = 2;
        assert_eq!(ImageInfo::parse(&payload), Err(BlockError::UnknownFlags));
        assert_eq!(info.emit(&mut [0; 15]), Err(BlockError::Truncated));
        // A WRITE's reply carries nothing.
        let written = BlockRepr { flags: reply | Flags::FUA, ..write_fragment(65536, 0, 0) };
        assert_eq!(written.validate(), Ok(()));
        assert_eq!(BlockRepr { payload_len: 64, ..written }.validate(), Err(BlockError::UnexpectedPayload));
    }

    #[test]
    fn error_reply_made_in_place_echoes_the_request() {
        // Even a request that was refused (too long, FUA on a READ, unknown flag bits) gets its error echoed.
        let mut buf = datagram(&read_4k(), &[], &KEY);
        buf[32..36].copy_from_slice(&(MAX_IO_LEN + 1).to_be_bytes());
        buf[6..8].copy_from_slice(&0x0101u16.to_be_bytes());
        let mut packet = BlockPacket::new_checked(&mut buf[..]).unwrap();
        packet.make_error_reply(Status::Overflow);
        packet.fill_mac(&KEY);
        let packet = BlockPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.verify_mac(&KEY), Ok(()));
        let reply = BlockRepr::parse_reply(&packet).unwrap();
        assert_eq!((reply.status, reply.flags, reply.length), (Status::Overflow, Flags::REPLY | Flags::FUA, 65537));
        assert_eq!((reply.request_id, reply.user_id, reply.image_id), (0x0102_0304_0506_0708, 7, 2));
        // From a WRITE fragment: the payload goes.
        let mut buf = datagram(&write_fragment(4096, 1408, 1408), &[3; 1408], &KEY);
        let mut packet = BlockPacket::new_unchecked(&mut buf[..]);
        packet.make_error_reply(Status::NoSpace);
        packet.fill_mac(&KEY);
        let packet = BlockPacket::new_checked(&buf[..HEADER_LEN]).unwrap();
        let reply = BlockRepr::parse_reply(&packet).unwrap();
        assert_eq!((reply.status, reply.fragment_offset, reply.payload_len), (Status::NoSpace, 0, 0));
        assert_eq!(packet.verify_mac(&KEY), Ok(()));
        // An error reply with data is refused.
        let bad = BlockRepr { status: Status::IoError, ..reply };
        assert_eq!(BlockRepr { payload_len: 64, ..bad }.validate(), Err(BlockError::UnexpectedPayload));
        assert_eq!(BlockRepr { fragment_offset: 64, ..bad }.validate(), Err(BlockError::FragmentOutOfRange));
    }

    #[test]
    fn emit_refuses_short_buffers_and_writes_only_the_header() {
        let mut buf = [0xeeu8; 70];
        assert_eq!(read_4k().emit(&mut buf[..63]), Err(BlockError::Truncated));
        assert_eq!(buf, [0xee; 70]);
        assert_eq!(read_4k().emit(&mut buf), Ok(64));
        assert_eq!(&buf[..48], &READ_4K[..48]);
        assert_eq!(&buf[48..64], &[0; 16]);
        assert_eq!(&buf[64..], &[0xee; 6]);
        assert_eq!(read_4k().header_len(), HEADER_LEN);
    }

    #[test]
    fn codes_and_names() {
        for op in Op::ALL {
            assert_eq!(Op::from_code(op.code()), Some(op));
            assert!(!op.name().is_empty());
        }
        for status in Status::ALL {
            assert_eq!(Status::from_code(status.code()), Some(status));
            assert!(!status.name().is_empty());
        }
        assert_eq!(Status::from_code(2), None);
        assert_eq!(Flags::from_bits(0x8001), Some(Flags::FUA | Flags::REPLY));
        assert_eq!(Flags::from_bits(0x0002), None);
        assert_eq!(BlockError::BadMac.to_string(), "storage MAC does not match");
    }

    #[test]
    fn no_panic_on_any_input() {
        let write = datagram(&write_fragment(100, 0, 100), &[1; 100], &KEY);
        fuzz(&[&READ_4K, &write], |buf| {
            if let Ok(mut packet) = BlockPacket::new_checked(&mut buf[..]) {
                let _ = (packet.op_code(), packet.flag_bits(), packet.status_code(), packet.mac(), packet.payload());
                let _ = (packet.verify_mac(&KEY), BlockRepr::parse(&packet), BlockRepr::parse_reply(&packet));
                if let Ok(repr) = BlockRepr::parse_request(&packet) {
                    assert_eq!(repr.validate(), Ok(()));
                }
                packet.make_error_reply(Status::Invalid);
                packet.fill_mac(&KEY);
            }
            let _ = ImageInfo::parse(buf);
        });
    }
}
