"""IP address management: subnet defaults, pool checks, reservations.

Every address in use is a key `/dfxdp/alloc/ip/<subnet id>/<address>` created
with a "must not exist" guard inside the writer's transaction: the store, not
this process, decides who gets an address, so two API servers can never hand
out the same one.
"""
from __future__ import annotations

import ipaddress
import itertools
import random
from typing import Iterator

from .errors import BadRequest, Conflict
from .txn import ALLOC, Txn

ALLOCATION_WINDOW = 16


def ip_key(subnet_id: str, address: str) -> str:
    return f"{ALLOC}ip/{subnet_id}/{address}"


def default_gateway(cidr: str) -> str:
    net = ipaddress.ip_network(cidr)
    return str(net.network_address + 1)


def default_pools(cidr: str, gateway: str | None) -> list[dict]:
    """The whole subnet minus network/broadcast (IPv4) and the gateway, as ranges."""
    net = ipaddress.ip_network(cidr)
    first = net.network_address + 1
    last = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
    if net.num_addresses <= 2:  # /31 and /32: every address is usable
        first, last = net.network_address, net.broadcast_address
    pools, start = [], first
    if gateway:
        gw = ipaddress.ip_address(gateway)
        if first <= gw <= last:
            if gw > first:
                pools.append({"start": str(first), "end": str(gw - 1)})
            start = gw + 1
    if start <= last:
        pools.append({"start": str(start), "end": str(last)})
    return pools


def check_subnet(subnet: dict, others: list[dict]) -> None:
    """Gateway inside the CIDR, pools inside and disjoint, no overlap with the network's other subnets."""
    net = ipaddress.ip_network(subnet["cidr"])
    if net.version != subnet["ip_version"]:
        raise BadRequest("InvalidInput", f"cidr {net} is not an IPv{subnet['ip_version']} network")
    if subnet.get("gateway_ip"):
        gw = ipaddress.ip_address(subnet["gateway_ip"])
        if gw not in net or (net.version == 4 and net.num_addresses > 2 and gw in (net.network_address, net.broadcast_address)):
            raise BadRequest("InvalidInput", f"gateway_ip {gw} is not a usable address of subnet {net}")
    ranges = []
    for pool in subnet["allocation_pools"]:
        start, end = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
        if start not in net or end not in net or start > end:
            raise BadRequest("InvalidAllocationPool", f"allocation pool {start}-{end} is not a valid range inside {net}")
        ranges.append((start, end))
    ranges.sort()
    for (_, end1), (start2, _) in zip(ranges, ranges[1:]):
        if start2 <= end1:
            raise BadRequest("OverlappingAllocationPools", f"allocation pools overlap in subnet {net}")
    for other in others:
        if other["id"] != subnet.get("id") and net.overlaps(ipaddress.ip_network(other["cidr"])):
            # Neutron's words, which clients match on to try the next CIDR; it names no other subnet
            raise BadRequest("InvalidInput", f"Invalid input for operation: Requested subnet with cidr: {net} for "
                                             f"network: {subnet['network_id']} overlaps with another subnet.")


def in_subnet(subnet: dict, address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(subnet["cidr"])


def _pool_addresses(subnet: dict) -> Iterator[str]:
    for pool in subnet["allocation_pools"]:
        addr, end = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
        while addr <= end:
            yield str(addr)
            addr += 1


def reserve(txn: Txn, subnet: dict, address: str, owner: str) -> None:
    if not in_subnet(subnet, address):
        raise BadRequest("InvalidIpForSubnet", f"IP address {address} is not a valid IP for subnet {subnet['id']} "
                                               f"({subnet['cidr']})")
    if not txn.reserve(ip_key(subnet["id"], address), owner):
        raise Conflict("IpAddressAlreadyAllocated",
                       f"IP address {address} already allocated in subnet {subnet['id']}")


def allocate(txn: Txn, subnet: dict, owner: str) -> str:
    """A free pool address of the subnet, reserved for owner.

    Picked at random among the first ALLOCATION_WINDOW free ones (as Neutron
    does): concurrent creates on one subnet then rarely want the same address."""
    used = {k.rsplit("/", 1)[1] for k in txn.keys_under(f"{ALLOC}ip/{subnet['id']}/")}
    candidates = list(itertools.islice((a for a in _pool_addresses(subnet) if a not in used), ALLOCATION_WINDOW))
    random.shuffle(candidates)
    for address in candidates:
        if txn.reserve(ip_key(subnet["id"], address), owner):
            return address
    raise Conflict("IpAddressGenerationFailure", f"no more IP addresses available in subnet {subnet['id']}")


def release(txn: Txn, subnet_id: str, address: str) -> None:
    txn.release(ip_key(subnet_id, address))
