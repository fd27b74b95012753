"""A small L2 world for BPF tests: two networks, local and remote ports, built
as NB documents and pushed through the real apps and reconciler."""
from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from dfxdp.controller.apps import LocalView
from dfxdp.controller.wiring import build_datapath_control

NET_A = {"id": "net-a", "key": 100}
NET_B = {"id": "net-b", "key": 200}
LOCAL_MAC, LOCAL2_MAC, REMOTE_MAC = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:03"
ROUTER_MAC = "fa:16:3e:00:00:fe"
TUNNEL_LOCAL, TUNNEL_REMOTE = "198.18.0.1", "198.18.0.2"
UNDERLAY_MAC, UNDERLAY_PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def port(pid, key, net, mac, ip, host="", portsec=True, pairs=()):
    return {"id": pid, "key": key, "network_id": net["id"], "mac_address": mac, "binding:host_id": host,
            "fixed_ips": [{"subnet_id": "s", "ip_address": ip}], "port_security_enabled": portsec,
            "allowed_address_pairs": list(pairs), "device_owner": "", "security_groups": ["open"]}


# Security groups are not what these tests are about: one group lets everything through.
OPEN_RULES = {f"open-{d}": {"id": f"open-{d}", "security_group_id": "open", "direction": d, "ethertype": "IPv4",
                            "protocol": None, "port_range_min": None, "port_range_max": None,
                            "remote_ip_prefix": None, "remote_group_id": None} for d in ("ingress", "egress")}


def build_view(local_if: int, local2_if: int, underlay_if: int, portsec: bool = True) -> LocalView:
    ports = [
        port("p-local", 1, NET_A, LOCAL_MAC, "10.0.0.1", "ch1", portsec,
             pairs=[{"ip_address": "10.0.9.0/24", "mac_address": "fa:16:3e:00:00:aa"}]),
        port("p-local2", 2, NET_A, LOCAL2_MAC, "10.0.0.2", "ch1"),
        port("p-remote", 3, NET_A, REMOTE_MAC, "10.0.0.3", "ch2"),
        port("p-other-net", 4, NET_B, REMOTE_MAC, "10.0.0.3", "ch1"),  # same MAC/IP, another network
        {**port("p-router", 5, NET_A, ROUTER_MAC, "10.0.0.254"), "device_owner": "network:router_interface"},
    ]
    view = LocalView(chassis="ch1", tunnel_ip=TUNNEL_LOCAL,
                     networks={n["id"]: n for n in (NET_A, NET_B)}, ports={p["id"]: p for p in ports},
                     security_group_rules=OPEN_RULES,
                     chassis_by_name={"ch1": {"tunnel_ip": TUNNEL_LOCAL}, "ch2": {"tunnel_ip": TUNNEL_REMOTE}},
                     local_ports={"p-local": local_if, "p-local2": local2_if},
                     underlay_ifindex=underlay_if, underlay_mac=UNDERLAY_MAC,
                     underlay_neighbors={TUNNEL_REMOTE: UNDERLAY_PEER_MAC})
    view.ports["p-other-net"]["binding:host_id"] = "ch1"
    return view


def program(pipeline, view: LocalView) -> None:
    result = build_datapath_control(pipeline.maps).apply(view)
    assert not result.errors, result.errors


def vxlan_from_remote(inner, vni=NET_A["key"], dst=TUNNEL_LOCAL):
    """`inner` as the remote chassis tunnels it to this one."""
    return Ether(src=UNDERLAY_PEER_MAC, dst=UNDERLAY_MAC) / IP(src=TUNNEL_REMOTE, dst=dst) / \
        UDP(sport=50000, dport=4789) / VXLAN(vni=vni, flags="Instance") / inner
