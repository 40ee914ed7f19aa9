//! Frames the kernel dropped because the ring of a `net_af_packet` port was full. The kernel counts them per
//! packet socket (`PACKET_STATISTICS`, packet(7)), but DPDK 22.11's driver never reads them, so its `imissed`
//! stays 0 while frames are lost. The sockets of a port are the AF_PACKET ones its driver opened while probing.
use std::collections::BTreeMap;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::RawFd;
use std::sync::{Mutex, PoisonError};

/// Per port id: its packet sockets, and the drops read from them so far (a read resets the kernel's count).
static PORT_SOCKETS: Mutex<BTreeMap<u16, (Vec<RawFd>, u64)>> = Mutex::new(BTreeMap::new());

/// The packet sockets this process has open now.
pub(super) fn open_packet_sockets() -> Vec<RawFd> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    let fds = fds.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<RawFd>().ok());
    fds.filter(|&fd| is_packet_socket(fd)).collect()
}

fn is_packet_socket(fd: RawFd) -> bool {
    let mut address = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut length = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: address is writable for `length` bytes; on an fd that is no socket (or was closed) getsockname
    // only fails.
    let named = unsafe { libc::getsockname(fd, address.as_mut_ptr().cast(), &mut length) } == 0;
    // SAFETY: zeroed, then partly filled by getsockname: any bytes are a valid sockaddr_storage.
    named && i32::from(unsafe { address.assume_init() }.ss_family) == libc::AF_PACKET
}

/// Takes the packet sockets opened since `before` (the list before probing `port`) as the port's.
pub(super) fn adopt(port: u16, before: &[RawFd]) {
    let opened: Vec<RawFd> = open_packet_sockets().into_iter().filter(|fd| !before.contains(fd)).collect();
    if !opened.is_empty() {
        PORT_SOCKETS.lock().unwrap_or_else(PoisonError::into_inner).insert(port, (opened, 0));
    }
}

/// The port is closed (its sockets with it): its fds may be reused by anything.
pub(super) fn forget(port: u16) {
    PORT_SOCKETS.lock().unwrap_or_else(PoisonError::into_inner).remove(&port);
}

/// Frames the kernel dropped for `port` so far; 0 for a port without packet sockets.
pub(super) fn ring_drops(port: u16) -> u64 {
    let mut ports = PORT_SOCKETS.lock().unwrap_or_else(PoisonError::into_inner);
    let Some((fds, total)) = ports.get_mut(&port) else { return 0 };
    for &fd in fds.iter() {
        let mut stats = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut length = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        let stats_ptr: *mut libc::tpacket_stats = &mut stats;
        // SAFETY: stats is writable for `length` bytes, the size PACKET_STATISTICS fills for a TPACKET_V2
        // socket (the driver's); the fd stays the port's until `forget` (the port is closed after).
        let read = unsafe { libc::getsockopt(fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, stats_ptr.cast(), &mut length) };
        if read == 0 {
            *total += u64::from(stats.tp_drops);
        }
    }
    *total
}
