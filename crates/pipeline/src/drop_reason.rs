//! Every packet the switch does not deliver ends under one of these names,
//! each with its own counter (grout-style named drop nodes).

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])+ $variant:ident => $name:literal,)+) => {
        /// Why a packet was dropped. The `name()` is the stable key used in stats output.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)+];
            pub const COUNT: usize = Self::ALL.len();

            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)+
                }
            }

            /// The doc line, for docs/drop-reasons.md and the metrics' HELP text.
            pub fn description(self) -> &'static str {
                match self {
                    $(DropReason::$variant => concat!($($doc),+).trim_ascii(),)+
                }
            }
        }
    };
}

drop_reasons! {
    /// The mbuf chains several segments; stages work on one contiguous buffer.
    MultiSegmentMbuf => "multi_segment_mbuf",
    /// Shorter than an Ethernet header (a runt).
    TruncatedEthernet => "truncated_ethernet",
    /// The receiving port has no forwarding rule (no `forward_to`, no unit decision).
    NoForwardingRule => "no_forwarding_rule",
    /// A stage chose an output port that does not exist.
    UnknownOutputPort => "unknown_output_port",
    /// No stage gave the packet a verdict.
    NoVerdict => "no_verdict",
    /// The packet was meant for the control plane, which has no handler for it.
    NoControlPath => "no_control_path",
    /// The transmit queue did not take the packet: its ring was full or the driver
    /// failed to send (the unsent tail of a partial tx burst).
    TxRefused => "tx_refused",
    /// A flood copy or head-end replica could not be made: the mempool was empty
    /// or the burst already made its maximum of copies.
    CopyNotMade => "copy_not_made",
    /// A VM port is bound to no virtual network, so its frames have nowhere to go.
    PortNotInNetwork => "port_not_in_network",
    /// The source MAC is a group (multicast/broadcast) address: no valid frame has one.
    InvalidSourceMac => "invalid_source_mac",
    /// The destination is on the port the frame came from (no hairpin forwarding).
    SamePort => "same_port",
    /// A broadcast/unknown frame has no port or VTEP to flood to in its network.
    FloodNoMembers => "flood_no_members",
    /// The destination MAC is behind a remote VTEP, but no uplink carries the overlay.
    NoUplink => "no_uplink",
    /// The remote VTEP is off the uplink subnet and no gateway is configured.
    NoRouteToVtep => "no_route_to_vtep",
    /// Encapsulated, the frame would exceed the uplink MTU; VTEPs must not
    /// fragment (RFC 7348 section 4.3).
    ExceedsUplinkMtu => "exceeds_uplink_mtu",
    /// The next hop towards the remote VTEP has no resolved MAC yet (an ARP request was
    /// sent) and the frame could not wait for it (no tunnel stage, or not encapsulated).
    NextHopUnresolved => "next_hop_unresolved",
    /// The packet lacks headroom for the outer headers.
    NoHeadroom => "no_headroom",
    /// Neither ARP nor IPv4: the uplink carries only the overlay.
    UplinkNotOverlay => "uplink_not_overlay",
    /// ARP on the uplink that is not for the local VTEP address.
    ArpNotForUs => "arp_not_for_us",
    /// An ARP packet too short, or not Ethernet/IPv4 ARP.
    MalformedArp => "malformed_arp",
    /// The outer IPv4 header is truncated, has IHL < 5, or a total length beyond the frame.
    MalformedOuterIpv4 => "malformed_outer_ipv4",
    /// The outer IPv4 header checksum is wrong.
    BadOuterIpv4Checksum => "bad_outer_ipv4_checksum",
    /// The outer IPv4 destination is not the local VTEP address.
    VxlanWrongDestination => "vxlan_wrong_destination",
    /// The outer IPv4 source cannot be a VTEP: 0.0.0.0, loopback 127/8, multicast
    /// 224/4, class E 240/4, broadcast 255.255.255.255, or the local VTEP address
    /// itself (RFC 1122 section 3.2.1.3); never learned.
    MartianOuterSource => "martian_outer_source",
    /// The outer IPv4 TTL is 0: no router forwards such a packet (RFC 1122 section 3.2.1.7).
    OuterTtlZero => "outer_ttl_zero",
    /// IPv4 to the VTEP that is not UDP to port 4789.
    NotVxlan => "not_vxlan",
    /// An outer IPv4 fragment: VTEPs do not reassemble (RFC 7348 section 4.3).
    OuterFragment => "outer_fragment",
    /// The outer UDP or VXLAN header is cut short, or the UDP length disagrees with IPv4's.
    TruncatedVxlan => "truncated_vxlan",
    /// The VXLAN I flag is clear: the VNI is not valid (RFC 7348 section 5).
    VxlanFlagNotSet => "vxlan_flag_not_set",
    /// The VNI names no network configured here.
    UnknownVni => "unknown_vni",
    /// The encapsulated frame is shorter than an Ethernet header.
    TruncatedInnerEthernet => "truncated_inner_ethernet",
    /// A decapsulated frame for a MAC behind another VTEP: VTEPs do not relay
    /// between tunnels (split horizon).
    RemoteToRemote => "remote_to_remote",
    /// A decapsulated frame would be relayed back to the VTEP it came from (two
    /// hosts each relaying a migrating VM to the other).
    RelayLoop => "relay_loop",
    /// A migrating VM's buffer on this worker reached its packet or byte limit,
    /// or the worker already buffers for as many VMs as it can.
    MigrationBufferFull => "migration_buffer_full",
    /// A loaded switching unit returned a verdict this daemon cannot read (a
    /// drop reason or verdict kind it does not know).
    UnitFault => "unit_fault",
    /// A packet whose address was to be rewritten has a malformed IPv4 header
    /// (IHL < 5, or its header or total length beyond the frame).
    RewriteMalformedIpv4 => "rewrite_malformed_ipv4",
    /// A packet whose address was to be rewritten lacks its TCP or UDP checksum
    /// (the header is cut short, or a first fragment is too short to hold it), so
    /// the checksum could not be fixed.
    RewriteTruncatedL4 => "rewrite_truncated_l4",
    /// An ICMP error whose address was to be rewritten does not carry a readable
    /// IPv4 header of the packet it is about (shorter than 20 bytes, not version 4, IHL < 5).
    RewriteMalformedIcmpError => "rewrite_malformed_icmp_error",
    /// A datagram to the address-migration report address that is not a report:
    /// fragmented, a bad IPv4 or UDP header, shorter than 20 bytes, or the wrong
    /// magic, version or kind.
    MalformedAddressReport => "malformed_address_report",
    /// On an inter-cloud gateway: a decapsulated frame whose destination MAC has
    /// no remote endpoint (forwarding table 2) and no local port; not flooded.
    GatewayUnknownDestination => "gateway_unknown_destination",
    /// On an inter-cloud gateway: broadcast or multicast from the tunnel that is
    /// not an ARP request the gateway can answer; the broadcast domain is not
    /// extended into this cloud.
    GatewayBroadcast => "gateway_broadcast",
    /// A tunnel coming up on demand had no room for the frame: its queue on this worker
    /// reached `tunnels.queue_packets` or `queue_bytes`, or the worker already waits for
    /// as many tunnels as it can (docs/tunnels.md).
    TunnelQueueFull => "tunnel_queue_full",
    /// A frame waited in a tunnel's queue for `tunnels.resolve_timeout_ms` and the next
    /// hop's MAC never came (no ARP reply).
    TunnelUnresolved => "tunnel_unresolved",
    /// A datagram to the storage service that is not a request: shorter than its header,
    /// bad magic or version, a payload length that does not match
    /// (docs/storage-protocol.md).
    StorageMalformed => "storage_malformed",
    /// A storage request naming a user the server does not have; never answered.
    StorageUnknownUser => "storage_unknown_user",
    /// A storage request whose MAC does not verify under its user's secret (forged,
    /// corrupted, or another user's id); never answered.
    StorageBadMac => "storage_bad_mac",
    /// An authenticated storage request from an IP the user is not assigned (a replay from
    /// elsewhere); never answered.
    StorageWrongSource => "storage_wrong_source",
    /// A retransmitted storage request that is executing now: its reply is coming.
    StorageExecuting => "storage_executing",
    /// A WRITE fragment that found no free reassembly slot, or differs from its I/O's first
    /// fragment; the client retransmits.
    StorageReassembly => "storage_reassembly",
    /// A done READ or INFO asked for again more often than the server repeats it (3 times
    /// per request id).
    StorageRepeatLimit => "storage_repeat_limit",
    /// A frame to the storage service whose destination MAC is not the server's (another
    /// host's, or broadcast/multicast: RFC 1122 section 3.3.6); not served.
    StorageWrongDestinationMac => "storage_wrong_destination_mac",
    /// A storage request whose IPv4 header checksum is wrong; not served.
    StorageBadIpv4Checksum => "storage_bad_ipv4_checksum",
    /// An authenticated storage request from a user's IP that has no MAC resolved by ARP
    /// yet (nor its gateway, off the uplink subnet): not executed, an ARP request is sent and
    /// the client retransmits (docs/block-io.md).
    StorageUnresolved => "storage_unresolved",
    /// An authenticated storage request whose source MAC is not the one resolved by ARP for
    /// the user's IP (a replay from another host on the link); not executed, nothing is sent.
    StorageWrongSourceMac => "storage_wrong_source_mac",
}

impl DropReason {
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason numbered `code` (its index), for verdicts that crossed the unit ABI.
    pub fn from_index(code: usize) -> Option<DropReason> {
        Self::ALL.get(code).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_once_in_index_order() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert!(!reason.description().is_empty());
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn the_docs_table_lists_every_reason_with_its_description() {
        let table = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/drop-reasons.md")).unwrap();
        for reason in DropReason::ALL {
            let row = format!("| `{}` | {} |", reason.name(), reason.description());
            assert!(table.contains(&row), "docs/drop-reasons.md lacks the row {row}");
        }
    }
}
