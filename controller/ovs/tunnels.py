"""How br-int reaches the other chassis: one flow-based VXLAN port.

`vxlan0` on br-int has `remote_ip=flow` and `key=flow`: a flow sets the
destination chassis (tun_ipv4_dst) and the VNI (tunnel_id, = the network key)
before it outputs there, so head-end replication is one action list and no port
is added or removed as chassis come and go.

It listens on UDP FALLBACK_VXLAN_PORT, not 4789: 4789 belongs to the XDP
datapath, whose underlay entry decapsulates what is for a local port and passes
the rest to the kernel. With a port of its own, every OVS tunnel frame passes
the XDP entry untouched (not VXLAN to it) and reaches OVS, and no XDP tunnel
frame is mistaken for a fallback one.

Where it listens depends on the datapath:
- kernel (`system`): OVS's kernel vport binds the UDP port; the frames XDP passes
  reach it through the kernel stack. Nothing else to do.
- userspace (`netdev`): OVS tunnels natively, from a bridge that owns the
  tunnel IP. `br-ul` holds the underlay NIC as a port (OVS reads it with an
  AF_PACKET socket: a copy of what XDP passes, the kernel keeps its own) and its
  internal interface carries the tunnel IP with the underlay's prefix, kept
  down so the kernel routes nothing through it. Its flows send what br-int
  encapsulates out of the NIC and hand VXLAN to our IP and port to the tunnel;
  OVS's own route (ovs/route) and neighbour (tnl/neigh) entries for the other
  chassis come from the agent, which already resolves their next hops.
"""
from __future__ import annotations

import ipaddress
import logging

from pyroute2 import IPRoute

from dfxdp.controller.netlink import next_hop

from .bridge import TUNNEL_PORT, Ovsdb
from .flows import Flow, output

log = logging.getLogger(__name__)

FALLBACK_VXLAN_PORT = 4790
UNDERLAY_BRIDGE = "br-ul"
OFPP_LOCAL = 0xfffffffe


class Tunnels:
    def __init__(self, ovsdb: Ovsdb, datapath_type: str, chassis: str, tunnel_ip: str, underlay: str,
                 underlay_mac: str, controller: str | None):
        self.ovsdb, self.datapath_type, self.chassis = ovsdb, datapath_type, chassis
        self.tunnel_ip, self.underlay, self.underlay_mac, self.controller = tunnel_ip, underlay, underlay_mac, controller

    @property
    def native(self) -> bool:
        """OVS encapsulates in userspace and needs br-ul."""
        return self.datapath_type == "netdev"

    def ensure(self, bridge: str) -> None:
        self.ovsdb.add_port(bridge, TUNNEL_PORT, "type=vxlan", "options:remote_ip=flow", "options:key=flow",
                            f"options:dst_port={FALLBACK_VXLAN_PORT}", f"options:local_ip={self.tunnel_ip}")
        if not self.native:
            return
        self.ovsdb.ensure_bridge(UNDERLAY_BRIDGE, self.datapath_type, self.controller, self.chassis,
                                 hwaddr=self.underlay_mac)
        self.ovsdb.add_port(UNDERLAY_BRIDGE, self.underlay)
        self._ensure_address()

    def _ensure_address(self) -> None:
        """The tunnel IP on br-ul's internal interface (OVS takes its tunnels' source from
        there), with the underlay's prefix, the interface down. Recreated with the interface
        when ovs-vswitchd restarts."""
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=UNDERLAY_BRIDGE)
            if not found:
                return  # ovs-vswitchd has not created it yet: the next pass will
            index = found[0]
            prefix = self._underlay_prefix(ipr)
            have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
            if (self.tunnel_ip, prefix) not in have:
                ipr.addr("add", index=index, address=self.tunnel_ip, prefixlen=prefix)
            if ipr.get_links(index)[0]["flags"] & 1:  # IFF_UP: someone brought it up
                ipr.link("set", index=index, state="down")

    def _underlay_prefix(self, ipr: IPRoute) -> int:
        index = ipr.link_lookup(ifname=self.underlay)[0]
        for a in ipr.get_addr(index=index, family=2):
            if a.get_attr("IFA_ADDRESS") == self.tunnel_ip:
                return a["prefixlen"]
        return 32

    def ensure_routes(self, neighbors: dict[str, str]) -> None:
        """OVS's route and neighbour entries toward each remote chassis (userspace tunnels only):
        `neighbors` maps a remote tunnel IP to the MAC of its next hop on the underlay."""
        if not self.native or not neighbors:
            return
        routes = self.ovsdb.appctl("ovs/route/show")
        known = {tuple(line.split()[:3]) for line in self.ovsdb.appctl("tnl/neigh/show").splitlines()[2:]}
        with IPRoute() as ipr:
            hops = {ip: next_hop(ip) for ip in neighbors}
            net = ipaddress.ip_interface(f"{self.tunnel_ip}/{self._underlay_prefix(ipr)}").network
        if f"User: {net} dev {UNDERLAY_BRIDGE}" not in routes:
            self.ovsdb.appctl("ovs/route/add", str(net), UNDERLAY_BRIDGE)
        for ip, mac in sorted(neighbors.items()):
            hop = hops[ip]
            if hop != ip and f"User: {ip}/32 dev {UNDERLAY_BRIDGE} GW {hop}" not in routes:
                self.ovsdb.appctl("ovs/route/add", f"{ip}/32", UNDERLAY_BRIDGE, hop)
            if (hop, mac, UNDERLAY_BRIDGE) not in known:
                self.ovsdb.appctl("tnl/neigh/set", UNDERLAY_BRIDGE, hop, mac)

    def underlay_flows(self, ofports: dict[str, int]) -> list[Flow]:
        """br-ul's table 0: encapsulated frames out of the NIC, our VXLAN in to the tunnel, nothing else."""
        nic = ofports.get(self.underlay)
        if nic is None:
            return []
        return [Flow.of(0, 100, {"in_port": OFPP_LOCAL}, [output(nic)]),
                Flow.of(0, 100, {"in_port": nic, "eth_type": 0x0800, "ip_proto": 17, "ipv4_dst": self.tunnel_ip,
                                 "udp_dst": FALLBACK_VXLAN_PORT}, [output(OFPP_LOCAL)]),
                Flow.of(0, 0, {}, [])]
