//! NBD over TCP only with TLS (proto.md "TLS support", the server in
//! FORCEDTLS mode): before `NBD_OPT_STARTTLS` the server answers every option
//! but `NBD_OPT_ABORT` with `NBD_REP_ERR_TLS_REQD` (and closes on
//! `NBD_OPT_EXPORT_NAME`, which has no error reply); after it, the TLS
//! handshake, in which the client must present a certificate the configured CA
//! signed, and option haggling goes on inside TLS. NBD clients cannot send a
//! token, so this is the only authentication TCP has.
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::nbd_handshake::{discard, MAX_OPTIONS, OPTION_DISCARD_MAX};
use super::nbd_session::SessionError;
use super::nbd_wire::{
    encode_error_reply, encode_option_reply, greeting, option, reply, ClientFlags, OptionHeader, CLIENT_FLAGS_LEN,
    OPTION_HEADER_LEN,
};

/// How the plaintext part of a connection ended.
pub(super) enum BeforeTls {
    /// The client sent NBD_OPT_STARTTLS and got its ACK: the TLS handshake is next.
    StartTls(ClientFlags),
    /// NBD_OPT_ABORT, acknowledged.
    Aborted,
}

/// The greeting, the client's flags, and options until NBD_OPT_STARTTLS.
pub(super) async fn until_starttls(stream: &mut TcpStream) -> Result<BeforeTls, SessionError> {
    stream.write_all(&greeting()).await?;
    let mut flags = [0; CLIENT_FLAGS_LEN];
    stream.read_exact(&mut flags).await?;
    let client = ClientFlags::parse(&flags)?;
    let mut out = Vec::new();
    for _ in 0..MAX_OPTIONS {
        let mut header = [0; OPTION_HEADER_LEN];
        stream.read_exact(&mut header).await?;
        let header = OptionHeader::parse(&header)?;
        if header.option == option::EXPORT_NAME {
            return Err(SessionError::TlsRequired);
        }
        if header.length > OPTION_DISCARD_MAX {
            return Err(SessionError::TlsRequired);
        }
        // Nothing sent before TLS is read as more than its length: it is not trusted.
        discard(stream, header.length).await?;
        out.clear();
        match header.option {
            option::STARTTLS if header.length == 0 => {
                encode_option_reply(&mut out, option::STARTTLS, reply::ACK, &[]);
                stream.write_all(&out).await?;
                return Ok(BeforeTls::StartTls(client));
            }
            option::STARTTLS => {
                encode_error_reply(&mut out, header.option, reply::ERR_INVALID, "NBD_OPT_STARTTLS carries no data")
            }
            option::ABORT => {
                encode_option_reply(&mut out, option::ABORT, reply::ACK, &[]);
                stream.write_all(&out).await?;
                return Ok(BeforeTls::Aborted);
            }
            other => encode_error_reply(
                &mut out,
                other,
                reply::ERR_TLS_REQD,
                "this server requires TLS on TCP: send NBD_OPT_STARTTLS first",
            ),
        }
        stream.write_all(&out).await?;
    }
    Err(SessionError::TooManyOptions)
}
