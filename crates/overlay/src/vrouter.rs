//! The default switching unit: a vRouter switching L2 inside each virtual
//! network (VNI) between VM ports and, over VXLAN, remote VTEPs.
use std::net::Ipv4Addr;

use super::arp::{self, Arp};
use super::tables::{NetworkTable, Underlay, VRouterTables};
use super::vxlan::{self, Tunnel};
use switchyard_pipeline::{Burst, DropReason, PacketBuf, PortId, Verdict};
use switchyard_model::Vni;
use switchyard_unit_abi::{LearnEvent, Location, Side, WorkerLocal};
use switchyard_wire::arp::ArpOperation;
use switchyard_wire::{ethernet, MacAddr};

/// One immutable version of the vRouter's tables, and the forwarding on them.
pub struct VRouter {
    tables: VRouterTables,
}

impl VRouter {
    pub fn new(tables: VRouterTables) -> Self {
        VRouter { tables }
    }

    pub fn tables(&self) -> &VRouterTables {
        &self.tables
    }

    /// Decides every pending packet of a burst received on a port of `side`.
    #[inline]
    pub fn switch<P: PacketBuf>(&self, side: Side, burst: &mut Burst<P>, local: &mut WorkerLocal) {
        match side {
            Side::Vm => self.switch_vm_burst(burst, local),
            Side::Uplink => self.switch_uplink_burst(burst, local),
        }
    }
}

/// Where one received frame goes, decided while the burst is borrowed.
enum Decision {
    Verdict(Verdict),
    Tunnel(Vni, Ipv4Addr),
    Flood { vni: Vni, to_vteps: bool },
}

impl VRouter {
    fn switch_vm_burst<P: PacketBuf>(&self, burst: &mut Burst<P>, local: &mut WorkerLocal) {
        let in_port = burst.in_port();
        let port_vni = self.tables.port_vni.get(in_port.index()).copied().flatten();
        for i in 0..burst.len() {
            let Some((packet, verdict)) = burst.get_mut(i) else { continue };
            let Some(vni) = port_vni else {
                *verdict = Verdict::Drop(DropReason::PortNotInNetwork);
                continue;
            };
            match self.switch_from_vm(packet, vni, in_port, local) {
                Decision::Verdict(v) => *verdict = v,
                decision => self.carry_out(burst, i, decision, Some(in_port), local),
            }
        }
    }

    fn switch_from_vm<P: PacketBuf>(&self, packet: &mut P, vni: Vni, in_port: PortId, local: &mut WorkerLocal) -> Decision {
        let frame = packet.data_mut();
        if frame.len() < ethernet::HEADER_LEN {
            return Decision::Verdict(Verdict::Drop(DropReason::TruncatedEthernet));
        }
        let (dst, src) = (MacAddr::from_bytes(&frame[0..6]), MacAddr::from_bytes(&frame[6..12]));
        if src.is_multicast() {
            return Decision::Verdict(Verdict::Drop(DropReason::InvalidSourceMac));
        }
        local.report(LearnEvent::Mac { vni, mac: src, at: Location::Port(in_port) });
        if frame[12..14] == ethernet::ethertype::ARP.to_be_bytes() {
            if let Some(request) = arp::parse(frame).filter(|a| a.operation == ArpOperation::Request) {
                // Answered here for known endpoints, never for the asker itself.
                if let Some(answer) = self.tables.arp_answer(vni, request.target_ip).filter(|&m| m != request.sender_mac) {
                    arp::reply_in_place(frame, &request, answer);
                    return Decision::Verdict(Verdict::Forward(in_port));
                }
            }
        }
        if dst.is_multicast() {
            return Decision::Flood { vni, to_vteps: true };
        }
        match self.tables.mac_location(vni, dst) {
            Some(Location::Port(out)) if out == in_port => Decision::Verdict(Verdict::Drop(DropReason::SamePort)),
            Some(Location::Port(out)) => Decision::Verdict(Verdict::Forward(out)),
            Some(Location::Vtep(vtep)) => Decision::Tunnel(vni, vtep),
            None => Decision::Flood { vni, to_vteps: true },
        }
    }

    fn switch_uplink_burst<P: PacketBuf>(&self, burst: &mut Burst<P>, local: &mut WorkerLocal) {
        let Some(underlay) = &self.tables.underlay else {
            burst.decide_all(Verdict::Drop(DropReason::NoUplink));
            return;
        };
        for i in 0..burst.len() {
            let Some((packet, verdict)) = burst.get_mut(i) else { continue };
            match self.switch_from_uplink(packet, underlay, local) {
                Ok(Decision::Verdict(v)) => *verdict = v,
                Ok(decision) => self.carry_out(burst, i, decision, None, local),
                Err(reason) => *verdict = Verdict::Drop(reason),
            }
        }
    }

