"""IGMP snooping: parsing reports and leaves (v1/v2/v3, malformed ones refused), the
membership state machine (join, refresh, leave, age out on the RFC 3376 timers), and
the flows it yields (local members, chassis with members, nothing across networks)."""
import socket
import struct

import pytest
from scapy.contrib.igmp import IGMP
from scapy.contrib.igmpv3 import IGMPv3, IGMPv3mq
from scapy.layers.inet import IP
from scapy.packet import Raw
from scapy.layers.l2 import Ether

from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.apps.flood import TABLE_FLOOD, TABLE_L2, TABLE_MULTICAST
from dfxdp.controller.apps.ra import TABLE_ROUTER_SOLICIT
from dfxdp.controller.apps.igmp import (GROUP_MEMBERSHIP_INTERVAL, GroupChange, IgmpApp, MalformedIgmp, Membership,
                                        _checksum, general_query, parse_igmp)
from dfxdp.controller.binding import tap_name

TUNNEL = 9
G1, G2 = "239.1.1.1", "239.2.2.2"


def frame(igmp) -> bytes:
    return bytes(Ether(dst="01:00:5e:00:00:16") / IP(src="10.0.0.5", dst="224.0.0.22", ttl=1, proto=2) / igmp)


def v2(kind: int, group: str) -> bytes:
    return frame(IGMP(type=kind, gaddr=group))


def v3(*records) -> bytes:
    """An IGMPv3 report (RFC 3376 4.2) built by hand: records of (type, group, sources)."""
    body = b"".join(struct.pack("!BBH4s", t, 0, len(s), socket.inet_aton(g)) + b"".join(map(socket.inet_aton, s))
                    for t, g, s in records)
    igmp = struct.pack("!BBHHH", 0x22, 0, 0, 0, len(records)) + body
    igmp = igmp[:2] + _checksum(igmp).to_bytes(2, "big") + igmp[4:]
    return frame(Raw(igmp))


def test_v2_report_and_leave():
    assert parse_igmp(v2(0x16, G1)) == [GroupChange(G1, True)]
    assert parse_igmp(v2(0x17, G1)) == [GroupChange(G1, False)]
    assert parse_igmp(v2(0x12, G2)) == [GroupChange(G2, True)]  # v1 report


def test_v3_records():
    changes = parse_igmp(v3((4, G1, []), (3, G2, []), (2, "239.3.3.3", []), (1, "239.4.4.4", ["10.0.0.9"]),
                            (6, "239.5.5.5", ["10.0.0.9"]), (5, "239.6.6.6", ["10.0.0.9"])))
    assert changes == [GroupChange(G1, True), GroupChange(G2, False), GroupChange("239.3.3.3", True),
                       GroupChange("239.4.4.4", True), GroupChange("239.6.6.6", True)]


def test_queries_change_nothing():
    assert parse_igmp(frame(IGMPv3(type=0x11) / IGMPv3mq())) == []
    assert parse_igmp(general_query()) == []  # ours is well formed (checksums included)


@pytest.mark.parametrize("bad", [
    b"\x01\x00\x5e" + bytes(20),                                            # too short
    bytes(Ether() / IP(proto=17) / (b"\x16\x00" + bytes(6))),                # not IGMP
    v2(0x16, G1)[:-2],                                                       # cut short
    v2(0x16, G1)[:-4] + bytes([239, 1, 1, 2]),                               # checksum wrong
    v2(0x16, "10.0.0.1"),                                                    # not a group
    v2(0x33, G1),                                                            # unknown type
    v3((9, G1, [])),                                                         # unknown record type
    v3((4, G1, ["10.0.0.1"]))[:-4],                                          # sources cut short
])
def test_malformed_is_refused(bad):
    with pytest.raises(MalformedIgmp):
        parse_igmp(bad)


def test_v3_record_count_beyond_the_message_is_refused():
    good = bytearray(v3((4, G1, [])))
    igmp = 14 + (good[14] & 0x0F) * 4
    good[igmp + 7] = 2  # two records announced, one present
    good[igmp + 2:igmp + 4] = b"\0\0"
    good[igmp + 2:igmp + 4] = _checksum(bytes(good[igmp:])).to_bytes(2, "big")
    with pytest.raises(MalformedIgmp, match="cut short"):
        parse_igmp(bytes(good))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_join_refresh_leave_and_age_out():
    clock = Clock()
    m = Membership(clock)
    assert m.learn("blue", "p1", [GroupChange(G1, True)])
    assert not m.learn("blue", "p1", [GroupChange(G1, True)])  # a refresh is no change
    assert m.learn("blue", "p2", [GroupChange(G1, True)])
    assert m.members() == {("blue", G1): {"p1", "p2"}}
    assert m.learn("blue", "p1", [GroupChange(G1, False)])
    assert not m.learn("blue", "p1", [GroupChange(G1, False)])  # leaving twice
    assert m.members() == {("blue", G1): {"p2"}}
    clock.now += GROUP_MEMBERSHIP_INTERVAL - 1
    assert m.members() == {("blue", G1): {"p2"}}
    clock.now += 1
    assert m.members() == {}  # 260 s without a report
    assert m.learn("blue", "p2", [GroupChange(G1, True)])  # a join after expiry is a change again


