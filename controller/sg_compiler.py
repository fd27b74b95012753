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
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Mapping

from dfxdp.nb import protocols
from dfxdp.nb.kinds import SG_BLOCK_BITS

PORTED = {6, 17, 132}
ANY_PROTO, ANY_CLASS = 0, 0
INGRESS, EGRESS = 0, 1  # maps/sg.h SG_INGRESS / SG_EGRESS
BLOCK_BITS = SG_BLOCK_BITS  # the host bits of a block: remote addresses compile per /24, a new member re-derives its block

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
    remotes: tuple[Prefix, ...]         # a remote_ip_prefix rule's prefix; () = anywhere (unless `group`)
    ident: str = ""                     # the NB rule id (rules are never edited, only added and removed)
    group: str = ""                     # remote_group_id: the rule holds the group's members' addresses

    @property
    def anywhere(self) -> bool:
        return not self.remotes and not self.group

    def allows(self, proto: int, l4: int) -> bool:
        if self.proto and self.proto != proto:
            return False
        return not self.l4 or any(l4 >> (16 - bits) == value >> (16 - bits) for value, bits in self.l4)

    def holds(self, addr: int, members: "Members") -> bool:
        """Is the address a member of the rule's remote group, in its remote prefix, or is the
        rule from anywhere?"""
        if self.group:
            return members.holds(self.group, addr)
        return not self.remotes or any(addr & mask(length) == net for net, length in self.remotes)


class Members:
    """The IPv4 addresses of remote groups' members, looked up by /24 block (BLOCK_BITS): what a
    compile of one block reads. The agent's is its port index (controller/apps/sg.py); this
    one holds lists, for tests and the OVS fallback."""

    def __init__(self, groups: Mapping[str, Iterable[Prefix]] | None = None):
        self._blocks: dict[str, dict[int, set[int]]] = {}
        for group, prefixes in (groups or {}).items():
            for addr, _ in prefixes:
                self._blocks.setdefault(group, {}).setdefault(addr >> BLOCK_BITS, set()).add(addr)

    def blocks(self, group: str) -> Iterable[int]:
        """The blocks holding a member of the group."""
        return self._blocks.get(group, {}).keys()

    def in_block(self, group: str, block: int) -> Iterable[int]:
        """The group's member addresses in one block."""
        return self._blocks.get(group, {}).get(block, ())

    def holds(self, group: str, addr: int) -> bool:
        return addr in self.in_block(group, addr >> BLOCK_BITS)


def _l4_blocks(proto: int, lo, hi) -> tuple[tuple[int, int], ...]:
    if proto in PORTED and lo is not None:
        return tuple(range_to_prefixes(lo, hi if hi is not None else lo))
    if proto == 1 and lo is not None:  # ICMP: type, and maybe code
        return ((lo << 8 | hi, 16),) if hi is not None else ((lo << 8, 8),)
    return ()


def compile_rule(rule: dict) -> Rule | None:
    if rule.get("ethertype", "IPv4") != "IPv4":
        return None
    raw = rule.get("protocol")
    proto = ANY_PROTO if raw is None else protocols.number(str(raw))
    remotes: tuple[Prefix, ...] = ()
    if not rule.get("remote_group_id") and rule.get("remote_ip_prefix") and \
            ipaddress.ip_network(rule["remote_ip_prefix"]).prefixlen:
        net = ipaddress.ip_network(rule["remote_ip_prefix"])
        remotes = ((int(net.network_address), net.prefixlen),)
    return Rule(proto, _l4_blocks(proto, rule.get("port_range_min"), rule.get("port_range_max")), remotes,
                rule.get("id") or json.dumps(rule, sort_keys=True), rule.get("remote_group_id") or "")


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


