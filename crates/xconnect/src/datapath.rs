//! The cross-connect stage.
use switchyard_pipeline::{Burst, DropReason, PacketBuf, PortId, Stage, Verdict};
use switchyard_wire::{EthernetFrame, MacAddr};

/// Where packets from one input port go, and the addresses they get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub out: PortId,
    /// The output port's own MAC.
    pub src: MacAddr,
    /// The next hop's MAC on the output port.
    pub dst: MacAddr,
}

/// Forwards each input port to its route; ports without one drop (`NoForwardingRule`).
#[derive(Debug, Clone, Default)]
pub struct CrossConnect {
    /// Indexed by input port id.
    routes: Vec<Option<Route>>,
}

impl CrossConnect {
    pub fn new(routes: impl IntoIterator<Item = (PortId, Route)>) -> Self {
        let mut table = Vec::new();
        for (in_port, route) in routes {
            if table.len() <= in_port.index() {
                table.resize(in_port.index() + 1, None);
            }
            table[in_port.index()] = Some(route);
        }
        CrossConnect { routes: table }
    }
}

impl<P: PacketBuf> Stage<P> for CrossConnect {
    fn name(&self) -> &'static str {
        "cross-connect"
    }

    fn process(&mut self, burst: &mut Burst<P>) {
        // One lookup per burst: every packet of a burst came in on the same port.
        let Some(route) = self.routes.get(burst.in_port().index()).copied().flatten() else {
            burst.decide_all(Verdict::Drop(DropReason::NoForwardingRule));
            return;
        };
        for (packet, verdict) in burst.iter_mut() {
            *verdict = match EthernetFrame::new_checked(packet.data_mut()) {
                Ok(mut frame) => {
                    frame.set_dst(route.dst);
                    frame.set_src(route.src);
                    Verdict::Forward(route.out)
                }
                Err(_) => Verdict::Drop(DropReason::TruncatedEthernet),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_pipeline::BytesPacket;

    const SRC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xaa]);
    const DST: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xbb]);

    fn frame(len: usize) -> BytesPacket {
        let mut bytes: Vec<u8> = (0..len as u8).collect();
        if len >= 14 {
            bytes[12..14].copy_from_slice(&[0x08, 0x00]);
        }
        BytesPacket::new(&bytes)
    }

    fn stage() -> CrossConnect {
        CrossConnect::new([(PortId(0), Route { out: PortId(1), src: SRC, dst: DST })])
    }

    #[test]
    fn rewrites_addresses_and_forwards() {
        let mut burst = Burst::new(PortId(0));
        burst.push(frame(60)).unwrap();
        stage().process(&mut burst);
        assert_eq!(burst.verdicts(), &[Verdict::Forward(PortId(1))]);
        burst.drain(|p, _| {
            assert_eq!(&p.data()[..6], &DST.0);
            assert_eq!(&p.data()[6..12], &SRC.0);
            assert_eq!(&p.data()[12..], &frame(60).data()[12..], "only the addresses change");
        });
    }

    #[test]
    fn runts_are_dropped_by_name() {
        let mut burst = Burst::new(PortId(0));
        for len in [0, 1, 13, 14] {
            burst.push(frame(len)).unwrap();
        }
        stage().process(&mut burst);
        let truncated = Verdict::Drop(DropReason::TruncatedEthernet);
        assert_eq!(burst.verdicts(), &[truncated, truncated, truncated, Verdict::Forward(PortId(1))]);
    }

    #[test]
    fn a_port_without_route_drops_everything() {
        for port in [PortId(1), PortId(7)] {
            let mut burst = Burst::new(port);
            burst.push(frame(60)).unwrap();
            stage().process(&mut burst);
            assert_eq!(burst.verdicts(), &[Verdict::Drop(DropReason::NoForwardingRule)]);
        }
    }

    #[test]
    fn final_verdicts_are_left_alone() {
        let mut burst = Burst::new(PortId(0));
        burst.push(frame(60)).unwrap();
        burst.decide_all(Verdict::Drop(DropReason::MultiSegmentMbuf));
        stage().process(&mut burst);
        assert_eq!(burst.verdicts(), &[Verdict::Drop(DropReason::MultiSegmentMbuf)]);
    }
}
