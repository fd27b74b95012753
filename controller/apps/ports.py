"""if_config: what each interface of this chassis is (bound port, underlay, external NIC)."""
from __future__ import annotations

from typing import Hashable, Iterable

from ..desired import LOCAL_PORT, Change
from .base import Entry, LocalView, ScopedApp, ipv4_addresses, ipv4_be32, mac_bytes

# Flag values from maps/port.h (read through cffi, never restated).
from dfxdp.datapath.libbpf import lib

NICS = ("nics",)  # the scope of the underlay and external NICs; every other scope is a local port id


class PortsApp(ScopedApp):
    name = "ports"
    maps = ("if_config",)
    # the pipeline these interfaces' frames enter: its per-CPU scratch and counters
    datapath_maps = ("pkt_scratch", "stage_stats", "verdict_stats", "drop_stats")

    def scopes(self, view: LocalView) -> Iterable[Hashable]:
        return [*view.local_ports, NICS]

    def affected(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        if change.kind in ("port", LOCAL_PORT):
            return (change.obj_id,)
        if change.kind == "network":  # its local ports' net_key, the external NIC's network
            return (*view.local_ports, NICS)
        return ()

    def scope_entries(self, view: LocalView, scope: Hashable) -> Iterable[Entry]:
        if scope == NICS:
            return self._nics(view)
        port, ifindex = view.ports.get(scope), view.local_ports.get(scope)
        net = view.networks.get(port.get("network_id")) if port else None
        if not net or ifindex is None:
            return ()
        flags = lib.IF_F_PORT | (lib.IF_F_PORTSEC if port.get("port_security_enabled") else 0)
        addrs = ipv4_addresses(port)
        return (Entry("if_config", ifindex, {
            "net_key": net["key"], "port_key": port["key"], "flags": flags,
            "ipv4": ipv4_be32(addrs[0]) if addrs else 0, "mac": list(mac_bytes(port["mac_address"]))}),)

    @staticmethod
    def _nics(view: LocalView) -> Iterable[Entry]:
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
