"""Neutron's subnet_allocation: subnet pools, and subnets allocated from them.

A pool holds prefixes of one IP version (merged as Neutron's cidr_merge does) and the
prefix lengths its subnets may have (min_prefixlen ≤ default_prefixlen ≤ max_prefixlen;
unset: 8 or 64, min_prefixlen, 32 or 128). A subnet created with `subnetpool_id` (or
`use_default_subnetpool`, the pool marked `is_default` for its IP version) and no cidr gets
the first free prefix of `prefixlen` (default: the pool's default_prefixlen), chosen as
Neutron's SubnetAllocator does: from the smallest free block that holds it; with a cidr, that
cidr if it is free inside the pool. Free means inside the pool's prefixes and overlapping no
subnet allocated from it: that list is read as a guarded child list (the pool's index key,
dfxdp/nb/index.py), so two racing allocations never get one prefix. The subnets of a network
of one IP version come from one pool (or none). `default_quota`: the addresses (IPv4) or /64s
(IPv6) a project may hold from the pool. Pools may overlap each other, except inside an
address scope (dfxdp/nb/families/address_scopes.py). One default pool per IP version, held by
a reservation key.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

from ..errors import BadRequest, Conflict, not_found
from ..txn import ALLOC, Txn
from . import address_scopes
from .base import Family, Hooks

BITS = {4: 32, 6: 128}
DEFAULT_MIN_PREFIXLEN = {4: 8, 6: 64}
QUOTA_UNIT_BITS = {4: 32, 6: 64}  # Neutron counts a pool's default_quota in /32s and /64s
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def default_pool_key(ip_version: int) -> str:
    return f"{ALLOC}default-subnetpool/{ip_version}"


def _bounds_error(kind: str, length: int, base_kind: str, base_length: int) -> BadRequest:
    return BadRequest("IllegalSubnetPoolPrefixBounds", f"Illegal prefix bounds: {kind}={length}, "
                                                       f"{base_kind}={base_length}.")


def _networks(prefixes: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(p) for p in prefixes]


def fill(pool: dict) -> None:
    """A pool's derived fields (ip_version, merged prefixes, unset bounds) and its checks."""
    nets = _networks(pool["prefixes"])
    versions = {n.version for n in nets}
    if len(versions) > 1:
        raise BadRequest("PrefixVersionMismatch", "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")
    version = versions.pop()
    pool["ip_version"] = version
    pool["prefixes"] = [str(n) for n in ipaddress.collapse_addresses(nets)]
    if pool["min_prefixlen"] is None:
        pool["min_prefixlen"] = DEFAULT_MIN_PREFIXLEN[version]
    if pool["max_prefixlen"] is None:
        pool["max_prefixlen"] = BITS[version]
    if pool["default_prefixlen"] is None:
        pool["default_prefixlen"] = pool["min_prefixlen"]
    low, high, default = pool["min_prefixlen"], pool["max_prefixlen"], pool["default_prefixlen"]
    if high > BITS[version]:
        raise _bounds_error("max_prefixlen", high, "ip_version_max", BITS[version])
    if low > high:
        raise _bounds_error("min_prefixlen", low, "max_prefixlen", high)
    if default < low:
        raise _bounds_error("default_prefixlen", default, "min_prefixlen", low)
    if default > high:
        raise _bounds_error("default_prefixlen", default, "max_prefixlen", high)


def _claim_default(txn: Txn, pool: dict) -> None:
    if not txn.reserve(default_pool_key(pool["ip_version"]), pool["id"]):
        raise BadRequest("InvalidInput", "Invalid input for operation: A default subnetpool for this IP family has "
                                         "already been set. Only one default may exist per IP family.")


def created(txn: Txn, pool: dict) -> None:
    fill(pool)
    address_scopes.check_pool(txn, pool)
    if pool["is_default"]:
        _claim_default(txn, pool)


def updated(txn: Txn, old: dict, new: dict) -> None:
    fill(new)
    if new["ip_version"] != old["ip_version"]:
        raise BadRequest("PrefixVersionMismatch", "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")
    kept = _networks(new["prefixes"])
    if not all(any(n.subnet_of(k) for k in kept) for n in _networks(old["prefixes"])):
        raise BadRequest("IllegalSubnetPoolPrefixUpdate", "Illegal update to prefixes: Existing prefixes must be a "
                                                          "subset of the new prefixes.")
    address_scopes.check_pool(txn, new)
    if new["is_default"] and not old["is_default"]:
        _claim_default(txn, new)
    elif old["is_default"] and not new["is_default"]:
        txn.release(default_pool_key(old["ip_version"]))


class SubnetPools(Family):
    def hooks(self) -> dict[str, Hooks]:
        return {"subnetpool": Hooks(created, updated, deleted)}