def test_link_local_is_not_snooped_and_unbound_ports_are_forgotten():
    m = Membership(Clock())
    assert not m.learn("blue", "p1", [GroupChange("224.0.0.251", True)])
    m.learn("blue", "p1", [GroupChange(G1, True)])
    assert m.members({"p2": 3}) == {}


def view(remote_groups=None):
    nets = {"blue": {"id": "blue", "key": 5}, "red": {"id": "red", "key": 6}}
    ports = {pid: {"id": pid, "network_id": net, "binding:host_id": host}
             for pid, net, host in (("b1", "blue", "ch1"), ("b2", "blue", "ch1"), ("r1", "red", "ch1"),
                                    ("b3", "blue", "ch2"))}
    local = {"b1": 11, "b2": 12, "r1": 13}
    chassis = {f"ch{i}": {"name": f"ch{i}", "tunnel_ip": f"198.18.0.{10 + i}"} for i in (1, 2, 3)}
    chassis["ch2"]["igmp_groups"] = remote_groups or {}
    ofports = {tap_name(pid): n - 10 for pid, n in local.items()} | {"vxlan0": TUNNEL}
    return LocalView(chassis="ch1", tunnel_ip="198.18.0.11", networks=nets, ports=ports, local_ports=local,
                     chassis_by_name=chassis, ofports=ofports)


def flows_for(app, v, group):
    return {(f.priority, dict(f.match).get("metadata"), dict(f.match).get("in_port")): f
            for f in app.flows(v) if dict(f.match).get("ipv4_dst") == group}


def outputs(flow):
    return [a[1] for a in flow.actions if a[0] == "output"]


def test_flows_follow_local_and_remote_members():
    app, v = IgmpApp(Clock()), view({"blue": [G1]})
    assert app.on_packet_in(v, "b1", v2(0x16, G1))
    assert not app.on_packet_in(v, "r1", b"garbage")  # malformed: ignored
    f = flows_for(app, v, G1)
    assert set(f) == {(100, 5, None), (110, 5, TUNNEL)}  # blue only: red has no member
    assert outputs(f[(100, 5, None)]) == [1, TUNNEL]
    assert [a[2] for a in f[(100, 5, None)].actions if a[:2] == ("set_field", "tun_ipv4_dst")] == ["198.18.0.12"]
    assert outputs(f[(110, 5, TUNNEL)]) == [1]  # from the tunnel: local members only
    assert app.chassis_facts(v) == {"igmp_groups": {"blue": [G1]}}
    assert app.on_packet_in(v, "b1", v2(0x17, G1))
    f = flows_for(app, v, G1)
    assert outputs(f[(100, 5, None)]) == [TUNNEL] and outputs(f[(110, 5, TUNNEL)]) == []
    assert app.chassis_facts(v) == {"igmp_groups": {}}
    assert app.on_packet_in(v, "b2", v2(0x16, G2))  # a group no other chassis has
    assert outputs(flows_for(app, v, G2)[(100, 5, None)]) == [2]


def test_table_shape_igmp_to_controller_link_local_flooded_unjoined_dropped():
    app, v = IgmpApp(Clock()), view()
    flows = list(app.flows(v))
    assert all(f.table == TABLE_MULTICAST for f in flows)
    assert TABLE_L2 < TABLE_MULTICAST < TABLE_FLOOD  # OpenFlow's goto_table only goes forward
    by = {(f.priority, dict(f.match).get("metadata")): f for f in flows if "in_port" not in dict(f.match)}
    for key in (5, 6):
        assert by[(300, key)].actions == (("controller",), ("goto", TABLE_FLOOD))
        assert dict(by[(200, key)].match)["ipv4_dst"] == ("224.0.0.0", "255.255.255.0")
        assert by[(50, key)].actions == ()  # a group nobody joined
    assert by[(0, None)].actions == (("goto", TABLE_ROUTER_SOLICIT),)  # the rest: on to be flooded
    # IGMP from the tunnel is flooded but not learned (the chassis it came from publishes it)
    from_tunnel = [f for f in flows if f.priority == 310]
    assert {dict(f.match)["in_port"] for f in from_tunnel} == {TUNNEL}
    assert all(("controller",) not in f.actions for f in from_tunnel)


def test_general_query_bytes():
    q = general_query()
    assert q[:6] == bytes.fromhex("01005e000001")
    pkt = Ether(q)
    assert pkt[IP].dst == "224.0.0.1" and pkt[IP].src == "0.0.0.0" and pkt[IP].ttl == 1 and pkt[IP].proto == 2
