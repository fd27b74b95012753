"""Floating IPs, distributed: the chassis hosting the port answers for its
floating IP on the external network (with the floating IP port's own MAC, so
no two chassis ever claim one MAC) and NATs it in XDP."""
from __future__ import annotations

from typing import Hashable, Iterable

from dfxdp.nb.index import FLOATINGIP_OWNER

from ..desired import LOCAL_PORT, Change
from .base import Entry, LocalView, ScopedApp, ipv4_be32, mac_bytes


class FloatingIPApp(ScopedApp):
    name = "fip"
    maps = ("fip_dnat", "fip_snat")  # arp_table and router_ports entries are shared with l2/l3

    def scopes(self, view: LocalView) -> Iterable[Hashable]:
        return list(view.floatingips)  # scopes are floating IP ids

    def affected(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        if change.kind == "floatingip":
            return (change.obj_id,)
        if change.kind in ("network", "router"):
            return list(view.floatingips)
        if change.kind not in ("port", LOCAL_PORT):
            return ()
        fips = {doc["device_id"] for doc in change.docs() if change.kind == "port"
                and doc.get("device_owner") == FLOATINGIP_OWNER and doc.get("device_id")}
        if change.kind == LOCAL_PORT or change.obj_id in view.local_ports:  # the port a floating IP is for
            fips |= {i for i, fip in view.floatingips.items() if fip.get("port_id") == change.obj_id}
        return fips

    def scope_entries(self, view: LocalView, fip_id: Hashable) -> Iterable[Entry]:
        fip = view.floatingips.get(fip_id)
        if fip is not None:
            port, router = view.ports.get(fip.get("port_id") or ""), view.routers.get(fip.get("router_id") or "")
            own = next((p for p in view.ports_by("device_id", fip["id"]) if p.get("device_owner") == FLOATINGIP_OWNER), None)
            ext = view.networks.get(fip.get("floating_network_id"))
            if not (port and router and own and ext and view.is_local(port) and fip.get("fixed_ip_address")):
                return
            net = view.networks.get(port["network_id"])
            if not net:
                return
            floating, fixed = ipv4_be32(fip["floating_ip_address"]), ipv4_be32(fip["fixed_ip_address"])
            mac = list(mac_bytes(own["mac_address"]))
            yield Entry("fip_dnat", floating, {"fixed_ip": fixed, "router_key": router["key"]})
            yield Entry("fip_snat", {"net_key": net["key"], "fixed_ip": fixed}, {"floating_ip": floating, "mac": mac})
            yield from on_external_network(ext, floating, mac, router)


def on_external_network(ext: dict, floating: int, mac: list[int], router: dict) -> Iterable[Entry]:
    """A floating IP hosted here: answered for on the external network (ARP) and routed by its router."""
    yield Entry("arp_table", {"net_key": ext["key"], "ip": floating}, {"mac": mac})
    yield Entry("router_ports", {"net_key": ext["key"], "mac": mac}, {"router_key": router["key"], "ip": floating})
