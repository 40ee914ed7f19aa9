//! The NBD protocol on the wire (NetworkBlockDevice/nbd doc/proto.md): its constants, and pure
//! decoders and encoders for the fixed-newstyle handshake and the transmission phase with simple
//! replies. Byte slices in, bytes or a named error out: no I/O, and no panic on any input (the
//! decoders are fuzz targets). All numbers are big-endian on the wire.
//!
//! Two kinds of failure, because the protocol recovers from one and not the other:
//! - `HandshakeError` and `FramingError`: the byte stream cannot be followed any further, the
//!   connection ends (proto.md "a hard disconnect").
//! - `OptionError` and `RequestError`: one option or request is refused with an error reply
//!   (`reply_type()`, `errno()`), and the session goes on.

use std::fmt;

/// proto.md "Newstyle negotiation": the server's first 8 bytes ("NBDMAGIC").
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": the server's second 8 bytes, and the start of every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Starts every option reply (fixed newstyle).
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

/// NBDMAGIC, IHAVEOPT, 16-bit handshake flags.
pub const GREETING_LEN: usize = 18;
pub const CLIENT_FLAGS_LEN: usize = 4;
/// IHAVEOPT, option, data length.
pub const OPTION_HEADER_LEN: usize = 16;
/// Magic, option, reply type, data length.
pub const OPTION_REPLY_HEADER_LEN: usize = 20;
/// Magic, flags, type, cookie, offset, length.
pub const REQUEST_HEADER_LEN: usize = 28;
/// Magic, error, cookie.
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Reserved zeroes after an `NBD_OPT_EXPORT_NAME` reply unless the client set NO_ZEROES.
pub const EXPORT_NAME_ZEROES: usize = 124;

/// proto.md "Conventions": a string (export name, description, message) is at most 4096 bytes.
pub const MAX_STRING_LEN: usize = 4096;
/// The most option data this server reads: NBD_OPT_GO with a 4096-byte name (4 + 4096 + 2)
/// leaves room for 2045 information requests; real clients send one to four.
pub const MAX_OPTION_DATA: u32 = 8192;

/// Handshake flags (server, 16 bits).
pub mod handshake_flag {
    pub const FIXED_NEWSTYLE: u16 = 1 << 0;
    pub const NO_ZEROES: u16 = 1 << 1;
}

/// Client flags (32 bits).
pub mod client_flag {
    pub const FIXED_NEWSTYLE: u32 = 1 << 0;
    pub const NO_ZEROES: u32 = 1 << 1;
}

/// Option types (`NBD_OPT_*`).
pub mod option {
    pub const EXPORT_NAME: u32 = 1;
    pub const ABORT: u32 = 2;
    pub const LIST: u32 = 3;
    pub const PEEK_EXPORT: u32 = 4;
    pub const STARTTLS: u32 = 5;
    pub const INFO: u32 = 6;
    pub const GO: u32 = 7;
    pub const STRUCTURED_REPLY: u32 = 8;
    pub const LIST_META_CONTEXT: u32 = 9;
    pub const SET_META_CONTEXT: u32 = 10;
    pub const EXTENDED_HEADERS: u32 = 11;
}

/// Option reply types (`NBD_REP_*`); errors have bit 31 set.
pub mod reply {
    pub const ACK: u32 = 1;
    pub const SERVER: u32 = 2;
    pub const INFO: u32 = 3;
    pub const META_CONTEXT: u32 = 4;
    const ERROR: u32 = 1 << 31;
    pub const ERR_UNSUP: u32 = ERROR + 1;
    pub const ERR_POLICY: u32 = ERROR + 2;
    pub const ERR_INVALID: u32 = ERROR + 3;
    pub const ERR_PLATFORM: u32 = ERROR + 4;
    pub const ERR_TLS_REQD: u32 = ERROR + 5;
    pub const ERR_UNKNOWN: u32 = ERROR + 6;
    pub const ERR_SHUTDOWN: u32 = ERROR + 7;
    pub const ERR_BLOCK_SIZE_REQD: u32 = ERROR + 8;
    pub const ERR_TOO_BIG: u32 = ERROR + 9;
}

/// Information types in `NBD_REP_INFO` replies (`NBD_INFO_*`).
pub mod info {
    pub const EXPORT: u16 = 0;
    pub const NAME: u16 = 1;
    pub const DESCRIPTION: u16 = 2;
    pub const BLOCK_SIZE: u16 = 3;
}

/// Transmission flags (16 bits, per export).
pub mod transmission_flag {
    pub const HAS_FLAGS: u16 = 1 << 0;
    pub const READ_ONLY: u16 = 1 << 1;
    pub const SEND_FLUSH: u16 = 1 << 2;
    pub const SEND_FUA: u16 = 1 << 3;
    pub const ROTATIONAL: u16 = 1 << 4;
    pub const SEND_TRIM: u16 = 1 << 5;
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    pub const SEND_DF: u16 = 1 << 7;
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
    pub const SEND_RESIZE: u16 = 1 << 9;
    pub const SEND_CACHE: u16 = 1 << 10;
    pub const SEND_FAST_ZERO: u16 = 1 << 11;
}

/// Request types (`NBD_CMD_*`).
pub mod command {
    pub const READ: u16 = 0;
    pub const WRITE: u16 = 1;
    pub const DISC: u16 = 2;
    pub const FLUSH: u16 = 3;
    pub const TRIM: u16 = 4;
    pub const CACHE: u16 = 5;
    pub const WRITE_ZEROES: u16 = 6;
    pub const BLOCK_STATUS: u16 = 7;
    pub const RESIZE: u16 = 8;
}

