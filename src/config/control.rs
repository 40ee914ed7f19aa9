//! `[control]`: where the REST API listens and where the config database lives.
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;
use toml::Spanned;

use super::raw::RawControl;
use super::{pos, Problems};

/// Longest unix socket path (`sun_path` is 108 bytes with the terminating NUL).
pub const SOCKET_PATH_MAX: usize = 107;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControlConfig {
    /// The API's unix socket (always served).
    pub socket: PathBuf,
    /// Also serve the API on this loopback TCP address.
    pub listen: Option<SocketAddr>,
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
            listen: None,
            database: PathBuf::from(format!("/var/lib/switchyard/{prefix}.redb")),
        }
    }
}

/// True for 127.0.0.0/8 and ::1 (and ::ffff:127.x.x.x).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
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
    if let Some(listen) = &raw.listen {
        let text = listen.get_ref();
        match text.parse::<SocketAddr>() {
            Ok(addr) if is_loopback(&addr) => config.listen = Some(addr),
            Ok(addr) => p.at(
                listen.span().start,
                "control.listen",
                format!(
                    "{addr} is not a loopback address; the control API has no authentication, \
                     so it listens only on 127.0.0.1 or ::1"
                ),
            ),
            Err(_) => p.at(
                listen.span().start,
                "control.listen",
                format!("{text:?} is not an address and port such as \"127.0.0.1:8080\""),
            ),
        }
    }
    if let Some(database) = &raw.database {
        let path = database.get_ref();
        if path.is_empty() {
            p.at(database.span().start, "control.database", "is empty");
        } else if path.contains('\0') {
            p.at(database.span().start, "control.database", format!("{path:?} contains a NUL character"));
        } else {
            config.database = PathBuf::from(path);
        }
    }
    config
}
