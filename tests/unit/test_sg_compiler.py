"""The security group compiler: exact range blocks, classes per remote prefix,
entry counts that grow with the rules, not with port ranges or nesting, and
aggregated remote prefixes that answer every address as the unmerged ones do."""
import ipaddress
import random

import pytest

from dfxdp.controller.sg_compiler import (EGRESS, INGRESS, aggregate, compile_rule, group_policies, host_prefix, mask,
                                          range_to_prefixes, stable_id)


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


def prefix(text):
    net = ipaddress.ip_network(text)
    return int(net.network_address), net.prefixlen


def test_policy_semantics_match_neutron():
    rules = [rule(protocol="tcp", port_range_min=22, port_range_max=22, remote_ip_prefix="10.0.0.0/8"),
             rule(protocol="icmp", port_range_min=8), rule(direction="egress"),
             rule(protocol="udp", port_range_min=53, port_range_max=53, remote_group_id="friends"),
             rule(ethertype="IPv6", protocol="tcp")]
    pol = group_policies({"g"}, rules, {"friends": [host_prefix("192.0.2.7")]})
    assert pol[INGRESS].allows(6, "10.9.9.9", 22) and not pol[INGRESS].allows(6, "11.0.0.1", 22)
    assert not pol[INGRESS].allows(6, "10.9.9.9", 23)
    assert pol[INGRESS].allows(1, "1.2.3.4", 8 << 8) and not pol[INGRESS].allows(1, "1.2.3.4", 13 << 8)
    assert pol[INGRESS].allows(17, "192.0.2.7", 53) and not pol[INGRESS].allows(17, "192.0.2.8", 53)
    assert pol[EGRESS].allows(6, "8.8.8.8", 443)
    assert compile_rule(rules[-1], {}) is None  # IPv6 rules are not compiled yet


def test_classes_follow_nested_prefixes():
    rules = [rule(remote_ip_prefix="10.0.0.0/8", protocol="tcp", port_range_min=1, port_range_max=1),
             rule(remote_ip_prefix="10.1.0.0/16", protocol="tcp", port_range_min=2, port_range_max=2)]
    pol = group_policies({"g"}, rules, {})[INGRESS]
    remote, allow = pol.entries()
    classes = dict(remote)
    wide, narrow = classes[prefix("10.0.0.0/8")], classes[prefix("10.1.0.0/16")]
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
    remote, allow = group_policies({"g"}, rules, {})[INGRESS].entries()
    assert len(remote) == n
    assert len(allow) <= 30 * (n + 1)  # at most the blocks of each rule once


def lpm(entries, addr):
    """What an LPM trie answers for addr: the class of the longest prefix holding it, or None."""
    best = max(((length, class_id) for (net, length), class_id in entries.items() if addr & mask(length) == net),
               default=None)
    return best and best[1]


@pytest.mark.parametrize("seed", range(5))
def test_aggregation_answers_every_address_as_before(seed):
    rnd = random.Random(seed)
    entries = {}
    for _ in range(300):  # a dense group in a /24 with a few holes, plus nested rule prefixes
        entries[(0x0A000000 | rnd.randrange(256), 32)] = rnd.choice([1, 1, 1, 2])
    entries[(0x0A000000, 24)] = 3
    entries[(0x0A000080, 26)] = 4
    entries[(0x0A000100 | rnd.randrange(256), 32)] = 1
    merged = aggregate(entries)
    assert len(merged) < len(entries)
    for addr in range(0x09FFFFF0, 0x0A000210):
        assert lpm(merged, addr) == lpm(entries, addr), hex(addr)


def test_a_consecutive_group_becomes_a_few_entries():
    members = [host_prefix(f"10.128.{i // 256}.{i % 256}") for i in range(2, 802)]
    pol = group_policies({"g"}, [rule(remote_group_id="g")], {"g": members})[INGRESS]
    remote, _ = pol.entries()
    assert len(remote) <= 12
    assert pol.allows(6, "10.128.3.33", 22) and not pol.allows(6, "10.128.3.34", 22)
    classes = dict(remote)
    for i in (2, 500, 801):
        assert lpm(classes, host_prefix(f"10.128.{i // 256}.{i % 256}")[0]) is not None
    assert lpm(classes, host_prefix("10.128.3.34")[0]) is None and lpm(classes, host_prefix("10.128.0.1")[0]) is None


def test_ids_are_stable_and_never_shared():
    first = stable_id(["db", "web"], set())
    assert first == stable_id(["db", "web"], set()) != 0
    assert stable_id(["db", "web"], {first}) not in (first, 0)


def test_a_class_keeps_its_id_while_its_rules_do_and_a_new_set_gets_a_new_one():
    ssh = rule(id="ssh", protocol="tcp", port_range_min=22, port_range_max=22, remote_ip_prefix="10.0.0.0/8")
    web = rule(id="web", protocol="tcp", port_range_min=80, port_range_max=80, remote_ip_prefix="10.1.0.0/16")
    before, _ = group_policies({"g"}, [ssh], {})[INGRESS].entries()
    after, allow = group_policies({"g"}, [ssh, web], {})[INGRESS].entries()
    assert dict(after)[prefix("10.0.0.0/8")] == dict(before)[prefix("10.0.0.0/8")]  # still just ssh
    both = dict(after)[prefix("10.1.0.0/16")]
    assert both not in dict(before).values()  # {ssh, web}: a class that did not exist, a fresh id
    assert {v for c, _, v, _ in allow if c == both} == {22, 80}


@pytest.mark.parametrize("protocol,number", [("gre", 47), ("vrrp", 112), ("47", 47), ("udplite", 136), (None, 0)])
def test_every_protocol_name_the_api_accepts_compiles_to_its_number(protocol, number):
    """A name unknown to the compiler must not become "any protocol"."""
    pol = group_policies({"g"}, [rule(protocol=protocol)], {})
    assert pol[INGRESS].allows(number, "10.0.0.1", 0)
    assert pol[INGRESS].allows(6, "10.0.0.1", 22) == (protocol is None)
