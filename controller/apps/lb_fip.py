"""A load balancer's VIP reached from outside through a floating IP on its VIP
port (docs/load-balancer.md, maps/lb.h).

The VIP port is bound nowhere, so one chassis is picked to host the floating
IP: the first, by name, of those hosting a member's port (every chassis that
hosts a member sees the others' member ports, so all pick the same one, and it
serves the router the floating IP needs). There the floating IP answers ARP, is
balanced by the LB stage as one more VIP (LB_F_FLOATING) and the members'
answers leave through the external NIC (lb_fip_out). The other chassis hosting
members send their members' answers to outside clients to it (lb_fip_return).
"""
from __future__ import annotations

import socket
from typing import Iterable

from dfxdp.datapath.libbpf import lib

from .base import App, Entry, LocalView, ipv4_be32, mac_bytes
from .fip import on_external_network
from .lb import PROTOCOLS, is_ipv4, ring_flags, served_listeners

FLOATINGIP_OWNER = "network:floatingip"


class LoadBalancerFloatingIPApp(App):
    name = "lb_fip"
    maps = ("lb_fip_out", "lb_fip_return")  # lb_vips, fdb, arp_table, router_ports entries are shared

    def desired(self, view: LocalView) -> Iterable[Entry]:
        if not view.loadbalancers or not view.floatingips:
            return
        vip_ports = {lb.get("vip_port_id"): lb for lb in view.loadbalancers.values()}
        floating = [(vip_ports[f["port_id"]], f) for f in view.floatingips.values() if f.get("port_id") in vip_ports]
        if not floating:
            return
        fip_ports = {p["device_id"]: p for p in view.ports.values() if p.get("device_owner") == FLOATINGIP_OWNER}
        by_address = {(f["subnet_id"], f["ip_address"]): p for p in view.ports.values() for f in p.get("fixed_ips", [])}
        for lb, fip in floating:
            yield from self._floating_ip(view, lb, fip, fip_ports.get(fip["id"]), by_address)

    def _floating_ip(self, view: LocalView, lb: dict, fip: dict, own: dict | None,
                     by_address: dict[tuple[str, str], dict]) -> Iterable[Entry]:
        ext, router = view.networks.get(fip.get("floating_network_id")), view.routers.get(fip.get("router_id") or "")
        if not (own and ext and router and lb.get("admin_state_up", True) and is_ipv4(lb.get("vip_address"))):
            return
        served = list(served_listeners(view, lb))
        members = [(listener, m, by_address.get((m.get("subnet_id") or lb.get("vip_subnet_id"), m["address"])))
                   for listener, pool in served for m in view.find("member", "pool", pool["id"])
                   if is_ipv4(m.get("address"))]
        hosts = sorted({port["binding:host_id"] for _, _, port in members if port and port.get("binding:host_id")})
        home = view.chassis_by_name.get(hosts[0]) if hosts else None
        if not home:
            return
        address, mac = ipv4_be32(fip["floating_ip_address"]), list(mac_bytes(own["mac_address"]))
        if hosts[0] == view.chassis:
            yield from self._home(view, address, mac, ext, router, own, served)
            return
        for listener, m, port in members:
            net = view.networks.get(port["network_id"]) if port and view.is_local(port) else None
            if net:
                yield Entry("lb_fip_return", {"net_key": net["key"], "addr": ipv4_be32(m["address"]),
                                              "port": socket.htons(m["protocol_port"]),
                                              "proto": PROTOCOLS[listener["protocol"]]},
                            {"tunnel_ip": ipv4_be32(home["tunnel_ip"]), "net_key": ext["key"], "mac": mac})

    @staticmethod
    def _home(view: LocalView, address: int, mac: list[int], ext: dict, router: dict, own: dict,
              served: list[tuple[dict, dict]]) -> Iterable[Entry]:
        """The floating IP's chassis: it answers for it and balances what reaches it."""
        nic = view.external_nic(ext)
        if not nic:
            return
        yield from on_external_network(ext, address, mac, router)
        yield Entry("lb_fip_out", address, {"net_key": ext["key"], "ifindex": nic, "mac": mac})
        # the other chassis' answers arrive tunnelled to the floating IP's MAC: delivered to the LB stage here
        yield Entry("fdb", {"net_key": ext["key"], "mac": mac},
                    {"ifindex": nic, "port_key": own["key"], "flags": lib.FDB_F_LOCAL})
        nowhere = {"mac": [0] * 6, "gw_mac": [0] * 6}  # L3 routes the DNATed frame in, as any floating IP's
        yield Entry("lb_vips", {"vip": address, "proto": socket.IPPROTO_ICMP},
                    {"ring_key": 0, "flags": lib.LB_F_FLOATING, **nowhere})
        for listener, pool in served:
            yield Entry("lb_vips", {"vip": address, "port": socket.htons(listener["protocol_port"]),
                                    "proto": PROTOCOLS[listener["protocol"]]},
                        {"ring_key": pool["key"], "flags": ring_flags(pool) | lib.LB_F_FLOATING, **nowhere})
