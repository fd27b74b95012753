"""Default SNAT (a router's `enable_snat`, Neutron's default) in the OVS fallback.

Ports with a floating IP leave through XDP (the fip app); XDP passes what a port
without one sends out of its router's external gateway. That traffic is translated
to the router gateway's address on one chassis per router, the SNAT chassis:

- **Placement.** Rendezvous hashing of the router id over the candidates: live
  chassis (heartbeat younger than SNAT_DOWN_TIME) running the fallback with the
  external network's physical network mapped (their NB record's `snat` fact), and
  hosting a port of one of the router's networks — exactly the chassis that have
  the router in their selective view, so every one of them computes the same
  answer. When the chosen chassis' heartbeat stops, the next one by the hash takes
  over; each router moves only when its own chassis goes.
- **Other chassis** send such frames, as they are, through the tunnel to the SNAT
  chassis (VNI = the internal network's key).
- **The SNAT chassis** routes them in br-int: gateway MAC as source, TTL - 1,
  `ct(commit, zone=<router>, nat(src=<gateway IP>))`, then out of the external NIC
  to the next hop's MAC (the destination on the external subnet, else the subnet's
  gateway), resolved by ARP from the agent. Replies to the gateway address come in
  on the external NIC, are un-NATed by the same conntrack zone and delivered, as
  routed frames, to the port's tap or through the tunnel to its chassis; only
  replies of tracked connections (`+est`, `+rel`) pass. The SNAT chassis answers
  ARP for the gateway address (through the agent: a chassis whose agent stopped
  stops answering, so the external network learns the new one).

Table layout: docs/fallback.md.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from typing import Callable, Iterable

from dfxdp.controller.binding import tap_name
from dfxdp.controller.frames import ARP_REPLY, ARP_REQUEST, ETH_HLEN, arp_frame, parse_arp
from dfxdp.controller.ovs.flows import (DROP, Flow, conntrack, dec_ttl, goto, output, set_field, to_controller,
                                        write_metadata)
from dfxdp.controller.ovs.bridge import TUNNEL_PORT

from .base import App, LocalView, ipv4_addresses, mac_bytes

log = logging.getLogger(__name__)

TABLE_SNAT_INGRESS = 4   # what table 0 (flood) does not claim: the external NIC, tunnel frames for SNAT
TABLE_SNAT_OUT = 30      # frames to a router interface's MAC that XDP passed (flood's table 10 sends them here)
TABLE_SNAT_NEXT_HOP = 31  # after NAT: the next hop's MAC, out of the external NIC
TABLE_SNAT_IN = 32       # from the external NIC to a gateway address: undo the NAT
TABLE_SNAT_DELIVER = 33  # after it: to the port, routed
SNAT_DOWN_TIME = 30.0    # seconds without a heartbeat (3 missed, agent.HEARTBEAT_INTERVAL) before another takes over
ROUTER_INTERFACE, ROUTER_GATEWAY = "network:router_interface", "network:router_gateway"
DEFAULT_PHYSNET = "provider"
ETH_P_IP, ETH_P_ARP = 0x0800, 0x0806
CT_TRACKED, CT_ESTABLISHED, CT_RELATED, CT_INVALID = 0x20, 0x02, 0x04, 0x10


def snat_zone(router: dict) -> int:
    """The router's conntrack zone in br-int (OVS zones are 16 bits; 0 is the default zone)."""
    return router["key"] % 0xFFFF + 1


def gateway(view: LocalView, router: dict) -> tuple[dict, dict, str, dict] | None:
    """(gateway port, external network, gateway IPv4 address, its subnet) of a router whose
    external gateway does SNAT, or None."""
    info = router.get("external_gateway_info") or {}
    if not info or not info.get("enable_snat", True):
        return None
    ext = view.networks.get(info.get("network_id"))
    if ext and ext.get("provider:network_type") == "vlan":
        return None  # br-int's SNAT flows send and match untagged frames: flat external networks only
    port = next((p for p in view.ports_of(ROUTER_GATEWAY, router["id"]) if p.get("mac_address")), None)
    if not ext or not port:
        return None
    for fixed in port.get("fixed_ips", []):
        subnet = view.subnets.get(fixed.get("subnet_id"))
        if subnet and ":" not in fixed["ip_address"]:
            return port, ext, fixed["ip_address"], subnet
    return None


