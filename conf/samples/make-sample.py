#!/usr/bin/env python3
"""Writes default-in.pcap, the sample traffic `make run` switches (conf/default.toml).

Plain Python, no dependencies: every frame is built byte by byte with correct
checksums, so tshark and the tests can verify the output. Run it again after
changing it and commit the pcap; the tests read the committed file.
"""
import struct
import sys

VM_MAC = bytes.fromhex("020000000a01")
PEER_MAC = bytes.fromhex("020000000a02")
VM_IP = bytes([10, 0, 0, 1])
PEER_IP = bytes([10, 0, 0, 2])


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(payload: bytes, ethertype: int, vlan=None) -> bytes:
    header = PEER_MAC + VM_MAC
    if vlan is not None:
        header += struct.pack("!HH", 0x8100, vlan)
    return header + struct.pack("!H", ethertype) + payload


def ipv4(proto: int, payload: bytes, ident: int, src=VM_IP, dst=PEER_IP) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0, src, dst)
    header = header[:10] + struct.pack("!H", csum(header)) + header[12:]
    return header + payload


def l4_csum(proto: int, segment: bytes, src=VM_IP, dst=PEER_IP) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(segment))
    return csum(pseudo + segment)


def udp(sport: int, dport: int, data: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    c = l4_csum(17, seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def tcp_syn(sport: int, dport: int, seq: int) -> bytes:
    options = struct.pack("!BBH", 2, 4, 1460) + b"\x01\x01\x04\x02"  # MSS, NOP, NOP, SACK-permitted
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + len(options) // 4) << 4, 0x02, 64240, 0, 0) + options
    c = l4_csum(6, seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def icmp_echo(kind: int, ident: int, seq: int, data: bytes) -> bytes:
    msg = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + data
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def arp_request() -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, VM_MAC, VM_IP, b"\0" * 6, PEER_IP)


def frames():
    yield eth(arp_request() + b"\0" * 18, 0x0806)  # padded to 60 bytes, as on the wire
    yield eth(ipv4(1, icmp_echo(8, 0x1234, 1, bytes(range(56))), 1), 0x0800)
    yield eth(ipv4(1, icmp_echo(0, 0x1234, 1, bytes(range(56))), 2, PEER_IP, VM_IP), 0x0800)
    yield eth(ipv4(17, udp(5000, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"), 3), 0x0800)
    yield eth(ipv4(6, tcp_syn(40000, 80, 0x01020304), 4), 0x0800)
    yield eth(ipv4(17, udp(5001, 4000, b"vlan"), 5), 0x0800, vlan=100)
    yield b"\x02\x00\x00\x00"  # a runt: dropped as truncated_ethernet
    for i, size in enumerate([18, 100, 512, 1472]):  # up to a full 1514-byte frame
        yield eth(ipv4(17, udp(6000 + i, 4000, bytes([i]) * size), 10 + i), 0x0800)


def main(path: str) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames()):
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "default-in.pcap")
