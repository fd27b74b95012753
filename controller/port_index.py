"""Port ids by the fields apps look ports up by, so a lookup costs the ports found."""
from __future__ import annotations

import socket
from typing import Any, Iterable, Mapping

from .sg_compiler import BLOCK_BITS  # security groups compile remote members per /24 block


class PortIndex:
    """Port ids by the fields apps look ports up by: network, device (router, floating IP,
    DHCP subnet), hosting chassis, security group. The agent's cache keeps one up to date
    event by event (controller/cache.py), so a lookup costs the ports found, not every port;
    a view built by hand (tests, the bench) gets one built from its ports on first use."""

    FIELDS = ("network_id", "device_id", "device_owner", "binding:host_id")

    def __init__(self) -> None:
        self.by: dict[str, dict[str, set[str]]] = {name: {} for name in (*self.FIELDS, "security_groups")}
        # group -> /24 block -> the ports of the group with an IPv4 address there
        self.group_blocks: dict[str, dict[int, set[str]]] = {}

    @classmethod
    def of(cls, ports: Mapping[str, dict]) -> "PortIndex":
        index = cls()
        for port in ports.values():
            index.add(port)
        return index

    def _values(self, port: dict) -> Iterable[tuple[str, Any]]:
        for name in self.FIELDS:
            value = port.get(name)
            if value:
                yield name, value
        for group in port.get("security_groups") or ():
            yield "security_groups", group

    @staticmethod
    def _blocks(port: dict) -> Iterable[tuple[str, int]]:
        groups = port.get("security_groups")
        if not groups:
            return ()
        blocks = set()
        for fixed in port.get("fixed_ips") or ():
            try:
                blocks.add(int.from_bytes(socket.inet_aton(fixed["ip_address"]), "big") >> BLOCK_BITS)
            except OSError:
                continue  # IPv6 (security groups filter IPv4 only)
        return [(group, block) for group in groups for block in blocks]

    def add(self, port: dict) -> None:
        for name, value in self._values(port):
            self.by[name].setdefault(value, set()).add(port["id"])
        for group, block in self._blocks(port):
            self.group_blocks.setdefault(group, {}).setdefault(block, set()).add(port["id"])

    def remove(self, port: dict) -> None:
        for name, value in self._values(port):
            ids = self.by[name].get(value)
            if ids is not None:
                ids.discard(port["id"])
                if not ids:
                    del self.by[name][value]
        for group, block in self._blocks(port):
            ids = self.group_blocks.get(group, {}).get(block)
            if ids is not None:
                ids.discard(port["id"])
                if not ids:
                    del self.group_blocks[group][block]
                    if not self.group_blocks[group]:
                        del self.group_blocks[group]

    def blocks(self, group: str) -> list[int]:
        """The /24 blocks where ports of the group have an IPv4 address (a copy)."""
        return list(self.group_blocks.get(group, ()))

    def block_ids(self, group: str, block: int) -> list[str]:
        """The ids of the group's ports with an IPv4 address in the block (a copy)."""
        return list(self.group_blocks.get(group, {}).get(block, ()))

    def ids(self, name: str, value: Any) -> list[str]:
        """The ids of the ports whose `name` is (or, for security_groups, holds) `value`: a copy,
        so the cache may change while a reader (the punt thread) walks it."""
        return list(self.by[name].get(value, ()))
