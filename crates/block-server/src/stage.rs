//! The block-I/O stage (docs/block-io.md): storage requests to the service address and port are taken out of the
//! burst, handled by the `Service`, executed through this worker's io_uring (no blocking call), and answered
//! in new frames back out of the port they came in (docs/storage-protocol.md).
//!
//! Per burst: each request datagram is absorbed (or dropped under its refusal's name); one-datagram replies
//! go out in the same burst as made packets. Replies go to the MAC ARP resolved for the user's IP
//! (`neighbors`), never to a request's source MAC: a request from another source MAC is not executed. Per loop turn (`quiescent`): one `submit`, completions polled
//! without a syscall. `release` sends the replies of finished I/Os, a READ's data in fragments.
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam::utils::CachePadded;
use rustc_hash::FxHashMap;

use super::neighbors::ReplyNeighbors;
use super::service::{Action, Io, IoKind, Refusal, Reply, Service, ServiceCounters};
use super::version::StorageVersion;
use switchyard_io_ring::{BufferLease, FallocateMode, FileSlot, IoRing};
use switchyard_pipeline::{Allocator, Burst, DropReason, PacketBuf, PortId, Stage, Verdict, BURST_SIZE};
use switchyard_unit_abi::{Reader, Versioned};
use switchyard_wire::block::{ImageInfo, Status, MAX_FRAGMENT_PAYLOAD};
use switchyard_wire::ethernet::{EthernetFrame, EthernetRepr};
use switchyard_wire::ipv4::{Ipv4Packet, Ipv4Repr};
use switchyard_wire::udp::{UdpDatagram, UdpRepr};
use switchyard_wire::{ethernet, ipv4, udp, MacAddr};

/// Ethernet + IPv4 (no options) + UDP in front of every reply datagram.
const FRAME_HEADERS: usize = 14 + 20 + 8;

/// Where the service listens: the port's MAC, the service IP and UDP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceAddress {
    pub port: PortId,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub udp_port: u16,
}

/// Where a reply goes: the user's IP and port, and the MAC resolved for the IP (of a request: its source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub udp_port: u16,
}

/// A finished I/O's reply waiting to be sent, with a READ's data.
struct Finished {
    reply: Reply<Peer>,
    data: Option<(BufferLease, u32)>,
    /// Bytes of the data sent so far.
    sent: u32,
}

pub struct BlockIoStage<P> {
    address: ServiceAddress,
    versions: Arc<Versioned<StorageVersion>>,
    reader: Reader,
    current: Arc<StorageVersion>,
    /// Image id -> the ring's file slot (`quiescent` attaches the files of each new version).
    slots: FxHashMap<u32, FileSlot>,
    ring: IoRing,
    service: Service<Peer>,
    neighbors: ReplyNeighbors,
    finished: VecDeque<Finished>,
    alloc: Allocator<P>,
    /// Milliseconds since the Unix epoch at the last turn (image use records), from the TSC.
    now_ms: u64,
    now: u64,
    /// (Unix ms, TSC) at construction, and the TSC rate: `now_ms` without a clock call per turn.
    clock: (u64, u64, u64),
}

