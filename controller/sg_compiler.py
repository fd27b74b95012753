"""Security group rules → lookup entries, and the same policy evaluated in Python.

Per policy (the rules of one set of groups) and direction:
- `sg_remote` (LPM on the remote address) gives a class: the set of rules whose
  remote prefix holds the address. For the longest prefix P matching an address,
  the rules holding the address are exactly those whose prefix contains P, so one
  class per distinct prefix is enough. Rules with no remote restriction are class 0
  and always consulted, so they are never copied into every class. Sibling
  prefixes of the same class are merged into their parent (route aggregation):
  a remote group of 1,000 ports with consecutive addresses is a handful of
  entries, not 1,000.
- `sg_allow` (LPM on class, protocol, destination port) says yes; a port range
  becomes its minimal set of aligned prefix blocks (at most 30 for 16 bits), never
  one entry per port. Per packet: one class lookup and at most four allow lookups,
  whatever the number of rules.
Addresses are host-order integers; a prefix is (network, length).
IPv6 rules are not compiled yet: the datapath drops IPv6 to and from filtered ports (DROP_SG_IPV6).
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import socket
from dataclasses import dataclass, field
from functools import cached_property

from dfxdp.nb import protocols

PORTED = {6, 17, 132}
ANY_PROTO, ANY_CLASS = 0, 0
INGRESS, EGRESS = 0, 1  # maps/sg.h SG_INGRESS / SG_EGRESS

Prefix = tuple[int, int]  # (network address as an integer, prefix length)


def host_prefix(address: str) -> Prefix:
    """An IPv4 address as its /32."""
    return int.from_bytes(socket.inet_aton(address), "big"), 32


def mask(length: int) -> int:
    return (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF


def stable_id(names: list[str], taken: set[int]) -> int:
    """A 32-bit id (never 0) for a sorted list of names, the same in every pass and on every
    chassis; the next free one on a (rare) collision with `taken`. Class ids made this way
    mean one set of rules for good: when rules change, new classes get new ids, written
    before the old ones are removed, so no address ever meets another set's allow entries."""
    digest = hashlib.blake2b("\n".join(names).encode(), digest_size=4).digest()
    candidate = int.from_bytes(digest, "big") or 1
    while candidate in taken:
        candidate = candidate % 0xFFFFFFFF + 1
    return candidate


def range_to_prefixes(lo: int, hi: int, width: int = 16) -> list[tuple[int, int]]:
    """[lo, hi] as (value, prefix bits) blocks, the fewest that cover it exactly."""
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << width
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, width - size.bit_length() + 1))
        lo += size
    return out


def aggregate(entries: dict[Prefix, int]) -> dict[Prefix, int]:
    """Merge sibling prefixes that map to the same class into their parent, as far
    up as it goes. Longest-prefix lookups answer exactly as before: the parent
    is only written where both halves were, so it is fully covered, and any
    longer prefix inside still wins."""
    by_length: dict[int, dict[int, int]] = {}
    for (addr, length), class_id in entries.items():
        by_length.setdefault(length, {})[addr] = class_id
    for length in range(32, 0, -1):
        level = by_length.get(length)
        if not level:
            continue
        half = 1 << (32 - length)
        for addr in sorted(level):
            if addr & half:
                continue  # visit each pair once, from its lower half
            class_id = level[addr]
            if level.get(addr | half) == class_id:
                del level[addr], level[addr | half]
                by_length.setdefault(length - 1, {})[addr] = class_id
    return {(addr, length): class_id for length, level in by_length.items() for addr, class_id in level.items()}


@dataclass(frozen=True)
class Rule:
    """One compiled IPv4 rule of a direction."""

    proto: int                          # 0 = any
    l4: tuple[tuple[int, int], ...]     # (value, bits) blocks; () = any port/type
    remotes: tuple[Prefix, ...]         # () = anywhere
    ident: str = ""                     # the NB rule id (rules are never edited, only added and removed)

    def allows(self, proto: int, l4: int) -> bool:
        if self.proto and self.proto != proto:
            return False
        return not self.l4 or any(l4 >> (16 - bits) == value >> (16 - bits) for value, bits in self.l4)

    @cached_property
    def _remote_index(self) -> tuple[list[int], frozenset[Prefix]]:
        return sorted({length for _, length in self.remotes}), frozenset(self.remotes)

    def holds(self, addr: int) -> bool:
        """Is the address in one of the remote prefixes (or is the rule from anywhere)?"""
        if not self.remotes:
            return True
        lengths, prefixes = self._remote_index
        return any((addr & mask(length), length) in prefixes for length in lengths)


