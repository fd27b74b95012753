"""The security group compiler: exact range blocks, classes per remote prefix,
entry counts that grow with the rules, not with port ranges or nesting,
aggregated and expanded remote prefixes that answer every address as the unmerged
ones do, and the compiled lookups answering every packet as the rules do."""
import ipaddress
import random

import pytest

from dfxdp.controller.sg_compiler import (ANY_CLASS, EGRESS, INGRESS, STRIDE, CompiledPolicy, L4Set, aggregate,
                                          compile_rule, expand, group_policies, host_prefix, mask, range_to_prefixes,
                                          stable_id)


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
    assert compile_rule(rules[-1]) is None  # IPv6 rules are not compiled yet


def test_classes_follow_nested_prefixes():
    rules = [rule(remote_ip_prefix="10.0.0.0/8", protocol="tcp", port_range_min=1, port_range_max=1),
             rule(remote_ip_prefix="10.1.0.0/16", protocol="tcp", port_range_min=2, port_range_max=2)]
    compiled = group_policies({"g"}, rules, {})[INGRESS].compile()
    wide, narrow = compiled.remote[prefix("10.0.0.0/8")], compiled.remote[prefix("10.1.0.0/16")]
    assert wide != narrow and ANY_CLASS not in compiled.classes
    assert set(compiled.classes[narrow].l4) == {6} and not compiled.classes[narrow].any_protocol
    assert [v for v in range(4) if compiled.classes[narrow].allows(6, v)] == [1, 2]  # both rules hold in 10.1/16
    assert [v for v in range(4) if compiled.classes[wide].allows(6, v)] == [1]


def l4_entries(compiled):
    """sg_l4 entries: a summary per (class, protocol), one more per chunk allowed in part."""
    return sum(1 + len(s.partial) for c in compiled.classes.values() for s in c.l4.values())


@pytest.mark.parametrize("n", [10, 1000, 10000])
def test_entries_grow_linearly_with_rules(n):
    rnd = random.Random(n)
    rules = [rule(protocol="tcp", port_range_min=p, port_range_max=p + rnd.randrange(0, 1000),
                  remote_ip_prefix=f"10.{i // 256 % 256}.{i % 256}.0/24") for i, p in
             enumerate(rnd.randrange(1, 60000) for _ in range(n))]
    rules.append(rule(protocol="udp", port_range_min=1, port_range_max=65535))  # from anywhere: class 0 only
    compiled = group_policies({"g"}, rules, {})[INGRESS].compile()
    assert len(compiled.remote) == n and compiled.remote_lengths == {24}  # one probe per packet
    assert l4_entries(compiled) <= 6 * (n + 1)  # a range of ≤ 1,001 ports touches at most 5 chunks


@pytest.mark.parametrize("lo,hi", [(0, 0), (0, 65535), (255, 256), (1, 65535), (80, 80), (1000, 1100), (65535, 65535),
                                   (256, 511), (300, 9000)])
def test_l4_sets_hold_exactly_the_range(lo, hi):
    s = L4Set.of(range_to_prefixes(lo, hi))
    probes = {0, 1, 254, 255, 256, 257, 511, 512, 65534, 65535, lo - 1, lo, lo + 1, hi - 1, hi, hi + 1}
    for v in probes & set(range(65536)):
        assert s.allows(v) == (lo <= v <= hi), v
    assert all(bits and bits != (1 << 256) - 1 for bits in s.partial.values())  # whole chunks are never partial


def datapath_allows(compiled: CompiledPolicy, proto: int, addr: int, value: int) -> bool:
    """What bpf/lib/sg.h answers: class 0, then the remote prefix lengths longest first, the
    first hit being the address's class."""
    anywhere = compiled.classes.get(ANY_CLASS)
    if anywhere and anywhere.allows(proto, value):
        return True
    for length in sorted(compiled.remote_lengths, reverse=True):
        class_id = compiled.remote.get((addr & mask(length), length))
        if class_id is not None:
            return compiled.classes[class_id].allows(proto, value)
    return False