impl<P: PacketBuf> BlockIoStage<P> {
    /// `in_flight` I/Os at once (the ring needs as many buffers), `writes` WRITEs in reassembly, dropped
    /// after `reassembly_timeout` without a fragment; times in TSC cycles (`tsc` now, `tsc_hz` per second).
    /// Replies go to the MACs `neighbors` resolves.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        address: ServiceAddress,
        versions: Arc<Versioned<StorageVersion>>,
        neighbors: ReplyNeighbors,
        ring: IoRing,
        (in_flight, writes): (usize, usize),
        reassembly_timeout: u64,
        (tsc, tsc_hz): (u64, u64),
        alloc: Allocator<P>,
        counters: Arc<CachePadded<ServiceCounters>>,
    ) -> Self {
        let current = versions.active(switchyard_pipeline::Side::Uplink);
        let mut service = Service::new(current.catalog.clone(), in_flight, writes, reassembly_timeout);
        service.counts = counters;
        let mut stage = BlockIoStage {
            address,
            reader: versions.reader(),
            versions,
            current: Arc::default(),
            slots: FxHashMap::default(),
            ring,
            service,
            neighbors,
            finished: VecDeque::with_capacity(in_flight),
            alloc,
            now_ms: 0,
            now: tsc,
            clock: (switchyard_model::unix_ms(std::time::SystemTime::now()), tsc, tsc_hz.max(1)),
        };
        stage.install(current);
        stage
    }

    pub fn service(&self) -> &Service<Peer> {
        &self.service
    }

    /// Attaches the files of `version` to ring slots (a syscall per change of storage, never per packet).
    fn install(&mut self, version: Arc<StorageVersion>) {
        // A deleted image's file is let go of here, so its inode does not outlive the delete.
        let ring = &mut self.ring;
        self.slots.retain(|id, slot| {
            let keep = version.files.contains_key(id);
            if !keep {
                let _ = ring.detach_file(*slot);
            }
            keep
        });
        let mut next = 0;
        for (id, image) in &version.files {
            while self.slots.values().any(|s| s.0 == next) {
                next += 1;
            }
            let slot = *self.slots.entry(*id).or_insert(FileSlot(next));
            if let Err(e) = self.ring.attach_file(slot, image.file.as_ref()) {
                log::error!("block-I/O: cannot register the file of image {id}: {e}");
                self.slots.remove(id);
            }
        }
        self.service.set_catalog(version.catalog.clone());
        self.current = version;
    }

    /// The storage request in `frame`, if it is one: its source (the frame's source MAC), and the UDP payload
    /// (to the IPv4 total and UDP lengths: Ethernet padding is not part of it); or why it is dropped: a group
    /// source MAC, a destination MAC not the server's, a bad IPv4 header checksum. Anything else, malformed
    /// IPv4 to this address too, is left to the unit and its drop reasons.
    fn request_in<'a>(&self, bytes: &'a [u8]) -> Option<Result<(Peer, &'a [u8]), DropReason>> {
        let frame = EthernetFrame::new_checked(bytes).ok()?;
        // Untagged: the replies carry no tag.
        if frame.header_len() != ethernet::HEADER_LEN || frame.ethertype() != ethernet::ethertype::IPV4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(frame.payload()).ok()?;
        if ip.dst_addr() != self.address.ip || ip.protocol() != ipv4::protocol::UDP || ip.is_fragment() {
            return None;
        }
        let udp = UdpDatagram::new_checked(ip.payload()).ok()?;
        if udp.dst_port() != self.address.udp_port {
            return None;
        }
        // No valid frame has a group source MAC; a host takes unicast IPv4 only in frames to its own MAC
        // (RFC 1122 section 3.3.6), and only with a good header checksum (RFC 791).
        if frame.src().is_multicast() {
            return Some(Err(DropReason::InvalidSourceMac));
        }
        if frame.dst() != self.address.mac {
            return Some(Err(DropReason::StorageWrongDestinationMac));
        }
        if !ip.verify_checksum() {
            return Some(Err(DropReason::StorageBadIpv4Checksum));
        }
        let peer = Peer { mac: frame.src(), ip: ip.src_addr(), udp_port: udp.src_port() };
        let start = ethernet::HEADER_LEN + ip.header_len() + udp::HEADER_LEN;
        Some(Ok((peer, bytes.get(start..start + udp.payload().len())?)))
    }

    /// What to do with the request datagram from `source`: authenticated first, then sent on only from the
    /// MAC resolved for the user's IP, with the replies addressed to that MAC. A request from an unresolved
    /// IP, or from another MAC (a replay by another host on the link, or the user's new NIC before ARP tells),
    /// is not executed; either has the user's next hop asked for again.
    fn serve(&mut self, source: Peer, datagram: &[u8]) -> Action<Peer> {
        if let Err(refusal) = self.service.authenticate(datagram, source.ip) {
            return Action::Refuse(refusal);
        }
        match self.neighbors.mac_of(source.ip) {
            Some(mac) if mac == source.mac => self.service.handle_authenticated(datagram, source, self.now),
            resolved => {
                self.neighbors.ask(source.ip, self.now);
                Action::Refuse(if resolved.is_some() { Refusal::WrongSourceMac } else { Refusal::Unresolved })
            }
        }
    }

    /// Starts `io` on the ring; a refusal (no buffer, a full queue, no file) completes it at once with ENOMEM
    /// or EIO and returns its reply.
    fn submit(&mut self, io: Io) -> Option<Reply<Peer>> {
        let tag = u64::from(io.token);
        let result = match (self.slots.get(&io.image).copied(), io.kind) {
            (None, _) => Err(libc::EIO),
            (Some(slot), IoKind::Read | IoKind::Write) => match self.ring.take_buffer() {
                None => Err(libc::ENOMEM),
                Some(mut lease) => {
                    if io.kind == IoKind::Write {
                        let data = self.service.write_data(&io).unwrap_or_default();
                        if let Ok(buffer) = self.ring.buffer_mut(&mut lease) {
                            buffer[..data.len()].copy_from_slice(data);
                        }
                    }
                    let queued = match (io.kind, io.fua) {
                        (IoKind::Read, _) => self.ring.read(slot, io.offset, lease, io.len, tag),
                        (_, false) => self.ring.write(slot, io.offset, lease, io.len, tag),
                        (_, true) => self.ring.write_then_fsync(slot, io.offset, lease, io.len, true, tag),
                    };
                    queued.map_err(|refused| {
                        let _ = self.ring.release_buffer(refused.buffer);
                        libc::ENOMEM
                    })
                }
            },
            (Some(slot), IoKind::Flush) => self.ring.fsync(slot, true, tag).map_err(|_| libc::ENOMEM),
            (Some(slot), IoKind::Trim | IoKind::WriteZeroes) => {
                let mode = if io.kind == IoKind::Trim { FallocateMode::PunchHole } else { FallocateMode::ZeroRange };
                let (offset, len) = (io.offset, u64::from(io.len));
                let queued = if io.fua {
                    self.ring.fallocate_then_fsync(slot, offset, len, mode, true, tag)
                } else {
                    self.ring.fallocate(slot, offset, len, mode, tag)
                };
                queued.map_err(|_| libc::ENOMEM)
            }
        };
        if let Some(image) = self.current.files.get(&io.image) {
            image.last_use.touch(self.now_ms);
        }
        let errno = result.err()?;
        self.service.complete(io.token, Err(errno)).map(|(reply, _)| reply)
    }

    /// Writes a reply frame (headers, datagram) into a new buffer; `None` if none could be made.
    fn reply_frame(&self, reply: &Reply<Peer>, fragment_offset: u32, payload: &[u8]) -> Option<P> {
        let mut packet = (self.alloc)()?;
        let len = FRAME_HEADERS + 64 + payload.len();
        let frame = packet.append(len)?;
        let datagram_len = reply.write(fragment_offset, payload, &mut frame[FRAME_HEADERS..])?;
        write_headers(frame, &self.address, &reply.peer, datagram_len);
        Some(packet)
    }

    fn one_reply(&self, reply: &Reply<Peer>) -> Option<P> {
        let mut info = [0; ImageInfo::LEN];
        match reply.info {
            Some(i) if i.emit(&mut info).is_ok() => self.reply_frame(reply, 0, &info),
            _ => self.reply_frame(reply, 0, &[]),
        }
    }

    /// Completions into `finished` (called every turn).
    fn poll(&mut self) {
        let BlockIoStage { ring, service, finished, .. } = self;
        ring.poll_completions(|tag, result, buffer| {
            let Some((reply, io)) = service.complete(tag as u32, result.map_err(|e| e.errno())) else { return };
            let data = match (io.kind, reply.status, buffer) {
                (IoKind::Read, Status::Ok, Some(buffer)) => Some((buffer.keep(), io.len)),
                _ => None,
            };
            finished.push_back(Finished { reply, data, sent: 0 });
        });
    }
}

