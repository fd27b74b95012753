"""DHCPv6 on the wire (RFC 8415), the part a server needs: reading a client's message from
its frame (Ethernet, IPv6 without extension headers, UDP 546 → 547) and writing the
server's reply frame. Options are type-length-value; no scapy at runtime."""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from .frames import ETH_HLEN, ETH_P_IPV6, IPV6_HLEN, UDP_HLEN, ipv6_checksum, ipv6_frame

CLIENT_PORT, SERVER_PORT = 546, 547
# message types (RFC 8415 7.3)
SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = range(1, 10)
INFORMATION_REQUEST = 11
# options (RFC 8415 21, RFC 3646)
OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IAADDR, OPT_ORO = 1, 2, 3, 5, 6
OPT_STATUS_CODE, OPT_RAPID_COMMIT, OPT_DNS_SERVERS, OPT_DOMAIN_LIST = 13, 14, 23, 24
# status codes (RFC 8415 21.13)
SUCCESS, NO_ADDRS_AVAIL, NOT_ON_LINK = 0, 2, 4
DUID_LL, HW_ETHERNET = 3, 1


class MalformedDhcp6(ValueError):
    """A frame that is not a well-formed DHCPv6 client message."""


@dataclass(frozen=True)
class IaNa:
    iaid: bytes  # 4 bytes, the client's name for the association
    addresses: tuple[str, ...] = ()  # those the client names (CONFIRM, RENEW, a hint in SOLICIT)


@dataclass(frozen=True)
class ClientMessage:
    src_mac: str
    src_ip: str
    msg_type: int
    xid: bytes  # 3 bytes
    client_id: bytes | None
    server_id: bytes | None
    ias: tuple[IaNa, ...] = ()
    rapid_commit: bool = False
    options: dict[int, bytes] = field(default_factory=dict, compare=False)


def duid_ll(mac: str) -> bytes:
    """A server's DUID from its MAC (RFC 8415 11.4: DUID-LL, Ethernet)."""
    return DUID_LL.to_bytes(2, "big") + HW_ETHERNET.to_bytes(2, "big") + _mac(mac)


def parse_client_message(frame: bytes) -> ClientMessage:
    if len(frame) < ETH_HLEN + IPV6_HLEN + UDP_HLEN + 4 or frame[12:14] != ETH_P_IPV6:
        raise MalformedDhcp6("not an IPv6 frame")
    ip = frame[ETH_HLEN:]
    length = int.from_bytes(ip[4:6], "big")
    if ip[0] >> 4 != 6 or ip[6] != socket.IPPROTO_UDP or IPV6_HLEN + length > len(ip) or length < UDP_HLEN + 4:
        raise MalformedDhcp6("not UDP in a whole IPv6 packet")
    udp = ip[IPV6_HLEN:IPV6_HLEN + length]
    if int.from_bytes(udp[0:2], "big") != CLIENT_PORT or int.from_bytes(udp[2:4], "big") != SERVER_PORT:
        raise MalformedDhcp6("not from a DHCPv6 client to a server")
    if int.from_bytes(udp[4:6], "big") != length or ipv6_checksum(ip[8:24], ip[24:40], socket.IPPROTO_UDP, udp) != 0:
        raise MalformedDhcp6("bad UDP length or checksum")
    message = udp[UDP_HLEN:]
    options = _options(message[4:])
    ias = []
    for raw in options.get(OPT_IA_NA, []):
        if len(raw) < 12:
            raise MalformedDhcp6("IA_NA shorter than its header")
        addresses = tuple(str(ipaddress.IPv6Address(a[:16])) for a in _options(raw[12:]).get(OPT_IAADDR, [])
                          if len(a) >= 24)
        ias.append(IaNa(raw[:4], addresses))
    return ClientMessage(":".join(f"{b:02x}" for b in frame[6:12]), str(ipaddress.IPv6Address(ip[8:24])),
                         message[0], message[1:4], _one(options, OPT_CLIENTID), _one(options, OPT_SERVERID),
                         tuple(ias), OPT_RAPID_COMMIT in options, {k: v[0] for k, v in options.items()})


def option(code: int, value: bytes) -> bytes:
    return code.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value


def ia_na(iaid: bytes, t1: int, t2: int, address: str | None, preferred: int, valid: int,
          status: int | None = None) -> bytes:
    """An IA_NA (RFC 8415 21.4) holding one address (or, without one, a status)."""
    inner = option(OPT_IAADDR, ipaddress.IPv6Address(address).packed + preferred.to_bytes(4, "big") +
                   valid.to_bytes(4, "big")) if address else b""
    if status is not None:
        inner += status_code(status)
    return option(OPT_IA_NA, iaid + t1.to_bytes(4, "big") + t2.to_bytes(4, "big") + inner)


def status_code(status: int) -> bytes:
    return option(OPT_STATUS_CODE, status.to_bytes(2, "big"))


def domain_list(domains: list[str]) -> bytes:
    """RFC 3646's domain search list: names in DNS wire format, uncompressed (RFC 8415 10)."""
    out = b""
    for domain in domains:
        for label in domain.strip(".").split("."):
            out += bytes([len(label)]) + label.encode("ascii")
        out += b"\0"
    return out


def reply_frame(server_mac: str, server_ip: str, client: ClientMessage, msg_type: int, options: bytes) -> bytes:
    """The server's message to the client's address and MAC, from 547 to 546."""
    message = bytes([msg_type]) + client.xid + options
    udp = SERVER_PORT.to_bytes(2, "big") + CLIENT_PORT.to_bytes(2, "big") + \
        (UDP_HLEN + len(message)).to_bytes(2, "big") + bytes(2) + message
    return ipv6_frame(_mac(server_mac), _mac(client.src_mac), server_ip, client.src_ip, socket.IPPROTO_UDP, udp, 6,
                      hop_limit=64)


def _options(data: bytes) -> dict[int, list[bytes]]:
    found: dict[int, list[bytes]] = {}
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise MalformedDhcp6("option header cut short")
        code, size = int.from_bytes(data[offset:offset + 2], "big"), int.from_bytes(data[offset + 2:offset + 4], "big")
        if offset + 4 + size > len(data):
            raise MalformedDhcp6(f"option {code} overruns the message")
        found.setdefault(code, []).append(data[offset + 4:offset + 4 + size])
        offset += 4 + size
    return found


def _one(options: dict[int, list[bytes]], code: int) -> bytes | None:
    values = options.get(code)
    if values and len(values) > 1:
        raise MalformedDhcp6(f"option {code} more than once")
    return values[0] if values else None


def _mac(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))
