//! Who may talk to an HTTP service on TCP, and how a client proves it.
//!
//! A TCP listener authenticates every peer in one of two ways:
//! - mutual TLS (any address): the server presents its certificate and accepts
//!   only clients whose certificate a configured CA signed;
//! - a bearer token (loopback addresses only): every request carries
//!   `Authorization: Bearer <token>`, the token being the contents of a file
//!   only its owner can read.
//!
//! Unix sockets need neither: the socket file's owner, group and mode decide.
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Shortest token accepted: 128 bits as hex.
const TOKEN_MIN_LEN: usize = 32;

/// The files a server authenticates its TCP clients with, or a client itself
/// (`http://` URLs with the token, `https://` URLs with TLS), as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuthFiles {
    /// Loopback only: the bearer token every request carries.
    pub token_file: Option<PathBuf>,
    /// The CA (PEM) that signs the peers' certificates: a server accepts only
    /// clients it signed, a client only servers it signed.
    pub tls_ca: Option<PathBuf>,
    /// This side's certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// This side's private key (PEM).
    pub tls_key: Option<PathBuf>,
}

impl AuthFiles {
    pub fn tls_configured(&self) -> bool {
        self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_ca.is_some()
    }

    /// What is wrong with serving on `addr` with these files, in words, with
    /// the `prefix`ed key names (`control.` or `--`) the operator sets.
    pub fn check(&self, addr: &SocketAddr, keys: &AuthKeys) -> Result<(), String> {
        let AuthKeys { token_file, tls_cert, tls_key, tls_ca } = keys;
        if self.tls_configured() {
            let missing: Vec<&str> = [(&self.tls_cert, tls_cert), (&self.tls_key, tls_key), (&self.tls_ca, tls_ca)]
                .iter()
                .filter(|(file, _)| file.is_none())
                .map(|(_, key)| **key)
                .collect();
            if !missing.is_empty() {
                return Err(format!("TLS needs {tls_cert}, {tls_key} and {tls_ca}; {} missing", missing.join(" and ")));
            }
            if self.token_file.is_some() {
                return Err(format!("give either {token_file} (loopback) or TLS ({tls_cert}, ...), not both"));
            }
            return Ok(());
        }
        match &self.token_file {
            None => Err(format!(
                "{addr} on TCP needs authentication: set {token_file} (loopback addresses only), or {tls_cert}, {tls_key} \
                 and {tls_ca} (mutual TLS)"
            )),
            Some(_) if !is_loopback(addr) => Err(format!(
                "{addr} is not a loopback address: a bearer token is accepted only on 127.0.0.1 or ::1; \
                 other addresses need TLS ({tls_cert}, {tls_key} and {tls_ca})"
            )),
            Some(_) => Ok(()),
        }
    }

    /// Reads the files: the listener's authentication, or one line naming the file at fault.
    pub fn server(&self) -> Result<ServerAuth, String> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca, &self.token_file) {
            (Some(cert), Some(key), Some(ca), _) => {
                let mut config = server_tls(cert, key, ca)?;
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Ok(ServerAuth::Tls(Arc::new(config)))
            }
            (_, _, _, Some(token)) => Ok(ServerAuth::Token(Token::load_or_create(token)?)),
            _ => Err("no authentication configured".to_string()),
        }
    }
}

/// The names an operator sets the auth files with (config keys or flags).
pub struct AuthKeys {
    pub token_file: &'static str,
    pub tls_cert: &'static str,
    pub tls_key: &'static str,
    pub tls_ca: &'static str,
}

/// How a listener authenticates its peers.
#[derive(Clone)]
pub enum ServerAuth {
    Token(Token),
    Tls(Arc<rustls::ServerConfig>),
}

