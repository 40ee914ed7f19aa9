//! The fixed-newstyle handshake (proto.md "Handshake"): the greeting, the client's flags, then
//! options until the client picks an export (`NBD_OPT_EXPORT_NAME` or `NBD_OPT_GO`), aborts, or
//! breaks the protocol. Options are answered one at a time, as the client must wait for each.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::backend::BlockBackend;
use super::export::{Export, ExportSet, BLOCK_SIZES};
use super::nbd_session::SessionError;
use super::nbd_wire::{
    encode_error_reply, encode_export_name_reply, encode_info_block_size, encode_info_export, encode_info_string,
    encode_option_reply, encode_rep_server, greeting, info, option, parse_option, reply, ClientFlags, ExportQuery,
    OptionHeader, OptionRequest, CLIENT_FLAGS_LEN, OPTION_HEADER_LEN,
};

/// Options one connection may send before it picks an export: a client that never stops is
/// a denial of service, which proto.md lets the server end with a hard disconnect.
pub const MAX_OPTIONS: u32 = 1024;
/// Oversize option data up to this much is read and dropped, so the client gets
/// NBD_REP_ERR_TOO_BIG and may go on; more than this closes the connection.
pub const OPTION_DISCARD_MAX: u32 = 1 << 20;

pub(super) enum Outcome<B> {
    Transmission(Arc<Export<B>>),
    /// NBD_OPT_ABORT: acknowledged, the client closes.
    Aborted,
}

/// `greeted`: the client's flags when the greeting happened before TLS
/// (`nbd_tls`); the haggling then goes on inside TLS.
pub(super) async fn negotiate<B, R, W>(
    reader: &mut R,
    writer: &mut W,
    exports: &ExportSet<B>,
    greeted: Option<ClientFlags>,
) -> Result<Outcome<B>, SessionError>
where
    B: BlockBackend,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let client = match greeted {
        Some(client) => client,
        None => {
            writer.write_all(&greeting()).await?;
            writer.flush().await?;
            let mut flags = [0; CLIENT_FLAGS_LEN];
            reader.read_exact(&mut flags).await?;
            // A client without FIXED_NEWSTYLE is served the same way (proto.md allows it).
            ClientFlags::parse(&flags)?
        }
    };
    let mut out = Vec::new();
    for _ in 0..MAX_OPTIONS {
        let mut header = [0; OPTION_HEADER_LEN];
        reader.read_exact(&mut header).await?;
        let header = OptionHeader::parse(&header)?;
        out.clear();
        if let Err(too_big) = header.check_length() {
            if header.option == option::EXPORT_NAME || header.length > OPTION_DISCARD_MAX {
                return Err(SessionError::OptionTooLarge(too_big));
            }
            discard(reader, header.length).await?;
            encode_error_reply(&mut out, header.option, too_big.reply_type(), &too_big.to_string());
            send(writer, &out).await?;
            continue;
        }
        let mut data = vec![0; header.length as usize];
        reader.read_exact(&mut data).await?;
        if greeted.is_some() && header.option == option::STARTTLS {
            // proto.md: STARTTLS inside TLS is invalid.
            encode_error_reply(&mut out, header.option, reply::ERR_INVALID, "TLS is already on");
            send(writer, &out).await?;
            continue;
        }
        let outcome = match parse_option(header.option, &data) {
            Ok(request) => answer(request, client, exports, &mut out)?,
            // NBD_OPT_EXPORT_NAME has no error reply: closing is the only answer.
            Err(refused) if header.option == option::EXPORT_NAME => return Err(SessionError::BadExportName(refused)),
            Err(refused) => {
                encode_error_reply(&mut out, header.option, refused.reply_type(), &refused.to_string());
                None
            }
        };
        send(writer, &out).await?;
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
    Err(SessionError::TooManyOptions)
}

/// Writes the replies to one option; `None` when option haggling goes on.
fn answer<B: BlockBackend>(
    request: OptionRequest,
    client: ClientFlags,
    exports: &ExportSet<B>,
    out: &mut Vec<u8>,
) -> Result<Option<Outcome<B>>, SessionError> {
    match request {
        OptionRequest::ExportName(name) => {
            let export = exports.find(&name).ok_or(SessionError::UnknownExport(name))?;
            encode_export_name_reply(out, export.size(), export.transmission_flags(), client.no_zeroes);
            Ok(Some(Outcome::Transmission(export)))
        }
        OptionRequest::Abort => {
            encode_option_reply(out, option::ABORT, reply::ACK, &[]);
            Ok(Some(Outcome::Aborted))
        }
        OptionRequest::List => {
            for export in exports.all() {
                encode_rep_server(out, export.name(), export.description());
            }
            encode_option_reply(out, option::LIST, reply::ACK, &[]);
            Ok(None)
        }
        OptionRequest::Info(query) => {
            describe(option::INFO, &query, exports, out);
            Ok(None)
        }
        OptionRequest::Go(query) => Ok(describe(option::GO, &query, exports, out).map(Outcome::Transmission)),
    }
}

/// The NBD_REP_INFO records and the final ACK, or NBD_REP_ERR_UNKNOWN.
fn describe<B: BlockBackend>(
    option: u32,
    query: &ExportQuery,
    exports: &ExportSet<B>,
    out: &mut Vec<u8>,
) -> Option<Arc<Export<B>>> {
    let Some(export) = exports.find(&query.name) else {
        encode_error_reply(out, option, reply::ERR_UNKNOWN, &format!("no export named {:?}", query.name));
        return None;
    };
    encode_info_export(out, option, export.size(), export.transmission_flags());
    if query.wants_name {
        encode_info_string(out, option, info::NAME, export.name());
    }
    if query.wants_description && !export.description().is_empty() {
        encode_info_string(out, option, info::DESCRIPTION, export.description());
    }
    // Sent even unasked: the 32 MiB maximum is not the protocol's default.
    encode_info_block_size(out, option, BLOCK_SIZES);
    encode_option_reply(out, option, reply::ACK, &[]);
    Some(export)
}

async fn send<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Reads and drops `length` bytes.
pub(super) async fn discard<R: AsyncRead + Unpin>(reader: &mut R, length: u32) -> std::io::Result<()> {
    let dropped = tokio::io::copy(&mut reader.take(u64::from(length)), &mut tokio::io::sink()).await?;
    if dropped < u64::from(length) {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
