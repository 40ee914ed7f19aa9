//! `switchyard vbd`: attaches a user's images on a storage server and serves each as an NBD export until
//! SIGINT/SIGTERM (docs/vbd.md). Exit codes: 2 a bad command line or secret file, 1 any other failure (an
//! export the server refuses, a listener that cannot bind).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use switchyard_wire::block::{FragmentSize, UserKey, KEY_LEN, UDP_PORT};

use super::export::Export;
use super::io_scheduler::Limits;
use super::nbd_server::{NbdListener, NbdServer};
use super::retransmit::Timing;
use super::storage_backend::StorageBackend;
use super::storage_client::{ClientConfig, StorageClient};

/// Where the NBD socket is when `--socket` is not given: `<DIR>/vbd-user<ID>.sock`.
pub const DEFAULT_SOCKET_DIR: &str = "/run/switchyard";

#[derive(Args, Debug)]
pub struct VbdArgs {
    /// The storage server: IP:PORT, or IP for port 10810.
    #[arg(long, value_name = "IP:PORT", value_parser = parse_server)]
    pub server: SocketAddrV4,
    /// The user id the server's operator assigned.
    #[arg(long, value_name = "ID")]
    pub user: u32,
    /// A file holding the user's secret: 64 hex digits (32 bytes). Keep it readable by its owner only.
    #[arg(long, value_name = "PATH")]
    pub secret_file: PathBuf,
    /// The path MTU to the server (at least 156): datagrams are cut to fit it.
    #[arg(long, default_value = "1500", value_parser = parse_mtu)]
    pub mtu: FragmentSize,
    /// Serve NBD on this unix socket (created, mode 0600; it must not exist)
    /// [default: /run/switchyard/vbd-user<ID>.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// A group that may use the socket too (mode 0660).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Also serve NBD on this TCP address (NBD's port is 10809), to clients that start TLS
    /// (NBD_OPT_STARTTLS) with a certificate --tls-ca signed. Needs --tls-ca, --tls-cert, --tls-key.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// The CA (PEM) whose client certificates TCP clients must present.
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// This server's certificate (PEM) for TCP clients.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// An export: its NBD name and the server's image id (repeat for more images).
    #[arg(long = "export", value_name = "NAME=IMAGE_ID", required = true, value_parser = parse_export)]
    pub exports: Vec<ExportSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    pub name: String,
    pub image_id: u32,
}

fn parse_server(text: &str) -> Result<SocketAddrV4, String> {
    if let Ok(addr) = text.parse::<SocketAddrV4>() {
        return Ok(addr);
    }
    match text.parse::<Ipv4Addr>() {
        Ok(ip) => Ok(SocketAddrV4::new(ip, UDP_PORT)),
        Err(_) => Err(format!("{text:?} is not IPv4:PORT or IPv4 (the storage protocol runs over IPv4)")),
    }
}

fn parse_mtu(text: &str) -> Result<FragmentSize, String> {
    let mtu: u16 = text.parse().map_err(|_| format!("{text:?} is not an MTU (156..=65535)"))?;
    FragmentSize::for_mtu(mtu).ok_or_else(|| format!("MTU {mtu} leaves no room for a 64-byte fragment (at least 156)"))
}

fn parse_export(text: &str) -> Result<ExportSpec, String> {
    let (name, image) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NAME=IMAGE_ID"))?;
    let image_id = image.parse().map_err(|_| format!("image id {image:?} is not a number (0..=4294967295)"))?;
    Ok(ExportSpec { name: name.to_string(), image_id })
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret file {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("the secret file {path} holds {found} characters; it must hold 64 hex digits")]
    WrongLength { path: PathBuf, found: usize },
    #[error("the secret file {path} has a character that is not a hex digit at position {position}")]
    NotHex { path: PathBuf, position: usize },
}

/// The user's key from `path`: 64 hex digits, surrounding whitespace ignored.
pub fn read_secret(path: &Path) -> Result<UserKey, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Unreadable { path: path.into(), source })?;
    let digits = text.trim();
    let found = digits.chars().count();
    if found != 2 * KEY_LEN {
        return Err(SecretError::WrongLength { path: path.into(), found });
    }
    if let Some(position) = digits.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(SecretError::NotHex { path: path.into(), position });
    }
    // 64 ASCII hex digits now: each pair is one byte.
    let mut key = [0u8; KEY_LEN];
    let values: Vec<u8> = digits.chars().filter_map(|c| c.to_digit(16)).map(|v| v as u8).collect();
    for (byte, pair) in key.iter_mut().zip(values.chunks_exact(2)) {
        *byte = pair[0] << 4 | pair[1];
    }
    if std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o077 != 0) {
        log::warn!("vbd: the secret file {} is readable by others than its owner", path.display());
    }
    Ok(UserKey::new(key))
}

/// `/run/switchyard/vbd-user<ID>.sock`
pub fn default_socket(user: u32) -> PathBuf {
    Path::new(DEFAULT_SOCKET_DIR).join(format!("vbd-user{user}.sock"))
}

/// The TLS server for `--listen`: NBD clients cannot send a token, so TCP needs TLS.
fn tcp_tls(args: &VbdArgs) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let files = [&args.tls_ca, &args.tls_cert, &args.tls_key];
    match (args.listen, files) {
        (None, [None, None, None]) => Ok(None),
        (None, _) => Err("vbd: --tls-ca, --tls-cert and --tls-key are for --listen, which is not given".into()),
        (Some(addr), [Some(ca), Some(cert), Some(key)]) => switchyard_service::auth::server_tls(cert, key, ca)
            .map(|config| Some(Arc::new(config)))
            .map_err(|e| format!("vbd: --listen {addr}: {e}")),
        (Some(addr), _) => Err(format!(
            "vbd: --listen {addr}: NBD on TCP needs TLS (clients cannot send a token): give --tls-ca, --tls-cert \
             and --tls-key, or serve only on the unix socket"
        )),
    }
}