/// Command flags (`NBD_CMD_FLAG_*`).
pub mod command_flag {
    pub const FUA: u16 = 1 << 0;
    pub const NO_HOLE: u16 = 1 << 1;
    pub const DF: u16 = 1 << 2;
    pub const REQ_ONE: u16 = 1 << 3;
    pub const FAST_ZERO: u16 = 1 << 4;
    pub const PAYLOAD_LEN: u16 = 1 << 5;
}

/// The error values of a reply (proto.md "Error values"); not the host's errno numbering.
pub mod error {
    pub const EPERM: u32 = 1;
    pub const EIO: u32 = 5;
    pub const ENOMEM: u32 = 12;
    pub const EINVAL: u32 = 22;
    pub const ENOSPC: u32 = 28;
    pub const EOVERFLOW: u32 = 75;
    pub const ENOTSUP: u32 = 95;
    pub const ESHUTDOWN: u32 = 108;
}

/// The spec's name of a request type, for log lines.
pub fn command_name(command: u16) -> &'static str {
    match command {
        command::READ => "READ",
        command::WRITE => "WRITE",
        command::DISC => "DISC",
        command::FLUSH => "FLUSH",
        command::TRIM => "TRIM",
        command::CACHE => "CACHE",
        command::WRITE_ZEROES => "WRITE_ZEROES",
        command::BLOCK_STATUS => "BLOCK_STATUS",
        command::RESIZE => "RESIZE",
        _ => "unknown",
    }
}

/// The spec's name of an option, for log lines and error messages.
pub fn option_name(option: u32) -> &'static str {
    match option {
        option::EXPORT_NAME => "EXPORT_NAME",
        option::ABORT => "ABORT",
        option::LIST => "LIST",
        option::PEEK_EXPORT => "PEEK_EXPORT",
        option::STARTTLS => "STARTTLS",
        option::INFO => "INFO",
        option::GO => "GO",
        option::STRUCTURED_REPLY => "STRUCTURED_REPLY",
        option::LIST_META_CONTEXT => "LIST_META_CONTEXT",
        option::SET_META_CONTEXT => "SET_META_CONTEXT",
        option::EXTENDED_HEADERS => "EXTENDED_HEADERS",
        _ => "unknown",
    }
}

/// Reads the fixed-size big-endian field at `at`; `None` past the end of `bytes`.
fn field<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    field(bytes, at).map(u16::from_be_bytes)
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    field(bytes, at).map(u32::from_be_bytes)
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    field(bytes, at).map(u64::from_be_bytes)
}

/// Why the handshake cannot go on: the server closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("handshake message truncated: {needed} bytes needed, {got} given")]
    Truncated { needed: usize, got: usize },
    /// proto.md: the server MUST drop the connection on a flag it did not offer.
    #[error("client flags {0:#010x} set bits this server does not know")]
    UnknownClientFlags(u32),
    #[error("option request magic is {0:#018x}, not IHAVEOPT")]
    BadOptionMagic(u64),
}

/// The client's answer to the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlags {
    pub fixed_newstyle: bool,
    /// No 124 zero bytes after an `NBD_OPT_EXPORT_NAME` reply.
    pub no_zeroes: bool,
}

impl ClientFlags {
    pub fn parse(bytes: &[u8]) -> Result<ClientFlags, HandshakeError> {
        let flags =
            be_u32(bytes, 0).ok_or(HandshakeError::Truncated { needed: CLIENT_FLAGS_LEN, got: bytes.len() })?;
        let known = client_flag::FIXED_NEWSTYLE | client_flag::NO_ZEROES;
        if flags & !known != 0 {
            return Err(HandshakeError::UnknownClientFlags(flags));
        }
        Ok(ClientFlags {
            fixed_newstyle: flags & client_flag::FIXED_NEWSTYLE != 0,
            no_zeroes: flags & client_flag::NO_ZEROES != 0,
        })
    }
}

/// The 16 bytes before an option's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    /// Bytes of option data that follow.
    pub length: u32,
}

impl OptionHeader {
    pub fn parse(bytes: &[u8]) -> Result<OptionHeader, HandshakeError> {
        let truncated = HandshakeError::Truncated { needed: OPTION_HEADER_LEN, got: bytes.len() };
        let (Some(magic), Some(option), Some(length)) = (be_u64(bytes, 0), be_u32(bytes, 8), be_u32(bytes, 12))
        else {
            return Err(truncated);
        };
        if magic != IHAVEOPT {
            return Err(HandshakeError::BadOptionMagic(magic));
        }
        Ok(OptionHeader { option, length })
    }

    /// `Err(TooBig)` when the data is more than this server reads (`MAX_OPTION_DATA`).
    pub fn check_length(&self) -> Result<(), OptionError> {
        if self.length > MAX_OPTION_DATA {
            return Err(OptionError::TooBig { option: self.option, length: self.length, max: MAX_OPTION_DATA });
        }
        Ok(())
    }
}

/// An option this server acts on, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionRequest {
    /// Ends the handshake; an unknown name can only be answered by closing.
    ExportName(String),
    Abort,
    List,
    Info(ExportQuery),
    Go(ExportQuery),
}

/// The data of `NBD_OPT_INFO` / `NBD_OPT_GO`: an export name and the information asked for
/// (`NBD_INFO_EXPORT` is always sent; unknown requests are ignored, as the spec says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportQuery {
    pub name: String,
    pub wants_name: bool,
    pub wants_description: bool,
    pub wants_block_size: bool,
}

