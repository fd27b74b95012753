"""Stateful security groups through BPF_PROG_TEST_RUN: each rule kind, each
conntrack transition, a full table, port security off, and ending flows a
removed rule allowed."""
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from dfxdp.controller.apps import LocalView
from dfxdp.controller.apps.sg import SecurityGroupApp
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.datapath.libbpf import lib, to_dict
from dfxdp.datapath.pktrun import run_packet

NET = {"id": "n", "key": 5}
MAC_A, MAC_B, MAC_C = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b", "fa:16:3e:00:00:0c"


def rule(rid, group, direction, proto=None, lo=None, hi=None, prefix=None, remote_group=None):
    return {"id": rid, "security_group_id": group, "direction": direction, "ethertype": "IPv4", "protocol": proto,
            "port_range_min": lo, "port_range_max": hi, "remote_ip_prefix": prefix, "remote_group_id": remote_group}


RULES = [
    rule("r1", "web", "ingress", "tcp", 80, 90),
    rule("r2", "web", "ingress", "icmp", 8, None, prefix="10.0.0.0/28"),
    rule("r3", "web", "ingress", "udp", 53, 53, remote_group="friends"),
    rule("r4", "web", "ingress", "47"),  # GRE from anywhere: a protocol number, no ports
    rule("r5", "web", "egress", "tcp", 5000, 5000, prefix="10.0.0.1/32"),
]


def make_view(a_if, b_if, c_if, rules=RULES, b_portsec=True):
    def port(pid, key, mac, ip, groups, portsec, host="ch1"):
        return {"id": pid, "key": key, "network_id": "n", "mac_address": mac, "binding:host_id": host,
                "fixed_ips": [{"subnet_id": "s", "ip_address": ip}], "port_security_enabled": portsec,
                "security_groups": groups, "allowed_address_pairs": [], "device_owner": ""}

    ports = [port("a", 1, MAC_A, "10.0.0.1", ["friends"], False), port("b", 2, MAC_B, "10.0.0.2", ["web"], b_portsec),
             port("c", 3, MAC_C, "10.0.0.33", [], False)]
    return LocalView(chassis="ch1", tunnel_ip="198.18.0.11", networks={"n": NET}, ports={p["id"]: p for p in ports},
                     security_group_rules={r["id"]: r for r in rules},
                     local_ports={"a": a_if, "b": b_if, "c": c_if})


def program(pipeline, view):
    result = build_datapath_control(pipeline.maps).apply(view)
    assert not result.errors


@pytest.fixture
def sg(pipeline, test_iface):
    ifs = [test_iface()[1] for _ in range(3)]
    program(pipeline, make_view(*ifs))
    return pipeline, ifs


def send(pipe, ifindex, src_mac, dst_mac, pkt):
    return run_packet(pipe, Ether(src=src_mac, dst=dst_mac) / pkt, ingress_ifindex=ifindex)


def to_b(pipe, ifs, pkt, src="10.0.0.1", mac=MAC_A, ingress=0):
    return send(pipe, ifs[ingress], mac, MAC_B, IP(src=src, dst="10.0.0.2") / pkt)


@pytest.mark.parametrize("pkt,src,mac,ok", [
    (TCP(sport=1111, dport=80, flags="S"), "10.0.0.1", MAC_A, True),
    (TCP(sport=1111, dport=90, flags="S"), "10.0.0.1", MAC_A, True),
    (TCP(sport=1111, dport=91, flags="S"), "10.0.0.1", MAC_A, False),
    (TCP(sport=1111, dport=79, flags="S"), "10.0.0.1", MAC_A, False),
    (ICMP(type=8), "10.0.0.1", MAC_A, True),
    (ICMP(type=8), "10.0.0.33", MAC_C, False),           # outside 10.0.0.0/28
    (ICMP(type=13), "10.0.0.1", MAC_A, False),           # timestamp: only echo allowed
    (UDP(sport=999, dport=53), "10.0.0.1", MAC_A, True),  # member of remote group "friends"
    (UDP(sport=999, dport=53), "10.0.0.33", MAC_C, False),
    ("gre", "10.0.0.33", MAC_C, True),
], ids=["tcp-lo", "tcp-hi", "tcp-above", "tcp-below", "icmp-in-prefix", "icmp-outside-prefix", "icmp-other-type",
        "udp-remote-group", "udp-not-in-group", "protocol-number"])