    fn switch_from_uplink<P: PacketBuf>(&self, packet: &mut P, underlay: &Underlay, local: &mut WorkerLocal) -> Result<Decision, DropReason> {
        let frame = packet.data_mut();
        if frame.len() < ethernet::HEADER_LEN {
            return Err(DropReason::TruncatedEthernet);
        }
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        if ethertype == ethernet::ethertype::ARP {
            return self.uplink_arp(frame, underlay, local).map(Decision::Verdict);
        }
        if ethertype != ethernet::ethertype::IPV4 {
            return Err(DropReason::UplinkNotOverlay);
        }
        let tunnel = vxlan::decapsulate(packet, underlay.vtep.address)?;
        let gateway = underlay.gateway_role.as_ref();
        // An inter-cloud gateway switches the other cloud's VNI as the local network it maps to.
        let vni = gateway.map_or(tunnel.vni, |g| g.local_vni(tunnel.vni));
        if !self.tables.networks.contains_key(&vni) {
            return Err(DropReason::UnknownVni);
        }
        let inner = packet.data();
        let (dst, src) = (MacAddr::from_bytes(&inner[0..6]), MacAddr::from_bytes(&inner[6..12]));
        if src.is_multicast() {
            return Err(DropReason::InvalidSourceMac);
        }
        local.report(LearnEvent::Mac { vni, mac: src, at: Location::Vtep(tunnel.remote_vtep) });
        if dst.is_multicast() {
            if gateway.is_some() {
                return self.gateway_arp(packet.data_mut(), vni, tunnel);
            }
            return Ok(Decision::Flood { vni, to_vteps: false });
        }
        match self.tables.mac_location(vni, dst) {
            Some(Location::Port(out)) => Ok(Decision::Verdict(Verdict::Forward(out))),
            // A migrating VM's frames still reach the host it left (or, after an
            // abort, the one it was going to): relayed on, never back.
            // On a gateway every remote endpoint relays: they are forwarding
            // table 2, and this is the second hop (cloud gateway to compute node).
            Some(Location::Vtep(vtep)) if self.tables.relays(vni, dst) => {
                if vtep == tunnel.remote_vtep {
                    Err(DropReason::RelayLoop)
                } else {
                    Ok(Decision::Tunnel(vni, vtep))
                }
            }
            // Learned behind a VTEP, or unknown: not in table 2, and never flooded into this cloud.
            Some(Location::Vtep(_)) | None if gateway.is_some() => Err(DropReason::GatewayUnknownDestination),
            Some(Location::Vtep(_)) => Err(DropReason::RemoteToRemote),
            // Split horizon: what came from a tunnel is flooded to VM ports only.
            None => Ok(Decision::Flood { vni, to_vteps: false }),
        }
    }

    /// Broadcast from the other cloud at a gateway: an ARP request for a VM the
    /// gateway knows (table 2 or a local endpoint) is answered back through the
    /// tunnel it came in, with its VNI; anything else stops here (docs/gateway.md).
    fn gateway_arp(&self, inner: &mut [u8], vni: Vni, tunnel: vxlan::Decapsulated) -> Result<Decision, DropReason> {
        if inner[12..14] != ethernet::ethertype::ARP.to_be_bytes() {
            return Err(DropReason::GatewayBroadcast);
        }
        let request = arp::parse(inner).filter(|a| a.operation == ArpOperation::Request).ok_or(DropReason::GatewayBroadcast)?;
        let answer = self.tables.arp_answer(vni, request.target_ip).filter(|&m| m != request.sender_mac);
        let answer = answer.ok_or(DropReason::GatewayBroadcast)?;
        arp::reply_in_place(inner, &request, answer);
        Ok(Decision::Tunnel(tunnel.vni, tunnel.remote_vtep))
    }

    /// ARP on the uplink: requests for the VTEP address are answered, replies to
    /// it absorbed; both teach the sender's MAC as an underlay neighbour.
    fn uplink_arp(&self, frame: &mut [u8], underlay: &Underlay, local: &mut WorkerLocal) -> Result<Verdict, DropReason> {
        let arp: Arp = arp::parse(frame).ok_or(DropReason::MalformedArp)?;
        if arp.target_ip != underlay.vtep.address {
            return Err(DropReason::ArpNotForUs);
        }
        if !vxlan::is_martian_source(arp.sender_ip) && arp.sender_ip != underlay.vtep.address && arp.sender_mac.is_unicast() {
            local.report(LearnEvent::Neighbor { ip: arp.sender_ip, mac: arp.sender_mac });
        }
        match arp.operation {
            ArpOperation::Request => {
                arp::reply_in_place(frame, &arp, underlay.mac);
                Ok(Verdict::Forward(underlay.port))
            }
            ArpOperation::Reply => Ok(Verdict::Absorbed),
            ArpOperation::Unknown(_) => Err(DropReason::MalformedArp),
        }
    }