/// Why one option is refused; the session goes on after the error reply (`reply_type`),
/// except for `NBD_OPT_EXPORT_NAME`, which has no error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("option {option} ({}) is not supported", option_name(*option))]
    Unsupported { option: u32 },
    #[error("option {} carries {length} bytes of data, more than the {max} this server reads", option_name(*option))]
    TooBig { option: u32, length: u32, max: u32 },
    #[error("option {} takes no data but carries {length} bytes", option_name(*option))]
    UnexpectedData { option: u32, length: usize },
    #[error("export name length {name_len} runs past the {data_len} bytes of option data")]
    NameLengthPastEnd { name_len: u32, data_len: usize },
    #[error("export name of {0} bytes is longer than the {MAX_STRING_LEN} allowed")]
    NameTooLong(usize),
    #[error("export name is not UTF-8")]
    NameNotUtf8,
    #[error("export name contains a NUL byte")]
    NameHasNul,
    #[error("{count} information requests need {needed} bytes, the option has {got}")]
    InfoRequestsLength { count: u16, needed: usize, got: usize },
}

impl OptionError {
    /// The `NBD_REP_ERR_*` that answers it.
    pub fn reply_type(&self) -> u32 {
        match self {
            OptionError::Unsupported { .. } => reply::ERR_UNSUP,
            OptionError::TooBig { .. } => reply::ERR_TOO_BIG,
            OptionError::UnexpectedData { .. }
            | OptionError::NameLengthPastEnd { .. }
            | OptionError::NameTooLong(_)
            | OptionError::NameNotUtf8
            | OptionError::NameHasNul
            | OptionError::InfoRequestsLength { .. } => reply::ERR_INVALID,
        }
    }
}

/// Decodes the data of option `option`. Options this server does not implement (STARTTLS,
/// STRUCTURED_REPLY, meta contexts, extended headers, unknown numbers) are `Unsupported`: the
/// client then falls back to simple replies and no TLS.
pub fn parse_option(option: u32, data: &[u8]) -> Result<OptionRequest, OptionError> {
    match option {
        option::EXPORT_NAME => parse_name(data).map(OptionRequest::ExportName),
        // proto.md: the server SHOULD ignore data sent with NBD_OPT_ABORT.
        option::ABORT => Ok(OptionRequest::Abort),
        option::LIST if data.is_empty() => Ok(OptionRequest::List),
        option::LIST => Err(OptionError::UnexpectedData { option, length: data.len() }),
        option::INFO => parse_export_query(data).map(OptionRequest::Info),
        option::GO => parse_export_query(data).map(OptionRequest::Go),
        _ => Err(OptionError::Unsupported { option }),
    }
}

/// A string per proto.md "Conventions": UTF-8, no NUL, at most 4096 bytes.
fn parse_name(bytes: &[u8]) -> Result<String, OptionError> {
    if bytes.len() > MAX_STRING_LEN {
        return Err(OptionError::NameTooLong(bytes.len()));
    }
    if bytes.contains(&0) {
        return Err(OptionError::NameHasNul);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| OptionError::NameNotUtf8)
}

/// 32-bit name length, name, 16-bit request count, 16-bit requests.
fn parse_export_query(data: &[u8]) -> Result<ExportQuery, OptionError> {
    let name_len = be_u32(data, 0).ok_or(OptionError::NameLengthPastEnd { name_len: 0, data_len: data.len() })?;
    // proto.md: the name length MUST be no larger than the option data length - 6.
    let name_end = usize::try_from(name_len).ok().and_then(|len| len.checked_add(4));
    let Some(name_bytes) = name_end.and_then(|end| data.get(4..end)) else {
        return Err(OptionError::NameLengthPastEnd { name_len, data_len: data.len() });
    };
    let after_name = 4 + name_bytes.len();
    let count = be_u16(data, after_name).ok_or(OptionError::NameLengthPastEnd { name_len, data_len: data.len() })?;
    let requests = data.get(after_name + 2..).unwrap_or_default();
    let needed = usize::from(count) * 2;
    if requests.len() != needed {
        return Err(OptionError::InfoRequestsLength { count, needed, got: requests.len() });
    }
    let name = parse_name(name_bytes)?;
    let mut query = ExportQuery { name, wants_name: false, wants_description: false, wants_block_size: false };
    for request in requests.chunks_exact(2) {
        match u16::from_be_bytes([request[0], request[1]]) {
            info::NAME => query.wants_name = true,
            info::DESCRIPTION => query.wants_description = true,
            info::BLOCK_SIZE => query.wants_block_size = true,
            _ => {} // NBD_INFO_EXPORT is sent anyway; unknown ones MUST be ignored
        }
    }
    Ok(query)
}

