"""Security-group ingress for what the OVS fallback delivers to a port with port security.

XDP applies a port's ingress rules (stage_sg_ingress) to what it forwards; broadcast,
multicast and unknown unicast reach the port through OVS instead, past that stage. So
the fallback evaluates the same rules: the same compiled policies as the XDP datapath
(controller/sg_compiler.py through the sg app's `shared_policies`), as flows of table
SG_INGRESS, one set per policy (ports with the same groups share it, as they share
their XDP entries).

A flow that delivers an IPv4 frame to such a port does not output it: `deliver()`
loads the port into REG_PORT and its policy into REG_POLICY and resubmits to
SG_INGRESS, whose flows match the policy and a rule (protocol, destination port or
ICMP type and code, source prefix) and output to the port in REG_PORT. What no rule
allows meets the table's priority-0 flow: dropped, and counted in its n_packets. Only
the rules decide, never connection state: broadcast and multicast open no connection
and answer none. ARP is delivered unfiltered, as Neutron delivers it; other ethertypes
never reach a port with port security (flood.py).
"""
from __future__ import annotations

from typing import Iterable

from dfxdp.controller.ovs.flows import DROP, Flow, output, output_reg, resubmit, set_field

from ..sg_compiler import INGRESS, PORTED, Prefix, Rule, mask
from .base import App, LocalView
from .sg import group_member_prefixes, shared_policies

TABLE_SG_INGRESS = 25
REG_PORT, REG_POLICY = "reg6", "reg7"
ETH_P_IP, IPPROTO_ICMP = 0x0800, 1
L4_FIELDS = {6: "tcp_dst", 17: "udp_dst", 132: "sctp_dst"}


def port_policies(view: LocalView) -> dict[int, int]:
    """Port key -> policy id, for every local port with port security."""
    return {key: shared.policy_id for shared in shared_policies(view) for key in shared.port_keys}


def deliver(view: LocalView, port: dict, ofport: int) -> list[tuple]:
    """The actions that hand an IPv4 frame to a local port: through its ingress rules when
    it has port security (a port in no policy yet gets nothing), straight out otherwise."""
    if not port.get("port_security_enabled"):
        return [output(ofport)]
    policy = port_policies(view).get(port["key"])
    if policy is None:
        return []
    return [set_field(REG_PORT, ofport), set_field(REG_POLICY, policy), resubmit(TABLE_SG_INGRESS)]


def rule_matches(rule: Rule, members: list[Prefix] = ()) -> Iterable[dict]:
    """One OpenFlow match per (source prefix, port or ICMP block) of a compiled rule; `members`:
    the addresses of its remote group (none: the rule matches nothing)."""
    base = {"eth_type": ETH_P_IP, **({"ip_proto": rule.proto} if rule.proto else {})}
    l4: list[dict] = [{}]
    if rule.l4 and rule.proto in PORTED:
        l4 = [{L4_FIELDS[rule.proto]: (value, mask(bits) >> 16)} if bits else {} for value, bits in rule.l4]
    elif rule.l4 and rule.proto == IPPROTO_ICMP:  # (type << 8 | code, 16) or (type << 8, 8)
        l4 = [{"icmpv4_type": value >> 8, **({"icmpv4_code": value & 0xFF} if bits == 16 else {})}
              for value, bits in rule.l4]
    sources = [{"ipv4_src": (_address(addr), _address(mask(length)))}
               for addr, length in (members if rule.group else rule.remotes)] or ([] if rule.group else [{}])
    for src in sources:
        for ports in l4:
            yield {**base, **src, **ports}


def _address(value: int) -> str:
    return ".".join(str(value >> shift & 0xFF) for shift in (24, 16, 8, 0))


class FallbackSecurityApp(App):
    name = "fallback_sg"
    tables = (TABLE_SG_INGRESS,)
    flow_cookie = 4

    def flows(self, view: LocalView) -> Iterable[Flow]:
        members: dict[str, list[Prefix]] = {}
        for shared in shared_policies(view):
            seen = set()
            for rule in shared.directions[INGRESS].rules:
                if rule.group and rule.group not in members:
                    members[rule.group] = group_member_prefixes(view, rule.group)
                for match in rule_matches(rule, members.get(rule.group, [])):
                    flow = Flow.of(TABLE_SG_INGRESS, 100, {REG_POLICY: shared.policy_id, **match},
                                   [output_reg(REG_PORT)])
                    if flow.key not in seen:  # two rules may allow the very same thing
                        seen.add(flow.key)
                        yield flow
        yield Flow.of(TABLE_SG_INGRESS, 0, {}, DROP)
