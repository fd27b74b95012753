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
from typing import Hashable, Iterable, Mapping

from dfxdp.datapath import fastpath
from dfxdp.datapath.libbpf import Map, lib

from .. import conntrack
from ..sg_compiler import (ANY_CLASS, EGRESS, INGRESS, CompiledPolicy, Policy, Prefix, RuleClass, group_policies,
                           host_prefix, stable_id)
from ..desired import LOCAL_PORT, Change
from .base import WHOLE, App, Entry, LocalView, ipv4_addresses


def be32(addr: int) -> int:
    """A host-order IPv4 integer as the __be32 the datapath compares."""
    return int.from_bytes(addr.to_bytes(4, "big"), sys.byteorder)


def words(bits: int) -> list[int]:
    """A 256-bit set as the eight __u32 of struct sg_l4_set (bit b in word b >> 5)."""
    return [(bits >> (32 * i)) & 0xFFFFFFFF for i in range(8)]


def class_flags(rules: RuleClass | None) -> int:
    if rules is None:
        return 0
    return (lib.SG_CLASS_F_ALL if rules.any_protocol else 0) | (lib.SG_CLASS_F_L4 if rules.l4 else 0)


def remote_lengths(compiled: CompiledPolicy) -> int:
    """The sg_port.remote_lens bits: bit 32 - L for each prefix length L sg_remote holds."""
    return sum(1 << (32 - length) for length in compiled.remote_lengths)


def policy_entries(pid: int, direction: int, compiled: CompiledPolicy) -> Iterable[Entry]:
    """A compiled direction's sg_l4 and sg_remote entries."""
    for class_id, rules in compiled.classes.items():
        for proto, l4 in rules.l4.items():
            key = {"policy": pid, "class_id": class_id, "direction": direction, "proto": proto}
            # a chunk's entry before the summary that points to it: a changed set never has a
            # moment where the summary sends a packet to a chunk entry not written yet
            for chunk, bits in l4.partial.items():
                yield Entry("sg_l4", {**key, "chunk": chunk}, {"set": words(bits), "partial": words(0)})
            yield Entry("sg_l4", {**key, "chunk": lib.SG_L4_SUMMARY},
                        {"set": words(l4.whole), "partial": words(sum(1 << c for c in l4.partial))})
    for (addr, length), class_id in compiled.remote.items():
        yield Entry("sg_remote", {"policy": pid, "direction": direction, "prefix_len": length, "addr": be32(addr)},
                    {"class_id": class_id, "flags": class_flags(compiled.classes[class_id])})


@dataclass
class SharedPolicy:
    """The compiled policy of every filtered local port with one set of groups."""

    policy_id: int
    port_keys: list[int]
    directions: dict[int, Policy]  # INGRESS / EGRESS


def group_members(view: LocalView, groups: Iterable[str]) -> dict[str, list[Prefix]]:
    """group id → the IPv4 addresses (/32) of the ports in that group (as far as this chassis knows)."""
    return {group: [host_prefix(ip) for port in view.ports_by("security_group", group)
                    for ip in ipv4_addresses(port)] for group in groups}


def remote_groups(view: LocalView) -> set[str]:
    """The groups some rule in view names as its remote group."""
    return {r["remote_group_id"] for r in view.security_group_rules.values() if r.get("remote_group_id")}


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
        members = group_members(view, remote_groups(view))
        taken: set[int] = set()
        for groups in sorted(by_groups, key=sorted):  # a fixed order: collisions resolve the same way each pass
            pid = stable_id(sorted(groups), taken)
            taken.add(pid)
            out.append(SharedPolicy(pid, sorted(by_groups[groups]), group_policies(groups, rules, members)))
    view.derived["sg"] = out
    return out


def local_policies(view: LocalView) -> dict[tuple[int, int], Policy]:
    """(port key, direction) → Policy for every filtered local port."""
    return by_port(shared_policies(view))


def by_port(policies: list[SharedPolicy]) -> dict[tuple[int, int], Policy]:
    return {(port_key, direction): policy for shared in policies
            for port_key in shared.port_keys for direction, policy in shared.directions.items()}


class SecurityGroupApp(App):
    name = "sg"
    # a class's port sets before the addresses that lead to it, a policy before the ports that use it
    maps = ("sg_l4", "sg_remote", "sg_ports")
    datapath_maps = ("conntrack", "sg_stats")  # flows and verdict counters, per port

    def __init__(self) -> None:
        self._policies: list[SharedPolicy] | None = None  # what the last pass that derived them compiled

    def affected(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        """The policies compile whole (one scope, O(members)): again when groups or rules change,
        a local port comes, goes or changes, or a remote group loses a member (address or group)."""
        if change.kind in ("security_group", "security_group_rule", LOCAL_PORT) or \
                change.kind == "port" and change.obj_id in view.local_ports:
            return (WHOLE,)
        return (WHOLE,) if change.kind == "port" and _memberships(view, change.old) - _memberships(
            view, change.new) else ()

    def later(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        """A remote group's new member (a port, or a new address or group of one): compiled again
        once no event waits (DesiredState.settle). Until then the datapath refuses it where its
        group is the remote one (fails closed), and no pass waits for the compile (O(members))."""
        if change.kind != "port" or change.obj_id in view.local_ports:
            return ()
        return (WHOLE,) if _memberships(view, change.new) - _memberships(view, change.old) else ()

    def desired(self, view: LocalView) -> Iterable[Entry]:
        self._policies = shared_policies(view)
        for shared in self._policies:
            compiled = {direction: policy.compile() for direction, policy in shared.directions.items()}
            for direction, policy in compiled.items():
                yield from policy_entries(shared.policy_id, direction, policy)
            port = {"flags": lib.SG_PORT_FILTERED, "policy": shared.policy_id,
                    "remote_lens": [remote_lengths(compiled[d]) for d in (INGRESS, EGRESS)],
                    "any_flags": [class_flags(compiled[d].classes.get(ANY_CLASS)) for d in (INGRESS, EGRESS)]}
            for port_key in shared.port_keys:
                yield Entry("sg_ports", port_key, port)

    def upkeep(self, view: LocalView, maps: Mapping[str, Map]) -> None:
        # after the new rules are in: end the flows they no longer allow, forget expired ones. The
        # policies compiled when they last changed (a pass that did not touch them leaves them)
        policies = self._policies if self._policies is not None else shared_policies(view)
        _, revoked = conntrack.maintain(maps["conntrack"], by_port(policies))
        if revoked:  # a flow ended here must not go on in the fast path's cache
            fastpath.invalidate(maps)


def _memberships(view: LocalView, port: dict | None) -> set[tuple[str, str]]:
    """(remote group, address) pairs a port gives the filtered local ports' policies."""
    if not port or not view.local_ports or not port.get("security_groups"):
        return set()
    groups = set(port["security_groups"]) & remote_groups(view)
    return {(group, address) for group in groups for address in ipv4_addresses(port)} if groups else set()
