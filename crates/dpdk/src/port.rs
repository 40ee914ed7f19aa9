//! Ethernet ports: probe from devargs, configure, start/stop, stats, rx and buffered tx.
use std::ffi::CString;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_ffi as ffi;
use serde::Serialize;

use super::error::{DpdkError, ToResult};
use super::mbuf::Mbuf;
use super::mempool::Mempool;
use super::packet_socket;
use switchyard_pipeline::{Burst, PortId, QueueId, BURST_SIZE};
use switchyard_wire::MacAddr;

/// What the driver reports about a port.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub mac: MacAddr,
}

/// Queue layout of a port.
#[derive(Debug, Clone, Copy)]
pub struct PortSetup {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
}

/// Link state (`rte_eth_link_get_nowait`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// Driver counters (`rte_eth_stats_get`): what the NIC saw, before our counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Dropped by the NIC because the rx ring was full (the worker fell behind); for a net_af_packet port, by
    /// the kernel because the socket's ring was full.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// Dropped because the mempool had no buffer.
    pub rx_nombuf: u64,
}

/// A configured ethdev; stopped and closed on drop.
pub struct Port {
    id: PortId,
    started: bool,
    // rx rings hold mbufs from this pool: it must outlive the port.
    _pool: Arc<Mempool>,
}

impl Port {
    /// Probes `devargs` (a vdev such as `net_pcap0,rx_pcap=in.pcap`, or a PCI
    /// address already probed by EAL) and returns the port id named `device`.
    pub fn probe(devargs: &str, device: &str) -> Result<PortId, DpdkError> {
        let op = format!("probe \"{devargs}\"");
        let c_device = CString::new(device).map_err(|_| DpdkError::new(op.clone(), 22))?;
        if let Some(id) = port_by_name(&c_device) {
            return Ok(id); // PCI devices are probed by EAL at start (-a).
        }
        let c_devargs = CString::new(devargs).map_err(|_| DpdkError::new(op.clone(), 22))?;
        let packet_sockets_before = packet_socket::open_packet_sockets();
        // SAFETY: a NUL-terminated devargs string; EAL is initialised (callers hold an Eal).
        unsafe { ffi::rte_dev_probe(c_devargs.as_ptr()) }.to_result(&op)?;
        let id = port_by_name(&c_device).ok_or_else(|| DpdkError {
            op,
            errno: 19,
            text: format!("the device probed, but no ethdev is named \"{device}\""),
        })?;
        // A net_af_packet port opens its sockets while probing; their ring drops are its imissed.
        packet_socket::adopt(id.0, &packet_sockets_before);
        Ok(id)
    }