/// NBDMAGIC, IHAVEOPT, the handshake flags this server offers.
pub fn greeting() -> [u8; GREETING_LEN] {
    let mut out = [0; GREETING_LEN];
    out[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    out[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    let flags = handshake_flag::FIXED_NEWSTYLE | handshake_flag::NO_ZEROES;
    out[16..18].copy_from_slice(&flags.to_be_bytes());
    out
}

/// Appends one option reply: header, then `data`. Data longer than a 32-bit length can say is
/// cut there, so the stream stays well-formed (the server's replies are a few KiB at most).
pub fn encode_option_reply(out: &mut Vec<u8>, option: u32, reply_type: u32, data: &[u8]) {
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply_type.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(data.get(..length as usize).unwrap_or(data));
}

/// An error reply whose data is `message`, cut to `MAX_STRING_LEN` on a character boundary.
pub fn encode_error_reply(out: &mut Vec<u8>, option: u32, reply_type: u32, message: &str) {
    encode_option_reply(out, option, reply_type, truncate_str(message, MAX_STRING_LEN).as_bytes());
}

fn truncate_str(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `NBD_REP_SERVER` for `NBD_OPT_LIST`: name length, name, then the description as details.
pub fn encode_rep_server(out: &mut Vec<u8>, name: &str, description: &str) {
    let mut data = Vec::with_capacity(4 + name.len() + description.len());
    data.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(description.as_bytes());
    encode_option_reply(out, option::LIST, reply::SERVER, &data);
}

/// `NBD_REP_INFO` with `NBD_INFO_EXPORT`: size and transmission flags (length 12).
pub fn encode_info_export(out: &mut Vec<u8>, option: u32, size: u64, flags: u16) {
    let mut data = [0; 12];
    data[0..2].copy_from_slice(&info::EXPORT.to_be_bytes());
    data[2..10].copy_from_slice(&size.to_be_bytes());
    data[10..12].copy_from_slice(&flags.to_be_bytes());
    encode_option_reply(out, option, reply::INFO, &data);
}

/// `NBD_REP_INFO` with a string: `NBD_INFO_NAME` or `NBD_INFO_DESCRIPTION`.
pub fn encode_info_string(out: &mut Vec<u8>, option: u32, info_type: u16, text: &str) {
    let text = truncate_str(text, MAX_STRING_LEN);
    let mut data = Vec::with_capacity(2 + text.len());
    data.extend_from_slice(&info_type.to_be_bytes());
    data.extend_from_slice(text.as_bytes());
    encode_option_reply(out, option, reply::INFO, &data);
}

/// Block size constraints (proto.md "Block size constraints").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    pub minimum: u32,
    pub preferred: u32,
    /// The largest request length (and READ/WRITE payload) the server accepts.
    pub maximum: u32,
}

/// `NBD_REP_INFO` with `NBD_INFO_BLOCK_SIZE` (length 14).
pub fn encode_info_block_size(out: &mut Vec<u8>, option: u32, sizes: BlockSizes) {
    let mut data = [0; 14];
    data[0..2].copy_from_slice(&info::BLOCK_SIZE.to_be_bytes());
    data[2..6].copy_from_slice(&sizes.minimum.to_be_bytes());
    data[6..10].copy_from_slice(&sizes.preferred.to_be_bytes());
    data[10..14].copy_from_slice(&sizes.maximum.to_be_bytes());
    encode_option_reply(out, option, reply::INFO, &data);
}

/// The answer to `NBD_OPT_EXPORT_NAME`: size, flags, and 124 zeroes unless NO_ZEROES.
pub fn encode_export_name_reply(out: &mut Vec<u8>, size: u64, flags: u16, no_zeroes: bool) {
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        out.extend_from_slice(&[0; EXPORT_NAME_ZEROES]);
    }
}

/// Why the request stream cannot be followed any further: the connection ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("request header truncated: {REQUEST_HEADER_LEN} bytes needed, {0} given")]
    Truncated(usize),
    #[error("request magic is {0:#010x}, not {REQUEST_MAGIC:#010x}")]
    BadMagic(u32),
    /// proto.md allows a hard disconnect rather than reading a payload this large.
    #[error("WRITE payload of {length} bytes is over the {max}-byte maximum")]
    PayloadTooLarge { length: u32, max: u32 },
}

/// A request header as sent, before it is checked against the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub flags: u16,
    pub command: u16,
    /// The client's handle, echoed in the reply.
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

/// What a request is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    pub size: u64,
    pub max_payload: u32,
    pub read_only: bool,
}

/// A request that passed every check: in range, allowed flags, within the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read { offset: u64, length: u32 },
    Write { offset: u64, length: u32, fua: bool },
    Disconnect,
    Flush,
    Trim { offset: u64, length: u32, fua: bool },
    WriteZeroes { offset: u64, length: u32, fua: bool, no_hole: bool },
}

/// Why one request is refused; the reply carries `errno()` and the session goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("command {0} ({name}) is not supported", name = command_name(*.0))]
    UnknownCommand(u16),
    #[error("{} with flags {flags:#06x}: a flag is unknown or not valid for this command", command_name(*command))]
    BadFlags { command: u16, flags: u16 },
    #[error("{} on a read-only export", command_name(*command))]
    ReadOnly { command: u16 },
    #[error("{} with offset {offset} and length {length}: both must be zero", command_name(*command))]
    ReservedNotZero { command: u16, offset: u64, length: u32 },
    #[error("{} of {length} bytes is over the {max}-byte maximum", command_name(*command))]
    LengthOverMaximum { command: u16, length: u32, max: u32 },
    #[error("{} at offset {offset} + {length} bytes overflows 64 bits", command_name(*command))]
    OffsetOverflow { command: u16, offset: u64, length: u32 },
    #[error("{} at offset {offset} + {length} bytes runs past the export's {size} bytes", command_name(*command))]
    PastEnd { command: u16, offset: u64, length: u32, size: u64 },
}

impl RequestError {
    /// The reply's error value (proto.md "Error values": ENOSPC for writes past the end,
    /// EINVAL for reads and trims past it, EPERM for writing a read-only export).
    pub fn errno(&self) -> u32 {
        match self {
            RequestError::ReadOnly { .. } => error::EPERM,
            RequestError::OffsetOverflow { command, .. } | RequestError::PastEnd { command, .. }
                if matches!(*command, command::WRITE | command::WRITE_ZEROES) =>
            {
                error::ENOSPC
            }
            _ => error::EINVAL,
        }
    }
}

impl RequestHeader {
    pub fn parse(bytes: &[u8]) -> Result<RequestHeader, FramingError> {
        let (Some(magic), Some(flags), Some(command), Some(cookie), Some(offset), Some(length)) = (
            be_u32(bytes, 0),
            be_u16(bytes, 4),
            be_u16(bytes, 6),
            be_u64(bytes, 8),
            be_u64(bytes, 16),
            be_u32(bytes, 24),
        ) else {
            return Err(FramingError::Truncated(bytes.len()));
        };
        if magic != REQUEST_MAGIC {
            return Err(FramingError::BadMagic(magic));
        }
        Ok(RequestHeader { flags, command, cookie, offset, length })
    }

