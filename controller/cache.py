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

Lean: a document keeps only what the apps read (LEFT_OUT: timestamps, descriptions,
binding details), its repeated strings interned, what a port nests as compact records
(controller/cache_records.py), so 100,000 ports fit in the agent.
Change tracking: every object put or dropped since the last pass is remembered
with its document before (take_changes), so a pass recomputes only what those
objects touch (controller/desired.py); a reload or a narrowed interest asks for a
full pass instead. Every kind's declared indexes (dfxdp/nb/kinds.py: ports by network,
device, chassis and group …) are kept up to date with every change (controller/kind_index.py).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Iterable

from dfxdp.nb import kinds
from dfxdp.nb.db.base import KV, Event
from dfxdp.nb.kinds import ROUTER_PORT_OWNERS
from dfxdp.nb.txn import NB


from . import cache_records as records
from .desired import Change
from .kind_index import KindIndex, indexes_of


def _empty() -> dict[str, dict[str, dict]]:
    """Every kind listed (dfxdp/nb/kinds.py), none held yet."""
    return {kind.name: {} for kind in kinds.KINDS}


# Fields of the bulky kinds no app reads: dropped as a document enters the cache.
LEFT_OUT = frozenset({"description", "project_id", "tenant_id", "created_at", "updated_at", "tags", "revision_number",
                      "admin_state_up", "binding:vnic_type", "binding:vif_type", "binding:vif_details",
                      "binding:profile"})
# Fields apps read with a default (port.get(name) or its like): left out when empty, as most are
LEFT_OUT_EMPTY = frozenset({"name", "dns_name", "allowed_address_pairs", "extra_dhcp_opts", "device_id",
                            "device_owner", "binding:host_id"})
LEAN_KINDS = frozenset({"port", "network", "subnet"})
# string fields shared by many documents (ids of a port's network, chassis, groups): one copy each
INTERNED = ("network_id", "binding:host_id", "device_owner", "device_id", "subnet_id", "status")


def lean(kind: str, doc: dict) -> dict:
    """What the cache keeps of a document: apps see the same fields, minus LEFT_OUT."""
    if kind not in LEAN_KINDS:
        return doc
    out = {}
    for name, value in doc.items():
        if name in LEFT_OUT or name in LEFT_OUT_EMPTY and not value:
            continue
        out[sys.intern(name)] = sys.intern(value) if name in INTERNED and type(value) is str else value
    if kind == "port":
        fixed = out.get("fixed_ips")
        if fixed:
            out["fixed_ips"] = records.fixed_ips(fixed)
            addresses = {f.get("ip_address"): f.get("ip_address") for f in fixed if type(f) is dict}
            if out.get("dns_assignment"):  # the same address: one string
                out["dns_assignment"] = records.dns_assignment(out["dns_assignment"], addresses)
        if out.get("security_groups"):
            out["security_groups"] = records.groups(out["security_groups"])
    return out


