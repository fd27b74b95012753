"""L2 in the OVS fallback: what XDP passes to the kernel and OVS picks up from the taps.

XDP forwards known unicast itself; it passes broadcast, multicast and unknown
unicast. This app floods those within their network: to the network's other
local ports, and by head-end replication to every chassis hosting a port of the
network (one copy each, through the flow-based tunnel port, VNI = network key).
A frame that came from a tunnel goes to local ports only: never back into the
tunnel, and the chassis that sent it already reached every other chassis.
Every flow matches the network (metadata, set from the ingress tap or VNI), so
nothing crosses networks. Table layout: docs/fallback.md.

Known unicast that reaches OVS (IPv6, which XDP passes) goes where the port is;
frames to a MAC of the network that no tap carries (router or DHCP ports) are
dropped rather than flooded. A port with port security gets only ARP and IPv4
from the fallback, as XDP would give it (docs/datapath.md, Ethertypes), and IPv4
only as far as its security groups' ingress rules allow (fallback_sg.py).
"""
from __future__ import annotations

from typing import Iterable

from dfxdp.controller.binding import tap_name
from dfxdp.controller.ovs.flows import DROP, Flow, goto, output, set_field, write_metadata
from dfxdp.controller.ovs.bridge import TUNNEL_PORT

from .base import App, LocalView
from .fallback_sg import deliver
from .snat import ROUTER_INTERFACE, TABLE_SNAT_INGRESS, TABLE_SNAT_OUT

TABLE_INGRESS = 0   # which network a frame belongs to: the tap it came from, or the tunnel's VNI
TABLE_L2 = 10       # known destination MACs of the network
TABLE_FLOOD = 20    # broadcast, multicast, unknown unicast
TABLE_MULTICAST = 15  # frames with the group bit first: IGMP snooping (the igmp app) sends the rest back here
MULTICAST = ("01:00:00:00:00:00", "01:00:00:00:00:00")  # the group bit of the destination MAC
ETH_P_ARP, ETH_P_IP = 0x0806, 0x0800  # all a port with port security may receive


class FloodApp(App):
    name = "flood"
    depends = ()  # no map entries: nothing a pass derives
    tables = (TABLE_INGRESS, TABLE_L2, TABLE_FLOOD)
    flow_cookie = 1

    def flows(self, view: LocalView) -> Iterable[Flow]:
        tunnel = view.ofports.get(TUNNEL_PORT)
        local: dict[str, dict[int, dict]] = {}  # network id -> ofport of each local tap -> its port
        for pid in sorted(view.local_ports):
            port, ofport = view.ports.get(pid), view.ofports.get(tap_name(pid))
            if port and ofport and port.get("network_id") in view.networks:
                local.setdefault(port["network_id"], {})[ofport] = port
                yield Flow.of(TABLE_INGRESS, 100, {"in_port": ofport},
                              [write_metadata(view.networks[port["network_id"]]["key"]), goto(TABLE_L2)])
        for net_id, taps in sorted(local.items()):
            yield from self._network(view, view.networks[net_id], taps, tunnel)
        # Table 0 leaves what it does not know (the external NIC, tunnel frames for a network
        # without local ports) to the snat app, which drops what it does not want either.
        defaults = {TABLE_INGRESS: [goto(TABLE_SNAT_INGRESS)], TABLE_L2: [goto(TABLE_FLOOD)]}
        for table in self.tables:
            yield Flow.of(table, 0, {}, defaults.get(table, DROP))

    @staticmethod
    def _network(view: LocalView, net: dict, taps: dict[int, dict], tunnel: int | None) -> Iterable[Flow]:
        key, remotes = net["key"], set()
        for port in view.ports_on_network(net["id"]):
            if not port.get("mac_address"):
                continue
            match = {"metadata": key, "eth_dst": port["mac_address"]}
            ofport = view.ofports.get(tap_name(port["id"])) if view.is_local(port) else None
            tunnel_ip = view.tunnel_ip_of(port)
            if ofport and ofport in taps and taps[ofport].get("port_security_enabled"):
                # Known unicast: XDP forwards a port's IPv4 itself (through its ingress rules); what
                # reaches OVS for it comes through the tunnel from a chassis that decided (SNAT replies).
                yield from _guarded(TABLE_L2, 100, match, [output(ofport)])
                continue
            if ofport:
                actions = [output(ofport)]
            elif tunnel is not None and tunnel_ip and tunnel_ip != view.tunnel_ip:
                remotes.add(tunnel_ip)
                actions = [set_field("tun_ipv4_dst", tunnel_ip), set_field("tunnel_id", key), output(tunnel)]
            elif port.get("device_owner") == ROUTER_INTERFACE:
                actions = [goto(TABLE_SNAT_OUT)]  # what XDP did not route: the snat app's (or dropped there)
            else:
                actions = DROP  # a DHCP port or a gateway, or a port bound nowhere yet
            yield Flow.of(TABLE_L2, 100, match, actions)
        yield Flow.of(TABLE_L2, 50, {"metadata": key, "eth_dst": MULTICAST}, [goto(TABLE_MULTICAST)])
        every = [output(p) for p in taps]
        # IPv4 to a port with port security passes its ingress rules first (fallback_sg.py)
        ipv4 = [action for p, port in taps.items() for action in deliver(view, port, p)]
        unguarded = [output(p) for p, port in taps.items() if not port.get("port_security_enabled")]
        replicate = [action for ip in sorted(remotes) for action in
                     (set_field("tun_ipv4_dst", ip), set_field("tunnel_id", key), output(tunnel))]
        if tunnel is not None:
            yield Flow.of(TABLE_INGRESS, 100, {"in_port": tunnel, "tunnel_id": key},
                          [write_metadata(key), goto(TABLE_L2)])
            # From the tunnel: local ports only (the sender replicated to every chassis itself).
            yield from _by_ethertype(100, {"metadata": key, "in_port": tunnel}, every, ipv4, unguarded)
        # The receiving chassis filters for its own ports: every copy leaves.
        yield from _by_ethertype(50, {"metadata": key}, every + replicate, ipv4 + replicate, unguarded + replicate)


def _guarded(table: int, priority: int, match: dict, actions: list) -> Iterable[Flow]:
    """`actions` for ARP and IPv4 only; anything else matching is dropped."""
    for ethertype in (ETH_P_ARP, ETH_P_IP):
        yield Flow.of(table, priority, {**match, "eth_type": ethertype}, actions)
    yield Flow.of(table, priority - 10, match, DROP)


def _by_ethertype(priority: int, match: dict, arp: list, ipv4: list, other: list) -> Iterable[Flow]:
    """Flood flows: ARP to every port, IPv4 to every port through the ingress rules of those
    with port security, other ethertypes past ports with port security."""
    yield Flow.of(TABLE_FLOOD, priority + 10, {**match, "eth_type": ETH_P_ARP}, arp)
    yield Flow.of(TABLE_FLOOD, priority + 10, {**match, "eth_type": ETH_P_IP}, ipv4)
    yield Flow.of(TABLE_FLOOD, priority, match, other)
