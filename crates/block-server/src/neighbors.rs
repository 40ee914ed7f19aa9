//! Where the storage service's replies go at layer 2: to the MAC that ARP (RFC 826) resolved for the user's
//! IP, or for the uplink's gateway when the user is off the uplink subnet, as a host stack sends to its
//! neighbours; never to a request's source MAC, which any host on the link can set (docs/block-io.md).
//!
//! Nothing is learned here: the switching unit already learns underlay neighbours from the ARP requests it
//! answers for the uplink's address (the storage address) and from the replies to it, and the tunnel control
//! publishes them to every worker (`NeighborView`, docs/tunnels.md). This reads that view and, for a next hop
//! without a MAC, asks for one through the ARP requests tunnels send (`TunnelShared::asks`). The control side
//! keeps every storage user's next hop resolved on a timer (`TunnelControl::keep_resolved`).
use std::net::Ipv4Addr;
use std::sync::Arc;

use switchyard_overlay::{NeighborView, TunnelShared, Underlay};
use switchyard_pipeline::Side;
use switchyard_unit_abi::{mix, Reader};
use switchyard_wire::MacAddr;

/// Next hops one worker remembers asking for (a hashed filter: a collision only asks again sooner).
const ASK_SLOTS: usize = 16;
/// A worker asks for one next hop at most this often (10 per second, as tunnels repeat theirs).
const ASKS_PER_SECOND: u64 = 10;

/// One worker's view of the neighbours its replies go to.
pub struct ReplyNeighbors {
    shared: Arc<TunnelShared>,
    reader: Reader,
    current: Arc<NeighborView>,
    underlay: Underlay,
    /// (next hop, TSC) of recent asks.
    asked: [(Ipv4Addr, u64); ASK_SLOTS],
    ask_cycles: u64,
}

impl ReplyNeighbors {
    pub fn new(shared: Arc<TunnelShared>, underlay: Underlay, tsc_hz: u64) -> Self {
        ReplyNeighbors {
            reader: shared.view.reader(),
            current: shared.view.active(Side::Vm),
            shared,
            underlay,
            asked: [(Ipv4Addr::UNSPECIFIED, 0); ASK_SLOTS],
            ask_cycles: tsc_hz / ASKS_PER_SECOND,
        }
    }

    /// Picks up a newer neighbour view (at a quiescent point).
    pub fn refresh(&mut self) {
        if let Some(generation) = self.reader.moved(&self.shared.view) {
            self.current = self.shared.view.active(Side::Vm);
            self.reader.announce(generation);
        }
    }

    /// The MAC a reply to `ip` goes to: its next hop's (`port.next_hop_mac` if configured, else learned by
    /// ARP); `None` while unresolved, or with no route (off the subnet, no gateway).
    pub fn mac_of(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        let next_hop = self.underlay.next_hop(ip)?;
        self.underlay.vtep.next_hop_mac.or_else(|| self.current.macs.get(&next_hop).copied())
    }

    /// Has an ARP request sent for `ip`'s next hop (by a worker's tunnel stage), unless this worker asked for
    /// it within the last 100 ms or the next hop's MAC is configured. No allocation, no syscall: a push on a
    /// bounded queue, dropped when it is full (the control side asks again within a second).
    pub fn ask(&mut self, ip: Ipv4Addr, now: u64) {
        let Some(next_hop) = self.underlay.next_hop(ip) else { return };
        if self.underlay.vtep.next_hop_mac.is_some() {
            return;
        }
        let slot = &mut self.asked[(mix(u64::from(u32::from(next_hop))) as usize) % ASK_SLOTS];
        if slot.0 == next_hop && slot.1 != 0 && now.wrapping_sub(slot.1) < self.ask_cycles {
            return;
        }
        *slot = (next_hop, now.max(1));
        let _ = self.shared.asks.push(next_hop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_overlay::TunnelLimits;
    use switchyard_pipeline::PortId;
    use switchyard_model::VtepConfig;

    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
    const ON_LINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
    const OFF_LINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const HZ: u64 = 1000;

    fn neighbors(gateway: Option<Ipv4Addr>, next_hop_mac: Option<MacAddr>) -> (ReplyNeighbors, Arc<TunnelShared>) {
        let shared = Arc::new(TunnelShared::new(TunnelLimits { packets: 4, bytes: 1 << 16, resolve_timeout_ms: 100 }));
        let vtep = VtepConfig { address: SERVER, prefix_len: 24, gateway, next_hop_mac, mtu: 1500 };
        let underlay = Underlay { port: PortId(0), mac: MacAddr([2, 0, 0, 0, 0, 1]), vtep, gateway_role: None };
        (ReplyNeighbors::new(shared.clone(), underlay, HZ), shared)
    }

    #[test]
    fn a_user_on_link_resolves_to_its_own_mac_one_off_link_to_the_gateways() {
        let (mut n, shared) = neighbors(Some(GATEWAY), None);
        assert_eq!((n.mac_of(ON_LINK), n.mac_of(OFF_LINK)), (None, None));
        let (user_mac, gateway_mac) = (MacAddr([2, 0, 0, 0, 0, 7]), MacAddr([2, 0, 0, 0, 0, 0xfe]));
        shared.publish([(ON_LINK, user_mac), (GATEWAY, gateway_mac)].into_iter().collect());
        assert_eq!(n.mac_of(ON_LINK), None, "a new view is read at a quiescent point");
        n.refresh();
        assert_eq!((n.mac_of(ON_LINK), n.mac_of(OFF_LINK)), (Some(user_mac), Some(gateway_mac)));
        let (n, _) = neighbors(None, None);
        assert_eq!(n.mac_of(OFF_LINK), None, "no route");
        let configured = MacAddr([2, 0, 0, 0, 0, 0x99]);
        let (n, _) = neighbors(Some(GATEWAY), Some(configured));
        assert_eq!((n.mac_of(ON_LINK), n.mac_of(OFF_LINK)), (Some(configured), Some(configured)));
    }

    #[test]
    fn asks_go_for_the_next_hop_at_most_every_100_ms_per_worker() {
        let (mut n, shared) = neighbors(Some(GATEWAY), None);
        n.ask(ON_LINK, 10);
        n.ask(ON_LINK, 60);
        n.ask(OFF_LINK, 60);
        n.ask(ON_LINK, 110);
        let asked: Vec<_> = std::iter::from_fn(|| shared.asks.pop()).collect();
        assert_eq!(asked, [ON_LINK, GATEWAY, ON_LINK]);
        let (mut n, shared) = neighbors(Some(GATEWAY), Some(MacAddr([2, 0, 0, 0, 0, 0x99])));
        n.ask(ON_LINK, 0);
        assert!(shared.asks.is_empty(), "a configured next-hop MAC is never asked for");
    }
}
