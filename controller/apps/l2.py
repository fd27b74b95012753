"""fdb, arp_table and tunnel_endpoints: where every port of the local networks lives."""
from __future__ import annotations

from typing import Iterable

from dfxdp.datapath.libbpf import lib

from .base import App, Entry, LocalView, Memo, ipv4_addresses, ipv4_be32, mac_bytes


class L2App(App):
    name = "l2"
    maps = ("tunnel_endpoints", "fdb", "arp_table")  # endpoints first: remote fdb entries use them

    def __init__(self) -> None:
        self.memo = Memo()  # per port: the entries of every port in view, 100,000 on a big chassis

    def desired(self, view: LocalView) -> Iterable[Entry]:
        self.memo.new_pass()
        remote_chassis = set()
        for port in view.ports.values():
            net = view.networks.get(port.get("network_id"))
            if not net or not port.get("mac_address"):
                continue
            ifindex, tunnel_ip = view.local_ports.get(port["id"]), view.tunnel_ip_of(port)
            if ifindex is None and tunnel_ip and tunnel_ip != view.tunnel_ip:
                remote_chassis.add(tunnel_ip)
            yield from self.memo.get(port["id"], (port, net, ifindex, tunnel_ip, view.tunnel_ip),
                                     lambda: list(self._port(port, net, ifindex, tunnel_ip, view.tunnel_ip)))
        for tunnel_ip in sorted(remote_chassis):
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
