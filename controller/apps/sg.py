"""Security groups of the local ports as lookup entries (see controller/sg_compiler.py).

Ports with the same set of groups have the same rules, so they share one
compiled policy: its entries are written once, whatever the number of such
ports (a chassis' 50 VMs in the project's default group cost one copy of the
default group's members, not 50). A policy's id is a hash of its group ids:
the same on every chassis and across restarts, so an agent that adopts pinned
maps finds its entries where it left them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterable, Mapping

from dfxdp.datapath.libbpf import Map, lib

from .. import conntrack
from ..sg_compiler import Policy, Prefix, group_policies, host_prefix, stable_id
from .base import App, Entry, LocalView, ipv4_addresses


def be16(value: int) -> int:
    """A 16-bit number as the __be16 the datapath compares (network order in memory)."""
    return int.from_bytes(value.to_bytes(2, "big"), sys.byteorder)


def be32(addr: int) -> int:
    """A host-order IPv4 integer as the __be32 the datapath compares."""
    return int.from_bytes(addr.to_bytes(4, "big"), sys.byteorder)


@dataclass
class SharedPolicy:
    """The compiled policy of every filtered local port with one set of groups."""

    policy_id: int
    port_keys: list[int]
    directions: dict[int, Policy]  # INGRESS / EGRESS


def group_members(view: LocalView, groups: Iterable[str]) -> dict[str, list[Prefix]]:
    """group id → the IPv4 addresses (/32) of the ports in that group (as far as this chassis knows)."""
    return {group: [host_prefix(ip) for port in view.find("port", "security_group", group)
                    for ip in ipv4_addresses(port)] for group in groups}


def shared_policies(view: LocalView) -> list[SharedPolicy]:
    """The policies of the filtered local ports, computed once per pass (the SG app's
    entries and its conntrack upkeep both need them)."""
    if "sg" in view.derived:
        return view.derived["sg"]
    by_groups: dict[frozenset[str], list[int]] = {}
    for port_id in view.local_ports:
        port = view.ports.get(port_id)
        if port and port.get("port_security_enabled"):
            by_groups.setdefault(frozenset(port.get("security_groups") or ()), []).append(port["key"])
    out: list[SharedPolicy] = []
    if by_groups:
        rules = list(view.security_group_rules.values())
        members = group_members(view, {r["remote_group_id"] for r in rules if r.get("remote_group_id")})
        taken: set[int] = set()
        for groups in sorted(by_groups, key=sorted):  # a fixed order: collisions resolve the same way each pass
            pid = stable_id(sorted(groups), taken)
            taken.add(pid)
            out.append(SharedPolicy(pid, sorted(by_groups[groups]), group_policies(groups, rules, members)))
    view.derived["sg"] = out
    return out


def local_policies(view: LocalView) -> dict[tuple[int, int], Policy]:
    """(port key, direction) → Policy for every filtered local port."""
    return {(port_key, direction): policy for shared in shared_policies(view)
            for port_key in shared.port_keys for direction, policy in shared.directions.items()}


class SecurityGroupApp(App):
    name = "sg"
    maps = ("sg_remote", "sg_allow", "sg_ports")  # a policy's entries before the ports that use it
    datapath_maps = ("conntrack", "sg_stats")  # flows and verdict counters, per port

    def desired(self, view: LocalView) -> Iterable[Entry]:
        for shared in shared_policies(view):
            pid = shared.policy_id
            for direction, policy in shared.directions.items():
                remote_entries, allow = policy.entries()
                for (addr, length), class_id in remote_entries:
                    yield Entry("sg_remote", {"prefixlen": lib.SG_REMOTE_PREFIX_BASE + length, "policy": pid,
                                              "direction": direction, "addr": be32(addr)}, {"class_id": class_id})
                for class_id, proto, value, bits in allow:
                    yield Entry("sg_allow", {"prefixlen": lib.SG_ALLOW_PREFIX_BASE + bits, "policy": pid,
                                             "direction": direction, "class_id": class_id, "proto": proto,
                                             "l4": be16(value)}, 1)
            for port_key in shared.port_keys:
                yield Entry("sg_ports", port_key, {"flags": lib.SG_PORT_FILTERED, "policy": pid})

    def upkeep(self, view: LocalView, maps: Mapping[str, Map]) -> None:
        # after the new rules are in: end the flows they no longer allow, forget expired ones
        conntrack.maintain(maps["conntrack"], local_policies(view))
