"""if_config: what each interface of this chassis is (bound port, underlay, external NIC), and the
VLANs of the external NICs (ext_vlan_in, ext_vlan_out)."""
from __future__ import annotations

from typing import Hashable, Iterable

from ..desired import LOCAL_PORT, Change
from .base import Entry, LocalView, ScopedApp, ipv4_addresses, ipv4_be32, mac_bytes

# Flag values from maps/port.h (read through cffi, never restated).
from dfxdp.datapath.libbpf import lib

NICS = ("nics",)  # the scope of the underlay and external NICs; every other scope is a local port id


class PortsApp(ScopedApp):
    name = "ports"
    maps = ("ext_vlan_in", "ext_vlan_out", "if_config")  # a NIC's VLANs before its record sends it frames
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
        yield from PortsApp._external_nics(view)

    @staticmethod
    def _external_nics(view: LocalView) -> Iterable[Entry]:
        """Each NIC of the bridge mappings: untagged frames are its flat external network's (the
        lowest key's when several share it, as they share the NIC; 0, none: the kernel's), tagged
        ones their VLAN's network's, both ways (bpf/lib/vlan.h)."""
        flat: dict[int, int] = {}
        vlans: dict[tuple[int, int], int] = {}
        for net in sorted(view.find("network", "external", True), key=lambda n: n["key"]):
            ifindex = view.external_nic(net)
            if not ifindex:
                continue
            if net.get("provider:network_type") == "vlan":
                # one network per tag: two physical networks mapped to one NIC may not both claim it
                vlans.setdefault((ifindex, net["provider:segmentation_id"]), net["key"])
            else:
                flat.setdefault(ifindex, net["key"])
        for ifindex, mac in {nic: mac for nic, mac in view.bridges.values()}.items():
            yield Entry("if_config", ifindex, {"net_key": flat.get(ifindex, 0), "flags": lib.IF_F_EXTERNAL,
                                               "mac": list(mac_bytes(mac)) if mac else [0] * 6})
        for (ifindex, vid), net_key in vlans.items():
            yield Entry("ext_vlan_in", {"ifindex": ifindex, "id": vid}, net_key)
            yield Entry("ext_vlan_out", {"ifindex": ifindex, "id": net_key}, vid)
