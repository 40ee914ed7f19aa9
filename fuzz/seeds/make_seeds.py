#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/<target>/seed-*): a few valid inputs per target, so the fuzzer starts
deep in each decoder. Run from fuzz/: python3 seeds/make_seeds.py (docs/fuzzing.md)."""
import json
import os
import struct


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def mac(last):
    return bytes([2, 0, 0, 0, 0, last])


def ip(a):
    return bytes(int(x) for x in a.split("."))


def ipv4(src, dst, proto, payload, df=True):
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000 if df else 0, 64, proto, 0, ip(src), ip(dst)))
    hdr[10:12] = struct.pack("!H", csum(bytes(hdr)))
    return bytes(hdr) + payload


def l4sum(src, dst, proto, segment):
    return csum(ip(src) + ip(dst) + struct.pack("!BBH", 0, proto, len(segment)) + segment)


def udp(src, dst, sport, dport, payload, checksum=True):
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
    if checksum:
        seg[6:8] = struct.pack("!H", l4sum(src, dst, 17, bytes(seg)) or 0xFFFF)
    return ipv4(src, dst, 17, bytes(seg))


def tcp(src, dst, payload):
    seg = bytearray(struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x18, 65535, 0, 0) + payload)
    seg[16:18] = struct.pack("!H", l4sum(src, dst, 6, bytes(seg)))
    return ipv4(src, dst, 6, bytes(seg))


def icmp_error(src, dst, quoted):
    msg = bytearray(struct.pack("!BBHI", 3, 3, 0, 0) + quoted[:28])
    msg[2:4] = struct.pack("!H", csum(bytes(msg)))
    return ipv4(src, dst, 1, bytes(msg))


def eth(dst, src, ethertype, payload):
    return dst + src + struct.pack("!H", ethertype) + payload


def arp_request(sender_mac, sender_ip, target_ip):
    return eth(b"\xff" * 6, sender_mac, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + sender_mac + ip(sender_ip) + b"\0" * 6 + ip(target_ip))


def vxlan(src_vtep, vni, inner, dst_vtep="192.0.2.1"):
    vx = struct.pack("!BBBBI", 0x08, 0, 0, 0, vni << 8) + inner
    return eth(bytes([2, 0xEE, 0, 0, 0, 1]), bytes([2, 0xEE, 0, 0, 0, 2]), 0x0800, udp(src_vtep, dst_vtep, 50000, 4789, vx, checksum=False))


UPLINK_PORT, VM0 = 2, 0
vm_udp = eth(mac(11), mac(10), 0x0800, udp("10.0.0.10", "10.0.0.11", 1000, 2000, b"hello"))
vm_to_remote = eth(mac(20), mac(10), 0x0800, tcp("10.0.0.10", "10.0.0.20", b"data"))
from_remote = vxlan("192.0.2.2", 100, eth(mac(10), mac(20), 0x0800, udp("10.0.0.20", "10.1.0.5", 7, 9, b"x")))
quoted = udp("10.0.0.10", "10.0.0.20", 1000, 2000, b"0123456789")
icmp_to_vm = eth(mac(10), mac(20), 0x0800, icmp_error("10.0.0.20", "10.1.0.5", quoted))
icmp_from_vm = eth(mac(20), mac(10), 0x0800, icmp_error("10.0.0.10", "10.0.0.20", udp("10.0.0.20", "10.1.0.5", 7, 9, b"x")))
arp = arp_request(mac(10), "10.0.0.10", "10.0.0.20")
# An address report from the VM (docs/address-migration.md) is made by the tests; a frame to the report port is enough here.
gateway_in = vxlan("198.51.100.7", 300, eth(mac(20), mac(33), 0x0800, udp("10.0.0.33", "10.0.0.20", 5, 6, b"relay")))
gateway_arp = vxlan("198.51.100.7", 300, arp_request(mac(33), "10.0.0.33", "10.0.0.10"))


def block(op, user, image, request_id, offset, length, frag_off=0, payload=b""):
    hdr = struct.pack("!IBBHIIQQIIHHI", 0x53594244, 1, op, 0, user, image, request_id, offset, length, frag_off, len(payload), 0, 0)
    return hdr + b"\0" * 16 + payload


def datagram(d, control=3):
    return bytes([control]) + struct.pack("!H", len(d)) + d


def nbd_option(opt, data):
    return struct.pack("!QII", 0x49484156454F5054, opt, len(data)) + data


def nbd_request(cmd, offset, length, flags=0, payload=b""):
    return struct.pack("!IHHQQI", 0x25609513, flags, cmd, 7, offset, length) + payload


setup = {
    "vm_ports": [{"name": "vm0", "id": 0}, {"name": "vm1", "id": 1}],
    "underlay": {"port": 2, "mac": "02:ee:00:00:00:01",
                 "vtep": {"address": "192.0.2.1", "prefix_len": 24, "gateway": None, "next_hop_mac": "02:ee:00:00:00:02", "mtu": 1500},
                 "gateway_role": None},
    "ageing_ms": 300000,
    "state": {"config": {"generation": 1, "networks": [{"vni": 100, "name": "blue", "flood_vteps": ["192.0.2.3"]}],
                         "endpoints": [{"vni": 100, "mac": "02:00:00:00:00:0a", "ip": "10.0.0.10", "port": "vm0"}],
                         "remotes": [{"vni": 100, "mac": "02:00:00:00:00:14", "ip": "10.0.0.20", "vtep": "192.0.2.2"}],
                         "ports": [{"port": "vm1", "vni": 100}], "address_migrations": []},
              "macs": [{"vni": 100, "mac": "02:00:00:00:00:0b", "location": {"port": 1}, "age_ms": 10}],
              "neighbors": [{"ip": "192.0.2.2", "mac": "02:ee:00:00:00:09", "age_ms": 5}]},
}
command = {"replace": setup["state"]["config"]}

seeds = {
    "wire_parsers": [vm_udp, vm_to_remote, from_remote, icmp_to_vm, arp],
    "pipeline": [bytes([VM0]) + vm_udp, bytes([VM0]) + vm_to_remote, bytes([UPLINK_PORT]) + from_remote,
                 bytes([VM0 | 0x10]) + arp, bytes([UPLINK_PORT | 0x18]) + from_remote, bytes([VM0]) + icmp_from_vm],
    "vxlan_decap": [bytes([UPLINK_PORT]) + from_remote, bytes([UPLINK_PORT | 0x80]) + gateway_in],
    "address_rewrite": [b"\0" + ip("10.1.0.5") + ip("10.0.0.10") + icmp_to_vm, b"\1" + ip("10.0.0.10") + ip("10.1.0.5") + icmp_from_vm,
                        b"\0" + b"\0" * 8 + from_remote[50:], b"\1" + b"\0" * 8 + arp],
    "gateway": [bytes([UPLINK_PORT | 0x40]) + gateway_in, bytes([UPLINK_PORT]) + gateway_arp, bytes([UPLINK_PORT]) + from_remote],
    "migration": [bytes([0, 4, 5, 1, 5, 6, 2, 7, 3]), bytes([1, 5, 0, 5, 1, 2, 6, 3]), bytes([0, 5, 1, 4, 5, 3, 4])],
    "storage_protocol": [datagram(block(6, 1, 11, 1, 0, 16)) + datagram(block(1, 1, 11, 2, 4096, 512)),
                         datagram(block(2, 1, 11, 3, 0, 128, 0, b"a" * 64)) + datagram(block(2, 1, 11, 3, 0, 128, 64, b"b" * 64)),
                         datagram(block(3, 2, 21, 1, 0, 0), 3 | 4) + datagram(block(4, 1, 12, 9, 0, 4096))],
    "nbd": [b"\x01" + struct.pack("!I", 3) + nbd_option(7, struct.pack("!I", 4) + b"disk" + struct.pack("!HH", 1, 3))
            + nbd_request(0, 0, 512) + nbd_request(1, 512, 4, 1, b"abcd") + nbd_request(3, 0, 0) + nbd_request(2, 0, 0),
            b"\x06" + struct.pack("!I", 1) + nbd_option(3, b"") + nbd_option(1, b"disk") + nbd_request(6, 0, 4096, 2)],
    "rest_bodies": [json.dumps(b).encode() for b in [
        {"vni": 100, "name": "blue", "flood_vteps": ["192.0.2.3"]},
        {"vni": 100, "mac": "02:00:00:00:00:0a", "ip": "10.0.0.10", "port": "vm0"},
        {"vni": 100, "mac": "02:00:00:00:00:14", "vtep": "192.0.2.2"},
        {"vni": 100, "primary_ip": "10.1.0.5", "post_migration_ip": "10.0.0.10", "port": "vm0"},
        {"event": "start", "vni": 100, "mac": "02:00:00:00:00:0a"},
        {"name": "alice", "ips": ["10.9.0.1"]},
        {"library": "target/units/basic-v2.so"},
    ]],
    "unit_config": [json.dumps(setup).encode(), json.dumps(setup).encode() + b"\0" + json.dumps(command).encode()],
}

for target, inputs in seeds.items():
    os.makedirs(f"corpus/{target}", exist_ok=True)
    for i, data in enumerate(inputs):
        with open(f"corpus/{target}/seed-{i}", "wb") as f:
            f.write(data)
print("seeds:", {t: len(v) for t, v in seeds.items()})
