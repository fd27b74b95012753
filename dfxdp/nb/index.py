"""Which NB objects name which: the per-parent index keys behind guarded child lists.

A check such as "no port on this network" or "no other subnet of this network
overlaps" reads a list, and a transaction's guards on the keys it read cannot
see a child created meanwhile (write skew). So every child written (created,
changed or deleted) rewrites the index key
`/dfxdp/idx/<parent kind>/<parent id>/<child kind>` of each parent it names,
before or after, in the same transaction, and a transaction that decided on the
list guards that key as unchanged since the list was read (dfxdp/nb/txn.py).
Index keys go with their parent: the transaction that deletes it deletes them.
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


def _owned_by(*owners: str) -> Callable[[dict], list]:
    """A port's device_id names its owner only for owners that are NB objects (not a VM's id)."""
    return lambda port: [port["device_id"]] if port["device_owner"] in owners else []


# child kind -> parent kind -> the parent ids a child document names
REFERENCES: dict[str, dict[str, Callable[[dict], Iterable[str | None]]]] = {
    "subnet": {"network": lambda s: [s["network_id"]], "subnetpool": lambda s: [s.get("subnetpool_id")]},
    "subnetpool": {"address_scope": lambda p: [p.get("address_scope_id")]},
    "port": {
        "network": lambda p: [p["network_id"]],
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

# parent kind -> the child kinds that may name one
CHILD_KINDS: dict[str, list[str]] = {}
for _child, _parents in REFERENCES.items():
    for _parent in _parents:
        CHILD_KINDS.setdefault(_parent, []).append(_child)


def index_key(parent_kind: str, parent_id: str, child_kind: str) -> str:
    return f"{IDX}{parent_kind}/{parent_id}/{child_kind}"


def references(kind: str, doc: dict | None) -> set[tuple[str, str]]:
    """The (parent kind, parent id) pairs a document of `kind` names (none for no document)."""
    if doc is None:
        return set()
    return {(parent, ref) for parent, refs in REFERENCES.get(kind, {}).items() for ref in refs(doc) if ref}


def index_keys_of(kind: str, obj_id: str) -> list[str]:
    """Every index key an object of `kind` may be the parent of."""
    return [index_key(kind, obj_id, child) for child in CHILD_KINDS.get(kind, [])]


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
