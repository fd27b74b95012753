"""IPv6 router discovery on the wire (RFC 4861): reading a VM's Router Solicitation and
writing a router's Router Advertisement, as Neutron's radvd would send it for a router
interface (neutron/agent/linux/ra.py). Pure bytes in, bytes out: no I/O, no scapy at runtime.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dfxdp.nb.ipam import eui64  # a port's address on a slaac subnet and a router's link-local: one rule

from .frames import IPV6_HLEN, ipv6_checksum, ipv6_frame

ETH_HLEN, ETH_P_IPV6 = 14, 0x86DD
IPPROTO_ICMPV6 = 58
ROUTER_SOLICIT, ROUTER_ADVERT = 133, 134
OPT_SOURCE_LLADDR, OPT_PREFIX_INFO, OPT_MTU, OPT_RDNSS = 1, 3, 5, 25
ND_HOP_LIMIT = 255  # RFC 4861 6.1: neighbour discovery never crosses a router
UNSPECIFIED = "::"
ALL_NODES, ALL_NODES_MAC = "ff02::1", "33:33:00:00:00:01"
LINK_LOCAL = "fe80::/64"
IPV6_MIN_MTU = 1280

# What Neutron's radvd.conf leaves to radvd's defaults, with Neutron's interval (its
# max_rtr_adv_interval): the router lifetime is 3 intervals (radvd's AdvDefaultLifetime).
ADVERT_INTERVAL = 100.0
ROUTER_LIFETIME = 3 * int(ADVERT_INTERVAL)
CUR_HOP_LIMIT = 64
VALID_LIFETIME, PREFERRED_LIFETIME = 86400, 14400
RDNSS_LIFETIME = ROUTER_LIFETIME
MAX_RDNSS = 3  # Neutron's radvd template: at most three DNS servers
FLAG_MANAGED, FLAG_OTHER = 0x80, 0x40
PREFIX_ON_LINK, PREFIX_AUTONOMOUS = 0x80, 0x40


class MalformedNdp(ValueError):
    """A frame that is not a valid Router Solicitation (RFC 4861 6.1.1)."""


@dataclass(frozen=True)
class Solicitation:
    src_mac: str
    src_ip: str  # "::" when the host has no address yet


@dataclass(frozen=True)
class Prefix:
    cidr: str
    autonomous: bool  # the A flag: hosts make their own address (slaac, dhcpv6-stateless)


@dataclass(frozen=True)
class Advert:
    """What one router interface advertises on its network."""

    router_mac: str
    prefixes: tuple[Prefix, ...]
    managed: bool = False  # M: addresses by DHCPv6 (a dhcpv6-stateful subnet)
    other: bool = False    # O: other configuration by DHCPv6 (a dhcpv6-stateless subnet)
    mtu: int = 0           # the link's MTU; none below IPv6's minimum
    dns_servers: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """The router's link-local address (RFC 4861 6.1.2: an RA comes from one), its
        EUI-64 in fe80::/64 (the address the kernel of a router port would take)."""
        return eui64(LINK_LOCAL, self.router_mac)

    def frame(self, dst_mac: str = ALL_NODES_MAC, dst_ip: str = ALL_NODES) -> bytes:
        flags = (FLAG_MANAGED if self.managed else 0) | (FLAG_OTHER if self.other else 0)
        body = bytes([ROUTER_ADVERT, 0, 0, 0, CUR_HOP_LIMIT, flags]) + ROUTER_LIFETIME.to_bytes(2, "big") + bytes(8)
        body += bytes([OPT_SOURCE_LLADDR, 1]) + _mac(self.router_mac)
        if self.mtu >= IPV6_MIN_MTU:
            body += bytes([OPT_MTU, 1, 0, 0]) + self.mtu.to_bytes(4, "big")
        for prefix in self.prefixes:
            net = ipaddress.IPv6Network(prefix.cidr)
            body += bytes([OPT_PREFIX_INFO, 4, net.prefixlen,
                           PREFIX_ON_LINK | (PREFIX_AUTONOMOUS if prefix.autonomous else 0)])
            body += VALID_LIFETIME.to_bytes(4, "big") + PREFERRED_LIFETIME.to_bytes(4, "big") + bytes(4)
            body += net.network_address.packed
        servers = self.dns_servers[:MAX_RDNSS]
        if servers:
            body += bytes([OPT_RDNSS, 1 + 2 * len(servers), 0, 0]) + RDNSS_LIFETIME.to_bytes(4, "big")
            body += b"".join(ipaddress.IPv6Address(s).packed for s in servers)
        return ipv6_frame(_mac(self.router_mac), _mac(dst_mac), self.source, dst_ip, IPPROTO_ICMPV6, body, 2)


def parse_router_solicit(frame: bytes) -> Solicitation:
    """The sender of a Router Solicitation, checked as RFC 4861 6.1.1 says a router checks it."""
    if len(frame) < ETH_HLEN + IPV6_HLEN + 8 or int.from_bytes(frame[12:14], "big") != ETH_P_IPV6:
        raise MalformedNdp("not an IPv6 frame")
    ip = frame[ETH_HLEN:]
    length = int.from_bytes(ip[4:6], "big")
    if ip[0] >> 4 != 6 or ip[6] != IPPROTO_ICMPV6 or IPV6_HLEN + length > len(ip) or length < 8:
        raise MalformedNdp("not ICMPv6 in a whole IPv6 packet")
    if ip[7] != ND_HOP_LIMIT:
        raise MalformedNdp(f"hop limit {ip[7]}, not {ND_HOP_LIMIT}")
    icmp = ip[IPV6_HLEN:IPV6_HLEN + length]
    if icmp[0] != ROUTER_SOLICIT or icmp[1] != 0:
        raise MalformedNdp(f"ICMPv6 type {icmp[0]} code {icmp[1]}, not a Router Solicitation")
    if ipv6_checksum(ip[8:24], ip[24:40], IPPROTO_ICMPV6, icmp) != 0:
        raise MalformedNdp("bad ICMPv6 checksum")
    src = str(ipaddress.IPv6Address(ip[8:24]))
    offset = 8
    while offset < length:
        if offset + 2 > length or icmp[offset + 1] == 0 or offset + 8 * icmp[offset + 1] > length:
            raise MalformedNdp("option cut short or of length 0")
        if icmp[offset] == OPT_SOURCE_LLADDR and src == UNSPECIFIED:
            raise MalformedNdp("source link-layer address from the unspecified address")
        offset += 8 * icmp[offset + 1]
    return Solicitation(":".join(f"{b:02x}" for b in frame[6:12]), src)


def _mac(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))
