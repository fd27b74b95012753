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
from ..sg_compiler import (ANY_CLASS, BLOCK_BITS, EGRESS, INGRESS, CompiledPolicy, IdRegistry, Members, Policy,
                           Prefix, RuleClass, group_policies, host_prefix)
from ..desired import LOCAL_PORT, Change
from .base import App, Entry, LocalView, ipv4_addresses


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

    groups: frozenset[str]
    policy_id: int
    port_keys: list[int]
    directions: dict[int, Policy]  # INGRESS / EGRESS

    def blocks(self) -> set[int]:
        return {block for policy in self.directions.values() for block in policy.blocks()}


class ViewMembers(Members):
    """Remote groups' members as the view holds them: the ports of the group with an IPv4
    address in a block, from the ports' `security_group_block` index (dfxdp/nb/kinds.py), so a
    block's compile reads its own members only."""

    def __init__(self, view: LocalView):
        self._view, self._index = view, view.index_of("port")
        # (group, block) -> its members' addresses, read once per pass (the conntrack sweep asks
        # for every tracked flow)
        self._read: dict[tuple[str, int], frozenset[int]] = {}

    def blocks(self, group: str) -> Iterable[int]:
        # the keys are (group, block) pairs, groups × blocks: few, whatever the groups' sizes
        return [block for member_of, block in self._index.by["security_group_block"] if member_of == group]

    def in_block(self, group: str, block: int) -> frozenset[int]:
        found = self._read.get((group, block))
        if found is None:
            found = self._read[(group, block)] = frozenset(
                addr for port in self._index.find("security_group_block", (group, block))
                for addr in (host_prefix(ip)[0] for ip in ipv4_addresses(port)) if addr >> BLOCK_BITS == block)
        return found

    def holds(self, group: str, addr: int) -> bool:
        return addr in self.in_block(group, addr >> BLOCK_BITS)


def group_member_prefixes(view: LocalView, group: str) -> list[Prefix]:
    """The IPv4 addresses (/32) of the ports in a group, as far as this chassis knows: O(members)."""
    return [host_prefix(ip) for port in view.ports_by("security_group", group) for ip in ipv4_addresses(port)]


POLICY_IDS = IdRegistry()  # a set of groups keeps its policy id for the life of the process


def shared_policies(view: LocalView) -> list[SharedPolicy]:
    """The policies of the filtered local ports, computed once per pass from the local ports and
    the rules (members are looked up per block as a compile needs them)."""
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
        members = ViewMembers(view)
        for groups in sorted(by_groups, key=sorted):
            out.append(SharedPolicy(groups, POLICY_IDS.id_for(groups), sorted(by_groups[groups]),
                                    group_policies(groups, rules, members)))
    view.derived["sg"] = out
    return out


def local_policies(view: LocalView) -> dict[tuple[int, int], Policy]:
    """(port key, direction) → Policy for every filtered local port."""
    return by_port(shared_policies(view))


def by_port(policies: list[SharedPolicy]) -> dict[tuple[int, int], Policy]:
    return {(port_key, direction): policy for shared in policies
            for port_key in shared.port_keys for direction, policy in shared.directions.items()}


POLICY, BLOCK = "policy", "block"


