"""Read a whole NB store and list what no sequence of requests may leave behind:
duplicates (overlapping subnets of a network, a second default group, one rule
stored twice, an address or MAC held twice) and orphans (an object naming a
parent that is gone, a reservation nobody holds, an index key of a deleted
object, a member key that is not exactly what the objects name). Tests assert the list
is empty after racing requests."""
from __future__ import annotations

import ipaddress
import json
from collections import Counter

from dfxdp.nb.db.base import Store
from dfxdp.nb.index import COUNTED_KINDS, IDX, OWN, member_writes, owned_prefix, parent_kind, references
from dfxdp.nb.txn import ALLOC, NB

RULE_IDENTITY = ("security_group_id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
                 "remote_ip_prefix", "remote_group_id")


def load(store: Store) -> tuple[dict[str, dict[str, dict]], dict[str, bytes]]:
    """(kind -> id -> object, every other key -> value), from one read of the store."""
    kvs, _ = store.range("/dfxdp/")
    objects: dict[str, dict[str, dict]] = {}
    other = {}
    for kv in kvs:
        if kv.key.startswith(NB):
            kind, obj_id = kv.key[len(NB):].split("/", 1)
            objects.setdefault(kind, {})[obj_id] = json.loads(kv.value)
        else:
            other[kv.key] = kv.value
    return objects, other


def problems(store: Store) -> list[str]:
    objects, other = load(store)
    found = []
    found += _orphans(objects)
    found += _overlapping_subnets(objects)
    found += _default_groups(objects, other)
    found += _duplicate_rules(objects)
    found += _reservations(objects, other)
    found += _stale_index_keys(objects, other)
    found += _members(objects, other)
    found += _ownership(objects, other)
    return found


def _orphans(objects: dict) -> list[str]:
    found = []
    for kind, docs in objects.items():
        for doc in docs.values():
            for parent, parent_id in references(kind, doc):
                if parent_id not in objects.get(parent_kind(parent), {}):
                    found.append(f"{kind} {doc['id']} names {parent} {parent_id}, which is gone")
    subnets = objects.get("subnet", {})
    for port in objects.get("port", {}).values():
        for fixed in port["fixed_ips"]:
            subnet = subnets.get(fixed["subnet_id"])
            if subnet and subnet["network_id"] != port["network_id"]:
                found.append(f"port {port['id']} holds {fixed['ip_address']} of another network's subnet")
    for fip in objects.get("floatingip", {}).values():
        if fip["floating_network_id"] not in objects.get("network", {}):
            found.append(f"floatingip {fip['id']} is on network {fip['floating_network_id']}, which is gone")
    return found


def _overlapping_subnets(objects: dict) -> list[str]:
    found = []
    by_network: dict[str, list[dict]] = {}
    for subnet in objects.get("subnet", {}).values():
        by_network.setdefault(subnet["network_id"], []).append(subnet)
    for network_id, subnets in by_network.items():
        for i, a in enumerate(subnets):
            for b in subnets[i + 1:]:
                if ipaddress.ip_network(a["cidr"]).overlaps(ipaddress.ip_network(b["cidr"])):
                    found.append(f"network {network_id} has overlapping subnets {a['cidr']} and {b['cidr']}")
    return found


def _default_groups(objects: dict, other: dict) -> list[str]:
    found = []
    defaults = Counter(sg["project_id"] for sg in objects.get("security_group", {}).values()
                       if sg["name"] == "default")
    found += [f"project {project} has {n} default security groups" for project, n in defaults.items() if n > 1]
    prefix = f"{ALLOC}default-sg/"
    for key, value in other.items():
        if key.startswith(prefix):
            sg = objects.get("security_group", {}).get(value.decode())
            if not sg or sg["name"] != "default" or sg["project_id"] != key[len(prefix):]:
                found.append(f"{key} names {value.decode()}, not that project's default group")
    return found


def _duplicate_rules(objects: dict) -> list[str]:
    seen = Counter(tuple(rule.get(f) for f in RULE_IDENTITY) for rule in objects.get("security_group_rule", {}).values())
    return [f"rule {identity} is stored {n} times" for identity, n in seen.items() if n > 1]


def _reservations(objects: dict, other: dict) -> list[str]:
    """Every address and MAC a port holds is reserved for it, and every reservation has its holder."""
    expected = {}
    for port in objects.get("port", {}).values():
        expected[f"{ALLOC}mac/{port['network_id']}/{port['mac_address']}"] = port["id"]
        for fixed in port["fixed_ips"]:
            expected[f"{ALLOC}ip/{fixed['subnet_id']}/{fixed['ip_address']}"] = port["id"]
    held = {k: v.decode() for k, v in other.items() if k.startswith((f"{ALLOC}ip/", f"{ALLOC}mac/"))}
    found = [f"{key} is not held by its port {owner}" for key, owner in expected.items() if held.get(key) != owner]
    found += [f"{key} is reserved for {owner}, which does not hold it" for key, owner in held.items()
              if key not in expected]
    return found


def _stale_index_keys(objects: dict, other: dict) -> list[str]:
    found = []
    for key in other:
        if key.startswith(IDX) and key.count("/") == IDX.count("/") + 2:  # a guard key, not a member key
            parent, parent_id, _child = key[len(IDX):].split("/")
            if parent != "project" and parent_id not in objects.get(parent_kind(parent), {}):  # projects: Keystone's
                found.append(f"index key {key} outlived its object")
    return found


def expected_members(objects: dict) -> set[str]:
    """The member keys the objects name (dfxdp/nb/index.py)."""
    return {key for kind, docs in objects.items() for obj_id, doc in docs.items()
            for key in member_writes(kind, obj_id, None, doc)}


def _members(objects: dict, other: dict) -> list[str]:
    expected = expected_members(objects)
    held = {key for key in other if key.startswith(IDX) and key.count("/") == IDX.count("/") + 3}
    return [f"{key}: no member key" for key in sorted(expected - held)] + \
        [f"{key}: member key of no child" for key in sorted(held - expected)]


def _ownership(objects: dict, other: dict) -> list[str]:
    """Every object of a counted kind has its ownership key (quotas), and every key its object."""
    expected = {owned_prefix(doc.get("project_id") or "", kind) + doc["id"]
                for kind in COUNTED_KINDS for doc in objects.get(kind, {}).values()}
    held = {key for key in other if key.startswith(OWN)}
    return [f"{key}: no ownership key" for key in sorted(expected - held)] + \
        [f"{key}: ownership key of no object" for key in sorted(held - expected)]
