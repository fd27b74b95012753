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
import threading
import weakref
from typing import Iterator

from .errors import BadRequest, Conflict
from .txn import ALLOC, Txn
from .validate import AUTO_ADDRESS_MODES

ALLOCATION_WINDOW = 16


def ip_key(subnet_id: str, address: str) -> str:
    return f"{ALLOC}ip/{subnet_id}/{address}"


def is_auto_address(subnet: dict) -> bool:
    """Neutron's is_auto_address_subnet: in slaac or dhcpv6-stateless mode (either attribute),
    every port but a router's has the EUI-64 address of its MAC there, never a pool address."""
    return bool(AUTO_ADDRESS_MODES & {subnet.get("ipv6_ra_mode"), subnet.get("ipv6_address_mode")})


def eui64(cidr: str, mac: str) -> str:
    """The address of `mac` in a /64 by modified EUI-64 (RFC 4291 appendix A, oslo's
    get_ipv6_addr_by_EUI64): the MAC with ff:fe in its middle and the universal/local bit flipped."""
    octets = bytes(int(part, 16) for part in mac.split(":"))
    interface_id = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    return str(ipaddress.IPv6Address(int(ipaddress.IPv6Network(cidr).network_address)
                                     + int.from_bytes(interface_id, "big")))


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


def _pool_addresses(subnet: dict, first: int) -> Iterator[int]:
    """The subnet's pool addresses from `first` on, as integers."""
    for pool in subnet["allocation_pools"]:
        start, end = int(ipaddress.ip_address(pool["start"])), int(ipaddress.ip_address(pool["end"]))
        yield from range(max(start, first), end + 1)


# What this process last knew of each subnet's addresses in use (per store): a transaction's
# first attempt allocates from it, claiming its pick without reading the subnet's addresses
# (a /16's could be 60,000 keys per create). One taken meanwhile by another server fails the
# commit, and the retry reads them all; one released elsewhere is only skipped until then.
# A pick is known as taken at once, before its commit: this server's concurrent creates then
# pick others instead of colliding on it (known as free again if its transaction is not
# committed).
_known: "weakref.WeakKeyDictionary[object, dict[str, set[int]]]" = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


def _used(txn: Txn, subnet_id: str) -> set[int]:
    """The subnet's addresses in use (as integers), read once per transaction (or known) and
    kept up to date by this module's reservations and releases in it (a bulk create allocates
    many)."""
    memo = ("ip-used", subnet_id)
    if memo not in txn.memo:
        with _known_lock:
            live = _known.get(txn.store, {}).get(subnet_id)
            known = live if txn.attempt == 0 else None
            used = set(known) if known is not None else None
            before = set(live or ()) if known is None else set()  # a read's: what was known then
        if used is None:
            used = {int(ipaddress.ip_address(k.rsplit("/", 1)[1])) for k in txn.keys_under(f"{ALLOC}ip/{subnet_id}/")}
        changes: tuple[set[int], set[int]] = (set(), set())  # (taken, released) by this txn
        txn.memo[memo], txn.memo[("ip-changes", subnet_id)] = used, changes
        txn.memo[("ip-unread", subnet_id)] = known is not None
        txn.on_commit(lambda _revision: _remember(txn.store, subnet_id, None if known is not None else used, changes,
                                                  before))
    return txn.memo[memo]


def _remember(store, subnet_id: str, read: set[int] | None, changes: tuple[set[int], set[int]],
              before: set[int]) -> None:
    """After a commit: what it read (with its changes) and what concurrent creates picked since
    (known then: `before`), or the changes on top of what was known."""
    with _known_lock:
        subnets = _known.setdefault(store, {})
        if read is not None:
            subnets[subnet_id] = set(read) | (subnets.get(subnet_id, set()) - before)
        else:
            subnets[subnet_id] = (subnets.get(subnet_id, set()) | changes[0]) - changes[1]


