//! Benchmark scenarios: the generator traffic, the stages under test, and what
//! testpmd mode they are judged against.
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapWriter};

use crate::dataplane::{cross_connect_pipeline, Pipeline, PortBinding};
use crate::wire::ethernet::ethertype;
use crate::wire::{ipv4, EthernetFrame, Ipv4Packet, MacAddr, UdpDatagram};

/// Distinct flows in a generator pcap.
const FLOWS: u16 = 1024;
/// Frame length on the wire without the FCS (a 64-byte Ethernet frame).
const FRAME_LEN: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Port to port, rewriting the Ethernet header (the cross-connect).
    Forward,
}

impl Scenario {
    pub const ALL: [Scenario; 1] = [Scenario::Forward];

    pub fn named(name: &str) -> Result<Scenario, String> {
        Self::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|s| s.name()).collect();
            format!("unknown bench scenario \"{name}\" (known: {})", known.join(", "))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Forward => "forward",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Scenario::Forward => "64-byte IPv4/UDP frames, 1024 flows, port to port with Ethernet rewrite",
        }
    }

    pub fn testpmd_modes(self) -> &'static [&'static str] {
        &["io", "macswap"]
    }

    /// The testpmd mode doing comparable work, and the ratio we aim for against it.
    pub fn reference_mode(self) -> &'static str {
        "macswap"
    }
    pub fn target_ratio(self) -> f64 {
        0.8
    }

    pub fn pipeline(self, bindings: &[PortBinding]) -> Pipeline {
        match self {
            Scenario::Forward => cross_connect_pipeline(bindings),
        }
    }

    /// Writes the generator pcap that net_pcap replays with infinite_rx=1.
    pub fn write_generator(self, path: &Path) -> io::Result<()> {
        let mut writer = PcapWriter::new(BufWriter::new(File::create(path)?)).map_err(io::Error::other)?;
        for flow in 0..FLOWS {
            let frame = udp_frame(flow);
            let packet = PcapPacket::new(Duration::ZERO, frame.len() as u32, &frame);
            writer.write_packet(&packet).map_err(io::Error::other)?;
        }
        Ok(())
    }
}

/// A minimal IPv4/UDP frame of flow `flow` (distinct source address and port).
fn udp_frame(flow: u16) -> Vec<u8> {
    let mut frame = vec![0u8; FRAME_LEN];
    let [hi, lo] = flow.to_be_bytes();
    let (src, dst) = (Ipv4Addr::new(10, 0, hi, lo), Ipv4Addr::new(10, 1, 0, 1));
    {
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.set_dst(MacAddr([2, 0, 0, 0, 0, 1]));
        eth.set_src(MacAddr([2, 0, 0, 0, 0, 2]));
        eth.set_ethertype(ethertype::IPV4);
    }
    let ip_len = FRAME_LEN - 14;
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len(ip_len as u16);
    ip.set_ttl(64);
    ip.set_protocol(ipv4::protocol::UDP);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    let mut udp = UdpDatagram::new_unchecked(ip.payload_mut());
    udp.set_src_port(1024 + flow);
    udp.set_dst_port(4000);
    udp.set_len((ip_len - 20) as u16);
    udp.fill_checksum(src, dst);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_frames_are_valid_and_distinct() {
        let a = udp_frame(0);
        let b = udp_frame(300);
        assert_ne!(a, b);
        for frame in [a, b] {
            assert_eq!(frame.len(), FRAME_LEN);
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum());
            let udp = UdpDatagram::new_checked(ip.payload()).unwrap();
            assert!(udp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        }
    }

    #[test]
    fn unknown_scenario_names_the_known_ones() {
        assert_eq!(Scenario::named("forward"), Ok(Scenario::Forward));
        assert_eq!(Scenario::named("fwd").unwrap_err(), "unknown bench scenario \"fwd\" (known: forward)");
    }
}