class SecurityGroupApp(App):
    """Scopes: ("policy", groups): a policy's entries from its rules alone (prefixes shorter than
    a block, class 0) and the sg_ports records of its ports; ("block", groups, block): the
    policy's entries of one /24 block (its remote groups' members there). A new local port with
    a policy in place derives that policy's rules and ports only; a remote group's new or
    departed member, its block's entries only (at most 256 addresses)."""

    name = "sg"
    # a class's port sets before the addresses that lead to it, a policy before the ports that use it
    maps = ("sg_l4", "sg_remote", "sg_ports")
    datapath_maps = ("conntrack", "sg_stats")  # flows and verdict counters, per port

    def __init__(self) -> None:
        # the blocks each policy's scopes gave entries for, so that a policy or a block that
        # goes is derived once more (to nothing)
        self._blocks: dict[frozenset[str], set[int]] = {}

    def scopes(self, view: LocalView) -> Iterable[Hashable]:
        self._blocks = {}
        for shared in shared_policies(view):
            yield POLICY, shared.groups
            for block in sorted(shared.blocks()):
                yield BLOCK, shared.groups, block

    def scope_entries(self, view: LocalView, scope: Hashable) -> Iterable[Entry]:
        shared = _policy_of(view, scope[1])
        if scope[0] == POLICY:
            if shared is None:
                self._blocks.pop(scope[1], None)
                return
            self._blocks.setdefault(shared.groups, set())
            yield from self._policy_entries(shared)
            return
        entries = [entry for direction, policy in (shared.directions.items() if shared else ())
                   for entry in policy_entries(shared.policy_id, direction, policy.compile_block(scope[2]))]
        if shared is not None:
            blocks = self._blocks.setdefault(shared.groups, set())
            (blocks.add if entries else blocks.discard)(scope[2])
        yield from entries

    @staticmethod
    def _policy_entries(shared: SharedPolicy) -> Iterable[Entry]:
        compiled = {direction: policy.compile_coarse() for direction, policy in shared.directions.items()}
        for direction, policy in compiled.items():
            yield from policy_entries(shared.policy_id, direction, policy)
        port = {"flags": lib.SG_PORT_FILTERED, "policy": shared.policy_id,
                "remote_lens": [remote_lengths(compiled[d]) for d in (INGRESS, EGRESS)],
                "any_flags": [class_flags(compiled[d].classes.get(ANY_CLASS)) for d in (INGRESS, EGRESS)]}
        for port_key in shared.port_keys:
            yield Entry("sg_ports", port_key, port)

    def desired(self, view: LocalView) -> Iterable[Entry]:
        for scope in self.scopes(view):
            yield from self.scope_entries(view, scope)

    def affected(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        """Rules or groups: every scope. A local port that comes, goes or changes: its policy's
        scope (every block too when that policy comes or goes). A remote group's member that
        comes, goes or changes address: the blocks of the addresses it gave or gives."""
        if change.kind in ("security_group", "security_group_rule"):
            return self._every_scope(view)
        if change.kind == LOCAL_PORT:
            return self._policy_scopes(view, view.ports.get(change.obj_id))
        if change.kind != "port":
            return ()
        out: set[Hashable] = set()
        if change.obj_id in view.local_ports or (change.old or {}).get("binding:host_id") == view.chassis:
            out = {scope for doc in change.docs() for scope in self._policy_scopes(view, doc)}
        return out | self._member_scopes(view, _memberships(view, change.old) ^ _memberships(view, change.new))

    def _every_scope(self, view: LocalView) -> set[Hashable]:
        known = {(BLOCK, groups, block) for groups, blocks in self._blocks.items() for block in blocks}
        return known | {(POLICY, groups) for groups in self._blocks} | set(self._current_scopes(view))

    @staticmethod
    def _current_scopes(view: LocalView) -> Iterable[Hashable]:
        for shared in shared_policies(view):
            yield POLICY, shared.groups
            for block in shared.blocks():
                yield BLOCK, shared.groups, block

    def _policy_scopes(self, view: LocalView, port: dict | None) -> set[Hashable]:
        """The policy scope of a (local) port's set of groups; its blocks too when the policy
        is new here or has gone (its last port went)."""
        if not port or not port.get("port_security_enabled"):
            return set()
        groups = frozenset(port.get("security_groups") or ())
        out: set[Hashable] = {(POLICY, groups)}
        shared = _policy_of(view, groups)
        if (shared is None) != (groups not in self._blocks):
            blocks = self._blocks.get(groups, set()) | (shared.blocks() if shared else set())
            out |= {(BLOCK, groups, block) for block in blocks}
        return out

    @staticmethod
    def _member_scopes(view: LocalView, memberships: set[tuple[str, str]]) -> set[Hashable]:
        out: set[Hashable] = set()
        for shared in shared_policies(view) if memberships else ():
            remote = {group for policy in shared.directions.values() for rule in policy.rules for group in
                      (rule.group,) if group}
            out |= {(BLOCK, shared.groups, host_prefix(address)[0] >> BLOCK_BITS)
                    for group, address in memberships if group in remote}
        return out

    def upkeep(self, view: LocalView, maps: Mapping[str, Map]) -> None:
        # after the new rules are in: end the flows they no longer allow, forget expired ones
        _, revoked = conntrack.maintain(maps["conntrack"], local_policies(view))
        if revoked:  # a flow ended here must not go on in the fast path's cache
            fastpath.invalidate(maps)


def _policy_of(view: LocalView, groups: frozenset[str]) -> SharedPolicy | None:
    return next((shared for shared in shared_policies(view) if shared.groups == groups), None)


def _memberships(view: LocalView, port: dict | None) -> set[tuple[str, str]]:
    """(remote group, address) pairs a port gives the filtered local ports' policies."""
    if not port or not view.local_ports or not port.get("security_groups"):
        return set()
    groups = set(port["security_groups"]) & remote_groups(view)
    return {(group, address) for group in groups for address in ipv4_addresses(port)} if groups else set()


def remote_groups(view: LocalView) -> set[str]:
    """The groups some rule in view names as its remote group."""
    return {r["remote_group_id"] for r in view.security_group_rules.values() if r.get("remote_group_id")}