def internal_networks(view: LocalView, router: dict) -> list[str]:
    return sorted({p["network_id"] for p in view.ports_of(ROUTER_INTERFACE, router["id"])})


def snat_chassis(view: LocalView, router: dict, now: float | None = None) -> str | None:
    """The chassis that SNATs for `router` (see the module's docstring), None without a candidate."""
    found = gateway(view, router)
    if found is None:
        return None
    physnet = found[1].get("provider:physical_network") or DEFAULT_PHYSNET
    hosts = {p.get("binding:host_id") for net in internal_networks(view, router) for p in view.ports_on_network(net)
             if p.get("device_owner") not in (ROUTER_INTERFACE, ROUTER_GATEWAY)}
    now = time.time() if now is None else now
    candidates = [name for name, c in view.chassis_by_name.items()
                  if name in hosts and now - c.get("heartbeat", 0) < SNAT_DOWN_TIME
                  and physnet in (c.get("snat_physnets") or ())]
    if not candidates:
        return None
    return max(candidates, key=lambda name: hashlib.sha256(f"{router['id']}/{name}".encode()).digest())


class Neighbors:
    """External hosts' MACs (IP -> MAC) learned from ARP on the external NIC (thread-safe:
    packet-ins write it, passes read it)."""

    def __init__(self) -> None:
        self._macs: dict[str, str] = {}
        self._lock = threading.Lock()

    def learn(self, ip: str, mac: str) -> bool:
        with self._lock:
            changed = self._macs.get(ip) != mac
            self._macs[ip] = mac
            return changed

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self._macs)


