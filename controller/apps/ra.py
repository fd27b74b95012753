"""Router advertisements for subnets with `ipv6_ra_mode` (Neutron's radvd, distributed):
a router interface on such a subnet advertises it to the VMs of its network, from this
chassis to its own ports, through the OVS fallback.

- What. One RA per router interface holding an IPv6 subnet with `ipv6_ra_mode` set, as
  Neutron's radvd.conf says (neutron/agent/linux/ra.py): a prefix for each such subnet,
  on-link, autonomous (A) for slaac and dhcpv6-stateless; the M flag for dhcpv6-stateful,
  O for dhcpv6-stateless; the network's MTU; the DNS servers of its slaac subnets; from the
  interface's MAC and its link-local (fe80:: EUI-64) address, which the VMs take as their
  default router (controller/router_advert.py encodes it).
- Who. Only ports without port security: the datapath drops every IPv6 frame to or from a
  port with it (docs/datapath.md, Ethertypes), a Router Solicitation included.
- When. A Router Solicitation (ICMPv6 type 133) from a local tap is caught in br-int (this
  app's table, where IGMP snooping's table sends what it does not snoop), handed to the agent
  (packet-in) and flooded on as any multicast; the answer goes straight into the tap it came
  from (AF_PACKET), unicast to the soliciting address (RFC 4861 6.2.6), or to all nodes when
  it had none. Unsolicited RAs go to every such tap when it appears, when what it should be
  told changes, and every ADVERT_INTERVAL (the router lifetime is three of them).
A chassis speaks for its own ports only: solicitations from the tunnel are not answered here.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from dfxdp.controller.binding import tap_name
from dfxdp.controller.ovs.flows import Flow, goto, to_controller
from dfxdp.controller.router_advert import (ADVERT_INTERVAL, ALL_NODES, ALL_NODES_MAC, ETH_P_IPV6, IPPROTO_ICMPV6,
                                            ROUTER_SOLICIT, UNSPECIFIED, Advert, MalformedNdp, Prefix,
                                            parse_router_solicit)
from dfxdp.nb.index import ROUTER_INTERFACE
from dfxdp.nb.validate import AUTO_ADDRESS_MODES

from .base import App, LocalView
from .dhcp6 import TABLE_DHCP6
from .tap_sender import TapSender

log = logging.getLogger(__name__)

TABLE_ROUTER_SOLICIT = 17  # IPv6 multicast the igmp app's table passes on: solicitations to the agent
# (what is not one goes on to DHCPv6's table, then to be flooded)


def adverts(view: LocalView, port: dict, memo: dict[str, tuple[Advert, ...]] | None = None) -> tuple[Advert, ...]:
    """What the routers of `port`'s network advertise to it (nothing to a port with port
    security); `memo`: per network, for a caller asking for many ports."""
    if port.get("port_security_enabled") or port.get("network_id") not in view.networks:
        return ()
    net_id = port["network_id"]
    if memo is not None and net_id in memo:
        return memo[net_id]
    found = []
    for interface in view.ports_on_network(net_id):
        router = view.routers.get(interface.get("device_id"))
        if interface.get("device_owner") != ROUTER_INTERFACE or not router or not router.get("admin_state_up", True):
            continue
        subnets = [view.subnets.get(f["subnet_id"]) for f in interface.get("fixed_ips", [])]
        modes = [s for s in subnets if s and s.get("ip_version") == 6 and s.get("ipv6_ra_mode")]
        if not modes:
            continue
        ra_modes = {s["ipv6_ra_mode"] for s in modes}
        dns = [d for s in modes if s["ipv6_ra_mode"] == "slaac" for d in s.get("dns_nameservers") or []]
        found.append(Advert(interface["mac_address"],
                            tuple(Prefix(s["cidr"], s["ipv6_ra_mode"] in AUTO_ADDRESS_MODES) for s in modes),
                            managed="dhcpv6-stateful" in ra_modes, other="dhcpv6-stateless" in ra_modes,
                            mtu=view.networks[net_id].get("mtu") or 0, dns_servers=tuple(dns)))
    if memo is not None:
        memo[net_id] = tuple(found)
    return tuple(found)


class RouterAdvertApp(App):
    name = "ra"
    depends = ()  # no map entries: nothing a pass derives
    tables = (TABLE_ROUTER_SOLICIT,)
    flow_cookie = 5

    def __init__(self, clock: Callable[[], float] = time.monotonic, interval: float = ADVERT_INTERVAL,
                 sender=None) -> None:
        self.clock, self.interval = clock, interval
        self._sender = TapSender("router advertisement", sender)
        self._told: dict[int, tuple[float, tuple[bytes, ...]]] = {}  # tap ifindex -> (when, what it was sent)

    def flows(self, view: LocalView) -> Iterable[Flow]:
        memo: dict[str, tuple[Advert, ...]] = {}
        solicit = {"eth_type": ETH_P_IPV6, "ip_proto": IPPROTO_ICMPV6, "icmpv6_type": ROUTER_SOLICIT}
        for port_id in sorted(view.local_ports):
            port, ofport = view.ports.get(port_id), view.ofports.get(tap_name(port_id))
            if port and ofport and adverts(view, port, memo):
                yield Flow.of(TABLE_ROUTER_SOLICIT, 100, {**solicit, "in_port": ofport},
                              [to_controller(), goto(TABLE_DHCP6)])
        yield Flow.of(TABLE_ROUTER_SOLICIT, 0, {}, [goto(TABLE_DHCP6)])

    def on_packet_in(self, view: LocalView, port_id: str | None, frame: bytes) -> bool:
        """A Router Solicitation from local port `port_id`: the RAs of its network's routers."""
        port, ifindex = view.ports.get(port_id or ""), view.local_ports.get(port_id or "")
        if port is None or ifindex is None:
            return False
        try:
            solicit = parse_router_solicit(frame)
        except MalformedNdp as exc:
            log.debug("router solicitation from port %s ignored: %s", port_id, exc)
            return False
        to = (ALL_NODES_MAC, ALL_NODES) if solicit.src_ip == UNSPECIFIED else (solicit.src_mac, solicit.src_ip)
        for advert in adverts(view, port):
            self._sender.send(ifindex, advert.frame(*to))
        return False

    def fallback_upkeep(self, view: LocalView) -> None:
        """Unsolicited RAs: to a tap that has not had its network's yet, whose RAs changed, or
        that was last told ADVERT_INTERVAL ago."""
        now, memo, told = self.clock(), {}, {}
        encoded: dict[tuple[Advert, ...], tuple[bytes, ...]] = {}  # the frames of each network's RAs
        for port_id, ifindex in sorted(view.local_ports.items()):
            port = view.ports.get(port_id)
            found = adverts(view, port, memo) if port else ()
            if found not in encoded:
                encoded[found] = tuple(a.frame() for a in found)
            frames = encoded[found]
            if not frames:
                continue
            last = self._told.get(ifindex)
            if last is not None and last[1] == frames and now - last[0] < self.interval:
                told[ifindex] = last
                continue
            told[ifindex] = (now, frames)
            for frame in frames:
                self._sender.send(ifindex, frame)
        self._told = told