/// A bearer token, compared in constant time.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    /// Reads the token from `path`, or creates the file (mode 0600, 256 random
    /// bits as hex) when it does not exist. The file must be a regular file
    /// owned by this user and neither group- nor world-accessible.
    pub fn load_or_create(path: &Path) -> Result<Token, String> {
        let problem = |what: String| format!("token file {}: {what}", path.display());
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Token::create(path).map_err(problem),
            Err(e) => return Err(problem(e.to_string())),
            Ok(_) => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| problem(e.to_string()))?;
        // Checked on the opened file, so the file checked is the file read.
        let meta = file.metadata().map_err(|e| problem(e.to_string()))?;
        let uid = nix::unistd::geteuid().as_raw();
        if !meta.is_file() {
            return Err(problem("is not a regular file".into()));
        }
        if meta.uid() != uid {
            return Err(problem(format!("is owned by uid {}, not by this process's user (uid {uid})", meta.uid())));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(problem(format!(
                "mode {:04o} lets other users read or change it; chmod 600 it",
                meta.mode() & 0o7777
            )));
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| problem(e.to_string()))?;
        Token::parse(&text).map_err(problem)
    }

    /// Reads a client's copy of the token (its owner and mode are the file system's business).
    pub fn read(path: &Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
        Token::parse(&text).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<Token, String> {
        let token = text.trim();
        if token.len() < TOKEN_MIN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("the token must be at least {TOKEN_MIN_LEN} printable characters on one line"));
        }
        Ok(Token(token.into()))
    }

    fn create(path: &Path) -> Result<Token, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("cannot make a random token: {e}"))?;
        let token = hex::encode(bytes);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create its directory {}: {e}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("cannot create it: {e}"))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write it: {e}"))?;
        log::info!("created the bearer token file {} (mode 0600)", path.display());
        Ok(Token(token.into()))
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|v| v.strip_prefix(b"Bearer ")) else { return false };
        constant_time_eq::constant_time_eq(given, self.0.as_bytes())
    }

    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl AuthFiles {
    /// Reads a client's files: its credentials, or one line naming the file at fault.
    pub fn client(&self) -> Result<ClientAuth, String> {
        let token = self.token_file.as_deref().map(Token::read).transpose()?;
        let tls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some(client_tls(ca, cert, key)?),
            _ => return Err("TLS needs the CA, a client certificate and its key, all three".to_string()),
        };
        Ok(ClientAuth { token, tls })
    }
}

/// A client's credentials, loaded.
#[derive(Clone, Default)]
pub struct ClientAuth {
    pub token: Option<Token>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth").field("token", &self.token.is_some()).field("tls", &self.tls.is_some()).finish()
    }
}

/// True for 127.0.0.0/8 and ::1 (and ::ffff:127.x.x.x).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: cannot read PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: cannot read a PEM private key: {e}", path.display()))
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A TLS server that presents `cert` and accepts only clients with a certificate `client_ca` signed.
pub fn server_tls(cert: &Path, key: &Path, client_ca: &Path) -> Result<rustls::ServerConfig, String> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider())
        .build()
        .map_err(|e| format!("{}: {e}", client_ca.display()))?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(cert)?, private_key(key)?)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
}

fn client_tls(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(certificates(cert)?, private_key(key)?)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name a server's certificate must carry: the URL's host (an IP address or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| format!("{host:?} is not a host name or IP address"))
}

/// The credential flags of every command that serves or calls a service on
/// TCP: a server authenticates its clients with them, a client itself.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AuthArgs {
    /// The bearer token file (loopback only): a server requires the token of every
    /// request and creates the file (mode 0600) when it is absent; a client sends it.
    #[arg(long, value_name = "PATH", global = true)]
    pub token_file: Option<PathBuf>,
    /// The CA (PEM) that signs the peers' certificates: a server accepts only
    /// clients it signed, a client (https:// URLs) only servers it signed.
    #[arg(long, value_name = "PATH", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// This process's certificate (PEM): the server's, and the client's when it calls a service.
    #[arg(long, value_name = "PATH", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", global = true)]
    pub tls_key: Option<PathBuf>,
}

/// The flag names, for messages.
pub const AUTH_FLAGS: AuthKeys =
    AuthKeys { token_file: "--token-file", tls_cert: "--tls-cert", tls_key: "--tls-key", tls_ca: "--tls-ca" };

impl AuthArgs {
    pub fn files(&self) -> AuthFiles {
        AuthFiles {
            token_file: self.token_file.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }

    /// Whether a server may listen on `listen` with these flags: the command
    /// line's mistakes, found before anything starts (exit code 2).
    pub fn check_listen(&self, listen: &str) -> Result<(), String> {
        let addr: SocketAddr =
            listen.parse().map_err(|_| format!("--listen {listen:?} is not an address and port such as 127.0.0.1:7400"))?;
        self.files().check(&addr, &AUTH_FLAGS).map_err(|e| format!("--listen: {e}"))
    }

    /// A server's authentication on `addr`, checked and loaded; one line naming the flag at fault.
    pub fn server(&self, addr: &SocketAddr) -> Result<ServerAuth, String> {
        let files = self.files();
        files.check(addr, &AUTH_FLAGS)?;
        files.server()
    }

    pub fn client(&self) -> Result<ClientAuth, String> {
        self.files().client()
    }
}
