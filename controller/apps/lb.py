"""lb_vips, lb_rings, lb_backends: every load balancer whose VIP network this
chassis can reach, balanced here, at the client's chassis (docs/load-balancer.md).

A VIP answers ping; each TCP/UDP listener with a default pool becomes a VIP
entry pointing at the pool's ring. A ring holds the pool's members that are up
(admin state up, not found failing by their health monitor, weight > 0): Maglev
for SOURCE_IP_PORT and SOURCE_IP (and any pool with SOURCE_IP session
persistence), a weighted round-robin sequence for ROUND_ROBIN. A ring is rebuilt
only when its pool or members change, and swapped in whole (maps/lb.h).
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Hashable, Iterable

from dfxdp.datapath.libbpf import lib
from dfxdp.nb import kinds
from dfxdp.nb.index import ROUTER_INTERFACE

from ..maglev import Member, maglev_ring, round_robin_ring
from ..desired import Change
from .base import WHOLE, App, Entry, LocalView, Memo, ipv4_addresses, ipv4_be32, mac_bytes

PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP}
DOWN = ("ERROR", "OFFLINE")  # operating states that keep a member out of its ring
GATEWAY_OWNERS = (ROUTER_INTERFACE, "network:lb-hm")  # a VIP's next hop, a probe source
OCTAVIA_KINDS = frozenset(kind.name for kind in kinds.KINDS if kind.api == kinds.OCTAVIA)


def is_ipv4(address: str | None) -> bool:
    return bool(address) and ipaddress.ip_address(address).version == 4


def source_ip_affinity(pool: dict) -> bool:
    return pool["lb_algorithm"] == "SOURCE_IP" or \
        (pool.get("session_persistence") or {}).get("type") == "SOURCE_IP"


def ring_flags(pool: dict) -> int:
    if source_ip_affinity(pool):
        return lib.LB_F_HASH_SRC_IP
    if pool["lb_algorithm"] == "ROUND_ROBIN":
        return lib.LB_F_ROUND_ROBIN
    return 0  # SOURCE_IP_PORT: the 5-tuple's hash


def member_in_service(member: dict) -> bool:
    return member.get("admin_state_up", True) and member.get("operating_status") not in DOWN


def served_listeners(view: LocalView, lb: dict) -> Iterable[tuple[dict, dict]]:
    """(listener, its default pool) for each listener of `lb` the datapath balances."""
    for listener in view.find("listener", "loadbalancer", lb["id"]):
        pool = view.pools.get(listener.get("default_pool_id") or "")
        if listener.get("admin_state_up", True) and \
                listener.get("protocol") in PROTOCOLS and pool and pool.get("admin_state_up", True):
            yield listener, pool


class LoadBalancerApp(App):
    name = "lb"
    # a VIP entry only once its ring and members are in; the probe sources' if_config and fdb
    # entries are written with those maps' owners (ports, l2)
    maps = ("lb_backends", "lb_rings", "lb_vips")
    datapath_maps = ("lb_flows", "lb_reverse", "lb_rr_position")  # each flow's member, round-robin positions

    def __init__(self) -> None:
        self.memo = Memo()  # per pool: its ring, rebuilt only when the pool or its members change

    def affected(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        """Load balancers are derived whole (one scope, few objects): again when an Octavia object
        changes, or, while there are any, a network, a subnet, a router leg or a VIP port."""
        if change.kind in OCTAVIA_KINDS:
            return (WHOLE,)
        if not view.loadbalancers or change.kind not in ("network", "subnet", "port"):
            return ()
        if change.kind != "port" or any(doc.get("device_owner") in GATEWAY_OWNERS for doc in change.docs()) or \
                any(lb.get("vip_port_id") == change.obj_id for lb in view.loadbalancers.values()):
            return (WHOLE,)
        return ()

    def desired(self, view: LocalView) -> Iterable[Entry]:
        self.memo.new_pass()
        gateways = self._gateways(view) if view.loadbalancers else {}
        for lb in view.loadbalancers.values():
            yield from self._loadbalancer(view, lb, gateways.get(lb.get("vip_subnet_id"), [0] * 6))
        for port_id, ifindex in view.lb_probe_ifindex.items():
            yield from self._probe_source(view, view.ports.get(port_id), ifindex)

    @staticmethod
    def _probe_source(view: LocalView, port: dict | None, ifindex: int) -> Iterable[Entry]:
        """A health monitors' probe-source port as a local port of this chassis (controller/health.py):
        its probes enter the pipeline, its members' answers are delivered to it."""
        net = view.networks.get(port["network_id"]) if port else None
        if not net:
            return
        mac, addrs = list(mac_bytes(port["mac_address"])), ipv4_addresses(port)
        yield Entry("if_config", ifindex, {"net_key": net["key"], "port_key": port["key"], "flags": lib.IF_F_PORT,
                                           "ipv4": ipv4_be32(addrs[0]) if addrs else 0, "mac": mac})
        yield Entry("fdb", {"net_key": net["key"], "mac": mac},
                    {"ifindex": ifindex, "port_key": port["key"], "flags": lib.FDB_F_LOCAL})

    def _loadbalancer(self, view: LocalView, lb: dict, gateway_mac: list[int]) -> Iterable[Entry]:
        port = view.ports.get(lb.get("vip_port_id") or "")
        net = view.networks.get(port["network_id"]) if port else None
        if not (port and net and lb.get("admin_state_up", True) and is_ipv4(lb.get("vip_address"))):
            return
        vip = ipv4_be32(lb["vip_address"])
        macs = {"mac": list(mac_bytes(port["mac_address"])), "gw_mac": gateway_mac}
        yield Entry("lb_vips", {"vip": vip, "proto": socket.IPPROTO_ICMP}, {"ring_key": 0, "flags": 0, **macs})
        for listener, pool in served_listeners(view, lb):
            members = sorted(view.find("member", "pool", pool["id"]), key=lambda m: m["id"])
            yield from self.memo.get(pool["id"], (pool, *members), lambda: list(self._pool(pool, members)))
            yield Entry("lb_vips", {"vip": vip, "port": socket.htons(listener["protocol_port"]),
                                    "proto": PROTOCOLS[listener["protocol"]]},
                        {"ring_key": pool["key"], "flags": ring_flags(pool), **macs})

    @staticmethod
    def _pool(pool: dict, members: list[dict]) -> Iterable[Entry]:
        ipv4 = [m for m in members if is_ipv4(m.get("address"))]
        for m in ipv4:
            yield Entry("lb_backends", m["key"], {"addr": ipv4_be32(m["address"]),
                                                  "port": socket.htons(m["protocol_port"])})
        up = [Member(m["key"], m["id"], m.get("weight", 1)) for m in ipv4 if member_in_service(m)]
        build = maglev_ring if source_ip_affinity(pool) or pool["lb_algorithm"] != "ROUND_ROBIN" else round_robin_ring
        yield Entry("lb_rings", pool["key"], build(up))

    @staticmethod
    def _gateways(view: LocalView) -> dict[str, list[int]]:
        """subnet id -> its router port's MAC: the next hop from a VIP to members on other networks."""
        return {fixed["subnet_id"]: list(mac_bytes(port["mac_address"]))
                for port in view.ports_by("owner", ROUTER_INTERFACE)
                for fixed in port.get("fixed_ips", [])}
