"""Which NB objects name which: the per-parent lists of children, and their guard keys.

A parent's children are found by parent, not by reading their whole kind: every child
holds a member key `/dfxdp/idx/<parent>/<parent id>/<child kind>/<child id>` (empty value)
for each parent it names, written and deleted with the child in the same transaction, so
the keys under `/dfxdp/idx/<parent>/<parent id>/<child kind>/` are exactly the children
that name it (dfxdp/nb/txn.py `children`; a store from before them gets them from
dfxdp/nb/layout.py). A list may also be a narrower role of a parent, `network:dhcp` (the
network's DHCP ports), `subnet:lb-hm` (its health monitors' probe source): one key to read,
not the thousands of ports of the network or subnet.

A check such as "no port on this network" or "no other subnet of this network
overlaps" reads a list, and a transaction's guards on the keys it read cannot
see a child created meanwhile (write skew). So every child written (created,
changed or deleted) rewrites the guard key
`/dfxdp/idx/<parent>/<parent id>/<child kind>` of each parent it names,
before or after, in the same transaction, and a transaction that decided on the
list guards that key as unchanged since the list was read (dfxdp/nb/txn.py).
Guard keys go with their parent: the transaction that deletes it deletes them.
"""
from __future__ import annotations

from typing import Callable, Iterable

IDX = "/dfxdp/idx/"
OWN = "/dfxdp/own/"
# kinds whose objects are counted per project (quotas, dfxdp/nb/quotas.py): each has an ownership
# key /dfxdp/own/<project>/<kind>/<id> while it exists, and every create or delete of one rewrites
# the index key /dfxdp/idx/project/<project>/<kind>, which a quota check guards
COUNTED_KINDS = ("network", "subnet", "port", "router", "floatingip", "security_group", "security_group_rule",
                 "subnetpool")

ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"
FLOATINGIP_OWNER = "network:floatingip"
DHCP_OWNER = "network:dhcp"
HM_PORT_OWNER = "network:lb-hm"  # a health monitor's probe source: one per monitored subnet, device_id the subnet


def _owned_by(*owners: str) -> Callable[[dict], list]:
    """A port's device_id names its owner only for owners that are NB objects (not a VM's id)."""
    return lambda port: [port["device_id"]] if port["device_owner"] in owners else []


def _owned_by_network(owner: str) -> Callable[[dict], list]:
    """A port of that owner (its network's DHCP port) names its network in that role."""
    return lambda port: [port["network_id"]] if port["device_owner"] == owner else []


# child kind -> parent (a kind, or a kind:role) -> the parent ids a child document names
REFERENCES: dict[str, dict[str, Callable[[dict], Iterable[str | None]]]] = {
    "subnet": {"network": lambda s: [s["network_id"]], "subnetpool": lambda s: [s.get("subnetpool_id")]},
    "subnetpool": {"address_scope": lambda p: [p.get("address_scope_id")]},
    "port": {
        "network": lambda p: [p["network_id"]],
        "network:dhcp": _owned_by_network(DHCP_OWNER),
        "subnet:lb-hm": _owned_by(HM_PORT_OWNER),
        "subnet": lambda p: [f["subnet_id"] for f in p["fixed_ips"]],
        "security_group": lambda p: p.get("security_groups") or [],
        "router": _owned_by(ROUTER_INTERFACE, ROUTER_GATEWAY),
        "floatingip": _owned_by(FLOATINGIP_OWNER),
    },
    "router": {"network": lambda r: [(r.get("external_gateway_info") or {}).get("network_id")]},
    "security_group_rule": {"security_group": lambda r: [r["security_group_id"], r.get("remote_group_id")]},
    "floatingip": {"port": lambda f: [f.get("port_id")], "router": lambda f: [f.get("router_id")]},
    "listener": {"loadbalancer": lambda x: [x["loadbalancer_id"]], "pool": lambda x: [x.get("default_pool_id")]},
    "pool": {"loadbalancer": lambda x: [x.get("loadbalancer_id")], "listener": lambda x: [x.get("listener_id")]},
    "member": {"pool": lambda x: [x["pool_id"]]},
    "healthmonitor": {"pool": lambda x: [x["pool_id"]]},
}


def parent_kind(parent: str) -> str:
    """The kind of a parent as REFERENCES names it: `network:dhcp` is a network."""
    return parent.partition(":")[0]


# parent kind -> the (parent, child kind) lists one of its objects heads
CHILD_KINDS: dict[str, list[tuple[str, str]]] = {}
for _child, _parents in REFERENCES.items():
    for _parent in _parents:
        CHILD_KINDS.setdefault(parent_kind(_parent), []).append((_parent, _child))


def index_key(parent: str, parent_id: str, child_kind: str) -> str:
    """The guard key of a parent's list of children."""
    return f"{IDX}{parent}/{parent_id}/{child_kind}"


def members_prefix(parent: str, parent_id: str, child_kind: str) -> str:
    """Where a parent's member keys are: one per child, named by the child's id."""
    return index_key(parent, parent_id, child_kind) + "/"


def references(kind: str, doc: dict | None) -> set[tuple[str, str]]:
    """The (parent, parent id) pairs a document of `kind` names (none for no document)."""
    if doc is None:
        return set()
    return {(parent, ref) for parent, refs in REFERENCES.get(kind, {}).items() for ref in refs(doc) if ref}


def member_writes(kind: str, obj_id: str, old: dict | None, new: dict | None) -> dict[str, bytes | None]:
    """The member keys a write of an object of `kind` from old to new (None: absent) adds
    and deletes."""
    before, after = references(kind, old), references(kind, new)
    writes: dict[str, bytes | None] = {members_prefix(p, pid, kind) + obj_id: None for p, pid in before - after}
    writes.update((members_prefix(p, pid, kind) + obj_id, b"") for p, pid in after - before)
    return writes


def index_keys_of(kind: str, obj_id: str) -> list[str]:
    """Every guard key an object of `kind` may be the parent of."""
    return [index_key(parent, obj_id, child) for parent, child in CHILD_KINDS.get(kind, [])]


def owned_prefix(project: str, kind: str) -> str:
    return f"{OWN}{project}/{kind}/"


def ownership_writes(kind: str, old: dict | None, new: dict | None) -> dict[str, bytes | None]:
    """The ownership key and project index key a created (old None) or deleted (new None)
    object of a counted kind writes; nothing for an update or an uncounted kind."""
    if kind not in COUNTED_KINDS or (old is None) == (new is None):
        return {}
    doc = new or old
    project, obj_id = doc.get("project_id") or "", doc["id"]
    return {owned_prefix(project, kind) + obj_id: b"1" if new else None,
            index_key("project", project, kind): obj_id.encode()}