def test_ingress_rule_kinds(sg, pkt, src, mac, ok):
    pipe, ifs = sg
    ingress = 2 if mac == MAC_C else 0
    if pkt == "gre":
        res = send(pipe, ifs[ingress], mac, MAC_B, IP(src=src, dst="10.0.0.2", proto=47) / Raw(b"\x00" * 8))
    else:
        res = to_b(pipe, ifs, pkt, src=src, mac=mac, ingress=ingress)
    if ok:
        assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == ifs[1]
    else:
        assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_SG_INGRESS")
    stats = pipe.maps["sg_stats"].lookup_sum({"port_key": 2, "direction": lib.SG_INGRESS})
    assert stats["allowed_packets" if ok else "denied_packets"] >= 1


NESTED = [
    rule("n1", "web", "ingress", "tcp", 250, 1300, prefix="10.0.0.0/24"),  # part of chunk 0, chunks 1-4, part of 5
    rule("n2", "web", "ingress", None, prefix="10.0.0.32/27"),             # any protocol: the class allows all
    rule("n3", "web", "ingress", "udp", 7000, 7000, prefix="10.0.0.1/32"),  # inside n1's /24: a class of both
    rule("n4", "web", "egress"),
]


@pytest.mark.parametrize("src,pkt,ok", [
    ("10.0.0.1", TCP(dport=250, flags="S"), True), ("10.0.0.1", TCP(dport=249, flags="S"), False),
    ("10.0.0.1", TCP(dport=512, flags="S"), True), ("10.0.0.1", TCP(dport=1300, flags="S"), True),
    ("10.0.0.1", TCP(dport=1301, flags="S"), False), ("10.0.0.1", UDP(dport=7000), True),
    ("10.0.0.1", UDP(dport=7001), False), ("10.0.0.7", UDP(dport=7000), False),
    ("10.0.0.7", TCP(dport=600, flags="S"), True), ("10.0.0.33", UDP(dport=9), True),
    ("10.0.0.33", ICMP(type=13), True), ("10.0.0.33", TCP(dport=249, flags="S"), True),
    ("10.1.0.7", TCP(dport=600, flags="S"), False),
], ids=["chunk-edge-lo", "below", "whole-chunk", "chunk-edge-hi", "above", "nested-32", "nested-32-other-port",
        "only-in-24", "in-24", "any-protocol-udp", "any-protocol-icmp", "any-protocol-tcp", "outside-every-prefix"])
def test_nested_prefixes_and_wide_ranges(pipeline, test_iface, src, pkt, ok):
    """Prefixes of three lengths (the longest holding the address decides), a class that allows
    every protocol, and a range cut into whole and partial chunks."""
    ifs = [test_iface()[1] for _ in range(3)]
    program(pipeline, make_view(*ifs, rules=NESTED))
    res = to_b(pipeline, ifs, pkt, src=src)
    if ok:
        assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == ifs[1]
    else:
        assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_SG_INGRESS")


def test_egress_only_what_rules_allow(sg):
    pipe, ifs = sg
    ok = send(pipe, ifs[1], MAC_B, MAC_A, IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=2000, dport=5000, flags="S"))
    assert ok.verdict == "XDP_REDIRECT"
    no = send(pipe, ifs[1], MAC_B, MAC_A, IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=2000, dport=5001, flags="S"))
    assert (no.verdict, no.drop_reason) == ("XDP_DROP", "DROP_SG_EGRESS")


def ct_entry(pipe, port, direction, src, dst, sport, dport, proto=6):
    import socket
    import sys

    key = {"port_key": port, "direction": direction, "proto": proto,
           "saddr": int.from_bytes(socket.inet_aton(src), sys.byteorder),
           "daddr": int.from_bytes(socket.inet_aton(dst), sys.byteorder),
           "sport": int.from_bytes(sport.to_bytes(2, "big"), sys.byteorder),
           "dport": int.from_bytes(dport.to_bytes(2, "big"), sys.byteorder)}
    value = pipe.maps["conntrack"].lookup(key)
    return key, (to_dict(value) if value is not None else None)


