//! What a port receives from, so that pcap test mode knows when all input is in.
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::config::PortConfig;

/// Where a port's received packets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    /// One or more pcap files read once: this many packets in all.
    FinitePcap { packets: u64 },
    /// Nothing is ever received (a tx-only pcap port, a `net_null` sink with `no-rx=1`).
    Silent,
    /// A NIC, a kernel interface, a replayed pcap: traffic may come at any time.
    Live,
}

impl InputKind {
    pub fn of(port: &PortConfig) -> io::Result<InputKind> {
        if let Some(files) = port.finite_pcap_inputs() {
            let mut packets = 0;
            for file in files {
                packets += count_pcap_packets(&file)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
            }
            return Ok(InputKind::FinitePcap { packets });
        }
        Ok(if port.never_receives() { InputKind::Silent } else { InputKind::Live })
    }
}

/// Packets in a pcap or pcapng file (libpcap, under net_pcap, reads both).
pub fn count_pcap_packets(path: &Path) -> io::Result<u64> {
    let mut file = BufReader::new(File::open(path)?);
    // Peek at the magic without consuming it: the readers parse the header themselves.
    let is_pcapng = file.fill_buf()?.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]);
    let invalid = |e: pcap_file::PcapError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let mut count = 0;
    if is_pcapng {
        let mut reader = pcap_file::pcapng::PcapNgReader::new(file).map_err(invalid)?;
        while let Some(block) = reader.next_block() {
            if matches!(
                block.map_err(invalid)?,
                pcap_file::pcapng::Block::EnhancedPacket(_) | pcap_file::pcapng::Block::SimplePacket(_) | pcap_file::pcapng::Block::Packet(_)
            ) {
                count += 1;
            }
        }
    } else {
        let mut reader = pcap_file::pcap::PcapReader::new(file).map_err(invalid)?;
        while let Some(packet) = reader.next_packet() {
            packet.map_err(invalid)?;
            count += 1;
        }
    }
    Ok(count)
}
