//! `[control]`: where the REST API listens and where the config database lives.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use toml::Spanned;

use super::raw::RawControl;
use super::{pos, Problems};
use crate::svc::auth::AuthKeys;
use crate::svc::{AuthFiles, HttpLimits};

/// Longest unix socket path (`sun_path` is 108 bytes with the terminating NUL).
pub const SOCKET_PATH_MAX: usize = 107;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControlConfig {
    /// The API's unix socket (always served).
    pub socket: PathBuf,
    /// The group that may use the unix socket too (mode 0660); owner only (0600) without.
    pub socket_group: Option<SocketGroup>,
    /// Also serve the API on this TCP address, authenticated with `auth`.
    pub listen: Option<SocketAddr>,
    pub auth: AuthFiles,
    /// Each listener's bounds (the unix socket's and the TCP address's apart).
    pub limits: HttpLimits,
    /// The config database file (redb).
    pub database: PathBuf,
}

impl ControlConfig {
    /// `/run/switchyard/<prefix>.sock` and `/var/lib/switchyard/<prefix>.redb`, where
    /// the prefix is `eal.file_prefix`, or "switchyard" without one: instances that
    /// run side by side (distinct prefixes) get their own socket and database.
    pub fn defaults(file_prefix: Option<&str>) -> ControlConfig {
        let prefix = file_prefix.unwrap_or("switchyard");
        ControlConfig {
            socket: PathBuf::from(format!("/run/switchyard/{prefix}.sock")),
            socket_group: None,
            listen: None,
            auth: AuthFiles::default(),
            limits: HttpLimits::default(),
            database: PathBuf::from(format!("/var/lib/switchyard/{prefix}.redb")),
        }
    }
}

/// A group by name, resolved when the config is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SocketGroup {
    pub name: String,
    pub gid: u32,
}

/// The keys `[control]` authenticates TCP clients with.
pub const CONTROL_AUTH_KEYS: AuthKeys = AuthKeys {
    token_file: "control.token_file",
    tls_cert: "control.tls_cert",
    tls_key: "control.tls_key",
    tls_ca: "control.tls_client_ca",
};

/// A file path key: not empty, no NUL.
pub(super) fn file(p: &mut Problems, field: &Option<Spanned<String>>, key: &str) -> Option<PathBuf> {
    let field = field.as_ref()?;
    let path = field.get_ref();
    let problem = if path.is_empty() {
        "is empty".to_string()
    } else if path.contains('\0') {
        format!("{path:?} contains a NUL character")
    } else {
        return Some(PathBuf::from(path));
    };
    p.at(field.span().start, key, problem);
    None
}

pub(super) fn validate(p: &mut Problems, raw: Option<Spanned<RawControl>>, file_prefix: Option<&str>) -> ControlConfig {
    let table_pos = raw.as_ref().map_or(usize::MAX, |r| r.span().start);
    let raw = raw.map(Spanned::into_inner).unwrap_or_default();
    let mut config = ControlConfig::defaults(file_prefix);
    if let Some(socket) = &raw.socket {
        let path = socket.get_ref();
        let problem = if path.is_empty() {
            Some("is empty".to_string())
        } else if path.contains('\0') {
            Some(format!("{path:?} contains a NUL character"))
        } else if path.len() > SOCKET_PATH_MAX {
            Some(format!("{path:?} is {} bytes; a unix socket path has at most {SOCKET_PATH_MAX}", path.len()))
        } else {
            None
        };
        match problem {
            Some(problem) => p.at(pos(&raw.socket, table_pos), "control.socket", problem),
            None => config.socket = PathBuf::from(path),
        }
    }
    if let Some(group) = &raw.socket_group {
        let name = group.get_ref();
        match nix::unistd::Group::from_name(name) {
            Ok(Some(found)) => config.socket_group = Some(SocketGroup { name: name.clone(), gid: found.gid.as_raw() }),
            _ => p.at(group.span().start, "control.socket_group", format!("{name:?} is not a group on this host")),
        }
    }
    config.auth = AuthFiles {
        token_file: file(p, &raw.token_file, "control.token_file"),
        tls_cert: file(p, &raw.tls_cert, "control.tls_cert"),
        tls_key: file(p, &raw.tls_key, "control.tls_key"),
        tls_ca: file(p, &raw.tls_client_ca, "control.tls_client_ca"),
    };
    let defaults = HttpLimits::default();
    let millis = |d: Duration| d.as_millis() as u64;
    let header_ms = p.int(&raw.header_timeout_ms, "control.header_timeout_ms", millis(defaults.header_timeout), 100..=600_000, "");
    let body_ms = p.int(&raw.body_timeout_ms, "control.body_timeout_ms", millis(defaults.body_timeout), 100..=600_000, "");
    let connections = p.int(&raw.max_connections, "control.max_connections", defaults.max_connections, 1..=65_536, "");
    config.limits = HttpLimits {
        header_timeout: header_ms.map_or(defaults.header_timeout, Duration::from_millis),
        body_timeout: body_ms.map_or(defaults.body_timeout, Duration::from_millis),
        max_connections: connections.unwrap_or(defaults.max_connections),
    };
    if let Some(listen) = &raw.listen {
        let text = listen.get_ref();
        match text.parse::<SocketAddr>() {
            Ok(addr) => match config.auth.check(&addr, &CONTROL_AUTH_KEYS) {
                Ok(()) => config.listen = Some(addr),
                Err(problem) => p.at(listen.span().start, "control.listen", problem),
            },
            Err(_) => p.at(
                listen.span().start,
                "control.listen",
                format!("{text:?} is not an address and port such as \"127.0.0.1:8080\""),
            ),
        }
    } else if let Some(key) = [(&raw.token_file, "control.token_file"), (&raw.tls_cert, "control.tls_cert")]
        .into_iter()
        .find_map(|(field, key)| field.as_ref().map(|f| (f.span().start, key)))
    {
        p.at(key.0, key.1, "is set, but control.listen is not: it authenticates TCP clients only");
    }
    if let Some(database) = file(p, &raw.database, "control.database") {
        config.database = database;
    }
    config
}