    pub fn info(id: PortId) -> Result<PortInfo, DpdkError> {
        let mut info = MaybeUninit::<ffi::rte_eth_dev_info>::zeroed();
        // SAFETY: info points to writable memory of the right type.
        unsafe { ffi::rte_eth_dev_info_get(id.0, info.as_mut_ptr()) }.to_result("rte_eth_dev_info_get")?;
        // SAFETY: rte_eth_dev_info_get succeeded and filled the struct (zeroed before).
        let info = unsafe { info.assume_init() };
        let driver = if info.driver_name.is_null() {
            String::from("?")
        } else {
            // SAFETY: driver_name is a static NUL-terminated string of the driver.
            unsafe { std::ffi::CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        let mut mac = ffi::rte_ether_addr::default();
        // SAFETY: mac is writable memory of the right type.
        unsafe { ffi::rte_eth_macaddr_get(id.0, &mut mac) }.to_result("rte_eth_macaddr_get")?;
        Ok(PortInfo {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            mac: MacAddr(mac.addr_bytes),
        })
    }

    /// Configures queues and descriptors (adjusted to the driver's limits) with
    /// rx buffers from `pool`; the port is left stopped.
    pub fn configure(id: PortId, setup: PortSetup, pool: Arc<Mempool>) -> Result<Port, DpdkError> {
        let conf = ffi::rte_eth_conf::default();
        // SAFETY: conf is a valid, zeroed (all defaults) configuration.
        unsafe { ffi::rte_eth_dev_configure(id.0, setup.rx_queues, setup.tx_queues, &conf) }
            .to_result("rte_eth_dev_configure")?;
        let port = Port { id, started: false, _pool: pool };
        let (mut rx_desc, mut tx_desc) = (setup.rx_descriptors, setup.tx_descriptors);
        // SAFETY: both pointers are to live u16s.
        unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(id.0, &mut rx_desc, &mut tx_desc) }
            .to_result("rte_eth_dev_adjust_nb_rx_tx_desc")?;
        // SAFETY: plain query of a valid port.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id.0) };
        let socket = u32::try_from(socket).unwrap_or(0); // SOCKET_ID_ANY -> socket 0
        for queue in 0..setup.rx_queues {
            // SAFETY: the port is configured; NULL rx_conf means driver defaults;
            // the pool outlives the port (held in `port`).
            unsafe {
                ffi::rte_eth_rx_queue_setup(id.0, queue, rx_desc, socket, std::ptr::null(), port._pool.as_ptr())
            }
            .to_result(&format!("rte_eth_rx_queue_setup(queue {queue})"))?;
        }
        for queue in 0..setup.tx_queues {
            // SAFETY: the port is configured; NULL tx_conf means driver defaults.
            unsafe { ffi::rte_eth_tx_queue_setup(id.0, queue, tx_desc, socket, std::ptr::null()) }
                .to_result(&format!("rte_eth_tx_queue_setup(queue {queue})"))?;
        }
        // Virtual ports (pcap, tap, af_packet) and NICs in a switch must see every
        // frame; drivers without the notion answer ENOTSUP, which is fine.
        // SAFETY: plain call on a configured port.
        let _ = unsafe { ffi::rte_eth_promiscuous_enable(id.0) };
        Ok(port)
    }

    pub fn start(&mut self) -> Result<(), DpdkError> {
        // SAFETY: the port is configured with all queues set up.
        unsafe { ffi::rte_eth_dev_start(self.id.0) }.to_result("rte_eth_dev_start")?;
        self.started = true;
        Ok(())
    }

    /// Stops the port; pcap ports flush and close their files here.
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        // SAFETY: no worker polls this port any more (callers stop workers first).
        unsafe { ffi::rte_eth_dev_stop(self.id.0) }.to_result("rte_eth_dev_stop").map(drop)
    }

    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        stats(self.id)
    }

    pub fn link(&self) -> Link {
        link(self.id)
    }
}

/// Link state of any port, also while workers run.
pub fn link(id: PortId) -> Link {
    let mut link = ffi::rte_eth_link::default();
    // SAFETY: link is writable memory of the right type.
    let ok = unsafe { ffi::rte_eth_link_get_nowait(id.0, &mut link) } == 0;
    Link {
        up: ok && link.link_status() != 0,
        speed_mbps: if ok { link.link_speed } else { 0 },
        full_duplex: ok && link.link_duplex() != 0,
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            log::warn!("port {}: {err}", self.id.0);
        }
        packet_socket::forget(self.id.0);
        // SAFETY: the port is stopped and no worker uses it; its id is not used again.
        if let Err(err) = unsafe { ffi::rte_eth_dev_close(self.id.0) }.to_result("rte_eth_dev_close") {
            log::warn!("port {}: {err}", self.id.0);
        }
    }
}

/// Driver counters of any port, also while workers run (the control plane reads them).
pub fn stats(id: PortId) -> Result<PortStats, DpdkError> {
    let mut s = ffi::rte_eth_stats::default();
    // SAFETY: s is writable memory of the right type.
    unsafe { ffi::rte_eth_stats_get(id.0, &mut s) }.to_result("rte_eth_stats_get")?;
    Ok(PortStats {
        ipackets: s.ipackets,
        opackets: s.opackets,
        ibytes: s.ibytes,
        obytes: s.obytes,
        imissed: s.imissed + packet_socket::ring_drops(id.0),
        ierrors: s.ierrors,
        oerrors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    })
}

fn port_by_name(name: &CString) -> Option<PortId> {
    let mut id = 0u16;
    // SAFETY: name is NUL-terminated and id is a live u16.
    let ret = unsafe { ffi::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut id) };
    (ret == 0).then_some(PortId(id))
}

