"""if_config: what each interface of this chassis is (bound port, underlay, external NIC)."""
from __future__ import annotations

from typing import Iterable

from .base import App, Entry, LocalView, ipv4_addresses, ipv4_be32, mac_bytes

# Flag values from maps/port.h (read through cffi, never restated).
from dfxdp.datapath.libbpf import lib


class PortsApp(App):
    name = "ports"
    maps = ("if_config",)
    # the pipeline these interfaces' frames enter: its per-CPU scratch and counters
    datapath_maps = ("pkt_scratch", "stage_stats", "verdict_stats", "drop_stats")

    def desired(self, view: LocalView) -> Iterable[Entry]:
        for port_id, ifindex in view.local_ports.items():
            port = view.ports.get(port_id)
            net = view.networks.get(port.get("network_id")) if port else None
            if not port or not net:
                continue
            flags = lib.IF_F_PORT | (lib.IF_F_PORTSEC if port.get("port_security_enabled") else 0)
            addrs = ipv4_addresses(port)
            yield Entry("if_config", ifindex, {
                "net_key": net["key"], "port_key": port["key"], "flags": flags,
                "ipv4": ipv4_be32(addrs[0]) if addrs else 0, "mac": list(mac_bytes(port["mac_address"]))})
        if view.underlay_ifindex:
            yield Entry("if_config", view.underlay_ifindex, {
                "flags": lib.IF_F_UNDERLAY, "ipv4": ipv4_be32(view.tunnel_ip),
                "mac": list(mac_bytes(view.underlay_mac)) if view.underlay_mac else [0] * 6})
        external = view.find("network", "external", True)
        if view.external_ifindex and external:
            # One NIC carries the flat external network(s); the first one's key tags its frames.
            yield Entry("if_config", view.external_ifindex, {
                "net_key": sorted(external, key=lambda n: n["key"])[0]["key"], "flags": lib.IF_F_EXTERNAL,
                "mac": list(mac_bytes(view.external_mac)) if view.external_mac else [0] * 6})
