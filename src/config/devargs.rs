//! DPDK device arguments: `driver<N>[,key=value...]` (a vdev) or
//! `[DDDD:]BB:DD.F[,key=value...]` (a PCI device).
//!
//! Values may be bracketed lists containing commas (`key=[a,b]`), as DPDK's
//! kvargs parser allows; commas inside brackets do not split pairs.

use std::path::Path;

/// DPDK's `RTE_DEV_NAME_MAX_LEN` (64) includes the terminating NUL.
const MAX_DEVICE_NAME: usize = 63;

/// pcap PMD keys that receive from a live interface (as opposed to `rx_pcap` files).
pub(super) const PCAP_RX_SOURCES: [&str; 3] = ["rx_iface", "rx_iface_in", "iface"];

/// Keys the DPDK 22.11 pcap PMD (`net_pcap`, alias `eth_pcap`) accepts.
pub(super) const PCAP_KEYS: [&str; 8] =
    ["rx_pcap", "rx_iface", "rx_iface_in", "tx_pcap", "tx_iface", "iface", "phy_mac", "infinite_rx"];

/// The devargs up to the first ','.
pub(super) fn device_name(devargs: &str) -> &str {
    devargs.split_once(',').map_or(devargs, |(name, _)| name)
}

/// The pairs after the device name, in order. Empty items (`a=1,,b=2`) are
/// skipped, as DPDK does; an item without '=' is skipped too (validation
/// rejects those before a `PortConfig` is built).
pub(super) fn pairs(devargs: &str) -> impl Iterator<Item = (&str, &str)> {
    let rest = devargs.split_once(',').map_or("", |(_, rest)| rest);
    Items { rest: Some(rest) }.filter_map(|item| item.split_once('='))
}

/// Splits on commas that are not inside `[...]`, skipping empty items.
struct Items<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let rest = self.rest?;
            let mut depth = 0usize;
            let mut end = None;
            for (at, byte) in rest.bytes().enumerate() {
                match byte {
                    b'[' => depth = depth.saturating_add(1),
                    b']' => depth = depth.saturating_sub(1),
                    b',' if depth == 0 => {
                        end = Some(at);
                        break;
                    }
                    _ => {}
                }
            }
            let item = match end {
                // ',' is ASCII, so `at` and `at + 1` are char boundaries.
                Some(at) => {
                    self.rest = rest.get(at + 1..);
                    rest.get(..at).unwrap_or("")
                }
                None => {
                    self.rest = None;
                    rest
                }
            };
            if !item.is_empty() {
                return Some(item);
            }
        }
    }
}

/// A PCI address `DDDD:BB:DD.F` or `BB:DD.F` (hex; the domain may have up to
/// 8 digits, device <= 0x1f, function <= 7), as (domain, bus, device, function).
pub(super) fn parse_pci(name: &str) -> Option<(u32, u8, u8, u8)> {
    fn hex(text: &str, digits: std::ops::RangeInclusive<usize>) -> Option<u32> {
        if !digits.contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(text, 16).ok()
    }
    let parts: Vec<&str> = name.split(':').collect();
    let (domain, bus, rest) = match parts.as_slice() {
        [domain, bus, rest] => (hex(domain, 1..=8)?, *bus, *rest),
        [bus, rest] => (0, *bus, *rest),
        _ => return None,
    };
    let (device, function) = rest.split_once('.')?;
    let bus = u8::try_from(hex(bus, 2..=2)?).ok()?;
    let device = u8::try_from(hex(device, 2..=2)?).ok().filter(|d| *d <= 0x1f)?;
    let function = u8::try_from(hex(function, 1..=1)?).ok().filter(|f| *f <= 7)?;
    Some((domain, bus, device, function))
}