    /// Applies a decision to packet `i` of the burst, making copies and ARP
    /// requests as needed. Plain verdicts are set by the callers in place.
    fn carry_out<P: PacketBuf>(&self, burst: &mut Burst<P>, i: usize, decision: Decision, in_port: Option<PortId>, local: &mut WorkerLocal) {
        match decision {
            Decision::Verdict(v) => decide(burst, i, v),
            Decision::Tunnel(vni, vtep) => {
                let Some((packet, verdict)) = burst.get_mut(i) else { return };
                let (v, arp_request) = self.tunnel_to(packet, vni, vtep, local);
                *verdict = v;
                if v == Verdict::Drop(DropReason::NextHopUnresolved) {
                    burst.note_unresolved();
                }
                if let Some((request, out)) = arp_request {
                    burst.add_made(request, Verdict::Forward(out));
                }
            }
            Decision::Flood { vni, to_vteps } => match self.tables.networks.get(&vni) {
                Some(network) => self.flood(burst, i, vni, network, in_port, to_vteps, local),
                None => decide(burst, i, Verdict::Drop(DropReason::UnknownVni)),
            },
        }
    }

    /// Broadcast, multicast and unknown unicast: a copy to every other VM port
    /// of the network and, from a VM, one to each VTEP of its flood list
    /// (head-end replication). The received packet itself goes to the last target.
    #[allow(clippy::too_many_arguments)]
    fn flood<P: PacketBuf>(
        &self,
        burst: &mut Burst<P>,
        i: usize,
        vni: Vni,
        network: &NetworkTable,
        in_port: Option<PortId>,
        to_vteps: bool,
        local: &mut WorkerLocal,
    ) {
        let ports = || network.ports.iter().copied().filter(move |&p| Some(p) != in_port);
        let vteps: &[Ipv4Addr] = if to_vteps { &network.flood_vteps } else { &[] };
        let mut remaining = ports().count() + vteps.len();
        if remaining == 0 {
            decide(burst, i, Verdict::Drop(DropReason::FloodNoMembers));
            return;
        }
        for out in ports() {
            remaining -= 1;
            if remaining == 0 {
                decide(burst, i, Verdict::Forward(out));
                return;
            }
            match burst.get_mut(i).and_then(|(packet, _)| packet.duplicate()) {
                Some(copy) => burst.add_made(copy, Verdict::Forward(out)),
                None => burst.add_unmade(),
            }
        }
        for &vtep in vteps {
            remaining -= 1;
            if remaining == 0 {
                self.carry_out(burst, i, Decision::Tunnel(vni, vtep), in_port, local);
                return;
            }
            let Some(mut copy) = burst.get_mut(i).and_then(|(packet, _)| packet.duplicate()) else {
                burst.add_unmade();
                continue;
            };
            let (verdict, arp_request) = self.tunnel_to(&mut copy, vni, vtep, local);
            if verdict == Verdict::Drop(DropReason::NextHopUnresolved) {
                burst.note_unresolved();
            }
            burst.add_made(copy, verdict);
            if let Some((request, out)) = arp_request {
                burst.add_made(request, Verdict::Forward(out));
            }
        }
    }

    /// Encapsulates `packet` towards `vtep`. With the next hop unresolved the
    /// packet is encapsulated all the same but marked `NextHopUnresolved` (the
    /// tunnel stage queues it; without one it is dropped) and, at most every
    /// 100 ms per next hop, an ARP request for it is returned to send on the uplink.
    fn tunnel_to<P: PacketBuf>(&self, packet: &mut P, vni: Vni, vtep: Ipv4Addr, local: &mut WorkerLocal) -> (Verdict, Option<(P, PortId)>) {
        let Some(underlay) = &self.tables.underlay else {
            return (Verdict::Drop(DropReason::NoUplink), None);
        };
        let Some(next_hop) = underlay.next_hop(vtep) else {
            return (Verdict::Drop(DropReason::NoRouteToVtep), None);
        };
        let resolved = underlay.vtep.next_hop_mac.or_else(|| self.tables.neighbors.get(&next_hop).copied());
        // Unresolved, the frame is still encapsulated (outer destination MAC zero), so the
        // tunnel stage can queue it and fill in the MAC when the neighbour is learned.
        let dst_mac = resolved.unwrap_or(MacAddr::ZERO);
        let tunnel = Tunnel { vni, src_mac: underlay.mac, dst_mac, src_ip: underlay.vtep.address, dst_ip: vtep, mtu: underlay.vtep.mtu };
        if let Err(reason) = vxlan::encapsulate(packet, &tunnel) {
            return (Verdict::Drop(reason), None);
        }
        if resolved.is_some() {
            return (Verdict::Forward(underlay.port), None);
        }
        let request = local.may_send_arp(next_hop).then(|| arp::request_from_vtep(packet, underlay, next_hop)).flatten();
        (Verdict::Drop(DropReason::NextHopUnresolved), request.map(|r| (r, underlay.port)))
    }
}

/// Sets the verdict of packet `i` (if it is still undecided).
fn decide<P: PacketBuf>(burst: &mut Burst<P>, i: usize, verdict: Verdict) {
    if let Some((_, v)) = burst.get_mut(i) {
        *v = verdict;
    }
}
