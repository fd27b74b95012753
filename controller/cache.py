"""The agent's NB cache, selective: only what this chassis' ports can reach.

Interest grows from the ports bound here: their networks, the routers with an
interface on those networks and the routers' other networks (gateway included),
the security groups of the local ports and the groups their rules reference.
Which documents of each kind the chassis keeps is the kind's relation to that
interest (dfxdp/nb/kinds.py: floating IPs of local ports and of routers served, subnets of its networks,
every chassis …). Objects outside it are not kept. When an event widens the
interest (a port bound here on a new network, a router attached to a network we
serve), the cache rebuilds from a fresh read of the store, since it never kept
what it now needs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

from dfxdp.nb import kinds
from dfxdp.nb.db.base import KV, Event
from dfxdp.nb.kinds import ROUTER_PORT_OWNERS
from dfxdp.nb.txn import NB


def _empty() -> dict[str, dict[str, dict]]:
    """Every kind listed (dfxdp/nb/kinds.py), none held yet."""
    return {kind.name: {} for kind in kinds.KINDS}


def parse_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(NB):
        return None
    kind, _, obj_id = key[len(NB):].partition("/")
    return (kind, obj_id) if obj_id else None


@dataclass(frozen=True)
class Interest:
    local_ports: frozenset = frozenset()
    networks: frozenset = frozenset()
    routers: frozenset = frozenset()
    security_groups: frozenset = frozenset()

    def covers(self, other: "Interest") -> bool:
        return (other.local_ports <= self.local_ports and other.networks <= self.networks and
                other.routers <= self.routers and other.security_groups <= self.security_groups)


def compute_interest(chassis: str, objects: dict[str, dict[str, dict]]) -> Interest:
    ports = objects.get("port", {}).values()
    local = {p["id"] for p in ports if p.get("binding:host_id") == chassis}
    networks = {p["network_id"] for p in ports if p["id"] in local}
    routers = {p["device_id"] for p in ports
               if p.get("device_owner") == "network:router_interface" and p["network_id"] in networks}
    networks |= {p["network_id"] for p in ports if p.get("device_owner") in ROUTER_PORT_OWNERS
                 and p.get("device_id") in routers}
    groups = {sg for p in ports if p["id"] in local for sg in (p.get("security_groups") or [])}
    groups |= {r["remote_group_id"] for r in objects.get("security_group_rule", {}).values()
               if r.get("security_group_id") in groups and r.get("remote_group_id")}
    return Interest(frozenset(local), frozenset(networks), frozenset(routers), frozenset(groups))


def relevant(kind: str, doc: dict, chassis: str, interest: Interest) -> bool:
    listed = kinds.BY_NAME.get(kind)
    return listed is not None and listed.relation(doc, chassis, interest)


@dataclass
class SelectiveCache:
    chassis: str
    objects: dict[str, dict[str, dict]] = field(default_factory=_empty)
    interest: Interest = field(default_factory=Interest)
    revision: int = 0

    def size(self) -> int:
        return sum(len(v) for v in self.objects.values())

    def load(self, kvs: Iterable[KV], revision: int) -> None:
        """Rebuild from a full read of the NB prefix."""
        everything = _empty()
        for kv in kvs:
            parsed = parse_key(kv.key)
            if parsed and parsed[0] in everything:
                everything[parsed[0]][parsed[1]] = json.loads(kv.value)
        # interest is a fixpoint: groups referenced by rules need the rules first
        interest = compute_interest(self.chassis, everything)
        while True:
            wider = compute_interest(self.chassis, {**everything, "security_group_rule": {
                i: r for i, r in everything["security_group_rule"].items()
                if r.get("security_group_id") in interest.security_groups}})
            if interest.covers(wider):
                break
            interest = Interest(interest.local_ports | wider.local_ports, interest.networks | wider.networks,
                                interest.routers | wider.routers, interest.security_groups | wider.security_groups)
        self.interest = interest
        self.objects = {kind: {i: d for i, d in docs.items() if relevant(kind, d, self.chassis, interest)}
                        for kind, docs in everything.items()}
        self.revision = revision

    def apply(self, event: Event) -> bool:
        """Apply one watch event. Returns True when the interest widened and the
        caller must rebuild from a fresh store read (load())."""
        self.revision = event.revision
        parsed = parse_key(event.key)
        if not parsed or parsed[0] not in self.objects:
            return False
        kind, obj_id = parsed
        old = self.objects[kind].get(obj_id)
        doc = json.loads(event.value) if event.type != "delete" else None
        if not (self._steers_interest(kind, old) or self._steers_interest(kind, doc)):
            # most events (a port on a network we serve, elsewhere): the interest stays as it is,
            # so no O(size) recomputation per event
            if doc is not None and relevant(kind, doc, self.chassis, self.interest):
                self.objects[kind][obj_id] = doc
            else:
                self.objects[kind].pop(obj_id, None)
            return False
        if doc is None:
            self.objects[kind].pop(obj_id, None)
            self.interest = compute_interest(self.chassis, self.objects)
            self.objects = {k: {i: d for i, d in docs.items() if relevant(k, d, self.chassis, self.interest)}
                            for k, docs in self.objects.items()}
            return False
        trial = {**self.objects, kind: {**self.objects[kind], obj_id: doc}}
        wider = compute_interest(self.chassis, trial)
        if not self.interest.covers(Interest(networks=wider.networks, routers=wider.routers,
                                             security_groups=wider.security_groups)):
            return True
        # only the set of local ports changed (e.g. a new VM on a network we already serve):
        # the event itself carries the one document that needs
        self.interest = Interest(wider.local_ports, self.interest.networks, self.interest.routers,
                                 self.interest.security_groups)
        if relevant(kind, doc, self.chassis, self.interest):
            self.objects[kind][obj_id] = doc
        else:
            self.objects[kind].pop(obj_id, None)  # e.g. a port that moved to a network we do not serve
        return False

    def _steers_interest(self, kind: str, doc: dict | None) -> bool:
        """Can this document, added or removed, change what the chassis needs?"""
        if doc is None:
            return False
        if kind == "port":
            return doc.get("binding:host_id") == self.chassis or doc.get("device_owner") in ROUTER_PORT_OWNERS
        return kind == "security_group_rule" and doc.get("security_group_id") in self.interest.security_groups
