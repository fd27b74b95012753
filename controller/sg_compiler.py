"""Security group rules → lookup entries, and the same policy evaluated in Python.

Per port and direction:
- `sg_remote` (LPM on the remote address) gives a class: the set of rules whose
  remote prefix holds the address. For the longest prefix P matching an address,
  the rules holding the address are exactly those whose prefix contains P, so one
  class per distinct prefix is enough. Rules with no remote restriction are class 0
  and always consulted, so they are never copied into every class.
- `sg_allow` (LPM on class, protocol, destination port) says yes; a port range
  becomes its minimal set of aligned prefix blocks (at most 30 for 16 bits), never
  one entry per port. Per packet: one class lookup and at most four allow lookups,
  whatever the number of rules.
IPv6 rules are not compiled: IPv6 goes to the fallback path.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132}
PORTED = {6, 17, 132}
ANY_PROTO, ANY_CLASS = 0, 0
INGRESS, EGRESS = 0, 1  # maps/sg.h SG_INGRESS / SG_EGRESS


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


@dataclass(frozen=True)
class Rule:
    """One compiled IPv4 rule of a direction."""

    proto: int                                  # 0 = any
    l4: tuple[tuple[int, int], ...]             # (value, bits) blocks; () = any port/type
    remotes: tuple[ipaddress.IPv4Network, ...]  # () = anywhere

    def allows(self, proto: int, l4: int) -> bool:
        if self.proto and self.proto != proto:
            return False
        return not self.l4 or any(l4 >> (16 - bits) == value >> (16 - bits) for value, bits in self.l4)


def _l4_blocks(proto: int, lo, hi) -> tuple[tuple[int, int], ...]:
    if proto in PORTED and lo is not None:
        return tuple(range_to_prefixes(lo, hi if hi is not None else lo))
    if proto == 1 and lo is not None:  # ICMP: type, and maybe code
        return ((lo << 8 | hi, 16),) if hi is not None else ((lo << 8, 8),)
    return ()


def compile_rule(rule: dict, group_members: dict[str, list[ipaddress.IPv4Network]]) -> Rule | None:
    if rule.get("ethertype", "IPv4") != "IPv4":
        return None
    raw = rule.get("protocol")
    proto = PROTOCOLS.get(raw, int(raw) if raw and str(raw).isdigit() else ANY_PROTO)
    if rule.get("remote_group_id"):
        remotes = tuple(group_members.get(rule["remote_group_id"], ()))
        if not remotes:
            return None  # an empty group allows nobody
    elif rule.get("remote_ip_prefix") and ipaddress.ip_network(rule["remote_ip_prefix"]).prefixlen:
        remotes = (ipaddress.ip_network(rule["remote_ip_prefix"]),)
    else:
        remotes = ()
    return Rule(proto, _l4_blocks(proto, rule.get("port_range_min"), rule.get("port_range_max")), remotes)


@dataclass
class Policy:
    """The rules of one port and direction, compiled."""

    rules: list[Rule] = field(default_factory=list)

    def allows(self, proto: int, remote: str, l4: int) -> bool:
        addr = ipaddress.ip_address(remote)
        return any(r.allows(proto, l4) and (not r.remotes or any(addr in n for n in r.remotes)) for r in self.rules)

    def entries(self) -> tuple[list[tuple[ipaddress.IPv4Network, int]], set[tuple[int, int, int, int]]]:
        """(remote prefix, class) and (class, proto, l4 value, l4 bits) entries."""
        by_prefix: dict[ipaddress.IPv4Network, set[int]] = {}
        for i, r in enumerate(self.rules):
            for n in r.remotes:
                by_prefix.setdefault(n, set()).add(i)
        classes: dict[frozenset, int] = {}
        remote_entries = []
        allow: set[tuple[int, int, int, int]] = set()
        # the rules holding a prefix: those of the prefix itself and of each of its supernets
        # present; integer masks over the few prefix lengths in use keep this linear
        lengths = sorted({n.prefixlen for n in by_prefix})
        by_int = {(int(n.network_address), n.prefixlen): rules for n, rules in by_prefix.items()}
        for prefix in sorted(by_prefix, key=lambda n: (n.prefixlen, int(n.network_address))):
            addr, members = int(prefix.network_address), set(by_prefix[prefix])
            for length in lengths:
                if length >= prefix.prefixlen:
                    break
                members |= by_int.get((addr & (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF, length), set())
            class_id = classes.setdefault(frozenset(members), len(classes) + 1)
            remote_entries.append((prefix, class_id))
        for members, class_id in classes.items():
            for i in members:
                allow |= self._allow(class_id, self.rules[i])
        for rule in self.rules:
            if not rule.remotes:
                allow |= self._allow(ANY_CLASS, rule)
        return remote_entries, allow

    @staticmethod
    def _allow(class_id: int, rule: Rule) -> set[tuple[int, int, int, int]]:
        return {(class_id, rule.proto, value, bits) for value, bits in (rule.l4 or ((0, 0),))}


def port_policies(port: dict, rules: list[dict],
                  group_members: dict[str, list[ipaddress.IPv4Network]]) -> dict[int, Policy]:
    """{INGRESS: Policy, EGRESS: Policy} of a port from its groups' rules."""
    groups = set(port.get("security_groups") or [])
    out = {INGRESS: Policy(), EGRESS: Policy()}
    for rule in rules:
        if rule.get("security_group_id") not in groups:
            continue
        compiled = compile_rule(rule, group_members)
        if compiled:
            out[INGRESS if rule["direction"] == "ingress" else EGRESS].rules.append(compiled)
    return out