    /// The bytes that follow the header on the wire: a WRITE's data, which must be read (or
    /// the connection closed) whatever the request's fate.
    pub fn payload_len(&self) -> u32 {
        if self.command == command::WRITE {
            self.length
        } else {
            0
        }
    }

    /// `Err(PayloadTooLarge)` when the payload is over `max`: it is not read, the connection ends.
    pub fn check_payload(&self, max: u32) -> Result<u32, FramingError> {
        let length = self.payload_len();
        if length > max {
            return Err(FramingError::PayloadTooLarge { length, max });
        }
        Ok(length)
    }

    /// Checks the request against the export (proto.md "Request types", "Error values").
    /// Zero lengths are accepted: the spec leaves them unspecified but says not to disconnect.
    pub fn validate(&self, limits: &ExportLimits) -> Result<Command, RequestError> {
        let RequestHeader { flags, command, offset, length, .. } = *self;
        let allowed = match command {
            // No reply to DISC: whatever its fields, the client is leaving.
            command::DISC => return Ok(Command::Disconnect),
            command::READ | command::WRITE | command::FLUSH | command::TRIM => command_flag::FUA,
            command::WRITE_ZEROES => command_flag::FUA | command_flag::NO_HOLE,
            // CACHE and BLOCK_STATUS are not advertised (no SEND_CACHE, no meta contexts).
            _ => return Err(RequestError::UnknownCommand(command)),
        };
        if flags & !allowed != 0 {
            return Err(RequestError::BadFlags { command, flags });
        }
        let fua = flags & command_flag::FUA != 0;
        let writes = matches!(command, command::WRITE | command::TRIM | command::WRITE_ZEROES);
        if writes && limits.read_only {
            return Err(RequestError::ReadOnly { command });
        }
        if command == command::FLUSH {
            if offset != 0 || length != 0 {
                return Err(RequestError::ReservedNotZero { command, offset, length });
            }
            return Ok(Command::Flush);
        }
        // TRIM has no payload and no maximum (proto.md "Block size constraints").
        if command != command::TRIM && length > limits.max_payload {
            return Err(RequestError::LengthOverMaximum { command, length, max: limits.max_payload });
        }
        let overflow = RequestError::OffsetOverflow { command, offset, length };
        let end = offset.checked_add(u64::from(length)).ok_or(overflow)?;
        if end > limits.size {
            return Err(RequestError::PastEnd { command, offset, length, size: limits.size });
        }
        Ok(match command {
            command::READ => Command::Read { offset, length },
            command::WRITE => Command::Write { offset, length, fua },
            command::TRIM => Command::Trim { offset, length, fua },
            _ => Command::WriteZeroes { offset, length, fua, no_hole: flags & command_flag::NO_HOLE != 0 },
        })
    }
}

