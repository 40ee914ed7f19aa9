//! `[gateway]`: this host's vRouter is the inter-cloud gateway of its cloud:
//! VXLAN from the other cloud is decapsulated, looked up in forwarding
//! table 2 (the remote endpoints: VM -> compute-node VTEP of this cloud) and
//! re-encapsulated to that compute node. See docs/gateway.md.
use toml::Spanned;

use super::raw::RawGateway;
use super::Problems;
use crate::model::rules::check_vni;
use crate::model::{GatewayConfig, Network, VniMapping};

/// Validates `[gateway]`: it needs the VTEP (`has_vtep`); a mapping's local VNI
/// must be a `[[network]]` of the file, its remote VNI mapped once and not a local
/// network itself (that network's frames would become unreachable).
pub(super) fn validate(
    p: &mut Problems,
    raw: Option<Spanned<RawGateway>>,
    has_vtep: bool,
    networks: &[Network],
) -> Option<GatewayConfig> {
    let table_pos = raw.as_ref()?.span().start;
    let raw = raw?.into_inner();
    if !has_vtep {
        p.at(table_pos, "gateway", "needs an uplink port with `address`: the VTEP the other cloud's tunnels end at");
    }
    let mut gateway = GatewayConfig::default();
    let raw_map = raw.vni_map.map(Spanned::into_inner).unwrap_or_default();
    for (i, mapping) in raw_map.iter().enumerate() {
        let mapping = mapping.get_ref();
        let at = |key: &str| format!("gateway.vni_map[{i}].{key}");
        let (remote_pos, local_pos) = (mapping.remote_vni.span().start, mapping.local_vni.span().start);
        let remote_vni = check_vni(*mapping.remote_vni.get_ref()).map_err(|problem| p.at(remote_pos, at("remote_vni"), problem)).ok();
        let local_vni = check_vni(*mapping.local_vni.get_ref()).map_err(|problem| p.at(local_pos, at("local_vni"), problem)).ok();
        if let Some(remote_vni) = remote_vni {
            if let Some(j) = gateway.vni_map.iter().position(|m| m.remote_vni == remote_vni) {
                p.at(remote_pos, at("remote_vni"), format!("VNI {remote_vni} is already mapped by gateway.vni_map[{j}]"));
            } else if let Some(network) = networks.iter().find(|n| n.vni == remote_vni) {
                let name = &network.name;
                p.at(remote_pos, at("remote_vni"), format!("VNI {remote_vni} is the local network {name:?}; map only VNIs not used here"));
            }
        }
        if let Some(local_vni) = local_vni {
            if !networks.iter().any(|n| n.vni == local_vni) {
                p.at(local_pos, at("local_vni"), format!("no [[network]] has VNI {local_vni}"));
            }
        }
        if let (Some(remote_vni), Some(local_vni)) = (remote_vni, local_vni) {
            gateway.vni_map.push(VniMapping { remote_vni, local_vni });
        }
    }
    Some(gateway)
}
