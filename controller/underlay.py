"""What the agent learns about the underlay from the kernel: next-hop MACs of
remote chassis (the neighbour table) and the NIC's MTU.

When a tunnel IP has no resolved neighbour, a datagram to the discard port
makes the kernel resolve it (ARP); the answer shows up on the next look.
"""
from __future__ import annotations

import ipaddress
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

DISCARD_PORT = 9
USABLE_STATES = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # REACHABLE STALE DELAY PROBE NOARP PERMANENT


def next_hop(ipr: IPRoute, dst: str) -> str:
    """The address to ARP for: the gateway of the route to dst, or dst itself."""
    routes = ipr.route("get", dst=dst)
    gateway = routes[0].get_attr("RTA_GATEWAY") if routes else None
    return gateway or dst


def resolve_neighbors(tunnel_ips: list[str], ifindex: int) -> dict[str, str]:
    """tunnel IP -> MAC of its next hop via the underlay NIC, for those resolved now."""
    found: dict[str, str] = {}
    with IPRoute() as ipr:
        table = {(n.get_attr("NDA_DST"), n["ifindex"]): (n.get_attr("NDA_LLADDR"), n["state"])
                 for n in ipr.get_neighbours(family=socket.AF_INET)}
        for ip in tunnel_ips:
            try:
                hop = next_hop(ipr, ip)
            except Exception:  # noqa: BLE001 - no route: nothing to resolve now
                continue
            mac, state = table.get((hop, ifindex), (None, 0))
            if mac and state & USABLE_STATES:
                found[ip] = mac
            else:
                _provoke_resolution(ip)
    return found


def link_mtu(ifindex: int) -> int:
    """The MTU of the underlay NIC: how big an outer (VXLAN) packet may be; 0 when
    the NIC is gone. Read on every pass, so an operator's change takes effect."""
    with IPRoute() as ipr:
        try:
            return ipr.get_links(ifindex)[0].get_attr("IFLA_MTU")
        except (NetlinkError, IndexError):
            return 0


def _provoke_resolution(ip: str) -> None:
    if ipaddress.ip_address(ip).version != 4:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(b"", (ip, DISCARD_PORT))
        except OSError:
            pass  # unreachable right now; the next reconcile tries again
