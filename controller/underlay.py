"""What the agent learns about the underlay from the kernel: next-hop MACs of
remote chassis (the neighbour table). Its NIC's MTU comes with the link events
(controller/binding.py).

When a tunnel IP has no resolved neighbour, a datagram to the discard port
makes the kernel resolve it (ARP); the answer shows up on the next look.
"""
from __future__ import annotations

import ipaddress
import socket

from . import netlink

DISCARD_PORT = 9
USABLE_STATES = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # REACHABLE STALE DELAY PROBE NOARP PERMANENT


def resolve_neighbors(tunnel_ips: list[str], ifindex: int) -> dict[str, str]:
    """tunnel IP -> MAC of its next hop via the underlay NIC, for those resolved now."""
    found: dict[str, str] = {}
    table = netlink.neighbours()
    for ip in tunnel_ips:
        try:
            hop = netlink.next_hop(ip)
        except OSError:  # no route: nothing to resolve now
            continue
        mac, state = table.get((hop, ifindex), (None, 0))
        if mac and state & USABLE_STATES:
            found[ip] = mac
        else:
            _provoke_resolution(ip)
    return found


def _provoke_resolution(ip: str) -> None:
    if ipaddress.ip_address(ip).version != 4:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(b"", (ip, DISCARD_PORT))
        except OSError:
            pass  # unreachable right now; the next reconcile tries again
