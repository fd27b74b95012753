"""The security group compiler: exact range blocks, classes per remote prefix,
and entry counts that grow with the rules, not with port ranges or nesting."""
import ipaddress
import random

import pytest

from dfxdp.controller.sg_compiler import EGRESS, INGRESS, Policy, compile_rule, port_policies, range_to_prefixes


@pytest.mark.parametrize("lo,hi", [(1, 65535), (80, 80), (1000, 1999), (0, 0), (1024, 65535), (33, 1234)])
def test_range_blocks_cover_exactly(lo, hi):
    blocks = range_to_prefixes(lo, hi)
    covered = set()
    for value, bits in blocks:
        size = 1 << (16 - bits)
        assert value % size == 0  # aligned
        covered |= set(range(value, value + size))
    assert covered == set(range(lo, hi + 1))
    assert len(blocks) <= 30


def rule(**kw):
    base = {"security_group_id": "g", "direction": "ingress", "ethertype": "IPv4", "protocol": None,
            "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None, "remote_group_id": None}
    return {**base, **kw}


def test_policy_semantics_match_neutron():
    port = {"security_groups": ["g"]}
    rules = [rule(protocol="tcp", port_range_min=22, port_range_max=22, remote_ip_prefix="10.0.0.0/8"),
             rule(protocol="icmp", port_range_min=8), rule(direction="egress"),
             rule(protocol="udp", port_range_min=53, port_range_max=53, remote_group_id="friends"),
             rule(ethertype="IPv6", protocol="tcp")]
    pol = port_policies(port, rules, {"friends": [ipaddress.ip_network("192.0.2.7/32")]})
    assert pol[INGRESS].allows(6, "10.9.9.9", 22) and not pol[INGRESS].allows(6, "11.0.0.1", 22)
    assert not pol[INGRESS].allows(6, "10.9.9.9", 23)
    assert pol[INGRESS].allows(1, "1.2.3.4", 8 << 8) and not pol[INGRESS].allows(1, "1.2.3.4", 13 << 8)
    assert pol[INGRESS].allows(17, "192.0.2.7", 53) and not pol[INGRESS].allows(17, "192.0.2.8", 53)
    assert pol[EGRESS].allows(6, "8.8.8.8", 443)
    assert compile_rule(rules[-1], {}) is None  # IPv6 goes to the fallback


def test_classes_follow_nested_prefixes():
    rules = [rule(remote_ip_prefix="10.0.0.0/8", protocol="tcp", port_range_min=1, port_range_max=1),
             rule(remote_ip_prefix="10.1.0.0/16", protocol="tcp", port_range_min=2, port_range_max=2)]
    pol = port_policies({"security_groups": ["g"]}, rules, {})[INGRESS]
    remote, allow = pol.entries()
    classes = dict(remote)
    wide, narrow = classes[ipaddress.ip_network("10.0.0.0/8")], classes[ipaddress.ip_network("10.1.0.0/16")]
    assert wide != narrow
    assert {(c, p) for c, p, _, _ in allow if c == narrow} == {(narrow, 6)}
    assert {v for c, _, v, _ in allow if c == narrow} == {1, 2}  # both rules hold inside 10.1/16
    assert {v for c, _, v, _ in allow if c == wide} == {1}


@pytest.mark.parametrize("n", [10, 1000, 10000])
def test_entries_grow_linearly_with_rules(n):
    rnd = random.Random(n)
    rules = [rule(protocol="tcp", port_range_min=p, port_range_max=p + rnd.randrange(0, 1000),
                  remote_ip_prefix=f"10.{i // 256 % 256}.{i % 256}.0/24") for i, p in
             enumerate(rnd.randrange(1, 60000) for _ in range(n))]
    rules.append(rule(protocol="udp", port_range_min=1, port_range_max=65535))  # from anywhere: class 0 only
    remote, allow = port_policies({"security_groups": ["g"]}, rules, {})[INGRESS].entries()
    assert len(remote) == n
    assert len(allow) <= 30 * (n + 1)  # at most the blocks of each rule once
