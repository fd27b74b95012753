"""portsec: the sources each local port may use (fixed IPs, allowed address pairs)."""
from __future__ import annotations

import ipaddress
from typing import Iterable

from dfxdp.datapath.libbpf import lib

from .base import App, Entry, LocalView, ipv4_be32, mac_bytes


class PortSecurityApp(App):
    name = "portsec"
    maps = ("portsec",)

    def desired(self, view: LocalView) -> Iterable[Entry]:
        for port_id, ifindex in view.local_ports.items():
            port = view.ports.get(port_id)
            if not port or not port.get("port_security_enabled"):
                continue
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
