//! JSON bodies for the requests the HTTP parser refuses before any handler
//! runs (a malformed request line, a bad or duplicate Content-Length, headers
//! too large): hyper answers those itself with an empty body, which breaks the
//! API's promise that every error is `{"error": "...", "field": null}`.
//!
//! The connection's stream is wrapped: a response head that hyper wrote for
//! such an error (status 400, 414 or 431 with `content-length: 0`, which no
//! handler sends: theirs carry a JSON body) is replaced by the same status with
//! a JSON body. Everything else passes through untouched.
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(crate) struct JsonParseErrors<S> {
    inner: S,
    /// A replacement response still to be written, and how much of it was.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> JsonParseErrors<S> {
    pub(crate) fn new(inner: S) -> JsonParseErrors<S> {
        JsonParseErrors { inner, pending: None }
    }
}

/// The JSON response standing in for `head`, when `head` is one of hyper's own error replies.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let status = match head.get(..13)? {
        b"HTTP/1.1 400 " => "400 Bad Request",
        b"HTTP/1.1 414 " => "414 URI Too Long",
        b"HTTP/1.1 431 " => "431 Request Header Fields Too Large",
        _ => return None,
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let lower = head[..end].to_ascii_lowercase();
    if end != head.len() || !lower.windows(20).any(|w| w == b"\r\ncontent-length: 0\r") {
        return None;
    }
    let error = match status.as_bytes()[..3] {
        [b'4', b'1', b'4'] => "the request's path is too long",
        [b'4', b'3', b'1'] => "the request's headers are too large",
        _ => "the request is not well-formed HTTP/1.1: bad request line, path, header or Content-Length",
    };
    let body = serde_json::json!({ "error": error, "field": null }).to_string();
    Some(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<S: AsyncWrite + Unpin> JsonParseErrors<S> {
    /// Writes what is left of a replacement; Ready once none is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonParseErrors<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(bytes) = replacement(buf) {
            self.pending = Some((bytes, 0));
            // The original is consumed whole; the replacement goes out now or at the flush.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn hypers_own_error_replies_get_a_json_body() {
        let head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 20:00:00 GMT\r\n\r\n";
        let reply = String::from_utf8(replacement(head).unwrap()).unwrap();
        assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"), "{reply}");
        let body: serde_json::Value = serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert!(body["error"].as_str().unwrap().contains("not well-formed"), "{body}");
        assert!(body["field"].is_null());
        let big = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(replacement(big).unwrap()).unwrap().contains("headers are too large"));
    }

    #[test]
    fn handler_replies_pass_through() {
        // A handler's 400 has a JSON body; a 404 or 200 is never touched.
        let json = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 30\r\n\r\n";
        assert!(replacement(json).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}").is_none());
        assert!(replacement(b"HTTP/1.1 4").is_none());
    }
}
