//! The client side: a service's URL, and a connection to it with the
//! client's credentials (TLS for `https://`, a bearer token for `http://`).
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use super::auth::{server_name, ClientAuth};

/// `http://HOST:PORT` or `https://HOST:PORT` (a trailing `/` is allowed; nothing else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceUrl {
    pub tls: bool,
    /// `HOST:PORT`, as given.
    pub authority: String,
}

impl ServiceUrl {
    pub fn parse(url: &str) -> Option<ServiceUrl> {
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://")?),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let uri: hyper::Uri = format!("http://{authority}/").parse().ok()?;
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) || uri.port_u16().is_none() {
            return None;
        }
        Some(ServiceUrl { tls, authority: authority.to_string() })
    }

    fn host(&self) -> &str {
        self.authority.rsplit_once(':').map_or(self.authority.as_str(), |(host, _)| host)
    }
}

impl std::fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", if self.tls { "https" } else { "http" }, self.authority)
    }
}

pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin> Stream for S {}

/// A connection to `url`: TCP, and TLS over it for `https://` (the server's
/// certificate checked against the client's CA and the URL's host).
pub async fn connect(url: &ServiceUrl, auth: &ClientAuth) -> io::Result<Box<dyn Stream>> {
    let stream = tokio::net::TcpStream::connect(url.authority.as_str()).await?;
    let _ = stream.set_nodelay(true);
    if !url.tls {
        return Ok(Box::new(stream));
    }
    let Some(config) = &auth.tls else {
        return Err(io::Error::other("an https:// URL needs the client's TLS files: the CA, a certificate and its key"));
    };
    let name = server_name(url.host()).map_err(io::Error::other)?;
    let stream = tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream).await?;
    Ok(Box::new(stream))
}
