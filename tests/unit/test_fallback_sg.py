"""Security-group ingress in the OVS fallback: a port with port security gets IPv4 only through
the flows of its policy, and those flows decide as the compiled policy (the XDP datapath's)
does, packet for packet."""
import ipaddress
import random

from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.apps.fallback_sg import (REG_POLICY, REG_PORT, TABLE_SG_INGRESS, FallbackSecurityApp, deliver,
                                               port_policies)
from dfxdp.controller.apps.sg import local_policies
from dfxdp.controller.sg_compiler import INGRESS

RULES = [
    {"protocol": "udp", "port_range_min": 5000, "port_range_max": 5003, "remote_ip_prefix": "10.0.0.0/25"},
    {"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": None},
    {"protocol": "icmp", "port_range_min": 8, "port_range_max": None, "remote_ip_prefix": "10.0.0.128/26"},
    {"protocol": "icmp", "port_range_min": 3, "port_range_max": 4},
    {"protocol": "udp", "remote_group_id": "peers"},
    {"protocol": "112"},                     # VRRP, any port
    {"protocol": "udp", "port_range_min": 0, "port_range_max": 65535, "remote_ip_prefix": "10.0.0.7/32"},
]


def view() -> LocalView:
    rules = {f"r{i}": {"id": f"r{i}", "security_group_id": "sg", "direction": "ingress", "ethertype": "IPv4", **r}
             for i, r in enumerate(RULES)}
    rules["egress"] = {"id": "egress", "security_group_id": "sg", "direction": "egress", "ethertype": "IPv4",
                       "protocol": None}
    ports = {
        "guarded": {"id": "guarded", "key": 1, "network_id": "n", "port_security_enabled": True,
                    "security_groups": ["sg"], "fixed_ips": [{"ip_address": "10.0.0.2"}]},
        "open": {"id": "open", "key": 2, "network_id": "n", "port_security_enabled": False},
        "peer": {"id": "peer", "key": 3, "network_id": "n", "port_security_enabled": True,
                 "security_groups": ["peers"], "fixed_ips": [{"ip_address": "10.0.0.200"}]},
    }
    return LocalView(chassis="ch1", tunnel_ip="198.18.0.11", networks={"n": {"id": "n", "key": 5}}, ports=ports,
                     security_groups={"sg": {"id": "sg"}}, security_group_rules=rules,
                     local_ports={"guarded": 11, "open": 12})


def test_deliver_goes_through_the_policy_only_for_ports_with_port_security():
    v = view()
    policy = port_policies(v)[1]
    assert deliver(v, v.ports["guarded"], 4) == [("set_field", REG_PORT, 4), ("set_field", REG_POLICY, policy),
                                                  ("resubmit", TABLE_SG_INGRESS)]
    assert deliver(v, v.ports["open"], 5) == [("output", 5)]
    assert deliver(v, v.ports["peer"], 6) == []  # not bound here: no policy, nothing delivered


def _holds(match: dict, packet: dict) -> bool:
    """An OpenFlow match against a packet's fields, values and masks as OVS compares them."""
    for field, want in match.items():
        have = packet.get(field)
        if have is None:
            return False
        if isinstance(want, tuple):
            value, mask = want
            if field == "ipv4_src":
                value, mask, have = (int(ipaddress.IPv4Address(x)) for x in (value, mask, have))
            if have & mask != value & mask:
                return False
        elif have != want:
            return False
    return True


def test_flows_decide_as_the_compiled_policy_does():
    v = view()
    flows = list(FallbackSecurityApp().flows(v))
    assert flows[-1].priority == 0 and flows[-1].actions == ()  # what no rule allows is dropped
    assert all(f.actions == (("output_reg", REG_PORT),) for f in flows[:-1])
    policy_id, policy = port_policies(v)[1], local_policies(v)[(1, INGRESS)]
    rng = random.Random(7)
    sources = ["10.0.0.5", "10.0.0.127", "10.0.0.130", "10.0.0.200", "10.0.0.7", "192.0.2.1"]
    for _ in range(3000):
        proto = rng.choice([6, 17, 1, 112, 47])
        src = rng.choice(sources)
        l4 = rng.choice([22, 5000, 5003, 5004, 8 << 8, 3 << 8 | 1, 4 << 8, 0, 65535, rng.randrange(65536)])
        packet = {REG_POLICY: policy_id, "eth_type": 0x0800, "ip_proto": proto, "ipv4_src": src}
        if proto in (6, 17):
            packet[{6: "tcp_dst", 17: "udp_dst"}[proto]] = l4
        if proto == 1:
            packet.update(icmpv4_type=l4 >> 8, icmpv4_code=l4 & 0xFF)
        allowed = any(_holds(dict(f.match), packet) for f in flows[:-1])
        assert allowed == policy.allows(proto, src, l4 if proto in (6, 17, 1) else 0), (packet, allowed)


def test_another_policy_id_matches_nothing():
    v = view()
    flows = list(FallbackSecurityApp().flows(v))
    other = port_policies(v)[1] + 1
    packet = {REG_POLICY: other, "eth_type": 0x0800, "ip_proto": 6, "ipv4_src": "10.0.0.5", "tcp_dst": 22}
    assert not any(_holds(dict(f.match), packet) for f in flows[:-1])
