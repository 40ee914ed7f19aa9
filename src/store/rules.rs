//! What makes a single record valid on its own, shared by the TOML bootstrap
//! (`config`) and the REST API (`control`). Checks that need the rest of the
//! configuration (does the VNI exist, is the MAC taken) live with their callers.
//!
//! Each check returns the problem as a phrase that starts with the offending value,
//! so it reads after a key path (`network[0].vni: 0 is out of range ...`) and after
//! a noun (`VNI 0 is out of range ...`).
use std::net::Ipv4Addr;

use super::model::{Vni, VNI_MAX};
use crate::wire::MacAddr;

/// Network names: 1 to 64 of these characters.
pub const NETWORK_NAME_MAX: usize = 64;

pub fn check_vni(vni: i64) -> Result<Vni, String> {
    match Vni::try_from(vni) {
        Ok(v) if (1..=VNI_MAX).contains(&v) => Ok(v),
        _ => Err(format!("{vni} is out of range 1..={VNI_MAX}")),
    }
}

pub fn check_network_name(name: &str) -> Result<(), String> {
    let ok = (1..=NETWORK_NAME_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid network name: use 1 to {NETWORK_NAME_MAX} characters of A-Z a-z 0-9 . _ -"
        ))
    }
}

/// A MAC a VM interface can own: unicast and not all zeros.
pub fn check_endpoint_mac(mac: MacAddr) -> Result<(), String> {
    if mac.is_broadcast() {
        Err(format!("{mac} is the broadcast address, not a unicast MAC address"))
    } else if mac.is_multicast() {
        Err(format!("{mac} is a multicast address, not a unicast MAC address"))
    } else if mac == MacAddr::ZERO {
        Err(format!("{mac} is the all-zero address, not a usable MAC address"))
    } else {
        Ok(())
    }
}

/// An address a host (a VTEP or a VM) can own: not 0.0.0.0, multicast,
/// broadcast or loopback.
pub fn check_unicast_ipv4(ip: Ipv4Addr) -> Result<(), String> {
    let problem = if ip.is_unspecified() {
        "is the unspecified address"
    } else if ip.is_broadcast() {
        "is the broadcast address"
    } else if ip.is_multicast() {
        "is a multicast address"
    } else if ip.is_loopback() {
        "is a loopback address"
    } else {
        return Ok(());
    };
    Err(format!("{ip} {problem}, not a unicast IPv4 address"))
}

/// A flood list: every address unicast, none twice.
pub fn check_flood_vteps(vteps: &[Ipv4Addr]) -> Result<(), (usize, String)> {
    for (i, vtep) in vteps.iter().enumerate() {
        check_unicast_ipv4(*vtep).map_err(|problem| (i, problem))?;
        if vteps[..i].contains(vtep) {
            return Err((i, format!("{vtep} is listed twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_range() {
        assert_eq!(check_vni(1), Ok(1));
        assert_eq!(check_vni(16_777_215), Ok(16_777_215));
        assert_eq!(check_vni(0), Err("0 is out of range 1..=16777215".into()));
        assert_eq!(check_vni(16_777_216), Err("16777216 is out of range 1..=16777215".into()));
        assert_eq!(check_vni(-1), Err("-1 is out of range 1..=16777215".into()));
    }

    #[test]
    fn network_names() {
        assert!(check_network_name("blue").is_ok());
        assert!(check_network_name("tenant-1.prod_a").is_ok());
        assert!(check_network_name(&"x".repeat(64)).is_ok());
        for bad in ["", "a b", "blue/1", "grün", &"x".repeat(65)] {
            assert!(check_network_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_network_name("a b"),
            Err("\"a b\" is not a valid network name: use 1 to 64 characters of A-Z a-z 0-9 . _ -".into())
        );
    }

    #[test]
    fn endpoint_macs() {
        assert!(check_endpoint_mac(MacAddr([2, 0, 0, 0, 0, 1])).is_ok());
        assert_eq!(
            check_endpoint_mac(MacAddr([1, 0, 0x5e, 0, 0, 1])),
            Err("01:00:5e:00:00:01 is a multicast address, not a unicast MAC address".into())
        );
        assert!(check_endpoint_mac(MacAddr::BROADCAST).unwrap_err().contains("broadcast"));
        assert!(check_endpoint_mac(MacAddr::ZERO).unwrap_err().contains("all-zero"));
    }

    #[test]
    fn unicast_ipv4() {
        assert!(check_unicast_ipv4(Ipv4Addr::new(192, 0, 2, 1)).is_ok());
        for (bad, word) in [
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("239.1.2.3", "multicast"),
            ("127.0.0.1", "loopback"),
            ("127.8.0.1", "loopback"),
        ] {
            let problem = check_unicast_ipv4(bad.parse().unwrap()).unwrap_err();
            assert!(problem.starts_with(bad) && problem.contains(word), "{problem}");
        }
    }

    #[test]
    fn flood_lists() {
        let a: Ipv4Addr = "10.0.0.2".parse().unwrap();
        let b: Ipv4Addr = "10.0.0.3".parse().unwrap();
        assert!(check_flood_vteps(&[]).is_ok());
        assert!(check_flood_vteps(&[a, b]).is_ok());
        assert_eq!(check_flood_vteps(&[a, b, a]), Err((2, "10.0.0.2 is listed twice".into())));
        assert_eq!(check_flood_vteps(&[a, Ipv4Addr::BROADCAST]).unwrap_err().0, 1);
    }
}
