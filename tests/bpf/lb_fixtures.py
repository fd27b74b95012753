"""A small load-balancing world for BPF tests: a VIP on network blue, members on
this chassis, on another chassis and behind the router on green, pools with each
algorithm; built as NB documents and pushed through the real apps and reconciler."""
from __future__ import annotations

from dfxdp.controller.apps import APPS, LocalView
from dfxdp.controller.reconciler import Reconciler

BLUE, GREEN = {"id": "blue", "key": 10}, {"id": "green", "key": 20}
CLIENT_MAC, CLIENT_G_MAC = "fa:16:3e:00:01:01", "fa:16:3e:00:02:09"
M_LOCAL_MAC, M_REMOTE_MAC, M_GREEN_MAC = "fa:16:3e:00:01:11", "fa:16:3e:00:01:12", "fa:16:3e:00:02:13"
RIF_B, RIF_G, VIP_MAC = "fa:16:3e:00:0a:01", "fa:16:3e:00:0a:02", "fa:16:3e:00:01:64"
CLIENT, CLIENT_G, VIP = "10.0.0.5", "10.1.0.9", "10.0.0.100"
M_LOCAL, M_REMOTE, M_GREEN = "10.0.0.11", "10.0.0.12", "10.1.0.13"
TUNNEL_LOCAL, TUNNEL_REMOTE = "198.18.0.11", "198.18.0.12"
UNDERLAY_MAC, UNDERLAY_PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
MEMBER_PORT = 8080


def port(pid, key, net, mac, ip, subnet, host="", owner="", device=""):
    return {"id": pid, "key": key, "network_id": net["id"], "mac_address": mac, "binding:host_id": host,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}], "port_security_enabled": False,
            "allowed_address_pairs": [], "device_owner": owner, "device_id": device}


def member(mid, key, pool, address, weight=1, **extra):
    return {"id": mid, "key": key, "pool_id": pool, "address": address, "protocol_port": MEMBER_PORT,
            "weight": weight, "admin_state_up": True, "operating_status": "NO_MONITOR", **extra}


def pool(pid, key, algorithm, persistence=None):
    return {"id": pid, "key": key, "lb_algorithm": algorithm, "protocol": "TCP", "admin_state_up": True,
            "session_persistence": persistence}


def listener(lid, protocol, number, pool_id):
    return {"id": lid, "loadbalancer_id": "lb1", "protocol": protocol, "protocol_port": number,
            "default_pool_id": pool_id, "admin_state_up": True}


THREE = ((M_LOCAL, 1), (M_REMOTE, 2), (M_GREEN, 3))


