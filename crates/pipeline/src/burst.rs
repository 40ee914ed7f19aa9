//! A burst: up to `BURST_SIZE` packets received together on one port, each with its verdict.
use super::{PacketBuf, PortId, Verdict};

/// Packets per rx/tx call, as in DPDK's examples and testpmd.
pub const BURST_SIZE: usize = 32;

/// Packets stages may make per burst (flood copies, head-end replicas, ARP
/// requests): room for every packet of a burst to be copied to 16 places.
pub const MADE_PER_BURST: usize = 16 * BURST_SIZE;

/// Packets received together on one port, each with its verdict.
///
/// A slot's packet is `None` only after a stage took it (`Verdict::Consumed`).
pub struct Burst<P> {
    in_port: PortId,
    len: usize,
    packets: [Option<P>; BURST_SIZE],
    verdicts: [Verdict; BURST_SIZE],
    /// Packets stages made, sent after the received ones; never grows past its
    /// initial capacity, so making a packet allocates nothing but an mbuf.
    made: Vec<(P, Verdict)>,
    /// Packets stages meant to make but could not (pool empty or `made` full).
    unmade: u32,
    /// Made packets a stage took out of the burst (they were made all the same).
    made_taken: u32,
    /// A unit left a packet waiting for its tunnel's next hop (`DropReason::NextHopUnresolved`):
    /// the tunnel stage looks at the burst only then (docs/tunnels.md).
    unresolved: bool,
}

impl<P: PacketBuf> Burst<P> {
    pub fn new(in_port: PortId) -> Self {
        Burst {
            in_port,
            len: 0,
            packets: [const { None }; BURST_SIZE],
            verdicts: [Verdict::Pending; BURST_SIZE],
            made: Vec::with_capacity(MADE_PER_BURST),
            unmade: 0,
            made_taken: 0,
            unresolved: false,
        }
    }

    /// The port every packet of this burst came in on.
    pub fn in_port(&self) -> PortId {
        self.in_port
    }

    /// Starts a new, empty burst from `in_port`. The previous burst must have been drained.
    pub fn reset(&mut self, in_port: PortId) {
        debug_assert!(self.packets[..self.len].iter().all(Option::is_none), "burst not drained");
        debug_assert!(self.made.is_empty(), "burst not drained");
        self.in_port = in_port;
        self.len = 0;
        self.unmade = 0;
        self.made_taken = 0;
        self.unresolved = false;
    }

    /// Marks that some packet waits for its tunnel's next hop to resolve.
    pub fn note_unresolved(&mut self) {
        self.unresolved = true;
    }

    /// Whether a unit marked a packet as waiting for its tunnel (`note_unresolved`).
    pub fn has_unresolved(&self) -> bool {
        self.unresolved
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn is_full(&self) -> bool {
        self.len == BURST_SIZE
    }

    /// Adds a packet with a pending verdict; hands it back if the burst is full.
    pub fn push(&mut self, packet: P) -> Result<(), P> {
        if self.is_full() {
            return Err(packet);
        }
        self.packets[self.len] = Some(packet);
        self.verdicts[self.len] = Verdict::Pending;
        self.len += 1;
        Ok(())
    }

    /// Adds a packet with a verdict already given (by a stage on the other side
    /// of the unit ABI); hands it back if the burst is full.
    pub fn push_decided(&mut self, packet: P, verdict: Verdict) -> Result<(), P> {
        self.push(packet)?;
        self.verdicts[self.len - 1] = verdict;
        Ok(())
    }

    /// The packets whose verdict is not final yet, with their verdicts.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&mut P, &mut Verdict)> {
        self.packets[..self.len]
            .iter_mut()
            .zip(self.verdicts[..self.len].iter_mut())
            .filter(|(_, verdict)| !verdict.is_final())
            .filter_map(|(packet, verdict)| Some((packet.as_mut()?, verdict)))
    }

    /// The packet in slot `index` with its verdict, final or not: for a stage
    /// that takes up packets an earlier one dropped (the tunnel stage).
    #[inline]
    pub fn slot_mut(&mut self, index: usize) -> Option<(&mut P, &mut Verdict)> {
        if index >= self.len {
            return None;
        }
        Some((self.packets[index].as_mut()?, &mut self.verdicts[index]))
    }

    /// The packet in slot `index` with its verdict, if present and not final.
    /// For stages that make packets while deciding (iter_mut would hold the burst).
    #[inline]
    pub fn get_mut(&mut self, index: usize) -> Option<(&mut P, &mut Verdict)> {
        if index >= self.len || self.verdicts[index].is_final() {
            return None;
        }
        Some((self.packets[index].as_mut()?, &mut self.verdicts[index]))
    }

    /// Sets the verdict of every packet not decided yet.
    pub fn decide_all(&mut self, verdict: Verdict) {
        for (_, v) in self.iter_mut() {
            *v = verdict;
        }
    }

