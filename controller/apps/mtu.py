"""net_mtu: what a frame too big for the tunnel gets back (path-MTU discovery).

Per IPv4 subnet of every network in view: the network's MTU and the address
"fragmentation needed" comes from when the frame was bridged — the subnet's
gateway_ip (the first hop a guest knows, whether or not a router holds it yet),
else the subnet's DHCP port (Neutron's service address in the network), else
the network's address (the first subnet by CIDR that has one); a network with
none gets no ICMP (the frame is dropped, DROP_TOO_BIG). A network-wide entry
with the network's address serves senders in none of its subnets and frames
routed into it (those get their ICMP from the router port they entered by, and
the MTU from here). Whether a frame fits is the tunnel endpoint's business (l2
app: the underlay's MTU)."""
from __future__ import annotations

import ipaddress
from typing import Hashable, Iterable

from dfxdp.datapath.libbpf import lib

from ..desired import Change
from .base import Entry, LocalView, ScopedApp, ipv4_be32

DHCP_OWNER = "network:dhcp"


class NetworkMtuApp(ScopedApp):
    name = "mtu"
    maps = ("net_mtu",)

    def scopes(self, view: LocalView) -> Iterable[Hashable]:
        return list(view.networks)  # scopes are network ids

    def affected(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        if change.kind == "network":
            return (change.obj_id,)
        if change.kind == "subnet" or change.kind == "port" and any(
                doc.get("device_owner") == DHCP_OWNER for doc in change.docs()):
            return {doc.get("network_id") for doc in change.docs()}
        return ()

    def scope_entries(self, view: LocalView, net_id: Hashable) -> Iterable[Entry]:
        net = view.networks.get(net_id)
        subnets = [s for s in view.subnets_of(net_id) if s.get("ip_version", 4) == 4] if net else []
        if not subnets:
            return ()
        dhcp = dhcp_addresses(view, net_id)
        return self._network(net, subnets, tuple(dhcp.get(s["id"]) for s in subnets))

    @staticmethod
    def _network(net: dict, subnets: list[dict], dhcp_sources: tuple) -> Iterable[Entry]:
        by_cidr = sorted(zip((ipaddress.ip_network(s["cidr"]) for s in subnets), subnets, dhcp_sources),
                         key=lambda item: item[0])
        sources = [subnet.get("gateway_ip") or dhcp for _, subnet, dhcp in by_cidr]
        network_source = next((source for source in sources if source), None)
        for (cidr, _, _), source in zip(by_cidr, sources):
            yield Entry("net_mtu", {"prefixlen": lib.NET_MTU_PREFIX_BASE + cidr.prefixlen, "net_key": net["key"],
                                    "addr": ipv4_be32(str(cidr.network_address))},
                        _value(net, source or network_source))
        yield Entry("net_mtu", {"prefixlen": lib.NET_MTU_PREFIX_BASE, "net_key": net["key"], "addr": 0},
                    _value(net, network_source))


def _value(net: dict, source: str | None) -> dict:
    return {"mtu": net.get("mtu") or 0, "icmp_src": ipv4_be32(source) if source else 0}


def dhcp_addresses(view: LocalView, network_id: str) -> dict[str, str]:
    """subnet id -> the address of its DHCP port, for the subnets of one network."""
    return {fixed["subnet_id"]: fixed["ip_address"]
            for port in view.ports_by("owner", DHCP_OWNER) if port.get("network_id") == network_id
            for fixed in port.get("fixed_ips", []) if fixed.get("subnet_id")}