@pytest.mark.parametrize("seed", range(8))
def test_compiled_lookups_answer_as_the_rules(seed):
    """Random policies (nested prefixes, groups, overlapping ranges, ICMP, any protocol) and
    random packets: the lookups of the compiled form agree with the rules one by one."""
    rnd = random.Random(seed)
    nets = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25", "10.1.2.130/31", "192.0.2.0/24"]
    members = [host_prefix(f"10.1.2.{i}") for i in rnd.sample(range(256), 40)]

    def random_rule():
        proto = rnd.choice([None, "tcp", "udp", "icmp", "47"])
        kw = {"protocol": proto, "remote_ip_prefix": None, "remote_group_id": None}
        if proto in ("tcp", "udp") and rnd.random() < 0.8:
            lo = rnd.choice([0, 1, 22, 250, 256, 1000, 65000, rnd.randrange(65536)])
            kw.update(port_range_min=lo, port_range_max=min(65535, lo + rnd.choice([0, 5, 300, 70000])))
        elif proto == "icmp" and rnd.random() < 0.8:
            kw.update(port_range_min=rnd.choice([0, 3, 8]), port_range_max=rnd.choice([None, 0, 4]))
        where = rnd.random() if proto else rnd.random() * 0.7  # "everything from anywhere" would allow all
        if where < 0.5:
            kw["remote_ip_prefix"] = rnd.choice(nets)
        elif where < 0.7:
            kw["remote_group_id"] = "members"
        return rule(**kw)

    policy = group_policies({"g"}, [random_rule() for _ in range(rnd.randrange(1, 12))], {"members": members})[INGRESS]
    compiled = policy.compile()
    addrs = [host_prefix(a)[0] for a in ("10.1.2.130", "10.1.2.131", "10.1.2.129", "10.1.2.1", "10.1.3.1", "10.2.0.1",
                                         "192.0.2.9", "8.8.8.8")] + [m for m, _ in members[:5]]
    answers = set()
    for addr in addrs:
        for proto in (6, 17, 1, 47, 132):
            for value in (0, 22, 255, 256, 1000, 1100, 65000, 65535, 8 << 8, 3 << 8 | 4, rnd.randrange(65536)):
                text = ipaddress.ip_address(addr).compressed
                answer = policy.allows(proto, text, value)
                assert datapath_allows(compiled, proto, addr, value) == answer, (text, proto, value)
                answers.add(answer)
    assert answers == {True, False}  # the policy allows some of the packets, not all


def lpm(entries, addr):
    """What an LPM trie answers for addr: the class of the longest prefix holding it, or None."""
    best = max(((length, class_id) for (net, length), class_id in entries.items() if addr & mask(length) == net),
               default=None)
    return best and best[1]


@pytest.mark.parametrize("seed", range(5))
def test_aggregation_and_expansion_answer_every_address_as_before(seed):
    rnd = random.Random(seed)
    entries = {}
    for _ in range(300):  # a dense group in a /24 with a few holes, plus nested rule prefixes
        entries[(0x0A000000 | rnd.randrange(256), 32)] = rnd.choice([1, 1, 1, 2])
    entries[(0x0A000000, 24)] = 3
    entries[(0x0A000080, 26)] = 4
    entries[(0x0A000100 | rnd.randrange(256), 32)] = 1
    merged = aggregate(entries)
    strides = set(range(STRIDE, 33, STRIDE)) | {24, 26, 32}
    expanded = expand(merged, strides)
    assert len(merged) < len(entries) and len(expanded) <= len(entries)
    assert {length for _, length in expanded} <= strides
    for addr in range(0x09FFFFF0, 0x0A000210):
        assert lpm(merged, addr) == lpm(entries, addr) == lpm(expanded, addr), hex(addr)


