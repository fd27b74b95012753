"""Neutron's address-scope: address scopes, and the subnet pools in them.

A scope has an IP version and an owner, and may be `shared` (seen by every project; once
shared, never unshared). A subnet pool joins one by `address_scope_id`: of the scope's IP
version, its prefixes overlapping no other pool's in the scope. That check reads the scope's
pools as a guarded child list (the scope's index key, dfxdp/nb/index.py), so two pools racing
into one scope with overlapping prefixes never both get in. A scope with pools cannot be
deleted. A network shows the scopes of its subnets' pools (dfxdp/nb/families/networks.py).
Scopes are the API's alone: no datapath reads them (docs/api.md).
"""
from __future__ import annotations

import ipaddress

from ..errors import BadRequest, Conflict
from ..txn import Txn
from .base import Family, Hooks


class AddressScopes(Family):
    def hooks(self) -> dict[str, Hooks]:
        return {"address_scope": Hooks(update=updated, delete=deleted)}


def updated(txn: Txn, old: dict, new: dict) -> None:
    if old["shared"] and not new["shared"]:
        raise BadRequest("AddressScopeUpdateError", f"Unable to update address scope {old['id']} : Shared address "
                                                    f"scope can't be unshared.")


def deleted(txn: Txn, scope: dict) -> None:
    if txn.children("subnetpool", "address_scope", scope["id"]):
        raise Conflict("AddressScopeInUse", f"Unable to complete operation on address scope {scope['id']}. There are "
                                            f"one or more subnet pools in use on the address scope.")


def check_pool(txn: Txn, pool: dict) -> None:
    """A pool (created or changed) may be in its address scope: Neutron's _validate_address_scope_id."""
    scope_id = pool.get("address_scope_id")
    if not scope_id:
        return
    scope = txn.require("address_scope", scope_id)
    if scope["ip_version"] != pool["ip_version"]:
        raise BadRequest("IllegalSubnetPoolIpVersionAssociationToAddressScope",
                         f"Illegal subnetpool association: subnetpool {pool['id']} cannot associate with address "
                         f"scope {scope_id} because subnetpool ip_version is not {scope['ip_version']}.")
    prefixes = [ipaddress.ip_network(p) for p in pool["prefixes"]]
    for other in txn.children("subnetpool", "address_scope", scope_id):
        if other["id"] != pool["id"] and any(mine.overlaps(ipaddress.ip_network(theirs))
                                             for mine in prefixes for theirs in other["prefixes"]):
            raise Conflict("AddressScopePrefixConflict", "Failed to associate address scope: subnetpools within an "
                                                         "address scope must have unique prefixes.")
