"""portsec: the sources each local port may use (fixed IPs, allowed address pairs)."""
from __future__ import annotations

import ipaddress
from typing import Hashable, Iterable

from dfxdp.datapath.libbpf import lib

from ..desired import LOCAL_PORT, Change
from .base import Entry, LocalView, ScopedApp, ipv4_be32, mac_bytes


class PortSecurityApp(ScopedApp):
    name = "portsec"
    maps = ("portsec",)

    def scopes(self, view: LocalView) -> Iterable[Hashable]:
        return list(view.local_ports)  # scopes are local port ids

    def affected(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        return (change.obj_id,) if change.kind in ("port", LOCAL_PORT) else ()

    def scope_entries(self, view: LocalView, port_id: Hashable) -> Iterable[Entry]:
        port, ifindex = view.ports.get(port_id), view.local_ports.get(port_id)
        if port and ifindex is not None and port.get("port_security_enabled"):
            mac = list(mac_bytes(port["mac_address"]))
            sources = [(f["ip_address"] + "/32", mac) for f in port.get("fixed_ips", [])]
            for pair in port.get("allowed_address_pairs", []):
                pair_mac = list(mac_bytes(pair["mac_address"])) if pair.get("mac_address") else mac
                sources.append((pair["ip_address"], pair_mac))
            for cidr, allowed_mac in sources:
                net = ipaddress.ip_network(cidr, strict=False)
                if net.version != 4:
                    continue  # no IPv6 sources yet: security groups drop IPv6 of such ports
                yield Entry("portsec", {"prefixlen": lib.PORTSEC_PREFIX_BASE + net.prefixlen, "ifindex": ifindex,
                                        "addr": ipv4_be32(str(net.network_address))}, {"mac": allowed_mac})