def _same_id(obj_id: str, doc: dict | None) -> str:
    """The document's own id string where it is the key's: one string for both."""
    own = doc.get("id") if doc is not None else None
    return own if own == obj_id else obj_id


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
    indexes: dict[str, KindIndex] = field(default_factory=lambda: indexes_of({}))  # kind -> its index
    # (kind, id) -> the document before the first change since the last pass; None: new
    _changed: dict[tuple[str, str], dict | None] = field(default_factory=dict)
    _full: bool = True  # the next pass must derive everything (first pass, reload, narrowed interest)

    def size(self) -> int:
        return sum(len(v) for v in self.objects.values())

    def take_changes(self) -> list[Change] | None:
        """What changed since the last call, each object once with its document before and
        now; None when the next pass must be a full one."""
        changed, full = self._changed, self._full
        self._changed, self._full = {}, False
        if full:
            return None
        out = []
        for (kind, obj_id), old in changed.items():
            new = self.objects[kind].get(obj_id)
            if new is not old:
                out.append(Change(kind, obj_id, old, new))
        return out

    def _put(self, kind: str, obj_id: str, doc: dict) -> None:
        old = self.objects[kind].get(obj_id)
        self._changed.setdefault((kind, obj_id), old)
        index = self.indexes.get(kind)
        if index is not None:
            if old is not None:
                index.remove(old)
            index.add(doc)
        self.objects[kind][obj_id] = doc

    def _drop(self, kind: str, obj_id: str) -> None:
        old = self.objects[kind].pop(obj_id, None)
        if old is not None:
            self._changed.setdefault((kind, obj_id), old)
            if kind in self.indexes:
                self.indexes[kind].remove(old)

    def _restrict(self, everything: dict[str, dict[str, dict]]) -> None:
        """Keep what the interest covers; the next pass is a full one."""
        self.objects = {kind: {i: d for i, d in docs.items() if relevant(kind, d, self.chassis, self.interest)}
                        for kind, docs in everything.items()}
        self.indexes = indexes_of(self.objects)
        self._changed, self._full = {}, True

    def load(self, kvs: Iterable[KV], revision: int) -> None:
        """Rebuild from a full read of the NB prefix."""
        everything = _empty()
        for kv in kvs:
            parsed = parse_key(kv.key)
            if parsed and parsed[0] in everything:
                doc = lean(parsed[0], json.loads(kv.value))
                everything[parsed[0]][_same_id(parsed[1], doc)] = doc
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
        self._restrict(everything)
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
        doc = lean(kind, json.loads(event.value)) if event.type != "delete" else None
        obj_id = _same_id(obj_id, doc)
        if not (self._steers_interest(kind, old) or self._steers_interest(kind, doc)):
            # most events (a port on a network we serve, elsewhere): the interest stays as it is,
            # so no O(size) recomputation per event
            if doc is not None and relevant(kind, doc, self.chassis, self.interest):
                self._put(kind, obj_id, doc)
            else:
                self._drop(kind, obj_id)
            return False
        if doc is not None and self._covered(kind, doc):
            # a new VM on a network and in groups we already serve, a router leg we already know:
            # only the set of local ports can change, and the event tells how
            local = set(self.interest.local_ports)
            local.discard(obj_id)
            if kind == "port" and doc.get("binding:host_id") == self.chassis:
                local.add(obj_id)
            self.interest = Interest(frozenset(local), self.interest.networks, self.interest.routers,
                                     self.interest.security_groups)
            self._put(kind, obj_id, doc)
            return False
        if doc is None:
            self._drop(kind, obj_id)
            self.interest = compute_interest(self.chassis, self.objects)
            self._restrict(self.objects)
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
            self._put(kind, obj_id, doc)
        else:
            self._drop(kind, obj_id)  # e.g. a port that moved to a network we do not serve
        return False

    def _covered(self, kind: str, doc: dict) -> bool:
        """Does the interest already hold everything this document pulls in (no O(size) recomputation)?"""
        i = self.interest
        if kind == "security_group_rule":
            return not doc.get("remote_group_id") or doc["remote_group_id"] in i.security_groups
        if kind != "port":
            return False
        if doc.get("device_owner") in ROUTER_PORT_OWNERS:
            # the router and the network both served, or neither: nothing to pull in
            return (doc.get("device_id") in i.routers) == (doc.get("network_id") in i.networks) and \
                doc.get("binding:host_id") != self.chassis
        return doc.get("network_id") in i.networks and set(doc.get("security_groups") or ()) <= i.security_groups

    def _steers_interest(self, kind: str, doc: dict | None) -> bool:
        """Can this document, added or removed, change what the chassis needs?"""
        if doc is None:
            return False
        if kind == "port":
            return doc.get("binding:host_id") == self.chassis or doc.get("device_owner") in ROUTER_PORT_OWNERS
        return kind == "security_group_rule" and doc.get("security_group_id") in self.interest.security_groups
