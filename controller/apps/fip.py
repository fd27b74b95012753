"""Floating IPs, distributed: the chassis hosting the port answers for its
floating IP on the external network (with the floating IP port's own MAC, so
no two chassis ever claim one MAC) and NATs it in XDP."""
from __future__ import annotations

from typing import Iterable

from dfxdp.nb.index import FLOATINGIP_OWNER

from .base import App, Entry, LocalView, ipv4_be32, mac_bytes


class FloatingIPApp(App):
    name = "fip"
    maps = ("fip_dnat", "fip_snat")  # arp_table and router_ports entries are shared with l2/l3

    def desired(self, view: LocalView) -> Iterable[Entry]:
        for fip in view.floatingips.values():
            port, router = view.ports.get(fip.get("port_id") or ""), view.routers.get(fip.get("router_id") or "")
            own = next(iter(view.ports_of(FLOATINGIP_OWNER, fip["id"])), None)
            ext = view.networks.get(fip.get("floating_network_id"))
            if not (port and router and own and ext and view.is_local(port) and fip.get("fixed_ip_address")):
                continue
            net = view.networks.get(port["network_id"])
            if not net:
                continue
            floating, fixed = ipv4_be32(fip["floating_ip_address"]), ipv4_be32(fip["fixed_ip_address"])
            mac = list(mac_bytes(own["mac_address"]))
            yield Entry("fip_dnat", floating, {"fixed_ip": fixed, "router_key": router["key"]})
            yield Entry("fip_snat", {"net_key": net["key"], "fixed_ip": fixed}, {"floating_ip": floating, "mac": mac})
            yield from on_external_network(ext, floating, mac, router)


def on_external_network(ext: dict, floating: int, mac: list[int], router: dict) -> Iterable[Entry]:
    """A floating IP hosted here: answered for on the external network (ARP) and routed by its router."""
    yield Entry("arp_table", {"net_key": ext["key"], "ip": floating}, {"mac": mac})
    yield Entry("router_ports", {"net_key": ext["key"], "mac": mac}, {"router_key": router["key"], "ip": floating})