def _l4_blocks(proto: int, lo, hi) -> tuple[tuple[int, int], ...]:
    if proto in PORTED and lo is not None:
        return tuple(range_to_prefixes(lo, hi if hi is not None else lo))
    if proto == 1 and lo is not None:  # ICMP: type, and maybe code
        return ((lo << 8 | hi, 16),) if hi is not None else ((lo << 8, 8),)
    return ()


def compile_rule(rule: dict, group_members: dict[str, list[Prefix]]) -> Rule | None:
    if rule.get("ethertype", "IPv4") != "IPv4":
        return None
    raw = rule.get("protocol")
    proto = ANY_PROTO if raw is None else protocols.number(str(raw))
    if rule.get("remote_group_id"):
        remotes = tuple(group_members.get(rule["remote_group_id"], ()))
        if not remotes:
            return None  # an empty group allows nobody
    elif rule.get("remote_ip_prefix") and ipaddress.ip_network(rule["remote_ip_prefix"]).prefixlen:
        net = ipaddress.ip_network(rule["remote_ip_prefix"])
        remotes = ((int(net.network_address), net.prefixlen),)
    else:
        remotes = ()
    return Rule(proto, _l4_blocks(proto, rule.get("port_range_min"), rule.get("port_range_max")), remotes,
                rule.get("id") or json.dumps(rule, sort_keys=True))


@dataclass
class Policy:
    """The rules of one direction of a set of groups, compiled."""

    rules: list[Rule] = field(default_factory=list)

    def allows(self, proto: int, remote: str, l4: int) -> bool:
        addr = host_prefix(remote)[0]
        return any(r.allows(proto, l4) and r.holds(addr) for r in self.rules)

    def entries(self) -> tuple[list[tuple[Prefix, int]], set[tuple[int, int, int, int]]]:
        """(remote prefix, class) and (class, proto, l4 value, l4 bits) entries."""
        by_prefix: dict[Prefix, set[int]] = {}
        for i, r in enumerate(self.rules):
            for prefix in r.remotes:
                by_prefix.setdefault(prefix, set()).add(i)
        classes: dict[frozenset, int] = {}  # set of rule indexes → class id
        taken: set[int] = set()
        remote_classes: dict[Prefix, int] = {}
        allow: set[tuple[int, int, int, int]] = set()
        # the rules holding a prefix: those of the prefix itself and of each of its supernets
        # present; integer masks over the few prefix lengths in use keep this linear
        lengths = sorted({length for _, length in by_prefix})
        for prefix in sorted(by_prefix, key=lambda p: (p[1], p[0])):
            addr, plen = prefix
            members = set(by_prefix[prefix])
            for length in lengths:
                if length >= plen:
                    break
                members |= by_prefix.get((addr & mask(length), length), set())
            key = frozenset(members)
            if key not in classes:
                classes[key] = stable_id(sorted(self.rules[i].ident for i in key), taken)
                taken.add(classes[key])
            remote_classes[prefix] = classes[key]
        for members, class_id in classes.items():
            for i in members:
                allow |= self._allow(class_id, self.rules[i])
        for rule in self.rules:
            if not rule.remotes:
                allow |= self._allow(ANY_CLASS, rule)
        return sorted(aggregate(remote_classes).items()), allow

    @staticmethod
    def _allow(class_id: int, rule: Rule) -> set[tuple[int, int, int, int]]:
        return {(class_id, rule.proto, value, bits) for value, bits in (rule.l4 or ((0, 0),))}


def group_policies(groups: set[str], rules: list[dict], group_members: dict[str, list[Prefix]]) -> dict[int, Policy]:
    """{INGRESS: Policy, EGRESS: Policy} of a set of groups."""
    out = {INGRESS: Policy(), EGRESS: Policy()}
    for rule in rules:
        if rule.get("security_group_id") not in groups:
            continue
        compiled = compile_rule(rule, group_members)
        if compiled:
            out[INGRESS if rule["direction"] == "ingress" else EGRESS].rules.append(compiled)
    return out