    /// A stage takes the packet in slot `index` (to buffer it, for instance).
    pub fn take(&mut self, index: usize) -> Option<P> {
        let packet = self.packets.get_mut(index)?.take()?;
        self.verdicts[index] = Verdict::Consumed;
        Some(packet)
    }

    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts[..self.len]
    }

    /// Adds a packet a stage made (a flood copy, an ARP request) with its final
    /// verdict. Past `MADE_PER_BURST` the packet is freed and counted as unmade.
    pub fn add_made(&mut self, packet: P, verdict: Verdict) {
        if self.made.len() < MADE_PER_BURST {
            self.made.push((packet, verdict));
        } else {
            self.unmade += 1;
        }
    }

    /// A stage could not make a packet it meant to (no mbuf for a copy).
    pub fn add_unmade(&mut self) {
        self.unmade += 1;
    }

    /// `count` packets could not be made (reported across the unit ABI).
    pub fn add_unmade_count(&mut self, count: u32) {
        self.unmade = self.unmade.saturating_add(count);
    }

    /// The packets stages made so far, with their verdicts.
    pub fn made(&self) -> &[(P, Verdict)] {
        &self.made
    }

    /// The packets stages made so far with their verdicts, for a stage that
    /// rewrites what leaves (the address rewrite after the switching unit).
    pub fn made_mut(&mut self) -> impl Iterator<Item = (&mut P, &mut Verdict)> {
        self.made.iter_mut().map(|(packet, verdict)| (packet, verdict))
    }

    /// Packets stages meant to make but could not.
    /// Made packet `index` with its verdict, for a stage that may take it.
    pub fn made_get_mut(&mut self, index: usize) -> Option<(&mut P, &mut Verdict)> {
        self.made.get_mut(index).map(|(packet, verdict)| (packet, verdict))
    }

    /// Takes made packet `index` out of the burst, keeping the others in order.
    pub fn take_made(&mut self, index: usize) -> Option<P> {
        let packet = (index < self.made.len()).then(|| self.made.remove(index).0);
        self.made_taken += u32::from(packet.is_some());
        packet
    }

    /// Packets stages made in this burst: still in it, taken out by a stage, or
    /// not made for want of a buffer.
    pub fn made_count(&self) -> u64 {
        self.made.len() as u64 + u64::from(self.made_taken) + u64::from(self.unmade)
    }

    pub fn unmade(&self) -> u32 {
        self.unmade
    }

    /// Hands every packet still present to `dispatch` with its verdict, in
    /// arrival order, then the packets stages made, and leaves the burst empty.
    pub fn drain(&mut self, mut dispatch: impl FnMut(P, Verdict)) {
        self.drain_slots(|_, packet, verdict| {
            if let Some(packet) = packet {
                dispatch(packet, verdict)
            }
        });
    }

    /// Like `drain`, but says where each packet was, and hands out received
    /// slots whose packet a stage took (as `None`).
    pub fn drain_slots(&mut self, mut each: impl FnMut(Slot, Option<P>, Verdict)) {
        for (i, (packet, verdict)) in self.packets[..self.len].iter_mut().zip(&self.verdicts[..self.len]).enumerate() {
            each(Slot::Received(i), packet.take(), *verdict);
        }
        self.len = 0;
        if !self.made.is_empty() {
            for (packet, verdict) in self.made.drain(..) {
                each(Slot::Made, Some(packet), verdict);
            }
        }
    }
}

/// Where a drained packet was in its burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The received packet at this index.
    Received(usize),
    /// A packet a stage made.
    Made,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BytesPacket, DropReason};

    fn burst_of(n: u8) -> Burst<BytesPacket> {
        let mut burst = Burst::new(PortId(3));
        for i in 0..n {
            burst.push(BytesPacket::new(&[i])).unwrap();
        }
        burst
    }

    #[test]
    fn push_refuses_past_burst_size() {
        let mut burst = burst_of(BURST_SIZE as u8);
        assert!(burst.is_full());
        assert_eq!(burst.push(BytesPacket::new(&[0xff])).unwrap_err().data(), &[0xff]);
    }

    #[test]
    fn iter_mut_skips_final_verdicts() {
        let mut burst = burst_of(4);
        let mut seen = 0;
        for (i, (_, verdict)) in burst.iter_mut().enumerate() {
            if i == 1 {
                *verdict = Verdict::Drop(DropReason::TruncatedEthernet);
            } else if i == 2 {
                *verdict = Verdict::Forward(PortId(1));
            }
            seen += 1;
        }
        assert_eq!(seen, 4);
        let live: Vec<u8> = burst.iter_mut().map(|(p, _)| p.data()[0]).collect();
        assert_eq!(live, vec![0, 2, 3], "a drop is final, a forward is not");
    }

    #[test]
    fn drain_hands_out_in_order_and_skips_taken() {
        let mut burst = burst_of(3);
        burst.decide_all(Verdict::Forward(PortId(0)));
        assert_eq!(burst.take(1).unwrap().data(), &[1]);
        assert!(burst.take(1).is_none());
        assert_eq!(burst.verdicts()[1], Verdict::Consumed);
        let mut out = Vec::new();
        burst.drain(|p, v| out.push((p.data()[0], v)));
        assert_eq!(out, vec![(0, Verdict::Forward(PortId(0))), (2, Verdict::Forward(PortId(0)))]);
        assert!(burst.is_empty());
        burst.reset(PortId(1));
        assert_eq!(burst.in_port(), PortId(1));
    }

    #[test]
    fn made_packets_drain_after_received_ones_and_are_bounded() {
        let mut burst = burst_of(1);
        burst.decide_all(Verdict::Forward(PortId(0)));
        for i in 0..MADE_PER_BURST + 2 {
            burst.add_made(BytesPacket::new(&[i as u8]), Verdict::Forward(PortId(1)));
        }
        burst.add_unmade();
        assert_eq!(burst.made().len(), MADE_PER_BURST);
        assert_eq!(burst.unmade(), 3, "two past the limit, one reported");
        let mut out = Vec::new();
        burst.drain(|p, v| out.push((p.data()[0], v)));
        assert_eq!(out.len(), 1 + MADE_PER_BURST);
        assert_eq!(out[0], (0, Verdict::Forward(PortId(0))), "received packets first");
        assert_eq!(out[1], (0, Verdict::Forward(PortId(1))));
        assert!(burst.made().is_empty());
        burst.reset(PortId(0));
        assert_eq!(burst.unmade(), 0);
    }
}
