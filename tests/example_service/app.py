"""blackholes: each blackhole of a network this chassis serves, for stage.c."""
from __future__ import annotations

import ipaddress
from typing import Iterable

from dfxdp.controller.apps.base import App, Entry, LocalView


def blackhole_key(net_key: int, address: str) -> int:
    """The map's key as stage.c computes it: the network key, then the IPv4 address (host order)."""
    return net_key << 32 | int(ipaddress.IPv4Address(address))


class BlackholeApp(App):
    name = "blackhole"
    maps = ("blackholes",)

    def desired(self, view: LocalView) -> Iterable[Entry]:
        for hole in view.blackholes.values():
            net = view.networks.get(hole["network_id"])
            if net:
                yield Entry("blackholes", blackhole_key(net["key"], hole["ip_address"]), 1)
