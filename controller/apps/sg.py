"""Security groups of the local ports as lookup entries (see controller/sg_compiler.py)."""
from __future__ import annotations

import ipaddress
import sys
from typing import Iterable

from dfxdp.datapath.libbpf import lib

from ..sg_compiler import Policy, port_policies
from .base import App, Entry, LocalView, ipv4_addresses, ipv4_be32


def be16(value: int) -> int:
    """A 16-bit number as the __be16 the datapath compares (network order in memory)."""
    return int.from_bytes(value.to_bytes(2, "big"), sys.byteorder)


def group_members(view: LocalView) -> dict[str, list[ipaddress.IPv4Network]]:
    """remote_group_id → the IPv4 addresses (/32) of the ports in that group (as far as this chassis knows)."""
    members: dict[str, list[ipaddress.IPv4Network]] = {}
    for port in view.ports.values():
        addresses = [ipaddress.IPv4Network(ip) for ip in ipv4_addresses(port)]
        for group in port.get("security_groups") or []:
            members.setdefault(group, []).extend(addresses)
    return members


def local_policies(view: LocalView) -> dict[tuple[int, int], Policy]:
    """(port key, direction) → Policy for every filtered local port."""
    members, rules = group_members(view), list(view.security_group_rules.values())
    out = {}
    for port_id in view.local_ports:
        port = view.ports.get(port_id)
        if port and port.get("port_security_enabled"):
            for direction, policy in port_policies(port, rules, members).items():
                out[(port["key"], direction)] = policy
    return out


class SecurityGroupApp(App):
    name = "sg"
    maps = ("sg_ports", "sg_remote", "sg_allow")

    def desired(self, view: LocalView) -> Iterable[Entry]:
        filtered = set()
        for (port_key, direction), policy in local_policies(view).items():
            if port_key not in filtered:
                filtered.add(port_key)
                yield Entry("sg_ports", port_key, {"flags": lib.SG_PORT_FILTERED})
            remote_entries, allow = policy.entries()
            for prefix, class_id in remote_entries:
                yield Entry("sg_remote", {"prefixlen": 64 + prefix.prefixlen, "port_key": port_key,
                                          "direction": direction,
                                          "addr": ipv4_be32(str(prefix.network_address))}, {"class_id": class_id})
            for class_id, proto, value, bits in allow:
                yield Entry("sg_allow", {"prefixlen": 112 + bits, "port_key": port_key, "direction": direction,
                                         "class_id": class_id, "proto": proto, "l4": be16(value)}, 1)
