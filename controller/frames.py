"""Ethernet/IPv4/UDP, TCP and IPv6 frames the agent sends to VMs (answers to punted frames), built
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


def _ipv4_header(protocol: int, src: bytes, dst: bytes, payload_len: int) -> bytes:
    """IPv4 without options, DF, TTL 64, its checksum computed."""
    # version/IHL, TOS, length, id, DF, TTL, protocol, checksum (0 for now), addresses
    header = bytes([0x45, 0]) + _u16(IPV4_HLEN + payload_len) + _u16(0) + _u16(0x4000) + \
        bytes([64, protocol]) + _u16(0) + src + dst
    return header[:10] + _u16(ipv4_checksum(header)) + header[12:]


def _packed(address: str | bytes) -> bytes:
    return address if isinstance(address, bytes) else ipaddress.IPv4Address(address).packed


def ipv4_udp_frame(src_mac: bytes, dst_mac: bytes, src_ip: str | bytes, dst_ip: str | bytes,
                   sport: int, dport: int, payload: bytes) -> bytes:
    """One frame: IPv4 without options (DF, TTL 64), UDP checksum 0 (optional over IPv4).
    Addresses as text or as 4 packed bytes."""
    src, dst = _packed(src_ip), _packed(dst_ip)
    udp = _u16(sport) + _u16(dport) + _u16(UDP_HLEN + len(payload)) + _u16(0)
    return dst_mac + src_mac + ETH_P_IP + _ipv4_header(socket.IPPROTO_UDP, src, dst, len(udp + payload)) + udp + payload


def ipv4_tcp_frame(src_mac: bytes, dst_mac: bytes, src_ip: str | bytes, dst_ip: str | bytes, sport: int,
                   dport: int, seq: int, ack: int, flags: int, window: int, payload: bytes = b"",
                   options: bytes = b"") -> bytes:
    """One TCP segment in a frame, its checksum computed (TCP's is not optional); `options`
    a multiple of 4 bytes."""
    src, dst = _packed(src_ip), _packed(dst_ip)
    offset = (20 + len(options)) // 4
    tcp = _u16(sport) + _u16(dport) + (seq % 2**32).to_bytes(4, "big") + (ack % 2**32).to_bytes(4, "big") + \
        bytes([offset << 4, flags]) + _u16(window) + _u16(0) + _u16(0) + options + payload
    pseudo = src + dst + bytes([0, socket.IPPROTO_TCP]) + _u16(len(tcp))
    checksum = ipv4_checksum(pseudo + tcp + b"\x00" * (len(tcp) % 2))
    tcp = tcp[:16] + _u16(checksum) + tcp[18:]
    return dst_mac + src_mac + ETH_P_IP + _ipv4_header(socket.IPPROTO_TCP, src, dst, len(tcp)) + tcp


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


ETH_P_IPV6 = b"\x86\xdd"
IPV6_HLEN = 40


def ipv6_checksum(src: bytes, dst: bytes, protocol: int, payload: bytes) -> int:
    """The checksum of an ICMPv6 message or UDP datagram (mandatory in IPv6) over RFC 8200 8.1's
    pseudo-header: of a payload whose checksum field is zero, the value to put there; of a
    received one, 0 when it is right."""
    pseudo = src + dst + len(payload).to_bytes(4, "big") + bytes([0, 0, 0, protocol])
    return ipv4_checksum(pseudo + payload + b"\x00" * (len(payload) % 2))


def ipv6_frame(src_mac: bytes, dst_mac: bytes, src_ip: str, dst_ip: str, protocol: int, payload: bytes,
               checksum_at: int, hop_limit: int = 255) -> bytes:
    """One frame: IPv6 without extension headers around `payload`, whose checksum (the 2 bytes
    at `checksum_at`) is computed here."""
    src, dst = ipaddress.IPv6Address(src_ip).packed, ipaddress.IPv6Address(dst_ip).packed
    payload = payload[:checksum_at] + _u16(0) + payload[checksum_at + 2:]
    payload = payload[:checksum_at] + _u16(ipv6_checksum(src, dst, protocol, payload)) + payload[checksum_at + 2:]
    header = bytes([0x60, 0, 0, 0]) + _u16(len(payload)) + bytes([protocol, hop_limit]) + src + dst
    return dst_mac + src_mac + ETH_P_IPV6 + header + payload


ETH_P_ARP = b"\x08\x06"
ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST = b"\xff" * 6


def arp_frame(op: int, sender_mac: bytes, sender_ip: str, target_mac: bytes, target_ip: str,
              dst_mac: bytes | None = None) -> bytes:
    """An ARP request or reply for IPv4 over Ethernet (a request goes to broadcast)."""
    body = b"\x00\x01" + ETH_P_IP + bytes([6, 4]) + _u16(op) + sender_mac + ipaddress.IPv4Address(sender_ip).packed + \
        target_mac + ipaddress.IPv4Address(target_ip).packed
    return (dst_mac or (BROADCAST if op == ARP_REQUEST else target_mac)) + sender_mac + ETH_P_ARP + body


def parse_arp(frame: bytes) -> tuple[int, bytes, str, str] | None:
    """(op, sender MAC, sender IP, target IP) of an ARP frame for IPv4 over Ethernet, else None."""
    if len(frame) < ETH_HLEN + 28 or frame[12:14] != ETH_P_ARP or frame[14:20] != b"\x00\x01" + ETH_P_IP + bytes([6, 4]):
        return None
    body = frame[ETH_HLEN:]
    return (int.from_bytes(body[6:8], "big"), body[8:14], str(ipaddress.IPv4Address(body[14:18])),
            str(ipaddress.IPv4Address(body[24:28])))