def build_view(client_if: int, client_g_if: int, member_if: int, member_g_if: int, underlay_if: int) -> LocalView:
    ports = [
        port("client", 1, BLUE, CLIENT_MAC, CLIENT, "sb", "ch1"),
        port("client-g", 2, GREEN, CLIENT_G_MAC, CLIENT_G, "sg", "ch1"),
        port("m-local", 3, BLUE, M_LOCAL_MAC, M_LOCAL, "sb", "ch1"),
        port("m-remote", 4, BLUE, M_REMOTE_MAC, M_REMOTE, "sb", "ch2"),
        port("m-green", 5, GREEN, M_GREEN_MAC, M_GREEN, "sg", "ch1"),
        port("rif-b", 6, BLUE, RIF_B, "10.0.0.1", "sb", owner="network:router_interface", device="r1"),
        port("rif-g", 7, GREEN, RIF_G, "10.1.0.1", "sg", owner="network:router_interface", device="r1"),
        port("vip", 8, BLUE, VIP_MAC, VIP, "sb", owner="Octavia", device="lb1"),
    ]
    pools = [pool("p-hash", 101, "SOURCE_IP_PORT"), pool("p-src", 102, "SOURCE_IP"),
             pool("p-rr", 103, "ROUND_ROBIN"), pool("p-empty", 104, "SOURCE_IP_PORT"),
             pool("p-sticky", 105, "ROUND_ROBIN", {"type": "SOURCE_IP"})]
    members = [member(f"{p}-{key}", key + 10 * i, p, address)
               for i, p in enumerate(("p-hash", "p-src", "p-rr", "p-sticky")) for address, key in THREE]
    listeners = [listener("l-hash", "TCP", 80, "p-hash"), listener("l-src", "TCP", 81, "p-src"),
                 listener("l-rr", "UDP", 53, "p-rr"), listener("l-empty", "TCP", 82, "p-empty"),
                 listener("l-sticky", "TCP", 83, "p-sticky")]
    return LocalView(
        chassis="ch1", tunnel_ip=TUNNEL_LOCAL, networks={n["id"]: n for n in (BLUE, GREEN)},
        subnets={"sb": {"id": "sb", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1"},
                 "sg": {"id": "sg", "cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.1"}},
        ports={p["id"]: p for p in ports}, routers={"r1": {"id": "r1", "key": 77, "routes": []}},
        chassis_by_name={"ch1": {"tunnel_ip": TUNNEL_LOCAL}, "ch2": {"tunnel_ip": TUNNEL_REMOTE}},
        local_ports={"client": client_if, "client-g": client_g_if, "m-local": member_if, "m-green": member_g_if},
        underlay_ifindex=underlay_if, underlay_mac=UNDERLAY_MAC, underlay_neighbors={TUNNEL_REMOTE: UNDERLAY_PEER_MAC},
        loadbalancers={"lb1": {"id": "lb1", "key": 1, "vip_port_id": "vip", "vip_address": VIP,
                               "vip_subnet_id": "sb", "admin_state_up": True}},
        listeners={x["id"]: x for x in listeners}, pools={x["id"]: x for x in pools},
        members={x["id"]: x for x in members})


class Programmer:
    """The apps and one reconciler kept across passes, as the agent keeps them."""

    def __init__(self, pipeline):
        self.apps = [cls() for cls in APPS]
        self.reconciler = Reconciler(pipeline.maps, [m for a in self.apps for m in a.maps])

    def __call__(self, view: LocalView) -> None:
        result = self.reconciler.apply(e for a in self.apps for e in a.desired(view))
        assert not result.errors, result.errors


# The VIP's floating IP (the external network, the router's gateway on it, the floating IP and its port).
EXT = {"id": "ext", "key": 30, "router:external": True}
FIP, FIP_MAC, RGW_MAC, OUTSIDE, OUTSIDE_MAC = "198.19.0.50", "fa:16:3e:00:03:50", "fa:16:3e:00:03:01", \
    "198.19.0.100", "02:00:00:00:0e:01"


def with_floating_ip(view: LocalView, external_if: int) -> LocalView:
    """`view` with a floating IP on the VIP's port; the first chassis hosting a member (ch1) hosts it."""
    view.networks["ext"] = EXT
    view.subnets["se"] = {"id": "se", "cidr": "198.19.0.0/24", "gateway_ip": "198.19.0.1"}
    view.ports["rgw"] = port("rgw", 9, EXT, RGW_MAC, "198.19.0.2", "se", owner="network:router_gateway", device="r1")
    view.ports["fip-port"] = port("fip-port", 10, EXT, FIP_MAC, FIP, "se", owner="network:floatingip", device="fip1")
    view.floatingips = {"fip1": {"id": "fip1", "floating_ip_address": FIP, "floating_network_id": "ext",
                                 "port_id": "vip", "router_id": "r1", "fixed_ip_address": VIP}}
    view.bridges = {"provider": (external_if, "02:00:00:00:00:03")}
    return view


def as_chassis_2(view: LocalView, member_if: int, underlay_if: int) -> LocalView:
    """The same world seen from ch2, which hosts only the member M_REMOTE."""
    view.chassis, view.tunnel_ip = "ch2", TUNNEL_REMOTE
    view.local_ports = {"m-remote": member_if}
    view.underlay_ifindex, view.underlay_neighbors = underlay_if, {TUNNEL_LOCAL: UNDERLAY_PEER_MAC}
    return view