def _mark(txn: Txn, subnet_id: str, number: int, taken: bool) -> None:
    used, (took, released) = _used(txn, subnet_id), txn.memo[("ip-changes", subnet_id)]
    (used.add if taken else used.discard)(number)
    (took if taken else released).add(number)
    (released if taken else took).discard(number)


def reserve(txn: Txn, subnet: dict, address: str, owner: str) -> None:
    if not in_subnet(subnet, address):
        raise BadRequest("InvalidIpForSubnet", f"IP address {address} is not a valid IP for subnet {subnet['id']} "
                                               f"({subnet['cidr']})")
    if not txn.reserve(ip_key(subnet["id"], address), owner):
        raise Conflict("IpAddressAlreadyAllocated",
                       f"IP address {address} already allocated in subnet {subnet['id']}")
    _mark(txn, subnet["id"], int(ipaddress.ip_address(address)), True)


def allocate(txn: Txn, subnet: dict, owner: str, lowest: bool = False) -> str:
    """A free pool address of the subnet, reserved for owner.

    Picked at random among the first ALLOCATION_WINDOW free ones (as Neutron
    does): concurrent creates on one subnet then rarely want the same address.
    `lowest`: the first free one instead, for infrastructure ports whose address
    must be predictable.
    Within a transaction the search resumes where the last one found its first free
    address: every address before it was in use then (a release in between is only
    skipped, never handed out twice)."""
    used = _used(txn, subnet["id"])
    resume = ("ip-resume", subnet["id"])
    candidates = list(itertools.islice((n for n in _pool_addresses(subnet, txn.memo.get(resume, 0)) if n not in used),
                                       ALLOCATION_WINDOW))
    if not candidates and txn.memo[("ip-unread", subnet["id"])]:
        # what was known may be stale (released elsewhere, picks of creates since refused):
        # the store, not this process' memory, says that the subnet is full
        read = {int(ipaddress.ip_address(k.rsplit("/", 1)[1])) for k in txn.keys_under(f"{ALLOC}ip/{subnet['id']}/")}
        txn.memo[("ip-used", subnet["id"])], txn.memo[("ip-unread", subnet["id"])] = read, False
        with _known_lock:
            _known.setdefault(txn.store, {})[subnet["id"]] = set(read)
        txn.memo.pop(resume, None)
        return allocate(txn, subnet, owner, lowest)
    if candidates:
        txn.memo[resume] = candidates[0]
    if not lowest:
        random.shuffle(candidates)
    unread = txn.memo[("ip-unread", subnet["id"])]
    for number in candidates:
        address = str(ipaddress.ip_address(number))
        if not _pick_known(txn, subnet["id"], number):
            continue  # a concurrent create of this process picked it
        if unread:  # believed free: a taken one fails the commit, and the retry reads them all
            txn.claim(ip_key(subnet["id"], address), owner)
        elif not txn.reserve(ip_key(subnet["id"], address), owner):
            continue
        _mark(txn, subnet["id"], number, True)
        return address
    raise Conflict("IpAddressGenerationFailure", f"no more IP addresses available in subnet {subnet['id']}")


def _pick_known(txn: Txn, subnet_id: str, number: int) -> bool:
    """Take number as in use in what this process knows, unless a concurrent create of this
    process took it since this transaction copied what was known."""
    with _known_lock:
        known = _known.get(txn.store, {}).get(subnet_id)
        if known is None:  # nothing known yet: the commit decides
            return True
        if number in known:
            return False
        known.add(number)
    txn.on_conflict(lambda: _unpick(txn.store, subnet_id, number))
    return True


def _unpick(store, subnet_id: str, number: int) -> None:
    with _known_lock:
        _known.get(store, {}).get(subnet_id, set()).discard(number)


def release(txn: Txn, subnet_id: str, address: str) -> None:
    txn.release(ip_key(subnet_id, address))
    _mark(txn, subnet_id, int(ipaddress.ip_address(address)), False)
