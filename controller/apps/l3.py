"""router_ports, router_ips, routes: every router this chassis can reach, distributed.

Connected routes for each interface's subnet, the router's static routes through
the interface whose subnet holds the next hop, and, with an external gateway,
the external subnet and a default route through its gateway (leaving by the
external NIC, where only floating IPs are NATed in XDP).
"""
from __future__ import annotations

import ipaddress
from typing import Hashable, Iterable

from dfxdp.datapath.libbpf import lib
from dfxdp.nb.index import ROUTER_GATEWAY, ROUTER_INTERFACE

from ..desired import Change
from .base import Entry, LocalView, ScopedApp, ipv4_addresses, ipv4_be32, mac_bytes


def route_key(router_key: int, cidr: str) -> dict:
    net = ipaddress.ip_network(cidr)
    return {"prefixlen": lib.ROUTE_PREFIX_BASE + net.prefixlen, "router_key": router_key,
            "dst": ipv4_be32(str(net.network_address))}


class L3App(ScopedApp):
    name = "l3"
    maps = ("router_ports", "router_ips", "routes")
    datapath_maps = ("ext_neigh",)  # external hosts' MACs, learned from what the external NIC receives

    def scopes(self, view: LocalView) -> Iterable[Hashable]:
        return list(view.routers)  # scopes are router ids

    def affected(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        if change.kind == "router":
            return (change.obj_id,)
        if change.kind == "port":
            return {doc.get("device_id") for doc in change.docs()
                    if doc.get("device_owner") in (ROUTER_INTERFACE, ROUTER_GATEWAY)}
        if change.kind in ("network", "subnet"):  # a leg's network key or CIDR: routers are few
            return list(view.routers)
        return ()

    def scope_entries(self, view: LocalView, router_id: Hashable) -> Iterable[Entry]:
        router = view.routers.get(router_id)
        return self._router(view, router) if router else ()

    def _router(self, view: LocalView, router: dict) -> Iterable[Entry]:
        rkey = router["key"]
        legs = []  # (subnet, port, network, external?)
        for port in view.ports_by("device_id", router["id"]):
            if port.get("device_owner") not in (ROUTER_INTERFACE, ROUTER_GATEWAY):
                continue
            net = view.networks.get(port["network_id"])
            if not net:
                continue
            for fixed in port.get("fixed_ips", []):
                subnet = view.subnets.get(fixed["subnet_id"])
                if subnet and subnet.get("ip_version", 4) == 4:
                    legs.append((subnet, port, net, port["device_owner"] == ROUTER_GATEWAY, fixed["ip_address"]))
        for subnet, port, net, external, address in legs:
            mac = list(mac_bytes(port["mac_address"]))
            yield Entry("router_ports", {"net_key": net["key"], "mac": mac},
                        {"router_key": rkey, "ip": ipv4_be32(address)})
            yield Entry("router_ips", {"router_key": rkey, "ip": ipv4_be32(address)}, 1)
            flags = lib.ROUTE_F_CONNECTED | (lib.ROUTE_F_EXTERNAL if external else 0)
            out = view.external_nic(net) if external else 0
            yield Entry("routes", route_key(rkey, subnet["cidr"]), self._route(net, 0, mac, flags, address, out))
            if external and subnet.get("gateway_ip"):
                yield Entry("routes", route_key(rkey, "0.0.0.0/0"),
                            self._route(net, ipv4_be32(subnet["gateway_ip"]), mac, lib.ROUTE_F_EXTERNAL, address, out))
        for static in router.get("routes") or []:
            hop = ipaddress.ip_address(static["nexthop"])
            for subnet, port, net, external, address in legs:
                if hop in ipaddress.ip_network(subnet["cidr"]):
                    flags = lib.ROUTE_F_EXTERNAL if external else 0
                    yield Entry("routes", route_key(rkey, static["destination"]),
                                self._route(net, ipv4_be32(str(hop)), list(mac_bytes(port["mac_address"])), flags,
                                            address, view.external_nic(net) if external else 0))
                    break

    @staticmethod
    def _route(net: dict, nexthop: int, mac: list, flags: int, src: str, out_ifindex: int) -> dict:
        return {"out_net_key": net["key"], "nexthop": nexthop, "src_mac": mac, "flags": flags,
                "src_ip": ipv4_be32(src), "out_ifindex": out_ifindex}