/// A simple reply header: magic, error, cookie (a successful READ's data follows it).
pub fn simple_reply(error: u32, cookie: u64) -> [u8; SIMPLE_REPLY_LEN] {
    let mut out = [0; SIMPLE_REPLY_LEN];
    out[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Read { offset, length } => write!(f, "READ {length}@{offset}"),
            Command::Write { offset, length, .. } => write!(f, "WRITE {length}@{offset}"),
            Command::Disconnect => f.write_str("DISC"),
            Command::Flush => f.write_str("FLUSH"),
            Command::Trim { offset, length, .. } => write!(f, "TRIM {length}@{offset}"),
            Command::WriteZeroes { offset, length, .. } => write!(f, "WRITE_ZEROES {length}@{offset}"),
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    /// The last KiB of the 1 MiB test export.
    const MIB_1K: u64 = 1023 << 10;
    const LIMITS: ExportLimits = ExportLimits { size: 1 << 20, max_payload: 1 << 16, read_only: false };

    fn option_header(option: u32, length: u32) -> Vec<u8> {
        let mut bytes = IHAVEOPT.to_be_bytes().to_vec();
        bytes.extend_from_slice(&option.to_be_bytes());
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes
    }

    /// NBD_OPT_INFO / GO data: name length, name, count, requests.
    fn query(name: &[u8], requests: &[u16]) -> Vec<u8> {
        let mut data = (name.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(name);
        data.extend_from_slice(&(requests.len() as u16).to_be_bytes());
        for request in requests {
            data.extend_from_slice(&request.to_be_bytes());
        }
        data
    }

    fn request(flags: u16, command: u16, offset: u64, length: u32) -> RequestHeader {
        let mut bytes = REQUEST_MAGIC.to_be_bytes().to_vec();
        bytes.extend_from_slice(&flags.to_be_bytes());
        bytes.extend_from_slice(&command.to_be_bytes());
        bytes.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        bytes.extend_from_slice(&offset.to_be_bytes());
        bytes.extend_from_slice(&length.to_be_bytes());
        RequestHeader::parse(&bytes).unwrap()
    }

    #[test]
    fn greeting_is_nbdmagic_ihaveopt_and_two_flags() {
        assert_eq!(&greeting(), b"NBDMAGICIHAVEOPT\x00\x03");
    }

    #[test]
    fn client_flags_known_bits_only() {
        assert_eq!(ClientFlags::parse(&[0, 0, 0, 3]), Ok(ClientFlags { fixed_newstyle: true, no_zeroes: true }));
        assert_eq!(ClientFlags::parse(&[0, 0, 0, 0]), Ok(ClientFlags { fixed_newstyle: false, no_zeroes: false }));
        assert_eq!(ClientFlags::parse(&[0, 0, 0, 4]), Err(HandshakeError::UnknownClientFlags(4)));
        assert_eq!(ClientFlags::parse(&[0x80, 0, 0, 1]), Err(HandshakeError::UnknownClientFlags(0x8000_0001)));
        assert_eq!(ClientFlags::parse(&[0, 0, 1]), Err(HandshakeError::Truncated { needed: 4, got: 3 }));
    }

    #[test]
    fn option_header_magic_and_length() {
        let header = OptionHeader::parse(&option_header(option::GO, 12)).unwrap();
        assert_eq!(header, OptionHeader { option: option::GO, length: 12 });
        assert_eq!(header.check_length(), Ok(()));

        let mut bad = option_header(option::GO, 12);
        bad[0] = b'X';
        assert_eq!(OptionHeader::parse(&bad), Err(HandshakeError::BadOptionMagic(0x5848_4156_454f_5054)));
        assert_eq!(OptionHeader::parse(&bad[..15]), Err(HandshakeError::Truncated { needed: 16, got: 15 }));
        assert_eq!(OptionHeader::parse(&[]), Err(HandshakeError::Truncated { needed: 16, got: 0 }));

        let oversize = OptionHeader::parse(&option_header(option::INFO, MAX_OPTION_DATA + 1)).unwrap();
        let refused = oversize.check_length().unwrap_err();
        assert_eq!(refused, OptionError::TooBig { option: option::INFO, length: MAX_OPTION_DATA + 1, max: 8192 });
        assert_eq!(refused.reply_type(), reply::ERR_TOO_BIG);
        let huge = OptionHeader::parse(&option_header(99, u32::MAX)).unwrap();
        assert!(huge.check_length().is_err());
    }

    #[test]
    fn export_name_option() {
        assert_eq!(parse_option(option::EXPORT_NAME, b"disk0"), Ok(OptionRequest::ExportName("disk0".into())));
        assert_eq!(parse_option(option::EXPORT_NAME, b""), Ok(OptionRequest::ExportName(String::new())));
        assert_eq!(parse_option(option::EXPORT_NAME, b"a\0b"), Err(OptionError::NameHasNul));
        assert_eq!(parse_option(option::EXPORT_NAME, b"\xff\xfe"), Err(OptionError::NameNotUtf8));
        let long = vec![b'n'; MAX_STRING_LEN + 1];
        assert_eq!(parse_option(option::EXPORT_NAME, &long), Err(OptionError::NameTooLong(4097)));
        let longest = vec![b'n'; MAX_STRING_LEN];
        assert!(parse_option(option::EXPORT_NAME, &longest).is_ok());
    }

    #[test]
    fn info_and_go_queries() {
        let data = query(b"disk0", &[info::BLOCK_SIZE, info::NAME, info::DESCRIPTION]);
        let expected =
            ExportQuery { name: "disk0".into(), wants_name: true, wants_description: true, wants_block_size: true };
        assert_eq!(parse_option(option::GO, &data), Ok(OptionRequest::Go(expected.clone())));
        assert_eq!(parse_option(option::INFO, &data), Ok(OptionRequest::Info(expected)));

        // No requests, an unknown one, and NBD_INFO_EXPORT (always sent) change nothing.
        let plain =
            ExportQuery { name: "".into(), wants_name: false, wants_description: false, wants_block_size: false };
        assert_eq!(parse_option(option::GO, &query(b"", &[])), Ok(OptionRequest::Go(plain.clone())));
        assert_eq!(parse_option(option::GO, &query(b"", &[info::EXPORT, 77])), Ok(OptionRequest::Go(plain)));
    }

    #[test]
    fn malformed_queries_are_err_invalid() {
        let cases: Vec<(Vec<u8>, OptionError)> = vec![
            (vec![], OptionError::NameLengthPastEnd { name_len: 0, data_len: 0 }),
            (vec![0, 0, 0], OptionError::NameLengthPastEnd { name_len: 0, data_len: 3 }),
            // The name length points past the data.
            (vec![0, 0, 0, 9, b'a', 0, 0], OptionError::NameLengthPastEnd { name_len: 9, data_len: 7 }),
            (vec![0xff, 0xff, 0xff, 0xff], OptionError::NameLengthPastEnd { name_len: u32::MAX, data_len: 4 }),
            // A name that fills the data, leaving no room for the count.
            (vec![0, 0, 0, 2, b'a', b'b'], OptionError::NameLengthPastEnd { name_len: 2, data_len: 6 }),
            (vec![0, 0, 0, 1, b'a', 0], OptionError::NameLengthPastEnd { name_len: 1, data_len: 6 }),
            // Count says two requests, one is there; or one too many bytes.
            (vec![0, 0, 0, 0, 0, 2, 0, 3], OptionError::InfoRequestsLength { count: 2, needed: 4, got: 2 }),
            (vec![0, 0, 0, 0, 0, 0, 0], OptionError::InfoRequestsLength { count: 0, needed: 0, got: 1 }),
            (query(b"a\0", &[]), OptionError::NameHasNul),
            (query(b"\xc3", &[]), OptionError::NameNotUtf8),
            (query(&[b'x'; MAX_STRING_LEN + 1], &[]), OptionError::NameTooLong(4097)),
        ];
        for (data, expected) in cases {
            for option in [option::INFO, option::GO] {
                let refused = parse_option(option, &data).unwrap_err();
                assert_eq!(refused, expected, "{data:?}");
                assert_eq!(refused.reply_type(), reply::ERR_INVALID);
            }
        }
    }

    #[test]
    fn list_abort_and_unsupported_options() {
        assert_eq!(parse_option(option::LIST, b""), Ok(OptionRequest::List));
        let refused = parse_option(option::LIST, b"x").unwrap_err();
        assert_eq!(refused, OptionError::UnexpectedData { option: option::LIST, length: 1 });
        assert_eq!(refused.reply_type(), reply::ERR_INVALID);
        assert_eq!(parse_option(option::ABORT, b""), Ok(OptionRequest::Abort));
        assert_eq!(parse_option(option::ABORT, b"ignored"), Ok(OptionRequest::Abort));
        for option in [
            option::STRUCTURED_REPLY,
            option::STARTTLS,
            option::PEEK_EXPORT,
            option::LIST_META_CONTEXT,
            option::SET_META_CONTEXT,
            option::EXTENDED_HEADERS,
            0,
            12,
            u32::MAX,
        ] {
            let refused = parse_option(option, b"").unwrap_err();
            assert_eq!(refused, OptionError::Unsupported { option });
            assert_eq!(refused.reply_type(), reply::ERR_UNSUP);
        }
        assert!(OptionError::Unsupported { option: 8 }.to_string().contains("STRUCTURED_REPLY"));
    }

    #[test]
    fn option_replies_encode_as_the_spec_lays_them_out() {
        let mut out = Vec::new();
        encode_option_reply(&mut out, option::GO, reply::ACK, &[]);
        assert_eq!(out, [&OPTION_REPLY_MAGIC.to_be_bytes()[..], &[0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0]].concat());

        out.clear();
        encode_info_export(&mut out, option::INFO, 0x0102_0304_0506_0708, 0x016d);
        assert_eq!(out.len(), OPTION_REPLY_HEADER_LEN + 12);
        assert_eq!(&out[8..20], &[0, 0, 0, 6, 0, 0, 0, 3, 0, 0, 0, 12]);
        assert_eq!(&out[20..], &[0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x01, 0x6d]);

        out.clear();
        encode_info_block_size(&mut out, option::GO, BlockSizes { minimum: 1, preferred: 4096, maximum: 1 << 25 });
        assert_eq!(&out[16..20], &[0, 0, 0, 14]);
        assert_eq!(&out[20..], &[0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0, 2, 0, 0, 0]);

        out.clear();
        encode_info_string(&mut out, option::GO, info::NAME, "d");
        assert_eq!(&out[16..], &[0, 0, 0, 3, 0, 1, b'd']);

        out.clear();
        encode_rep_server(&mut out, "disk", "a VM disk");
        assert_eq!(&out[8..16], &[0, 0, 0, 3, 0, 0, 0, 2]);
        assert_eq!(&out[16..20], &(4u32 + 4 + 9).to_be_bytes());
        assert_eq!(&out[20..], b"\0\0\0\x04diska VM disk");

        out.clear();
        encode_error_reply(&mut out, 99, reply::ERR_UNSUP, &"é".repeat(3000));
        let length = u32::from_be_bytes(out[16..20].try_into().unwrap()) as usize;
        assert_eq!(length, MAX_STRING_LEN, "cut on a character boundary");
        assert!(std::str::from_utf8(&out[20..]).is_ok());
    }

    #[test]
    fn export_name_reply_with_and_without_zeroes() {
        let mut out = Vec::new();
        encode_export_name_reply(&mut out, 4096, 0x0001, true);
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0x10, 0, 0, 1]);
        out.clear();
        encode_export_name_reply(&mut out, 4096, 0x0001, false);
        assert_eq!(out.len(), 10 + EXPORT_NAME_ZEROES);
        assert!(out[10..].iter().all(|&b| b == 0));
    }

    #[test]
    fn request_header_fields_and_framing_errors() {
        let header = request(command_flag::FUA, command::WRITE, 512, 4096);
        assert_eq!(header.cookie, 0x0102_0304_0506_0708);
        assert_eq!((header.flags, header.command, header.offset, header.length), (1, 1, 512, 4096));
        assert_eq!(header.payload_len(), 4096);
        assert_eq!(header.check_payload(4096), Ok(4096));
        assert_eq!(header.check_payload(4095), Err(FramingError::PayloadTooLarge { length: 4096, max: 4095 }));
        // Only a WRITE carries a payload, whatever its length says.
        assert_eq!(request(0, command::READ, 0, u32::MAX).check_payload(1), Ok(0));
        assert_eq!(request(0, command::WRITE_ZEROES, 0, u32::MAX).payload_len(), 0);

        let mut bytes = REQUEST_MAGIC.to_be_bytes().to_vec();
        bytes.resize(REQUEST_HEADER_LEN, 0);
        assert!(RequestHeader::parse(&bytes).is_ok());
        assert_eq!(RequestHeader::parse(&bytes[..27]), Err(FramingError::Truncated(27)));
        assert_eq!(RequestHeader::parse(&[]), Err(FramingError::Truncated(0)));
        bytes[3] = 0x14;
        assert_eq!(RequestHeader::parse(&bytes), Err(FramingError::BadMagic(0x2560_9514)));
        assert_eq!(RequestHeader::parse(&[0xff; 28]), Err(FramingError::BadMagic(u32::MAX)));
    }

    #[test]
    fn valid_requests() {
        let cases = [
            (request(0, command::READ, 0, 4096), Command::Read { offset: 0, length: 4096 }),
            (request(1, command::READ, 0, 0), Command::Read { offset: 0, length: 0 }),
            (request(1, command::WRITE, MIB_1K, 1024), Command::Write { offset: MIB_1K, length: 1024, fua: true }),
            (request(0, command::FLUSH, 0, 0), Command::Flush),
            (request(1, command::FLUSH, 0, 0), Command::Flush),
            (request(0, command::DISC, 7, 7), Command::Disconnect),
            (request(0xffff, command::DISC, 0, 0), Command::Disconnect),
            // TRIM may be longer than the maximum payload; WRITE_ZEROES may not.
            (request(0, command::TRIM, 0, 1 << 20), Command::Trim { offset: 0, length: 1 << 20, fua: false }),
            (
                request(3, command::WRITE_ZEROES, 4096, 1 << 16),
                Command::WriteZeroes { offset: 4096, length: 1 << 16, fua: true, no_hole: true },
            ),
            (
                request(0, command::WRITE_ZEROES, 0, 0),
                Command::WriteZeroes { offset: 0, length: 0, fua: false, no_hole: false },
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(header.validate(&LIMITS), Ok(expected), "{header:?}");
        }
    }

    #[test]
    fn refused_requests_name_the_reason_and_the_error_value() {
        let size = LIMITS.size;
        let cases = [
            (request(0, command::CACHE, 0, 512), RequestError::UnknownCommand(5), error::EINVAL),
            (request(0, command::BLOCK_STATUS, 0, 512), RequestError::UnknownCommand(7), error::EINVAL),
            (request(0, 0xffff, 0, 0), RequestError::UnknownCommand(0xffff), error::EINVAL),
            (request(2, command::READ, 0, 512), RequestError::BadFlags { command: 0, flags: 2 }, error::EINVAL),
            (request(4, command::READ, 0, 512), RequestError::BadFlags { command: 0, flags: 4 }, error::EINVAL),
            (request(2, command::WRITE, 0, 512), RequestError::BadFlags { command: 1, flags: 2 }, error::EINVAL),
            (request(16, command::WRITE_ZEROES, 0, 1), RequestError::BadFlags { command: 6, flags: 16 }, error::EINVAL),
            (request(0x800, command::FLUSH, 0, 0), RequestError::BadFlags { command: 3, flags: 0x800 }, error::EINVAL),
            (
                request(0, command::FLUSH, 1, 0),
                RequestError::ReservedNotZero { command: 3, offset: 1, length: 0 },
                error::EINVAL,
            ),
            (
                request(0, command::READ, 0, (1 << 16) + 1),
                RequestError::LengthOverMaximum { command: 0, length: (1 << 16) + 1, max: 1 << 16 },
                error::EINVAL,
            ),
            (
                request(0, command::WRITE_ZEROES, 0, u32::MAX),
                RequestError::LengthOverMaximum { command: 6, length: u32::MAX, max: 1 << 16 },
                error::EINVAL,
            ),
            (
                request(0, command::READ, size - 511, 512),
                RequestError::PastEnd { command: 0, offset: size - 511, length: 512, size },
                error::EINVAL,
            ),
            (
                request(0, command::TRIM, size, 1),
                RequestError::PastEnd { command: 4, offset: size, length: 1, size },
                error::EINVAL,
            ),
            (
                request(0, command::WRITE, size, 1),
                RequestError::PastEnd { command: 1, offset: size, length: 1, size },
                error::ENOSPC,
            ),
            (
                request(0, command::WRITE_ZEROES, size - 1, 2),
                RequestError::PastEnd { command: 6, offset: size - 1, length: 2, size },
                error::ENOSPC,
            ),
            // A zero length past the end is past the end too.
            (
                request(0, command::READ, size + 1, 0),
                RequestError::PastEnd { command: 0, offset: size + 1, length: 0, size },
                error::EINVAL,
            ),
            (
                request(0, command::READ, u64::MAX, 2),
                RequestError::OffsetOverflow { command: 0, offset: u64::MAX, length: 2 },
                error::EINVAL,
            ),
            (
                request(0, command::WRITE, u64::MAX - 1, 512),
                RequestError::OffsetOverflow { command: 1, offset: u64::MAX - 1, length: 512 },
                error::ENOSPC,
            ),
        ];
        for (header, expected, errno) in cases {
            let refused = header.validate(&LIMITS).unwrap_err();
            assert_eq!(refused, expected, "{header:?}");
            assert_eq!(refused.errno(), errno, "{refused}");
        }
    }

    #[test]
    fn read_only_exports_refuse_writes_with_eperm() {
        let read_only = ExportLimits { read_only: true, ..LIMITS };
        for command in [command::WRITE, command::TRIM, command::WRITE_ZEROES] {
            let refused = request(0, command, 0, 512).validate(&read_only).unwrap_err();
            assert_eq!(refused, RequestError::ReadOnly { command });
            assert_eq!(refused.errno(), error::EPERM);
        }
        assert!(request(0, command::READ, 0, 512).validate(&read_only).is_ok());
        assert!(request(0, command::FLUSH, 0, 0).validate(&read_only).is_ok());
    }

    #[test]
    fn simple_reply_layout() {
        let expected = [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 28, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b];
        assert_eq!(simple_reply(error::ENOSPC, 0x0a0b), expected);
    }

    /// Every decoder on every short or garbage input: an error or a value, never a panic.
    #[test]
    fn no_input_panics_a_decoder() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 && len >= 4 {
                // Plausible name lengths reach the deeper checks.
                let name_len = (next() % 70) as u32;
                bytes[..4].copy_from_slice(&name_len.to_be_bytes());
            }
            let _ = ClientFlags::parse(&bytes);
            let _ = OptionHeader::parse(&bytes).map(|h| h.check_length());
            for option in 0..12 {
                let _ = parse_option(option, &bytes);
            }
            let mut header_bytes = REQUEST_MAGIC.to_be_bytes().to_vec();
            header_bytes.extend_from_slice(&bytes);
            if let Ok(header) = RequestHeader::parse(&header_bytes) {
                let size = next() % (1 << 40);
                let limits = ExportLimits { size, max_payload: next() as u32, read_only: next() % 2 == 0 };
                let _ = header.check_payload(limits.max_payload);
                if let Err(refused) = header.validate(&limits) {
                    let _ = (refused.errno(), refused.to_string());
                }
            }
            let _ = RequestHeader::parse(&bytes);
        }
    }
}