class SnatApp(App):
    name = "snat"
    tables = (TABLE_SNAT_INGRESS, TABLE_SNAT_OUT, TABLE_SNAT_NEXT_HOP, TABLE_SNAT_IN, TABLE_SNAT_DELIVER)
    flow_cookie = 3

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.neighbors = Neighbors()
        self._sender = None
        # router id -> (gateway IP, gateway MAC, external ifindex, conntrack zone) where this chassis SNATs
        self._mine: dict[str, tuple[str, str, int, int]] = {}

    def snat_zones(self) -> dict[str, int]:
        return {router_id: zone for router_id, (_, _, _, zone) in self._mine.items()}

    def chassis_facts(self, view: LocalView) -> dict:
        """What makes this chassis a candidate (only agents running the fallback publish facts),
        and the routers it SNATs for (operators and tests read them from /v2.0/agents' record)."""
        physnets = sorted(view.bridges)
        return {"snat_physnets": physnets,
                "snat_routers": sorted(r for r in view.routers if snat_chassis(view, view.routers[r], self.clock())
                                       == view.chassis)}

    # ---- flows ----
    def flows(self, view: LocalView) -> Iterable[Flow]:
        tunnel = view.ofports.get(TUNNEL_PORT)
        mine = {}
        for router_id in sorted(view.routers):
            router = view.routers[router_id]
            found = gateway(view, router)
            chosen = snat_chassis(view, router, self.clock())
            if found is None or chosen is None:
                continue
            nic = view.bridge_mappings.get(found[1].get("provider:physical_network") or DEFAULT_PHYSNET)
            external = view.ofports.get(nic) if nic else None
            if chosen == view.chassis and external is not None:
                mine[router_id] = (found[2], found[0]["mac_address"], view.external_nic(found[1]), snat_zone(router))
                yield from self._snat_here(view, router, found, external, tunnel)
            elif chosen != view.chassis and tunnel is not None:
                tunnel_ip = view.chassis_by_name.get(chosen, {}).get("tunnel_ip")
                if tunnel_ip:
                    yield from self._to_snat_chassis(view, router, tunnel, tunnel_ip)
        self._mine = mine
        for table in self.tables:
            yield Flow.of(table, 0, {}, DROP)

    @staticmethod
    def _interfaces(view: LocalView, router: dict) -> Iterable[tuple[dict, dict, list[dict]]]:
        """(interface port, its network, its IPv4 subnets) of each internal leg of the router."""
        for port in sorted(view.ports_of(ROUTER_INTERFACE, router["id"]), key=lambda p: p["id"]):
            net = view.networks.get(port["network_id"])
            subnets = [view.subnets[f["subnet_id"]] for f in port.get("fixed_ips", [])
                       if f.get("subnet_id") in view.subnets and ":" not in f["ip_address"]]
            if net and subnets and port.get("mac_address"):
                yield port, net, subnets

    def _to_snat_chassis(self, view: LocalView, router: dict, tunnel: int, tunnel_ip: str) -> Iterable[Flow]:
        for port, net, subnets in self._interfaces(view, router):
            match = {"metadata": net["key"], "eth_dst": port["mac_address"], "eth_type": ETH_P_IP}
            yield Flow.of(TABLE_SNAT_OUT, 110, {**match, "in_port": tunnel}, DROP)  # never back into the tunnel
            for subnet in subnets:
                yield Flow.of(TABLE_SNAT_OUT, 100, {**match, "ipv4_src": _cidr(subnet["cidr"])},
                              [set_field("tun_ipv4_dst", tunnel_ip), set_field("tunnel_id", net["key"]),
                               output(tunnel)])

    def _snat_here(self, view: LocalView, router: dict, found: tuple, external: int,
                   tunnel: int | None) -> Iterable[Flow]:
        gw_port, ext, gw_ip, ext_subnet = found
        zone, gw_mac = snat_zone(router), gw_port["mac_address"]
        legs = list(self._interfaces(view, router))
        # In from the external NIC: ARP for the gateway address to the agent, IPv4 to it un-NATed.
        arp = {"in_port": external, "eth_type": ETH_P_ARP, "arp_tpa": gw_ip}
        yield Flow.of(TABLE_SNAT_INGRESS, 100, arp, [to_controller()])
        yield Flow.of(TABLE_SNAT_INGRESS, 100, {"in_port": external, "eth_type": ETH_P_IP, "ipv4_dst": gw_ip},
                      [write_metadata(ext["key"]), goto(TABLE_SNAT_IN)])
        yield Flow.of(TABLE_SNAT_IN, 100, {"metadata": ext["key"], "eth_type": ETH_P_IP, "ipv4_dst": gw_ip},
                      [conntrack(zone, TABLE_SNAT_DELIVER)])
        internal = sorted({_cidr(s["cidr"]) for _, _, subnets in legs for s in subnets})
        for port, net, subnets in legs:
            match = {"metadata": net["key"], "eth_dst": port["mac_address"], "eth_type": ETH_P_IP}
            if tunnel is not None:  # a network without a local port: table 0 leaves its tunnel frames to us
                yield Flow.of(TABLE_SNAT_INGRESS, 100, {"in_port": tunnel, "tunnel_id": net["key"],
                                                        "eth_dst": port["mac_address"]},
                              [write_metadata(net["key"]), goto(TABLE_SNAT_OUT)])
            # Between the router's own subnets (XDP routes them) and to the router itself: not ours.
            for cidr in internal + [gw_ip]:
                yield Flow.of(TABLE_SNAT_OUT, 200, {**match, "ipv4_dst": cidr}, DROP)
            for subnet in subnets:
                yield Flow.of(TABLE_SNAT_OUT, 100, {**match, "ipv4_src": _cidr(subnet["cidr"])},
                              [set_field("eth_src", gw_mac), dec_ttl(),
                               conntrack(zone, TABLE_SNAT_NEXT_HOP, commit=True, snat_to=gw_ip)])
            yield from self._deliveries(view, net, port["mac_address"], zone, tunnel)
        yield from self._next_hops(zone, gw_mac, ext_subnet, external)

    def _next_hops(self, zone: int, gw_mac: str, ext_subnet: dict, external: int) -> Iterable[Flow]:
        """After NAT: to the destination's MAC on the external subnet, else to its gateway's;
        a next hop not resolved yet goes to the agent, which ARPs for it (the frame is dropped:
        TCP and ping retry)."""
        neighbors = self.neighbors.snapshot()
        base = {"ct_zone": zone, "eth_type": ETH_P_IP}
        on_link = ipaddress.ip_network(ext_subnet["cidr"])
        for ip in sorted(neighbors):
            if ipaddress.ip_address(ip) in on_link:
                yield Flow.of(TABLE_SNAT_NEXT_HOP, 100, {**base, "ipv4_dst": ip},
                              [set_field("eth_dst", neighbors[ip]), output(external)])
        yield Flow.of(TABLE_SNAT_NEXT_HOP, 50, {**base, "ipv4_dst": _cidr(ext_subnet["cidr"])}, [to_controller()])
        hop = ext_subnet.get("gateway_ip")
        yield Flow.of(TABLE_SNAT_NEXT_HOP, 10, base, [set_field("eth_dst", neighbors[hop]), output(external)]
                      if hop in neighbors else [to_controller()] if hop else DROP)

    @staticmethod
    def _deliveries(view: LocalView, net: dict, router_mac: str, zone: int, tunnel: int | None) -> Iterable[Flow]:
        """Un-NATed replies to each port of the network: routed (router MAC, TTL - 1) to its tap
        or its chassis. Only tracked connections' replies: nothing new gets in."""
        for port in view.ports_on_network(net["id"]):
            if port.get("device_owner") in (ROUTER_INTERFACE, ROUTER_GATEWAY) or not port.get("mac_address"):
                continue
            ofport = view.ofports.get(tap_name(port["id"])) if view.is_local(port) else None
            tunnel_ip = view.tunnel_ip_of(port)
            if ofport:
                out = [output(ofport)]
            elif tunnel is not None and tunnel_ip and tunnel_ip != view.tunnel_ip:
                out = [set_field("tun_ipv4_dst", tunnel_ip), set_field("tunnel_id", net["key"]), output(tunnel)]
            else:
                continue
            for address in ipv4_addresses(port):
                for state in (CT_ESTABLISHED, CT_RELATED):
                    yield Flow.of(TABLE_SNAT_DELIVER, 100,
                                  {"ct_zone": zone, "ct_state": (CT_TRACKED | state, CT_TRACKED | state | CT_INVALID),
                                   "eth_type": ETH_P_IP, "ipv4_dst": address},
                                  [set_field("eth_src", router_mac), set_field("eth_dst", port["mac_address"]),
                                   dec_ttl(), *out])

    # ---- ARP on the external NIC ----
    def on_packet_in(self, view: LocalView, port_id: str | None, frame: bytes) -> bool:
        """ARP for a gateway address (answered, its sender learned), or a NATed frame whose next
        hop is not known yet (ARP for it). True when a neighbour was learned."""
        arp = parse_arp(frame)
        if arp is not None:
            op, sender_mac, sender_ip, target_ip = arp
            mine = next((m for m in self._mine.values() if m[0] == target_ip), None)
            if mine is None:
                return False
            if op == ARP_REQUEST:
                self._send(mine[2], arp_frame(ARP_REPLY, mac_bytes(mine[1]), target_ip, sender_mac, sender_ip))
            return self.neighbors.learn(sender_ip, ":".join(f"{b:02x}" for b in sender_mac))
        if len(frame) >= ETH_HLEN + 20 and frame[12:14] == b"\x08\x00":
            src, dst = (str(ipaddress.IPv4Address(frame[ETH_HLEN + o:ETH_HLEN + o + 4])) for o in (12, 16))
            for router_id, (gw_ip, gw_mac, ifindex, _) in self._mine.items():
                if src == gw_ip:
                    self._send(ifindex, arp_frame(ARP_REQUEST, mac_bytes(gw_mac), gw_ip, bytes(6),
                                                  self._next_hop(view, router_id, dst)))
        return False

    @staticmethod
    def _next_hop(view: LocalView, router_id: str, dst: str) -> str:
        found = gateway(view, view.routers[router_id]) if router_id in view.routers else None
        if found is None or ipaddress.ip_address(dst) in ipaddress.ip_network(found[3]["cidr"]):
            return dst
        return found[3].get("gateway_ip") or dst

    def _send(self, ifindex: int, frame: bytes) -> None:
        # The punt path's AF_PACKET sender; imported here: punt.py imports the apps package.
        from dfxdp.controller.punt import ReplySender

        if self._sender is None:
            self._sender = ReplySender()
        try:
            self._sender.send(ifindex, frame)
        except OSError as exc:  # the NIC went away: the next packet-in tries again
            log.warning("SNAT: ARP out of ifindex %d: %s", ifindex, exc)


def _cidr(cidr: str) -> tuple[str, str] | str:
    """A CIDR as an OpenFlow (address, mask) match value."""
    net = ipaddress.ip_network(cidr)
    return (str(net.network_address), str(net.netmask))
