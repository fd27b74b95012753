"""Ethernet/IPv4/UDP frames the agent sends to VMs (answers to punted frames), built
with int.to_bytes: struct formats stay out of the controller (the map contract test)."""
from __future__ import annotations

import ipaddress
import socket

ETH_HLEN, IPV4_HLEN, UDP_HLEN = 14, 20, 8
ETH_P_IP = b"\x08\x00"


def ipv4_checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, len(header), 2))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp_frame(src_mac: bytes, dst_mac: bytes, src_ip: str | bytes, dst_ip: str | bytes,
                   sport: int, dport: int, payload: bytes) -> bytes:
    """One frame: IPv4 without options (DF, TTL 64), UDP checksum 0 (optional over IPv4).
    Addresses as text or as 4 packed bytes."""
    src, dst = (a if isinstance(a, bytes) else ipaddress.IPv4Address(a).packed for a in (src_ip, dst_ip))
    total = IPV4_HLEN + UDP_HLEN + len(payload)
    # version/IHL, TOS, length, id, DF, TTL, protocol, checksum (0 for now), addresses
    header = bytes([0x45, 0]) + _u16(total) + _u16(0) + _u16(0x4000) + bytes([64, socket.IPPROTO_UDP]) + \
        _u16(0) + src + dst
    header = header[:10] + _u16(ipv4_checksum(header)) + header[12:]
    udp = _u16(sport) + _u16(dport) + _u16(UDP_HLEN + len(payload)) + _u16(0)
    return dst_mac + src_mac + ETH_P_IP + header + udp + payload


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")