impl<P: PacketBuf> Stage<P> for BlockIoStage<P> {
    fn name(&self) -> &'static str {
        "block-io"
    }

    fn process(&mut self, burst: &mut Burst<P>) {
        if burst.in_port() != self.address.port {
            return;
        }
        for i in 0..burst.len() {
            let Some((packet, verdict)) = burst.slot_mut(i) else { continue };
            if verdict.is_final() {
                continue;
            }
            let (peer, datagram) = match self.request_in(packet.data()) {
                None => continue,
                Some(Err(reason)) => {
                    *verdict = Verdict::Drop(reason);
                    continue;
                }
                Some(Ok(request)) => request,
            };
            let action = self.serve(peer, datagram);
            *verdict = match action {
                Action::Refuse(refusal) => Verdict::Drop(drop_reason(refusal)),
                _ => Verdict::Absorbed,
            };
            let reply = match action {
                Action::Reply(reply) => Some(reply),
                Action::Execute(io) => self.submit(io),
                Action::Refuse(_) | Action::Kept => None,
            };
            if let Some(reply) = reply {
                match self.one_reply(&reply) {
                    Some(frame) => burst.add_made(frame, Verdict::Forward(self.address.port)),
                    None => burst.add_unmade(),
                }
            }
        }
    }

    fn quiescent(&mut self, now: u64) {
        self.now = now;
        self.neighbors.refresh();
        let (unix_ms, tsc, hz) = self.clock;
        self.now_ms = unix_ms + (now.wrapping_sub(tsc) as u128 * 1000 / u128::from(hz)) as u64;
        if let Some(generation) = self.reader.moved(&self.versions) {
            let version = self.versions.active(switchyard_pipeline::Side::Uplink);
            self.install(version);
            self.reader.announce(generation);
        }
        let _ = self.ring.submit();
        self.poll();
    }

    fn release(&mut self, burst: &mut Burst<P>) -> bool {
        if self.finished.is_empty() {
            return false;
        }
        burst.reset(self.address.port);
        let size = u32::from(MAX_FRAGMENT_PAYLOAD);
        while burst.made_count() < BURST_SIZE as u64 {
            let Some(mut finished) = self.finished.pop_front() else { break };
            let frame = match &finished.data {
                None => self.one_reply(&finished.reply),
                Some((lease, len)) => {
                    let end = (finished.sent + size).min(*len);
                    let data = self.ring.buffer(lease).map(|b| &b[finished.sent as usize..end as usize]).unwrap_or_default();
                    let frame = self.reply_frame(&finished.reply, finished.sent, data);
                    finished.sent = end;
                    frame
                }
            };
            match frame {
                Some(frame) => burst.add_made(frame, Verdict::Forward(self.address.port)),
                None => burst.add_unmade(),
            }
            match finished.data {
                Some((_, len)) if finished.sent < len => self.finished.push_front(finished),
                Some((lease, _)) => {
                    let _ = self.ring.release_buffer(lease);
                }
                None => {}
            }
        }
        true
    }
}

