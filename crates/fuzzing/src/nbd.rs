//! The NBD decoders (`vbd::nbd_wire`) on a client's byte stream, in the order the server reads it
//! (`nbd_handshake::negotiate`, then `nbd_transmission::read_requests`): client flags, options until one
//! picks an export or the stream breaks, then request headers with their WRITE payloads.
use super::MAX_FRAME;
use switchyard::vbd::nbd_wire::{
    command, option, ClientFlags, Command, ExportLimits, OptionHeader, OptionRequest, RequestHeader, CLIENT_FLAGS_LEN,
    MAX_OPTION_DATA, MAX_STRING_LEN, OPTION_HEADER_LEN, REQUEST_HEADER_LEN,
};
use switchyard::vbd::nbd_wire::parse_option;

/// Fuzz body `nbd`: the first byte picks the export's limits (size, maximum payload, read-only).
pub fn nbd(data: &[u8]) {
    let Some((&control, mut stream)) = data.split_first() else { return };
    let limits = ExportLimits {
        size: [0, 512, 1 << 20, u64::MAX][usize::from(control & 3)],
        max_payload: [0, 4096, 32 << 20, u32::MAX][usize::from((control >> 2) & 3)],
        read_only: control & 0x10 != 0,
    };
    let Some(flags) = take(&mut stream, CLIENT_FLAGS_LEN) else { return };
    if ClientFlags::parse(flags).is_err() {
        return;
    }
    if !options(&mut stream) {
        return;
    }
    while let Some(header) = take(&mut stream, REQUEST_HEADER_LEN) {
        let Ok(header) = RequestHeader::parse(header) else { return };
        let Ok(payload_len) = header.check_payload(MAX_FRAME as u32) else { return };
        assert!(payload_len == 0 || header.command == command::WRITE, "only a WRITE carries data");
        if take(&mut stream, payload_len as usize).is_none() {
            return;
        }
        match header.validate(&limits) {
            Ok(Command::Disconnect) => return,
            Ok(Command::Flush) => {}
            Ok(Command::Read { offset, length }
            | Command::Write { offset, length, .. }
            | Command::Trim { offset, length, .. }
            | Command::WriteZeroes { offset, length, .. }) => {
                assert!(offset.checked_add(u64::from(length)).is_some_and(|end| end <= limits.size), "a valid request lies in the export");
                assert!(header.command == command::TRIM || length <= limits.max_payload);
            }
            Err(refused) => assert_ne!(refused.errno(), 0, "a refused request is answered with an error"),
        }
    }
}

/// The option haggling; true when an export was picked and transmission begins.
fn options(stream: &mut &[u8]) -> bool {
    while let Some(header) = take(stream, OPTION_HEADER_LEN) {
        let Ok(header) = OptionHeader::parse(header) else { return false };
        if header.check_length().is_err() {
            // Oversize data is discarded (or ends the connection): the stream goes on after it.
            if header.option == option::EXPORT_NAME || take(stream, header.length as usize).is_none() {
                return false;
            }
            continue;
        }
        assert!(header.length <= MAX_OPTION_DATA);
        let Some(data) = take(stream, header.length as usize) else { return false };
        match parse_option(header.option, data) {
            Ok(OptionRequest::ExportName(name)) => return name.len() <= MAX_STRING_LEN,
            Ok(OptionRequest::Go(query)) => {
                assert!(query.name.len() <= MAX_STRING_LEN && !query.name.contains('\0'));
                return true;
            }
            Ok(OptionRequest::Abort) => return false,
            Ok(OptionRequest::Info(query)) => assert!(query.name.len() <= MAX_STRING_LEN),
            Ok(OptionRequest::List) => {}
            Err(_) if header.option == option::EXPORT_NAME => return false,
            Err(refused) => assert_ne!(refused.reply_type(), 0),
        }
    }
    false
}

/// The next `len` bytes of the stream, or `None` (end of stream) if fewer remain.
fn take<'a>(stream: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if stream.len() < len {
        return None;
    }
    let (head, rest) = stream.split_at(len);
    *stream = rest;
    Some(head)
}