/// A vdev name: a driver name (letters, digits, '_'; starting with a letter)
/// followed by an instance number, e.g. "net_pcap0".
pub(super) fn is_vdev_name(name: &str) -> bool {
    name.len() <= MAX_DEVICE_NAME
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.ends_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The driver of a device name: "pci" for PCI addresses, otherwise the name
/// without its trailing instance number.
pub(super) fn driver(name: &str) -> &str {
    if parse_pci(name).is_some() {
        "pci"
    } else {
        name.trim_end_matches(|c: char| c.is_ascii_digit())
    }
}

pub(super) fn is_pcap_driver(driver: &str) -> bool {
    driver == "net_pcap" || driver == "eth_pcap"
}

/// Checks the syntax of a devargs string and returns it normalized: a PCI
/// address is written the way DPDK names the port (lower-case hex, 4-digit
/// domain), so that `device_name()` matches `rte_eth_dev_get_name_by_port`.
/// The error is the problem text, without the key name.
pub(super) fn normalize(devargs: &str) -> Result<String, String> {
    if devargs.is_empty() {
        return Err("empty".to_string());
    }
    if devargs.contains('\0') {
        return Err(format!("{devargs:?} contains a NUL character"));
    }
    let name = device_name(devargs);
    let normalized = match parse_pci(name) {
        Some((domain, bus, device, function)) => {
            let rest = devargs.get(name.len()..).unwrap_or("");
            format!("{domain:04x}:{bus:02x}:{device:02x}.{function}{rest}")
        }
        None if is_vdev_name(name) => devargs.to_string(),
        None => {
            return Err(format!(
                "device {name:?} is neither a vdev name such as \"net_pcap0\" \
                 nor a PCI address such as \"0000:01:00.0\""
            ))
        }
    };
    let rest = devargs.split_once(',').map_or("", |(_, rest)| rest);
    let balanced = rest.bytes().try_fold(0usize, |depth, b| match b {
        b'[' => Some(depth + 1),
        b']' => depth.checked_sub(1),
        _ => Some(depth),
    });
    if balanced != Some(0) {
        return Err(format!("{devargs:?} has unbalanced brackets"));
    }
    for item in (Items { rest: Some(rest) }) {
        match item.split_once('=') {
            Some((key, value)) if !key.is_empty() && !value.is_empty() => {}
            _ => return Err(format!("{devargs:?} is not key=value")),
        }
    }
    if is_pcap_driver(driver(name)) {
        for (key, value) in pairs(devargs) {
            if !PCAP_KEYS.contains(&key) {
                return Err(format!("unknown {} key {key:?} (expected one of {})", driver(name), PCAP_KEYS.join(", ")));
            }
            if key == "infinite_rx" && value != "0" && value != "1" {
                return Err(format!("infinite_rx must be 0 or 1, not {value:?}"));
            }
        }
    }
    Ok(normalized)
}

/// Checks that an `rx_pcap=` file can be opened for reading. Regular files
/// are opened (and closed); FIFOs and character devices are only looked up,
/// since opening a FIFO without a writer would block.
pub(super) fn check_rx_pcap(file: &str) -> Result<(), String> {
    let path = Path::new(file);
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("rx_pcap file {file:?} not found")),
        Err(e) => return Err(format!("rx_pcap file {file:?} cannot be read: {e}")),
    };
    if meta.is_dir() {
        return Err(format!("rx_pcap file {file:?} is a directory"));
    }
    if meta.is_file() {
        if let Err(e) = std::fs::File::open(path) {
            return Err(format!("rx_pcap file {file:?} cannot be read: {e}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pairs() {
        let d = "net_bonding0,mode=1,member=[0000:01:00.0,0000:01:00.1],,x=y";
        assert_eq!(device_name(d), "net_bonding0");
        let got: Vec<_> = pairs(d).collect();
        assert_eq!(got, [("mode", "1"), ("member", "[0000:01:00.0,0000:01:00.1]"), ("x", "y")]);
        assert_eq!(pairs("net_null0").count(), 0);
        assert_eq!(pairs("net_null0,").count(), 0);
    }

    #[test]
    fn pci_addresses() {
        assert_eq!(parse_pci("0000:01:00.0"), Some((0, 1, 0, 0)));
        assert_eq!(parse_pci("01:1f.7"), Some((0, 1, 0x1f, 7)));
        assert_eq!(parse_pci("10000:AB:00.1"), Some((0x10000, 0xab, 0, 1)));
        for bad in ["0000:01:20.0", "0000:01:00.8", "0000:1:00.0", "0000:01:00", "0:0:0:0.0", "+0:01:00.0", "net_pcap0"]
        {
            assert_eq!(parse_pci(bad), None, "{bad}");
        }
        assert_eq!(normalize("01:00.0,x=1"), Ok("0000:01:00.0,x=1".into()));
        assert_eq!(normalize("0000:AB:00.1"), Ok("0000:ab:00.1".into()));
        assert_eq!(driver("0000:01:00.0"), "pci");
        assert_eq!(driver("net_pcap12"), "net_pcap");
    }

    #[test]
    fn syntax() {
        assert_eq!(normalize(""), Err("empty".into()));
        assert_eq!(normalize("net_pcap0,rx_pcap"), Err("\"net_pcap0,rx_pcap\" is not key=value".into()));
        assert_eq!(normalize("net_null0,=1"), Err("\"net_null0,=1\" is not key=value".into()));
        assert_eq!(normalize("net_null0,a=[1,2"), Err("\"net_null0,a=[1,2\" has unbalanced brackets".into()));
        assert_eq!(normalize("net_null0,a=]"), Err("\"net_null0,a=]\" has unbalanced brackets".into()));
        assert_eq!(normalize("net_pcap0,infinite_rx=2"), Err("infinite_rx must be 0 or 1, not \"2\"".into()));
        assert!(normalize("net_pcap0,rx_pacp=a").unwrap_err().starts_with("unknown net_pcap key \"rx_pacp\""));
        assert!(normalize("net_pcap,rx_pcap=a").unwrap_err().starts_with("device \"net_pcap\" is neither"));
        assert!(normalize("0000:zz:00.0").unwrap_err().starts_with("device \"0000:zz:00.0\" is neither"));
        assert_eq!(normalize("net_ring0"), Ok("net_ring0".into()));
    }
}
