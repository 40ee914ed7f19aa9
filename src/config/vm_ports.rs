//! Devargs of the VM-facing virtual ports, checked before DPDK starts so that a
//! mistake is one line naming the key, not a driver's errno: `net_vhost` (a
//! vhost-user socket for a VM or a virtio-user peer) and `net_tap` (a kernel TAP
//! interface, e.g. moved into a network namespace as a VM stand-in).
//! Keys and limits are DPDK 22.11's.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::wire::MacAddr;

/// Keys the DPDK 22.11 vhost PMD (`net_vhost`, alias `eth_vhost`) accepts.
pub const VHOST_KEYS: [&str; 9] = [
    "iface",
    "queues",
    "client",
    "iommu-support",
    "postcopy-support",
    "tso",
    "linear-buffer",
    "ext-buffer",
    "legacy-ol-flags",
];

/// Keys the DPDK 22.11 TAP PMD (`net_tap`, alias `eth_tap`) accepts.
pub const TAP_KEYS: [&str; 4] = ["iface", "mac", "remote", "persist"];

/// `sizeof(sockaddr_un.sun_path)` minus the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// Linux `IFNAMSIZ` minus the terminating NUL.
const MAX_IFNAME: usize = 15;
/// DPDK's `RTE_MAX_QUEUES_PER_PORT`.
const MAX_VHOST_QUEUES: i64 = 1024;

pub fn is_vhost_driver(driver: &str) -> bool {
    driver == "net_vhost" || driver == "eth_vhost"
}

pub fn is_tap_driver(driver: &str) -> bool {
    driver == "net_tap" || driver == "eth_tap"
}

/// The vhost-user side of a `net_vhost` port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostSocket {
    /// `iface=`: the socket path (relative paths are relative to the working directory).
    pub path: String,
    /// `client=1`: switchyard connects to a socket the VM (QEMU `server=on`) listens on;
    /// otherwise switchyard listens and the VM connects.
    pub client: bool,
    /// `queues=`: queue pairs (default 1).
    pub queues: u16,
}

/// Reads the vhost-user settings of `net_vhost` devargs pairs (already checked
/// by `check_vhost`); None without `iface=`.
pub fn vhost_socket<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Option<VhostSocket> {
    let (mut path, mut client, mut queues) = (None, false, 1);
    for (key, value) in pairs {
        match key {
            "iface" => path = Some(value.to_string()),
            "client" => client = value == "1",
            "queues" => queues = value.parse().unwrap_or(1),
            _ => {}
        }
    }
    Some(VhostSocket { path: path?, client, queues })
}

/// Checks `net_vhost` devargs pairs; the error is the problem text.
pub fn check_vhost<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<VhostSocket, String> {
    let pairs: Vec<(&str, &str)> = pairs.collect();
    for &(key, value) in &pairs {
        match key {
            "iface" => {}
            "queues" => match value.parse::<i64>() {
                Ok(n) if (1..=MAX_VHOST_QUEUES).contains(&n) => {}
                _ => return Err(format!("net_vhost queues must be 1..={MAX_VHOST_QUEUES}, not {value:?}")),
            },
            key if VHOST_KEYS.contains(&key) => {
                if value != "0" && value != "1" {
                    return Err(format!("net_vhost {key} must be 0 or 1, not {value:?}"));
                }
            }
            _ => {
                return Err(format!("unknown net_vhost key {key:?} (expected one of {})", VHOST_KEYS.join(", ")));
            }
        }
    }
    const NO_IFACE: &str =
        "net_vhost needs iface=<path of the vhost-user socket>, e.g. net_vhost0,iface=/run/switchyard/vm0.sock";
    let socket = vhost_socket(pairs.iter().copied()).ok_or(NO_IFACE)?;
    let path = socket.path.as_str();
    if path.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "vhost-user socket path {path:?} is {} bytes long; a Unix socket path has at most {MAX_SOCKET_PATH}",
            path.len()
        ));
    }
    if !socket.client {
        // Server mode: switchyard creates the socket, so its directory must exist.
        // (In client mode the VM creates it, possibly later: DPDK keeps reconnecting.)
        let dir = match Path::new(path).parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(format!(
                "directory {:?} for vhost-user socket {path:?} does not exist (create it first)",
                dir.display().to_string()
            ));
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(format!("vhost-user socket path {path:?} exists and is not a socket"));
            }
        }
    }
    Ok(socket)
}