def test_a_consecutive_group_becomes_a_few_entries_of_few_lengths():
    members = [host_prefix(f"10.128.{i // 256}.{i % 256}") for i in range(2, 802)]
    pol = group_policies({"g"}, [rule(remote_group_id="g")], {"g": members})[INGRESS]
    compiled = pol.compile()
    assert len(compiled.remote) <= 40 and len(compiled.remote_lengths) <= 3  # probes per packet
    assert pol.allows(6, "10.128.3.33", 22) and not pol.allows(6, "10.128.3.34", 22)
    classes = compiled.remote
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
    before = group_policies({"g"}, [ssh], {})[INGRESS].compile()
    after = group_policies({"g"}, [ssh, web], {})[INGRESS].compile()
    assert after.remote[prefix("10.0.0.0/8")] == before.remote[prefix("10.0.0.0/8")]  # still just ssh
    both = after.remote[prefix("10.1.0.0/16")]
    assert both not in before.remote.values()  # {ssh, web}: a class that did not exist, a fresh id
    assert [v for v in range(100) if after.classes[both].allows(6, v)] == [22, 80]


@pytest.mark.parametrize("protocol,number", [("gre", 47), ("vrrp", 112), ("47", 47), ("udplite", 136), (None, 0)])
def test_every_protocol_name_the_api_accepts_compiles_to_its_number(protocol, number):
    """A name unknown to the compiler must not become "any protocol"."""
    pol = group_policies({"g"}, [rule(protocol=protocol)], {})
    assert pol[INGRESS].allows(number, "10.0.0.1", 0)
    assert pol[INGRESS].allows(6, "10.0.0.1", 22) == (protocol is None)


@pytest.mark.parametrize("seed", range(6))
def test_a_block_compiled_again_after_random_membership_changes_equals_a_whole_compile(seed):
    """Members come and go at random (nested rule prefixes across and inside blocks, two remote
    groups); after each change only the blocks of the addresses it touched are compiled again,
    and the union of the kept parts is exactly a whole compile of the new membership, whose
    lookups answer as the rules do."""
    rnd = random.Random(seed)
    rules = [rule(id="a", remote_group_id="web"), rule(id="b", protocol="tcp", port_range_min=22, port_range_max=22,
                                                         remote_group_id="db"),
             rule(id="c", protocol="udp", port_range_min=53, port_range_max=53, remote_ip_prefix="10.1.0.0/16"),
             rule(id="d", protocol="icmp", remote_ip_prefix="10.1.2.64/26"),
             rule(id="e", protocol="tcp", port_range_min=80, port_range_max=80, remote_ip_prefix="10.1.3.7/32")]
    pool = [f"10.1.{b}.{h}" for b in (2, 3, 4) for h in range(0, 256, 3)] + [f"10.9.0.{h}" for h in range(10)]
    members = {"web": set(rnd.sample(pool, 40)), "db": set(rnd.sample(pool, 20))}

    def policy():
        prefixes = {group: [host_prefix(address) for address in addresses] for group, addresses in members.items()}
        return group_policies({"g"}, rules, prefixes)[INGRESS]

    first = policy()
    parts = {block: first.compile_block(block) for block in first.blocks()}
    coarse = first.compile_coarse()
    for _ in range(60):
        group, address = rnd.choice(sorted(members)), rnd.choice(pool)
        members[group] ^= {address}  # joins, or leaves
        current = policy()
        block = host_prefix(address)[0] >> 8
        parts[block] = current.compile_block(block)
        incremental = dict(coarse.remote)
        for part in parts.values():
            incremental.update(part.remote)
        whole = current.compile()
        assert incremental == whole.remote
        for address in rnd.sample(pool, 10) + ["10.1.5.5", "10.2.0.1"]:
            for proto, value in ((6, 22), (6, 80), (17, 53), (1, 8 << 8), (47, 0)):
                assert datapath_allows(whole, proto, host_prefix(address)[0], value) == \
                    current.allows(proto, address, value), (address, proto, value)