def test_tcp_conntrack_transitions_and_replies(sg):
    pipe, ifs = sg
    assert to_b(pipe, ifs, TCP(sport=1234, dport=80, flags="S")).verdict == "XDP_REDIRECT"
    key, e = ct_entry(pipe, 2, lib.SG_INGRESS, "10.0.0.1", "10.0.0.2", 1234, 80)
    assert e["state"] == lib.CT_SYN_SENT
    # B's reply is not allowed by B's egress rules, but it is the reply of a tracked flow
    reply = send(pipe, ifs[1], MAC_B, MAC_A, IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=1234, flags="SA"))
    assert reply.verdict == "XDP_REDIRECT"
    assert ct_entry(pipe, 2, lib.SG_INGRESS, "10.0.0.1", "10.0.0.2", 1234, 80)[1]["state"] == lib.CT_ESTABLISHED
    assert to_b(pipe, ifs, TCP(sport=1234, dport=80, flags="A")).verdict == "XDP_REDIRECT"
    assert to_b(pipe, ifs, TCP(sport=1234, dport=80, flags="FA")).verdict == "XDP_REDIRECT"
    assert ct_entry(pipe, 2, lib.SG_INGRESS, "10.0.0.1", "10.0.0.2", 1234, 80)[1]["state"] == lib.CT_FIN_ORIG
    fin = send(pipe, ifs[1], MAC_B, MAC_A, IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=1234, flags="FA"))
    assert fin.verdict == "XDP_REDIRECT"
    assert ct_entry(pipe, 2, lib.SG_INGRESS, "10.0.0.1", "10.0.0.2", 1234, 80)[1]["state"] == lib.CT_CLOSING
    # an unsolicited "reply" with no tracked flow is refused
    stray = send(pipe, ifs[1], MAC_B, MAC_A, IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=4321, flags="A"))
    assert stray.drop_reason == "DROP_SG_EGRESS"


def test_tcp_segment_of_no_tracked_flow_opens_nothing(sg):
    """No mid-stream pickup: after a flush, neither end's next segment re-opens the flow."""
    pipe, ifs = sg
    for flags in ("A", "PA", "SA", "R", "FA"):
        res = to_b(pipe, ifs, TCP(sport=1300, dport=80, flags=flags))  # port 80 is allowed for a SYN
        assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_CT_NOT_SYN"), flags
        assert ct_entry(pipe, 2, lib.SG_INGRESS, "10.0.0.1", "10.0.0.2", 1300, 80)[1] is None
    assert to_b(pipe, ifs, TCP(sport=1300, dport=80, flags="S")).verdict == "XDP_REDIRECT"


def test_expired_entries_no_longer_carry_replies(sg):
    pipe, ifs = sg
    to_b(pipe, ifs, UDP(sport=777, dport=53))
    key, e = ct_entry(pipe, 2, lib.SG_INGRESS, "10.0.0.1", "10.0.0.2", 777, 53, proto=17)
    assert e["state"] == lib.CT_UDP
    e["last_seen_ns"] -= (lib.CT_TIMEOUT_UDP + 1) * 1_000_000_000
    pipe.maps["conntrack"].update(key, e)
    reply = send(pipe, ifs[1], MAC_B, MAC_A, IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=53, dport=777))
    assert reply.drop_reason == "DROP_SG_EGRESS"
    assert ct_entry(pipe, 2, lib.SG_INGRESS, "10.0.0.1", "10.0.0.2", 777, 53, proto=17)[1] is None


def test_icmp_echo_reply_and_related_error_pass(sg):
    pipe, ifs = sg
    assert to_b(pipe, ifs, ICMP(type=8, id=42)).verdict == "XDP_REDIRECT"
    reply = send(pipe, ifs[1], MAC_B, MAC_A, IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0, id=42))
    assert reply.verdict == "XDP_REDIRECT"
    # B opened TCP to A:5000 (allowed); A's "port unreachable" about it must come back in
    send(pipe, ifs[1], MAC_B, MAC_A, IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=3000, dport=5000, flags="S"))
    error = to_b(pipe, ifs, ICMP(type=3, code=3) / IPerror(src="10.0.0.2", dst="10.0.0.1") /
                 TCPerror(sport=3000, dport=5000, flags="S"))
    assert error.verdict == "XDP_REDIRECT"
    unrelated = to_b(pipe, ifs, ICMP(type=3, code=3) / IPerror(src="10.0.0.2", dst="10.0.0.1") /
                     TCPerror(sport=3001, dport=5000, flags="S"))
    assert unrelated.drop_reason == "DROP_SG_INGRESS"


