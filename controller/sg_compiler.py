"""Security group rules → lookup entries, and the same policy evaluated in Python.

Per policy (the rules of one set of groups) and direction:
- `sg_remote` (exact-match hash, one table per remote prefix length in use) gives a
  class: the set of rules whose remote prefix holds the address. For the longest
  prefix P matching an address, the rules holding the address are exactly those
  whose prefix contains P, so one class per distinct prefix is enough; the datapath
  probes the policy's prefix lengths longest first and stops at the first hit. Rules
  with no remote restriction are class 0 and always consulted, so they are never
  copied into every class. Sibling prefixes of the same class are merged into their
  parent (route aggregation: a remote group of 1,000 ports with consecutive addresses
  is a few dozen entries, not 1,000), and a merged prefix is then expanded to the next
  stride length (every STRIDE bits, or a length a rule names), so merging never adds
  more lengths to probe than the strides.
- `sg_l4` gives, per (class, protocol), the allowed destination ports (or ICMP
  type << 8 | code) as the union of the class's rules: 256-bit sets over 256 chunks of
  256 values. Per packet: the class lookups, then one or two set lookups for the
  class and for class 0, whatever the number of rules or how their ranges overlap.
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


STRIDE = 4  # merged remote prefixes are expanded to a multiple of this length (or a rule's own)
CHUNK_BITS = 8  # the l4 value space (16 bits) in chunks of 256 values
FULL_CHUNK = (1 << (1 << CHUNK_BITS)) - 1


def expand(entries: dict[Prefix, int], lengths: set[int]) -> dict[Prefix, int]:
    """Each prefix whose length is not in `lengths` as the blocks of the next length that is
    (controlled prefix expansion), a longer prefix winning where they meet, so longest-prefix
    lookups answer exactly as before over fewer distinct lengths. `lengths` must hold 32 and
    every length of a prefix that was not merged: then a prefix expands into at most as many
    blocks as the entries it was merged from."""
    out: dict[Prefix, int] = {}
    for (addr, length), class_id in sorted(entries.items(), key=lambda item: item[0][1]):
        target = min(x for x in lengths if x >= length)
        for i in range(1 << (target - length)):
            out[(addr | i << (32 - target), target)] = class_id
    return out


@dataclass(frozen=True)
class L4Set:
    """The l4 values (destination ports, or ICMP type << 8 | code) a class allows for one protocol,
    as the datapath holds them: chunks allowed whole, and the allowed values of the others."""

    whole: int               # bit c: every value of chunk c
    partial: dict[int, int]  # chunk → bit v & 255 for each allowed v (chunks allowed in part)

    @classmethod
    def of(cls, blocks) -> "L4Set":
        allowed, chunks = 0, set()
        for value, bits in blocks:
            size = 1 << (16 - bits)
            allowed |= ((1 << size) - 1) << value
            chunks.update(range(value >> CHUNK_BITS, ((value + size - 1) >> CHUNK_BITS) + 1))
        whole, partial = 0, {}
        for chunk in chunks:
            part = (allowed >> (chunk << CHUNK_BITS)) & FULL_CHUNK
            if part == FULL_CHUNK:
                whole |= 1 << chunk
            else:
                partial[chunk] = part
        return cls(whole, partial)

    def allows(self, value: int) -> bool:
        chunk = value >> CHUNK_BITS
        return bool(self.whole >> chunk & 1 or self.partial.get(chunk, 0) >> (value & 0xFF) & 1)


@dataclass(frozen=True)
class RuleClass:
    """What a set of rules allows: every protocol, or per protocol an L4Set."""

    any_protocol: bool
    l4: dict[int, L4Set]

    @classmethod
    def of(cls, rules: list[Rule]) -> "RuleClass":
        blocks: dict[int, list[tuple[int, int]]] = {}
        for rule in rules:
            if rule.proto:
                blocks.setdefault(rule.proto, []).extend(rule.l4 or ((0, 0),))
        return cls(any(not rule.proto for rule in rules), {proto: L4Set.of(b) for proto, b in sorted(blocks.items())})

    def allows(self, proto: int, value: int) -> bool:
        return self.any_protocol or (proto in self.l4 and self.l4[proto].allows(value))


@dataclass(frozen=True)
class CompiledPolicy:
    """One direction of a policy as the datapath looks it up."""

    remote: dict[Prefix, int]        # remote prefix → class id (never ANY_CLASS)
    classes: dict[int, RuleClass]    # class id → its rules; ANY_CLASS for the rules from anywhere

    @property
    def remote_lengths(self) -> set[int]:
        return {length for _, length in self.remote}


@dataclass
class Policy:
    """The rules of one direction of a set of groups, compiled."""

    rules: list[Rule] = field(default_factory=list)

    def allows(self, proto: int, remote: str, l4: int) -> bool:
        addr = host_prefix(remote)[0]
        return any(r.allows(proto, l4) and r.holds(addr) for r in self.rules)

    def compile(self) -> CompiledPolicy:
        by_prefix: dict[Prefix, set[int]] = {}
        for i, r in enumerate(self.rules):
            for prefix in r.remotes:
                by_prefix.setdefault(prefix, set()).add(i)
        classes: dict[frozenset, int] = {}  # set of rule indexes → class id
        taken: set[int] = set()
        remote_classes: dict[Prefix, int] = {}
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
        rule_classes = {class_id: RuleClass.of([self.rules[i] for i in sorted(members)])
                        for members, class_id in classes.items()}
        anywhere = [rule for rule in self.rules if not rule.remotes]
        if anywhere:
            rule_classes[ANY_CLASS] = RuleClass.of(anywhere)
        strides = set(range(STRIDE, 33, STRIDE)) | {32} | set(lengths)
        return CompiledPolicy(expand(aggregate(remote_classes), strides), rule_classes)


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

