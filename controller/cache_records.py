"""Compact forms of what a port document nests, for the agent's cache (controller/cache.py).

At 100,000 ports the small dicts inside each port (its fixed IPs, its DNS
assignment) and their lists cost more than the port's own fields: a dict of two
keys is 184 bytes, its list 72 more. Here each is a read-only mapping over
`__slots__` (48–56 bytes) in a tuple, a port's security groups one tuple shared
by every port with the same groups, and a DNS assignment's fqdn its hostname
plus a domain suffix shared by the network's ports, its hostname made again from
the address where it is the one NB makes of it, and the assignment of a port with
one address and no dns_name (most ports) no record at all until it is read
(`DefaultNames`). Apps read them as they read the JSON they stand for
(`fixed["ip_address"]`, `a.get("fqdn")`, iteration); a nested document with other
fields than these stays as it came.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, Iterator


class Record(Mapping):
    """A read-only mapping whose fields are the class' `__slots__` (FIELDS: their names)."""

    __slots__ = ()
    FIELDS: tuple[str, ...] = ()
    _NAMES: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._NAMES = frozenset(cls.FIELDS)

    def __getitem__(self, name: str) -> Any:
        if name in self._NAMES:
            return getattr(self, name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.FIELDS)

    def __len__(self) -> int:
        return len(self.FIELDS)

    def __repr__(self) -> str:
        return repr(dict(self))


class FixedIp(Record):
    __slots__ = ("ip_address", "subnet_id")
    FIELDS = __slots__

    def __init__(self, ip_address: str, subnet_id: str) -> None:
        self.ip_address, self.subnet_id = ip_address, subnet_id


def default_hostname(address: str) -> str:
    """The hostname NB gives an address without a dns_name (dfxdp/nb/dns.py)."""
    return "host-" + address.replace(".", "-").replace(":", "-")


class DnsAssignment(Record):
    """One {hostname, ip_address, fqdn}; the hostname kept only when it is not the one NB
    makes of the address (most ports have no dns_name), the fqdn as its domain suffix."""

    __slots__ = ("_hostname", "ip_address", "_domain")
    FIELDS = ("hostname", "ip_address", "fqdn")

    def __init__(self, hostname: str | None, ip_address: str, domain: str) -> None:
        """hostname None: the one NB makes of the address."""
        self._hostname = None if hostname is None or hostname == default_hostname(ip_address) else hostname
        self.ip_address, self._domain = ip_address, sys.intern(domain)

    @property
    def hostname(self) -> str:
        return default_hostname(self.ip_address) if self._hostname is None else self._hostname

    @property
    def fqdn(self) -> str:
        return self.hostname + self._domain


class OneRecord(Sequence):
    """A list of one record whose fields it keeps, the record made when read: most ports
    have one address, and a tuple and a record kept for each of 100,000 ports cost 48-64
    bytes more a port than its fields here (a read costs the record, ~0.3 µs)."""

    __slots__ = ()

    def _one(self) -> Record:
        raise NotImplementedError

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index):
        return (self._one(),)[index]

    def __iter__(self) -> Iterator[Record]:
        return iter((self._one(),))

    def __eq__(self, other: object) -> bool:  # as the list (or tuple) it stands for
        return isinstance(other, Sequence) and not isinstance(other, str) and list(self) == list(other)

    __hash__ = None  # as a list's

    def __repr__(self) -> str:
        return repr(list(self))


class OneFixedIp(OneRecord):
    """The fixed IPs of a port with one."""

    __slots__ = ("_address", "_subnet_id")

    def __init__(self, address: str, subnet_id: str) -> None:
        self._address, self._subnet_id = address, subnet_id

    def _one(self) -> FixedIp:
        return FixedIp(self._address, self._subnet_id)


class DefaultNames(OneRecord):
    """The DNS assignment of a port with one address and NB's own hostname for it."""

    __slots__ = ("_address", "_domain")

    def __init__(self, address: str, domain: str) -> None:
        self._address, self._domain = address, sys.intern(domain)

    def _one(self) -> DnsAssignment:
        return DnsAssignment(None, self._address, self._domain)


_GROUPS: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per set of groups ports have


def groups(names: list[str]) -> tuple[str, ...]:
    """A port's security groups as the one tuple every port with these groups shares."""
    key = tuple(sys.intern(name) for name in names)
    return _GROUPS.setdefault(key, key)


def fixed_ips(entries: list) -> Sequence:
    """A port's fixed IPs as FixedIp records, or OneFixedIp for one (as they came when one
    has other fields)."""
    if not all(type(e) is dict and e.keys() == FixedIp._NAMES for e in entries):
        return entries
    if len(entries) == 1:
        return OneFixedIp(entries[0]["ip_address"], sys.intern(entries[0]["subnet_id"]))
    return tuple(FixedIp(e["ip_address"], sys.intern(e["subnet_id"])) for e in entries)


def dns_assignment(entries: list, addresses: dict[str, str]) -> tuple | list:
    """A port's DNS assignment as DnsAssignment records, each address the one string its
    fixed IP holds (`addresses`), or DefaultNames for one address under NB's own hostname;
    as it came when one has other fields or an fqdn that is not its hostname and a domain."""
    if not all(type(e) is dict and e.keys() == DnsAssignment._NAMES and type(e["fqdn"]) is str
               and type(e["hostname"]) is str and e["fqdn"].startswith(e["hostname"]) for e in entries):
        return entries
    records = tuple(DnsAssignment(e["hostname"], addresses.get(e["ip_address"], e["ip_address"]),
                                  e["fqdn"][len(e["hostname"]):]) for e in entries)
    if len(records) == 1 and records[0]._hostname is None:
        return DefaultNames(records[0].ip_address, records[0]._domain)
    return records