/// One receive queue, polled by exactly one worker.
#[derive(Debug, Clone, Copy)]
pub struct RxQueue {
    pub port: PortId,
    pub queue: QueueId,
}

impl RxQueue {
    /// Receives up to a burst into `burst` (which must be empty) and returns how many.
    #[inline]
    pub fn rx_burst(&self, burst: &mut Burst<Mbuf>) -> usize {
        debug_assert!(burst.is_empty());
        burst.reset(self.port);
        let mut raw = [std::ptr::null_mut::<ffi::rte_mbuf>(); BURST_SIZE];
        // SAFETY: raw has room for BURST_SIZE pointers; this queue is polled only by
        // this worker (queues are partitioned among workers).
        let n = unsafe { ffi::rte_eth_rx_burst(self.port.0, self.queue.0, raw.as_mut_ptr(), BURST_SIZE as u16) };
        let n = usize::from(n);
        for &ptr in &raw[..n] {
            if let Some(ptr) = NonNull::new(ptr) {
                // SAFETY: the driver handed over ownership of each returned mbuf.
                let mbuf = unsafe { Mbuf::from_raw(ptr) };
                // Cannot fail: at most BURST_SIZE mbufs into an empty burst.
                let _ = burst.push(mbuf);
            }
        }
        n
    }
}

/// What a flush achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxOutcome {
    pub sent: u64,
    pub sent_bytes: u64,
    /// The unsent tail of a partial tx, already freed.
    pub dropped: u64,
}

/// Packets waiting for one tx queue, sent a burst at a time (l3fwd style):
/// when a burst is full, or when the worker's drain timer fires.
pub struct TxBuffer {
    port: PortId,
    queue: QueueId,
    len: usize,
    bytes: u64,
    pending: [*mut ffi::rte_mbuf; BURST_SIZE],
}

// SAFETY: the buffer owns the mbufs it holds, and mbufs may move between threads.
unsafe impl Send for TxBuffer {}

impl TxBuffer {
    pub fn new(port: PortId, queue: QueueId) -> Self {
        TxBuffer { port, queue, len: 0, bytes: 0, pending: [std::ptr::null_mut(); BURST_SIZE] }
    }

    pub fn port(&self) -> PortId {
        self.port
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `mbuf`; flushes when the burst is full.
    #[inline]
    pub fn push(&mut self, mbuf: Mbuf) -> TxOutcome {
        self.bytes += u64::from(mbuf.pkt_len());
        self.pending[self.len] = mbuf.into_raw();
        self.len += 1;
        if self.len == BURST_SIZE {
            self.flush()
        } else {
            TxOutcome::default()
        }
    }

    /// Sends what is queued; frees and reports whatever the queue did not take.
    pub fn flush(&mut self) -> TxOutcome {
        if self.len == 0 {
            return TxOutcome::default();
        }
        let len = self.len;
        self.len = 0;
        // SAFETY: the first len pointers are owned mbufs; this tx queue belongs to this worker.
        let sent = usize::from(unsafe { ffi::rte_eth_tx_burst(self.port.0, self.queue.0, self.pending.as_mut_ptr(), len as u16) });
        let mut outcome = TxOutcome { sent: sent as u64, sent_bytes: self.bytes, dropped: 0 };
        self.bytes = 0;
        if sent < len {
            let tail = &mut self.pending[sent..len];
            for &ptr in tail.iter() {
                // SAFETY: unsent mbufs are still ours and valid.
                outcome.sent_bytes -= u64::from(unsafe { (*ptr).pkt_len });
            }
            outcome.dropped = (len - sent) as u64;
            // SAFETY: the unsent tail is still owned by us; freed exactly once here.
            unsafe { ffi::rte_pktmbuf_free_bulk(tail.as_mut_ptr(), (len - sent) as u32) };
        }
        outcome
    }
}

impl Drop for TxBuffer {
    fn drop(&mut self) {
        debug_assert!(self.len == 0, "tx buffer dropped with packets queued: flush first");
        let len = self.len;
        // SAFETY: the first len pointers are owned mbufs never handed to the driver.
        unsafe { ffi::rte_pktmbuf_free_bulk(self.pending.as_mut_ptr(), len as u32) };
    }
}