class IdRegistry:
    """Stable ids (stable_id) handed out for good: a set of names keeps its id, and an id means
    one set, for the life of the process (a collision takes the next free id, once). Per block
    compiles then agree on a class's id whatever order they run in."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, ...], int] = {}
        self._taken: set[int] = set()

    def id_for(self, names: Iterable[str]) -> int:
        key = tuple(sorted(names))
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = stable_id(list(key), self._taken)
            self._taken.add(found)
        return found


CLASS_IDS = IdRegistry()  # class ids (sets of rule ids), shared by every policy of the process


@dataclass(frozen=True)
class CompiledPolicy:
    """One direction of a policy (or of a part of it) as the datapath looks it up."""

    remote: dict[Prefix, int]        # remote prefix → class id (never ANY_CLASS)
    classes: dict[int, RuleClass]    # class id → its rules; ANY_CLASS for the rules from anywhere
    lengths: frozenset[int]          # the prefix lengths sg_remote may hold for the policy: a superset

    @property
    def remote_lengths(self) -> set[int]:
        return set(self.lengths)


class Policy:
    """The rules of one direction of a set of groups, compiled in parts: the prefixes shorter
    than a block (rules' remote_ip_prefix: few, no members), and each /24 block on its own
    (the remote groups' members there and the rules' longer prefixes), its entries aggregated
    within the block. A block's classes include the rules of the shorter prefixes holding it, so
    the longest match the datapath finds in a block answers as a whole compile would."""

    def __init__(self, rules: list[Rule] | None = None, members: Members | None = None):
        self.rules = list(rules or ())
        self.members = members if members is not None else Members()

    def allows(self, proto: int, remote: str, l4: int) -> bool:
        addr = host_prefix(remote)[0]
        return any(r.allows(proto, l4) and r.holds(addr, self.members) for r in self.rules)

    @cached_property
    def _layout(self) -> "_Layout":
        return _Layout(self.rules)

    def blocks(self) -> set[int]:
        """The blocks with something to compile: members of a remote group, rules' longer prefixes."""
        layout = self._layout
        return set(layout.fine) | {block for group in layout.groups for block in self.members.blocks(group)}

    @property
    def lengths(self) -> frozenset[int]:
        return self._layout.lengths

    def compile_coarse(self) -> CompiledPolicy:
        """The prefixes shorter than a block, and the rules from anywhere (class 0)."""
        layout = self._layout
        remote = expand(aggregate({prefix: layout.class_of(rules) for prefix, rules in layout.coarse_classes()}),
                        layout.strides)
        classes = {class_id: layout.rule_class(class_id) for class_id in set(remote.values())}
        if layout.anywhere:
            classes[ANY_CLASS] = RuleClass.of([self.rules[i] for i in layout.anywhere])
        return CompiledPolicy(remote, classes, layout.lengths)

    def compile_block(self, block: int) -> CompiledPolicy:
        """One /24 block: its members' and longer prefixes' classes, aggregated within it."""
        layout = self._layout
        points = {prefix: set(rules) for prefix, rules in layout.fine.get(block, {}).items()}
        for group, rules in layout.groups.items():
            for addr in self.members.in_block(group, block):
                points.setdefault((addr, 32), set()).update(rules)
        above = layout.coarse_rules_holding(block << BLOCK_BITS)
        lengths = sorted({length for _, length in points})
        classes: dict[Prefix, int] = {}
        for addr, plen in points:
            rules = points[(addr, plen)] | above
            for length in lengths:
                if length >= plen:
                    break
                rules |= points.get((addr & mask(length), length), set())
            classes[(addr, plen)] = layout.class_of(rules)
        remote = expand(aggregate(classes), layout.strides)
        return CompiledPolicy(remote, {class_id: layout.rule_class(class_id) for class_id in set(remote.values())},
                              layout.lengths)

    def compile(self) -> CompiledPolicy:
        """The whole direction: the coarse part and every block."""
        whole = self.compile_coarse()
        for block in sorted(self.blocks()):
            part = self.compile_block(block)
            whole.remote.update(part.remote)
            whole.classes.update(part.classes)
        return whole


class _Layout:
    """What a policy's rules say, indexed for compiling its parts (no members)."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self.anywhere = [i for i, rule in enumerate(rules) if rule.anywhere]
        self.groups: dict[str, set[int]] = {}  # remote group → the rules naming it
        self.coarse: dict[Prefix, set[int]] = {}  # prefixes shorter than a block → their rules
        self.fine: dict[int, dict[Prefix, set[int]]] = {}  # block → its prefixes → their rules
        for i, rule in enumerate(rules):
            if rule.group:
                self.groups.setdefault(rule.group, set()).add(i)
            for addr, length in rule.remotes:
                if length < 32 - BLOCK_BITS:
                    self.coarse.setdefault((addr, length), set()).add(i)
                else:
                    self.fine.setdefault(addr >> BLOCK_BITS, {}).setdefault((addr, length), set()).add(i)
        self.coarse_lengths = sorted({length for _, length in self.coarse})
        rule_lengths = {length for rule in rules for _, length in rule.remotes}
        self.strides = set(range(STRIDE, 33, STRIDE)) | {32} | rule_lengths
        self._classes: dict[frozenset[int], int] = {}
        self._rule_classes: dict[int, RuleClass] = {}
        self.lengths = frozenset(self._coarse_lengths_in_use() | self._block_lengths(rule_lengths))

    def _block_lengths(self, rule_lengths: set[int]) -> set[int]:
        """Every length a block's entries may have: members (/32) and longer prefixes merge up to
        the block's /24 and expand to the next stride, from rules alone (so a policy's sg_ports
        record never waits for its members). A superset: a length with no entry costs a probe."""
        longest = 32 if self.groups else max((x for x in rule_lengths if x >= 32 - BLOCK_BITS), default=0)
        return {min(s for s in self.strides if s >= m) for m in range(32 - BLOCK_BITS, longest + 1)}

    def _coarse_lengths_in_use(self) -> set[int]:
        return {length for _, length in expand(aggregate({p: self.class_of(r) for p, r in self.coarse_classes()}),
                                               self.strides)}

    def coarse_rules_holding(self, addr: int) -> set[int]:
        """The rules of the shorter prefixes holding an address."""
        out: set[int] = set()
        for length in self.coarse_lengths:
            out |= self.coarse.get((addr & mask(length), length), set())
        return out

    def coarse_classes(self) -> Iterable[tuple[Prefix, set[int]]]:
        """Each coarse prefix with the rules holding it: its own and those of its supernets."""
        for addr, plen in self.coarse:
            rules = set(self.coarse[(addr, plen)])
            for length in self.coarse_lengths:
                if length >= plen:
                    break
                rules |= self.coarse.get((addr & mask(length), length), set())
            yield (addr, plen), rules

    def class_of(self, rules: set[int]) -> int:
        key = frozenset(rules)
        found = self._classes.get(key)
        if found is None:
            found = self._classes[key] = CLASS_IDS.id_for(self.rules[i].ident for i in key)
            self._rule_classes[found] = RuleClass.of([self.rules[i] for i in sorted(key)])
        return found

    def rule_class(self, class_id: int) -> RuleClass:
        return self._rule_classes[class_id]


def group_policies(groups: set[str], rules: list[dict],
                   members: Members | Mapping[str, Iterable[Prefix]] | None = None) -> dict[int, Policy]:
    """{INGRESS: Policy, EGRESS: Policy} of a set of groups."""
    found = members if isinstance(members, Members) else Members(members)
    out = {INGRESS: Policy(members=found), EGRESS: Policy(members=found)}
    for rule in rules:
        if rule.get("security_group_id") not in groups:
            continue
        compiled = compile_rule(rule)
        if compiled:
            out[INGRESS if rule["direction"] == "ingress" else EGRESS].rules.append(compiled)
    return out