/// A Linux interface name: 1 to 15 bytes, not "." or "..", without '/', ':' or
/// whitespace (the kernel's `dev_valid_name`).
pub fn is_interface_name(name: &str) -> bool {
    (1..=MAX_IFNAME).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// Checks `net_tap` devargs pairs and returns the interface name, if given (DPDK
/// names it `dtap<N>` otherwise); the error is the problem text.
pub fn check_tap<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Option<String>, String> {
    let mut iface = None;
    for (key, value) in pairs {
        match key {
            "iface" | "remote" => {
                if !is_interface_name(value) {
                    return Err(format!(
                        "net_tap {key} {value:?} is not a Linux interface name (1 to {MAX_IFNAME} characters, \
                         no '/', ':' or spaces)"
                    ));
                }
                if key == "iface" {
                    iface = Some(value.to_string());
                }
            }
            "mac" => {
                if value != "fixed" && value.parse::<MacAddr>().is_err() {
                    return Err(format!("net_tap mac must be \"fixed\" or a MAC address, not {value:?}"));
                }
            }
            "persist" => {}
            _ => return Err(format!("unknown net_tap key {key:?} (expected one of {})", TAP_KEYS.join(", "))),
        }
    }
    if let Some(name) = iface.as_deref().filter(|name| !name.contains('%')) {
        // TUNSETIFF on an existing interface that is not a TUN/TAP device fails with EINVAL.
        let sys = Path::new("/sys/class/net").join(name);
        if sys.exists() && !sys.join("tun_flags").exists() {
            return Err(format!("net_tap iface {name:?} is an existing interface that is not a TAP device"));
        }
    }
    Ok(iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> impl Iterator<Item = (&str, &str)> {
        text.split(',').filter_map(|item| item.split_once('='))
    }

    #[test]
    fn vhost_settings() {
        let dir = std::env::temp_dir().join("v.sock");
        let dir = dir.to_str().expect("utf-8 temp dir");
        let s = check_vhost(pairs(&format!("iface={dir}"))).expect("valid");
        assert_eq!(s, VhostSocket { path: dir.into(), client: false, queues: 1 });
        let s = check_vhost(pairs("iface=/nonexistent/v.sock,client=1,queues=4")).expect("client mode: no path check");
        assert_eq!(s, VhostSocket { path: "/nonexistent/v.sock".into(), client: true, queues: 4 });
        assert!(check_vhost(pairs("iface=relative.sock,tso=1,legacy-ol-flags=0")).is_ok());
    }

    #[test]
    fn vhost_errors() {
        let e = |text: &str| check_vhost(pairs(text)).expect_err(text);
        assert!(e("queues=1").starts_with("net_vhost needs iface=<path of the vhost-user socket>"));
        assert_eq!(e("iface=a.sock,queues=0"), "net_vhost queues must be 1..=1024, not \"0\"");
        assert_eq!(e("iface=a.sock,client=yes"), "net_vhost client must be 0 or 1, not \"yes\"");
        assert!(e("iface=a.sock,path=b").starts_with("unknown net_vhost key \"path\" (expected one of iface, queues,"));
        assert_eq!(
            e("iface=/nonexistent/dir/v.sock"),
            "directory \"/nonexistent/dir\" for vhost-user socket \"/nonexistent/dir/v.sock\" does not exist \
             (create it first)"
        );
        let long = format!("/tmp/{}.sock", "x".repeat(100));
        assert!(e(&format!("iface={long}")).ends_with("is 110 bytes long; a Unix socket path has at most 107"));
        let file = std::env::temp_dir().join(format!("switchyard-vm-ports-{}.txt", std::process::id()));
        std::fs::write(&file, b"").expect("write temp file");
        let path = file.to_str().expect("utf-8 temp dir").to_string();
        let problem = e(&format!("iface={path}"));
        let _ = std::fs::remove_file(&file);
        assert_eq!(problem, format!("vhost-user socket path {path:?} exists and is not a socket"));
    }

    #[test]
    fn tap_settings() {
        assert_eq!(check_tap(pairs("iface=sy-vm0,mac=fixed")), Ok(Some("sy-vm0".into())));
        assert_eq!(check_tap(pairs("mac=02:00:00:00:00:01")), Ok(None));
        assert_eq!(check_tap(pairs("iface=dtap%d")), Ok(Some("dtap%d".into())));
        let e = |text: &str| check_tap(pairs(text)).expect_err(text);
        assert_eq!(
            e("iface=averyveryverylongname"),
            "net_tap iface \"averyveryverylongname\" is not a Linux interface name (1 to 15 characters, \
             no '/', ':' or spaces)"
        );
        assert!(e("iface=a/b").starts_with("net_tap iface \"a/b\" is not a Linux interface name"));
        assert_eq!(e("mac=02:00"), "net_tap mac must be \"fixed\" or a MAC address, not \"02:00\"");
        let unknown = e("ifname=x");
        assert_eq!(unknown, "unknown net_tap key \"ifname\" (expected one of iface, mac, remote, persist)");
        assert_eq!(e("iface=lo"), "net_tap iface \"lo\" is an existing interface that is not a TAP device");
    }

    #[test]
    fn interface_names() {
        for good in ["eth0", "sy-vm0", "a", "x".repeat(15).as_str()] {
            assert!(is_interface_name(good), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a:b", "a/b", "x".repeat(16).as_str()] {
            assert!(!is_interface_name(bad), "{bad}");
        }
    }
}
