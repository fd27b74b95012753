"""fdb, arp_table and tunnel_endpoints: where every port of the local networks lives."""
from __future__ import annotations

from typing import Hashable, Iterable

from dfxdp.datapath.libbpf import lib

from ..desired import LOCAL_PORT, Change
from .base import Entry, LocalView, ScopedApp, ipv4_addresses, ipv4_be32, mac_bytes

ENDPOINTS = ("tunnel_endpoints",)  # the scope of the remote chassis' endpoints; every other scope is a port id


class L2App(ScopedApp):
    name = "l2"
    maps = ("tunnel_endpoints", "fdb", "arp_table")  # endpoints first: remote fdb entries use them

    def scopes(self, view: LocalView) -> Iterable[Hashable]:
        return [ENDPOINTS, *view.ports]

    def affected(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        if change.kind in ("port", LOCAL_PORT):
            return (change.obj_id, ENDPOINTS)
        if change.kind == "network":
            return (ENDPOINTS, *view.ids("port", "network", change.obj_id))
        if change.kind == "chassis":
            if len({doc.get("tunnel_ip") for doc in change.docs()}) == 1 and len(change.docs()) == 2:
                return ()  # a heartbeat: where its ports are did not change
            name = change.obj_id
            return (ENDPOINTS, *{i for doc in change.docs() for i in view.ids("port", "host", doc.get("name", name))})
        return ()

    def scope_entries(self, view: LocalView, scope: Hashable) -> Iterable[Entry]:
        if scope == ENDPOINTS:
            return self._endpoints(view)
        port = view.ports.get(scope)
        net = view.networks.get(port.get("network_id")) if port else None
        if not net or not port.get("mac_address"):
            return ()
        return self._port(port, net, view.local_ports.get(port["id"]), view.tunnel_ip_of(port), view.tunnel_ip)

    @staticmethod
    def _endpoints(view: LocalView) -> Iterable[Entry]:
        """A tunnel endpoint for every other chassis hosting a port of a network in view."""
        for name, chassis in sorted(view.chassis_by_name.items(), key=lambda c: c[1].get("tunnel_ip") or ""):
            tunnel_ip = chassis.get("tunnel_ip")
            if not tunnel_ip or tunnel_ip == view.tunnel_ip or not any(
                    _in_view(view, view.ports.get(pid)) for pid in view.filed("port", "host", name)):
                continue
            neighbor = view.underlay_neighbors.get(tunnel_ip)
            if neighbor and view.underlay_ifindex:
                yield Entry("tunnel_endpoints", ipv4_be32(tunnel_ip), {
                    "dmac": list(mac_bytes(neighbor)), "smac": list(mac_bytes(view.underlay_mac)),
                    "ifindex": view.underlay_ifindex, "src_ip": ipv4_be32(view.tunnel_ip),
                    "mtu": view.underlay_mtu})

    @staticmethod
    def _port(port: dict, net: dict, ifindex: int | None, tunnel_ip: str | None, own_tunnel_ip: str) -> Iterable[Entry]:
        mac = list(mac_bytes(port["mac_address"]))
        # On external networks only the chassis hosting a floating IP answers for it (fip app).
        for address in ([] if net.get("router:external") else ipv4_addresses(port)):
            yield Entry("arp_table", {"net_key": net["key"], "ip": ipv4_be32(address)}, {"mac": mac})
        if ifindex is not None:
            yield Entry("fdb", {"net_key": net["key"], "mac": mac}, {
                "ifindex": ifindex, "port_key": port["key"], "flags": lib.FDB_F_LOCAL})
        elif tunnel_ip and tunnel_ip != own_tunnel_ip:
            yield Entry("fdb", {"net_key": net["key"], "mac": mac}, {
                "tunnel_ip": ipv4_be32(tunnel_ip), "port_key": port["key"], "flags": lib.FDB_F_REMOTE})


def _in_view(view: LocalView, port: dict | None) -> bool:
    return bool(port and port.get("mac_address") and port.get("network_id") in view.networks
                and port["id"] not in view.local_ports)
