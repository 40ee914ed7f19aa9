//! Host-side preparation of VM ports before DPDK starts, so that what the drivers
//! would report as a bare errno is one line saying what to do:
//! - `net_tap`/`net_tun` create a kernel interface: that needs CAP_NET_ADMIN and /dev/net/tun.
//! - `net_vhost` in server mode binds its socket: a socket file left by a process
//!   that died (nobody accepts on it) is removed, as the next bind would fail;
//!   a socket someone still serves is an error.
use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::config::PortConfig;

/// Linux capability number of CAP_NET_ADMIN.
const CAP_NET_ADMIN: u32 = 12;

/// What a port needs from the host that is missing, as one line without the port prefix.
pub(super) fn prepare(port: &PortConfig) -> Result<(), String> {
    if port.creates_kernel_interface() {
        let iface = match port.tap_iface() {
            Some(name) => format!("TAP interface {name:?}"),
            None => "a TAP interface".to_string(),
        };
        let driver = port.driver();
        if !has_capability(CAP_NET_ADMIN) {
            return Err(format!("{driver} cannot create {iface}: that needs CAP_NET_ADMIN (run switchyard as root)"));
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err(format!("{driver} cannot create {iface}: /dev/net/tun is missing (modprobe tun)"));
        }
    }
    if let Some(socket) = port.vhost_socket().filter(|s| !s.client) {
        let path = Path::new(&socket.path);
        if std::fs::symlink_metadata(path).is_ok() {
            match UnixStream::connect(path) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)
                        .map_err(|e| format!("cannot remove stale vhost-user socket {:?}: {e}", socket.path))?;
                    log::warn!("removed stale vhost-user socket {:?} (nobody was listening on it)", socket.path);
                }
                Ok(_) => {
                    return Err(format!(
                        "vhost-user socket {:?} is served by another process; pick another path or stop that process",
                        socket.path
                    ));
                }
                // Anything else (no permission, ...) is left for the driver to report.
                Err(_) => {}
            }
        }
    }
    Ok(())
}

/// Whether this process holds capability `cap` (root normally holds all of them).
fn has_capability(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return true };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_none_or(|caps| caps & (1 << cap) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::os::unix::net::UnixListener;

    fn vhost_port(path: &Path) -> PortConfig {
        let devargs = format!("net_vhost0,iface={}", path.display());
        let toml = format!("[[port]]\nname = \"v\"\ndevargs = \"{devargs}\"\nrole = \"vm\"\n");
        Config::parse(&toml, "t.toml").expect("valid").ports.remove(0)
    }

    #[test]
    fn stale_vhost_sockets_are_removed_and_live_ones_refused() {
        let dir = std::env::temp_dir().join(format!("switchyard-vm-ports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("v.sock");
        let _ = std::fs::remove_file(&path);
        assert_eq!(prepare(&vhost_port(&path)), Ok(()), "no socket yet: nothing to do");

        let listener = UnixListener::bind(&path).expect("bind");
        let port = vhost_port(&path);
        let live = prepare(&port).expect_err("someone serves it");
        assert!(live.ends_with("is served by another process; pick another path or stop that process"), "{live}");
        drop(listener); // the file stays behind, as after a crash
        assert!(path.exists());
        assert_eq!(prepare(&port), Ok(()));
        assert!(!path.exists(), "the stale socket is gone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