def test_full_conntrack_denies_new_flows(sg):
    pipe, ifs = sg
    ct = pipe.maps["conntrack"]
    filler = [({"port_key": 99, "direction": 0, "saddr": i, "daddr": 1, "sport": 1, "dport": 1, "proto": 17},
               {"last_seen_ns": time.monotonic_ns(), "state": lib.CT_UDP}) for i in range(ct.info.max_entries)]
    ct.update_batch(filler)
    res = to_b(pipe, ifs, TCP(sport=5555, dport=80, flags="S"))
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_CT_FULL")
    assert res.counters["drops"]["DROP_CT_FULL"]["packets"] == 1


def test_port_security_off_means_no_filtering(pipeline, test_iface):
    ifs = [test_iface()[1] for _ in range(3)]
    program(pipeline, make_view(*ifs, b_portsec=False))
    res = send(pipeline, ifs[0], MAC_A, MAC_B, IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=9999, flags="S"))
    assert res.verdict == "XDP_REDIRECT" and "STAGE_SG_INGRESS" in res.stages


def test_removed_rule_ends_the_flows_it_allowed(pipeline, test_iface):
    ifs = [test_iface()[1] for _ in range(3)]
    view = make_view(*ifs)
    program(pipeline, view)
    assert to_b(pipeline, ifs, TCP(sport=4444, dport=85, flags="S")).verdict == "XDP_REDIRECT"
    assert to_b(pipeline, ifs, UDP(sport=4444, dport=53)).verdict == "XDP_REDIRECT"
    without_tcp = make_view(*ifs, rules=[r for r in RULES if r["id"] != "r1"])
    program(pipeline, without_tcp)
    ct = pipeline.maps["conntrack"]
    assert len(ct) == 2
    SecurityGroupApp().upkeep(without_tcp, pipeline.maps)  # what the agent runs once the entries are in
    assert len(ct) == 1  # the TCP flow goes, the UDP one stays
    assert to_b(pipeline, ifs, TCP(sport=4444, dport=85, flags="A")).drop_reason == "DROP_SG_INGRESS"
    assert to_b(pipeline, ifs, UDP(sport=4444, dport=53)).verdict == "XDP_REDIRECT"


def sg_entry_count(pipe):
    return sum(len(pipe.maps[name]) for name in ("sg_remote", "sg_l4"))


def test_ports_with_the_same_groups_share_one_policy(pipeline, test_iface):
    ifs = [test_iface()[1] for _ in range(3)]
    view = make_view(*ifs, rules=RULES + [rule("r6", "friends", "egress")])
    view.ports["a"].update(security_groups=["web"])
    view.ports["c"].update(security_groups=["friends"], port_security_enabled=True)
    program(pipeline, view)
    only_b = sg_entry_count(pipeline)
    view.ports["a"].update(port_security_enabled=True)
    view.derived.clear()  # a new pass
    program(pipeline, view)
    policy = {key: to_dict(pipeline.maps["sg_ports"].lookup(key))["policy"] for key in (1, 2, 3)}
    assert policy[1] == policy[2] != policy[3]
    assert sg_entry_count(pipeline) == only_b  # one copy of web's entries for a and b
    # the shared rules apply to each port, with its own connections
    syn = send(pipeline, ifs[2], MAC_C, MAC_A, IP(src="10.0.0.33", dst="10.0.0.1") / TCP(sport=1, dport=80, flags="S"))
    assert syn.verdict == "XDP_REDIRECT" and syn.meta["out_ifindex"] == ifs[0]
    assert ct_entry(pipeline, 1, lib.SG_INGRESS, "10.0.0.33", "10.0.0.1", 1, 80)[1] is not None
    assert ct_entry(pipeline, 2, lib.SG_INGRESS, "10.0.0.33", "10.0.0.1", 1, 80)[1] is None
    no = send(pipeline, ifs[2], MAC_C, MAC_A, IP(src="10.0.0.33", dst="10.0.0.1") / TCP(sport=1, dport=91, flags="S"))
    assert no.drop_reason == "DROP_SG_INGRESS"
    to_c = send(pipeline, ifs[0], MAC_A, MAC_C, IP(src="10.0.0.1", dst="10.0.0.33") / TCP(sport=1, dport=80, flags="S"))
    assert to_c.drop_reason == "DROP_SG_EGRESS"  # web's egress allows only tcp/5000 to 10.0.0.1