/// A failure for the user: one line, and the exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl ToString) -> Failure {
        Failure { code: 2, message: message.to_string() }
    }

    fn runtime(message: impl ToString) -> Failure {
        Failure { code: 1, message: message.to_string() }
    }
}

pub fn main(args: VbdArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("switchyard: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn run(args: VbdArgs) -> Result<(), Failure> {
    let key = read_secret(&args.secret_file).map_err(Failure::usage)?;
    for (index, spec) in args.exports.iter().enumerate() {
        if args.exports[..index].iter().any(|earlier| earlier.name == spec.name) {
            return Err(Failure::usage(format!("vbd: export name {:?} given twice", spec.name)));
        }
    }
    let group = match &args.socket_group {
        None => None,
        Some(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(group)) => Some(group.gid.as_raw()),
            _ => return Err(Failure::usage(format!("vbd: --socket-group {name:?} is not a group on this host"))),
        },
    };
    let tls = tcp_tls(&args).map_err(Failure::usage)?;
    let socket = args.socket.clone().unwrap_or_else(|| default_socket(args.user));
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::runtime(format!("vbd: cannot create {}: {e}", dir.display())))?;
    }
    let mut listeners = vec![NbdListener::bind_unix(&socket, group).map_err(Failure::runtime)?];
    if let (Some(addr), Some(tls)) = (args.listen, tls) {
        listeners.push(NbdListener::bind_tls(addr, tls).map_err(Failure::runtime)?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the tokio runtime: {e}")))?;
    runtime.block_on(serve(args, key, listeners))
}

async fn serve(args: VbdArgs, key: UserKey, listeners: Vec<NbdListener>) -> Result<(), Failure> {
    let stop = switchyard_service::stop_signal::until_stop_signal("vbd").map_err(Failure::runtime)?;
    let config = ClientConfig {
        server: SocketAddr::V4(args.server),
        user_id: args.user,
        key,
        fragment_size: args.mtu,
        limits: Limits::default(),
        timing: Timing::default(),
    };
    let client = StorageClient::connect(config).map_err(Failure::runtime)?;
    let server = NbdServer::new();
    let served_on: Vec<String> = listeners.iter().map(NbdListener::describe).collect();
    for spec in &args.exports {
        let attached = match StorageBackend::attach(client.clone(), spec.image_id).await {
            Ok(backend) => backend,
            Err(e) => {
                client.shutdown().await;
                return Err(Failure::runtime(format!(
                    "vbd: cannot attach export {:?} (image {} of user {} at {}): {e}",
                    spec.name, spec.image_id, args.user, args.server
                )));
            }
        };
        let info = attached.info();
        let mode = if info.is_read_only() { "read-only" } else { "read-write" };
        log::info!(
            "vbd: export {:?}: image {} of user {} at {}, {} bytes, {mode}, block size {}, served on {}",
            spec.name,
            spec.image_id,
            args.user,
            args.server,
            info.size,
            info.block_size,
            served_on.join(" and ")
        );
        let description = format!("image {} of user {} at {}", spec.image_id, args.user, args.server);
        let export = Export::new(spec.name.clone(), Arc::new(attached))
            .and_then(|export| export.with_description(description))
            .map_err(Failure::usage)?;
        server.add_export(export).map_err(Failure::usage)?;
    }
    let served = server.serve(listeners, stop).await;
    match client.shutdown().await {
        Some(counters) => log::info!("vbd: {counters}"),
        None => log::warn!("vbd: the storage client had stopped before the end"),
    }
    served.map_err(Failure::runtime)
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_mtus_and_exports_parse_or_say_why_not() {
        assert_eq!(parse_server("192.0.2.1:9000"), Ok(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9000)));
        assert_eq!(parse_server("192.0.2.1"), Ok(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 10810)));
        assert!(parse_server("[::1]:10810").unwrap_err().contains("IPv4"));
        assert!(parse_server("storage.example:1").is_err());
        assert_eq!(parse_mtu("1500").map(FragmentSize::get), Ok(1408));
        assert_eq!(parse_mtu("1450").map(FragmentSize::get), Ok(1344));
        assert!(parse_mtu("155").unwrap_err().contains("156"));
        assert!(parse_mtu("-1").is_err());
        assert_eq!(parse_export("disk0=3"), Ok(ExportSpec { name: "disk0".into(), image_id: 3 }));
        assert_eq!(parse_export("=3"), Ok(ExportSpec { name: String::new(), image_id: 3 }), "the default export");
        assert_eq!(parse_export("a=b=3").unwrap_err(), "image id \"b=3\" is not a number (0..=4294967295)");
        assert!(parse_export("disk0").unwrap_err().contains("NAME=IMAGE_ID"));
        assert!(parse_export("disk0=4294967296").is_err());
    }

    #[test]
    fn secrets_are_64_hex_digits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";
        std::fs::write(&path, format!("{hex}\n")).unwrap();
        let expected: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(read_secret(&path).unwrap().as_bytes(), &expected);
        std::fs::write(&path, &hex[..63]).unwrap();
        assert!(matches!(read_secret(&path), Err(SecretError::WrongLength { found: 63, .. })));
        std::fs::write(&path, format!("{}g", &hex[..63])).unwrap();
        assert!(matches!(read_secret(&path), Err(SecretError::NotHex { position: 63, .. })));
        std::fs::write(&path, "é".repeat(32)).unwrap();
        assert!(matches!(read_secret(&path), Err(SecretError::WrongLength { found: 32, .. })));
        let missing = read_secret(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