/// Ethernet, IPv4 and UDP headers of a reply from the service to `peer` (UDP checksum 0: "none", RFC 768;
/// the datagram carries its own MAC). `frame` holds at least `FRAME_HEADERS` bytes.
fn write_headers(frame: &mut [u8], from: &ServiceAddress, peer: &Peer, datagram_len: usize) {
    let ethernet = EthernetRepr { dst: peer.mac, src: from.mac, ethertype: ethernet::ethertype::IPV4, vlan: None };
    let ip = Ipv4Repr {
        src_addr: from.ip,
        dst_addr: peer.ip,
        protocol: ipv4::protocol::UDP,
        payload_len: udp::HEADER_LEN + datagram_len,
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
    };
    let udp = UdpRepr { src_port: from.udp_port, dst_port: peer.udp_port, payload_len: datagram_len };
    let l4 = ethernet::HEADER_LEN + ip.header_len();
    let _ = ethernet.emit(frame).and_then(|_| ip.emit(&mut frame[ethernet::HEADER_LEN..])).and_then(|_| udp.emit(&mut frame[l4..]));
}

pub fn drop_reason(refusal: Refusal) -> DropReason {
    match refusal {
        Refusal::Malformed => DropReason::StorageMalformed,
        Refusal::UnknownUser => DropReason::StorageUnknownUser,
        Refusal::BadMac => DropReason::StorageBadMac,
        Refusal::WrongSource => DropReason::StorageWrongSource,
        Refusal::Executing => DropReason::StorageExecuting,
        Refusal::Reassembly => DropReason::StorageReassembly,
        Refusal::RepeatLimit => DropReason::StorageRepeatLimit,
        Refusal::Unresolved => DropReason::StorageUnresolved,
        Refusal::WrongSourceMac => DropReason::StorageWrongSourceMac,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom};

    use super::*;
    use crate::service::{Catalog, ServiceImage, ServiceUser};
    use crate::version::ImageFile;
    use switchyard_model::VtepConfig;
    use switchyard_overlay::{TunnelLimits, TunnelShared, Underlay};
    use switchyard_io_ring::IoRingConfig;
    use switchyard_pipeline::BytesPacket;
    use switchyard_wire::block::{BlockPacket, BlockRepr, Flags, Op, UserKey};
    use switchyard_wire::checksum::checksum;

    const PORT: PortId = PortId(0);
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
    const SERVER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 7]);
    const USER: u32 = 7;
    const IMAGE: u32 = 3;
    const SIZE: u64 = 1 << 20;

    fn key() -> UserKey {
        UserKey::new([7; 32])
    }

    /// The neighbours the replies go to: the client at `CLIENT_MAC`, as ARP resolved it.
    fn neighbors(resolved: bool) -> (ReplyNeighbors, Arc<TunnelShared>) {
        let shared = Arc::new(TunnelShared::new(TunnelLimits { packets: 4, bytes: 1 << 16, resolve_timeout_ms: 100 }));
        if resolved {
            shared.publish([(CLIENT, CLIENT_MAC)].into_iter().collect());
        }
        let vtep = VtepConfig { address: SERVER, prefix_len: 24, gateway: None, next_hop_mac: None, mtu: 1500 };
        let underlay = Underlay { port: PORT, mac: SERVER_MAC, vtep, gateway_role: None };
        (ReplyNeighbors::new(shared.clone(), underlay, 1000), shared)
    }

    fn stage(file: &std::fs::File) -> BlockIoStage<BytesPacket> {
        stage_with(file, neighbors(true).0)
    }

    fn stage_with(file: &std::fs::File, neighbors: ReplyNeighbors) -> BlockIoStage<BytesPacket> {
        let mut catalog = Catalog::default();
        catalog.users.insert(USER, ServiceUser { id: USER, key: key(), ips: vec![CLIENT] });
        catalog.images.insert(IMAGE, ServiceImage { id: IMAGE, owner: USER, size: SIZE, read_only: false });
        let image = ImageFile { file: Arc::new(file.try_clone().unwrap()), last_use: Arc::default() };
        let version = StorageVersion { catalog: Arc::new(catalog), files: [(IMAGE, image)].into_iter().collect() };
        let address = ServiceAddress { port: PORT, mac: SERVER_MAC, ip: SERVER, udp_port: 10810 };
        let config = IoRingConfig { queue_depth: 64, buffers: 16, buffer_size: 64 * 1024, file_slots: 4 };
        let ring = IoRing::new(config).unwrap();
        let versions = Arc::new(Versioned::new(Arc::new(version)));
        let alloc = Box::new(|| Some(BytesPacket::new(&[])));
        BlockIoStage::new(address, versions, neighbors, ring, (16, 4), 1 << 40, (0, 1000), alloc, Arc::default())
    }

    /// A request frame from the client: Ethernet, IPv4, UDP, then the datagram.
    fn frame(header: BlockRepr, payload: &[u8]) -> BytesPacket {
        let mut datagram = vec![0; 64 + payload.len()];
        header.emit(&mut datagram).unwrap();
        datagram[64..].copy_from_slice(payload);
        BlockPacket::new_unchecked(&mut datagram[..]).fill_mac(&key());
        let mut frame = vec![0; FRAME_HEADERS + datagram.len()];
        let address = ServiceAddress { port: PORT, mac: CLIENT_MAC, ip: CLIENT, udp_port: 40000 };
        write_headers(&mut frame, &address, &Peer { mac: SERVER_MAC, ip: SERVER, udp_port: 10810 }, datagram.len());
        frame[FRAME_HEADERS..].copy_from_slice(&datagram);
        BytesPacket::new(&frame)
    }

    fn request(id: u64, op: Op, offset: u64, length: u32, fragment: (u32, u16)) -> BlockRepr {
        BlockRepr {
            op,
            flags: Flags::NONE,
            user_id: USER,
            image_id: IMAGE,
            request_id: id,
            offset,
            length,
            fragment_offset: fragment.0,
            payload_len: fragment.1,
            status: switchyard_wire::block::Status::Ok,
        }
    }

    /// The made frames of one burst through the stage, then whatever `release` sends once the I/O is done.
    fn run(stage: &mut BlockIoStage<BytesPacket>, frames: Vec<BytesPacket>) -> (Vec<Verdict>, Vec<Vec<u8>>) {
        let mut burst = Burst::new(PORT);
        for f in frames {
            burst.push(f).unwrap();
        }
        stage.process(&mut burst);
        let verdicts = burst.verdicts().to_vec();
        let mut out: Vec<Vec<u8>> = burst.made().iter().map(|(p, _)| p.data().to_vec()).collect();
        for turn in 0..1000u64 {
            stage.quiescent(turn);
            let mut released = Burst::new(PORT);
            while stage.release(&mut released) {
                out.extend(released.made().iter().map(|(p, _)| p.data().to_vec()));
                released = Burst::new(PORT);
            }
            if stage.service().in_flight() == 0 && turn > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        (verdicts, out)
    }

    /// A reply frame's addressing, and its datagram parsed after its MAC was checked.
    fn reply_of(frame: &[u8]) -> (BlockRepr, Vec<u8>) {
        assert_eq!((&frame[0..6], &frame[6..12]), (&CLIENT_MAC.0[..], &SERVER_MAC.0[..]));
        assert_eq!((&frame[26..30], &frame[30..34]), (&SERVER.octets()[..], &CLIENT.octets()[..]));
        assert_eq!(checksum(&frame[14..34]), 0, "a valid IPv4 header checksum");
        assert_eq!(u16::from_be_bytes([frame[36], frame[37]]), 40000, "back to the client's port");
        let packet = BlockPacket::new_checked(&frame[FRAME_HEADERS..]).unwrap();
        packet.verify_mac(&key()).unwrap();
        (BlockRepr::parse_reply(&packet).unwrap(), packet.payload().to_vec())
    }

    #[test]
    fn a_fragmented_write_lands_in_the_image_and_a_read_returns_it_in_fragments() {
        let mut file = tempfile::tempfile().unwrap();
        file.set_len(SIZE).unwrap();
        let mut stage = stage(&file);
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let fragments = [(0u32, 1408u16), (1408, 1408), (2816, 1280)]
            .map(|(at, len)| frame(request(100, Op::Write, 65536, 4096, (at, len)), &data[at as usize..at as usize + len as usize]));
        let (verdicts, out) = run(&mut stage, fragments.into());
        assert_eq!(verdicts, [Verdict::Absorbed; 3]);
        assert_eq!(out.len(), 1, "one reply to the WRITE");
        let (reply, _) = reply_of(&out[0]);
        assert_eq!((reply.op, reply.request_id, reply.status), (Op::Write, 100, switchyard_wire::block::Status::Ok));
        let mut on_disk = vec![0; 4096];
        file.seek(SeekFrom::Start(65536)).unwrap();
        file.read_exact(&mut on_disk).unwrap();
        assert_eq!(on_disk, data);

        let (_, out) = run(&mut stage, vec![frame(request(101, Op::Read, 65536, 4096, (0, 0)), &[])]);
        assert_eq!(out.len(), 3, "the data in three fragments");
        let mut read = vec![0; 4096];
        for f in &out {
            let (reply, payload) = reply_of(f);
            assert_eq!((reply.op, reply.request_id, reply.length), (Op::Read, 101, 4096));
            read[reply.fragment_offset as usize..][..payload.len()].copy_from_slice(&payload);
        }
        assert_eq!(read, data);
        let counts = &stage.service().counts;
        assert_eq!((counts.bytes_written.get(), counts.bytes_read.get()), (4096, 4096));
    }

    /// Alice's READ, captured and replayed from her IP with another source MAC, a broadcast or a multicast
    /// one: the datagram passes every check of the protocol (her MAC, her IP, an id in the window), so only
    /// layer 2 can tell. None of it may bring her data to that MAC.
    #[test]
    fn alices_read_replayed_with_another_or_a_group_source_mac_gets_no_data_to_that_mac() {
        let mut file = tempfile::tempfile().unwrap();
        file.set_len(SIZE).unwrap();
        std::io::Write::write_all(&mut file, &[0x5a; 4096]).unwrap();
        let mut stage = stage(&file);
        let read = || frame(request(10, Op::Read, 0, 4096, (0, 0)), &[]);
        let (verdicts, out) = run(&mut stage, vec![read()]);
        assert_eq!((verdicts, out.len()), (vec![Verdict::Absorbed], 3), "alice's own READ is served");
        let attacker = MacAddr([2, 0, 0, 0, 0, 0x66]);
        let cases = [
            (attacker, DropReason::StorageWrongSourceMac),
            (MacAddr::BROADCAST, DropReason::InvalidSourceMac),
            (MacAddr([1, 0, 0x5e, 0, 0, 1]), DropReason::InvalidSourceMac),
        ];
        let mut seen = Vec::new();
        for (mac, _) in cases {
            let mut replay = read();
            replay.data_mut()[6..12].copy_from_slice(&mac.0);
            let (verdicts, out) = run(&mut stage, vec![replay]);
            let to_mac = out.iter().filter(|f| f[0..6] == mac.0).count();
            seen.push(format!("from {mac}: {to_mac} frames to it, {} in all, {verdicts:?}", out.len()));
        }
        let expected: Vec<String> =
            cases.iter().map(|(mac, reason)| format!("from {mac}: 0 frames to it, 0 in all, [Drop({reason:?})]")).collect();
        assert_eq!(seen, expected);
    }

    /// A request with a bad IPv4 header checksum, or to a destination MAC not the server's (another host's,
    /// broadcast, multicast), is not the server's to serve, as a host stack sees it.
    #[test]
    fn a_bad_ipv4_checksum_or_another_destination_mac_is_dropped_unserved() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(SIZE).unwrap();
        let mut stage = stage(&file);
        let mut bad_checksum = frame(request(1, Op::Info, 0, 16, (0, 0)), &[]);
        bad_checksum.data_mut()[24] ^= 0x40;
        let mut cases = vec![(bad_checksum, DropReason::StorageBadIpv4Checksum)];
        for (id, mac) in [(2, MacAddr([2, 0, 0, 0, 0, 9])), (3, MacAddr::BROADCAST), (4, MacAddr([1, 0, 0x5e, 0, 0, 1]))] {
            let mut elsewhere = frame(request(id, Op::Info, 0, 16, (0, 0)), &[]);
            elsewhere.data_mut()[0..6].copy_from_slice(&mac.0);
            cases.push((elsewhere, DropReason::StorageWrongDestinationMac));
        }
        let expected: Vec<Verdict> = cases.iter().map(|(_, reason)| Verdict::Drop(*reason)).collect();
        let (verdicts, out) = run(&mut stage, cases.into_iter().map(|(frame, _)| frame).collect());
        assert_eq!((verdicts, out.len()), (expected, 0));
        assert_eq!(stage.service().counts.requests.get(), 0, "none reached the service");
    }

    /// Before ARP resolved the user's IP there is nowhere safe to reply: the request is not executed and an
    /// ARP request is asked for; once the MAC is known it is served, to that MAC.
    #[test]
    fn an_unresolved_user_is_asked_for_and_served_once_resolved() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(SIZE).unwrap();
        let (neighbors, shared) = neighbors(false);
        let mut stage = stage_with(&file, neighbors);
        let (verdicts, out) = run(&mut stage, vec![frame(request(1, Op::Info, 0, 16, (0, 0)), &[])]);
        assert_eq!((verdicts, out.len()), (vec![Verdict::Drop(DropReason::StorageUnresolved)], 0));
        assert_eq!(shared.asks.pop(), Some(CLIENT), "an ARP request for the client is asked for");
        let mut forged = frame(request(2, Op::Info, 0, 16, (0, 0)), &[]);
        forged.data_mut()[FRAME_HEADERS + 30] ^= 1;
        let (verdicts, _) = run(&mut stage, vec![forged]);
        assert_eq!(verdicts, [Verdict::Drop(DropReason::StorageBadMac)]);
        assert_eq!(shared.asks.pop(), None, "nothing is asked for an unauthenticated datagram");
        shared.publish([(CLIENT, CLIENT_MAC)].into_iter().collect());
        stage.quiescent(0);
        let (verdicts, out) = run(&mut stage, vec![frame(request(1, Op::Info, 0, 16, (0, 0)), &[])]);
        assert_eq!((verdicts, out.len()), (vec![Verdict::Absorbed], 1));
        assert_eq!(reply_of(&out[0]).0.status, switchyard_wire::block::Status::Ok);
    }

    #[test]
    fn refusals_are_dropped_under_their_names_and_other_traffic_is_left_alone() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(SIZE).unwrap();
        let mut stage = stage(&file);
        let mut forged = frame(request(1, Op::Read, 0, 512, (0, 0)), &[]);
        forged.data_mut()[FRAME_HEADERS + 30] ^= 1;
        let mut elsewhere = frame(request(2, Op::Read, 0, 512, (0, 0)), &[]);
        elsewhere.data_mut()[36..38].copy_from_slice(&4789u16.to_be_bytes());
        let beyond = frame(request(3, Op::Read, SIZE, 512, (0, 0)), &[]);
        let (verdicts, out) = run(&mut stage, vec![forged, elsewhere, beyond]);
        assert_eq!(verdicts, [Verdict::Drop(DropReason::StorageBadMac), Verdict::Pending, Verdict::Absorbed]);
        assert_eq!(out.len(), 1);
        assert_eq!(reply_of(&out[0]).0.status, switchyard_wire::block::Status::Invalid);
    }
}