def deleted(txn: Txn, pool: dict) -> None:
    if txn.children("subnet", "subnetpool", pool["id"]):
        raise Conflict("SubnetPoolInUse", f"Unable to complete operation on subnet pool {pool['id']}. "
                                          f"Subnets are still allocated from it.")
    if pool["is_default"]:
        txn.release(default_pool_key(pool["ip_version"]))


def _free_blocks(pool: dict, used: list[Network]) -> list[Network]:
    """The pool's prefixes minus what its subnets hold, smallest blocks first (Neutron's order)."""
    free = _networks(pool["prefixes"])
    for taken in used:
        rest: list[Network] = []
        for block in free:
            if not block.overlaps(taken):
                rest.append(block)
            elif taken.subnet_of(block) and taken != block:
                rest.extend(block.address_exclude(taken))
        free = rest
    return sorted(free, key=lambda n: (-n.prefixlen, n.network_address))


def _pool_of(txn: Txn, subnet: dict, use_default: bool) -> dict | None:
    if subnet.get("subnetpool_id"):
        pool = txn.get("subnetpool", subnet["subnetpool_id"])
        if pool is None:
            raise not_found("subnetpool", subnet["subnetpool_id"])
        return pool
    if use_default:
        raw = txn.get_raw(default_pool_key(subnet["ip_version"]))
        if raw is None:
            raise BadRequest("BadRequest", f"Bad subnet request: No default subnetpool for IPv{subnet['ip_version']} "
                                           f"found.")
        subnet["subnetpool_id"] = raw.decode()
        return _pool_of(txn, subnet, False)
    return None


def _check_quota(pool: dict, subnet: dict, siblings: list[dict], wanted: int) -> None:
    if pool["default_quota"] is None:
        return
    unit = QUOTA_UNIT_BITS[pool["ip_version"]]

    def units(prefixlen: int) -> int:
        return 1 << max(unit - prefixlen, 0)

    held = sum(units(ipaddress.ip_network(s["cidr"]).prefixlen) for s in siblings
               if s["project_id"] == subnet["project_id"])
    if held + units(wanted) > pool["default_quota"]:
        raise Conflict("SubnetPoolQuotaExceeded", "Per-tenant subnet pool prefix quota exceeded.")


def allocate(txn: Txn, subnet: dict, network_subnets: list[dict]) -> None:
    """Give a subnet being created its cidr from its pool (or check it has one without a pool);
    `network_subnets`: the other subnets of its network."""
    prefixlen = subnet.pop("prefixlen", None)
    pool = _pool_of(txn, subnet, bool(subnet.pop("use_default_subnetpool", False)))
    for other in network_subnets:
        if other["ip_version"] == subnet["ip_version"] and other.get("subnetpool_id") != subnet.get("subnetpool_id"):
            raise BadRequest("NetworkSubnetPoolAffinityError", "Subnets hosted on the same network must be allocated "
                                                               "from the same subnet pool.")
    if pool is None:
        if subnet["cidr"] is None:
            raise BadRequest("BadRequest", "Bad subnet request: a cidr must be specified in the absence of a subnet "
                                           "pool.")
        if prefixlen is not None:
            raise BadRequest("BadRequest", "Bad subnet request: prefixlen requires a subnet pool.")
        return
    if pool["ip_version"] != subnet["ip_version"]:
        raise BadRequest("BadRequest", f"Bad subnet request: Cannot allocate IPv{subnet['ip_version']} subnet from "
                                       f"IPv{pool['ip_version']} subnet pool.")
    wanted = ipaddress.ip_network(subnet["cidr"]).prefixlen if subnet["cidr"] else \
        pool["default_prefixlen"] if prefixlen is None else prefixlen
    if wanted > pool["max_prefixlen"]:
        raise BadRequest("MaxPrefixSubnetAllocationError", f"Unable to allocate subnet with prefix length {wanted}, "
                                                           f"maximum allowed prefix is {pool['max_prefixlen']}.")
    if wanted < pool["min_prefixlen"]:
        raise BadRequest("MinPrefixSubnetAllocationError", f"Unable to allocate subnet with prefix length {wanted}, "
                                                           f"minimum allowed prefix is {pool['min_prefixlen']}.")
    siblings = txn.children("subnet", "subnetpool", pool["id"])  # guarded: racing allocations retry
    _check_quota(pool, subnet, siblings, wanted)
    free = _free_blocks(pool, [ipaddress.ip_network(s["cidr"]) for s in siblings])
    if subnet["cidr"]:
        asked = ipaddress.ip_network(subnet["cidr"])
        if not any(asked.subnet_of(block) for block in free):
            raise Conflict("SubnetAllocationError", "Failed to allocate subnet: Cannot allocate requested subnet "
                                                    "from the available set of prefixes.")
        return
    block = next((b for b in free if b.prefixlen <= wanted), None)
    if block is None:
        raise Conflict("SubnetAllocationError", f"Failed to allocate subnet: Insufficient prefix space to allocate "
                                                f"subnet size /{wanted}.")
    subnet["cidr"] = str(next(block.subnets(new_prefix=wanted)))
