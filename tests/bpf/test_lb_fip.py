"""A VIP reached from outside through a floating IP on its port, through BPF_PROG_TEST_RUN.
At the floating IP's chassis (ch1): it answers ARP and ping; outside clients are balanced
over every member and routed in; the members' answers leave as the floating IP, from a
local member directly and from a remote one tunnelled back; anything else for the
external NIC from the tunnel is dropped; the floating IP is served to outside frames
only and the VIP to inside ones. At a chassis hosting only a member (ch2): its answers
to outside clients go home to ch1, other answers go their usual way."""
import socket

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from dfxdp.datapath.libbpf import lib
from dfxdp.datapath.pktrun import run_packet

from .lb_fixtures import (BLUE, CLIENT, CLIENT_G, CLIENT_MAC, EXT, FIP, FIP_MAC, M_GREEN, M_LOCAL, M_LOCAL_MAC,
                          M_REMOTE, M_REMOTE_MAC, MEMBER_PORT, OUTSIDE, OUTSIDE_MAC, RIF_B, RIF_G, TUNNEL_LOCAL,
                          TUNNEL_REMOTE, UNDERLAY_MAC, UNDERLAY_PEER_MAC, VIP, VIP_MAC, Programmer, as_chassis_2,
                          build_view, with_floating_ip)
from .test_l3 import valid_checksums

NAMES = ("client", "client_g", "member", "member_g", "underlay", "external")


@pytest.fixture
def home(pipeline, test_iface):
    """ch1: the floating IP's chassis."""
    ifs = dict(zip(NAMES, (test_iface()[1] for _ in NAMES)))
    view = with_floating_ip(build_view(*(ifs[n] for n in NAMES[:5])), ifs["external"])
    Programmer(pipeline)(view)
    return pipeline, ifs


@pytest.fixture
def member_chassis(pipeline, test_iface):
    """ch2: hosts M_REMOTE only."""
    ifs = dict(zip(NAMES, (test_iface()[1] for _ in NAMES)))
    view = as_chassis_2(with_floating_ip(build_view(*(ifs[n] for n in NAMES[:5])), ifs["external"]),
                        ifs["member"], ifs["underlay"])
    Programmer(pipeline)(view)
    return pipeline, ifs


def run(world, frame, iface, entry="port"):
    pipe, ifs = world
    return run_packet(pipe, frame, ingress_ifindex=ifs[iface], entry=entry)


def from_outside(sport, dport=80, dst=FIP, syn=True):
    return Ether(src=OUTSIDE_MAC, dst=FIP_MAC) / IP(src=OUTSIDE, dst=dst) / \
        TCP(sport=sport, dport=dport, flags="S" if syn else "A") / b"GET /"


def inner(res):
    out = res.packet
    return Ether(bytes(out[VXLAN].payload)) if out.haslayer(VXLAN) else out


def tunnelled(frame, vni, src=TUNNEL_REMOTE, dst=TUNNEL_LOCAL):
    return Ether(src=UNDERLAY_PEER_MAC, dst=UNDERLAY_MAC) / IP(src=src, dst=dst) / UDP(sport=50000, dport=4789) / \
        VXLAN(vni=vni, flags="Instance") / frame


def be(address):
    return int.from_bytes(socket.inet_aton(address), "little")


def first_flow_to(world, address):
    for sport in range(41000, 41200):
        res = run(world, from_outside(sport), "external")
        if res.verdict == "XDP_REDIRECT" and inner(res)[IP].dst == address:
            return sport
    raise AssertionError(f"no flow from outside went to {address}")


def answer(member, member_mac, sport, dmac=RIF_B, dst=OUTSIDE):
    return Ether(src=member_mac, dst=dmac) / IP(src=member, dst=dst) / \
        TCP(sport=MEMBER_PORT, dport=sport, flags="SA") / b"200 OK"


def test_floating_ip_answers_arp_on_the_external_network(home):
    res = run(home, Ether(src=OUTSIDE_MAC, dst="ff:ff:ff:ff:ff:ff") /
              ARP(op=1, hwsrc=OUTSIDE_MAC, psrc=OUTSIDE, pdst=FIP), "external")
    assert res.verdict == "XDP_REDIRECT" and res.packet[ARP].op == 2 and res.packet[ARP].hwsrc == FIP_MAC


def test_floating_ip_answers_ping_from_outside(home):
    res = run(home, Ether(src=OUTSIDE_MAC, dst=FIP_MAC) / IP(src=OUTSIDE, dst=FIP) / ICMP(id=3, seq=1), "external")
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == home[1]["external"]
    assert (res.packet[IP].src, res.packet[IP].dst, res.packet[ICMP].type) == (FIP, OUTSIDE, 0)


def test_outside_clients_are_balanced_over_every_member_and_routed_in(home):
    pipe = home[0]
    seen = set()
    for sport in range(20000, 20060):
        res = run(home, from_outside(sport), "external")
        assert res.verdict == "XDP_REDIRECT", res.drop_reason
        frame = inner(res)
        assert valid_checksums(bytes(frame)) and frame[IP].src == OUTSIDE and frame[TCP].dport == MEMBER_PORT
        assert frame[IP].ttl == 63 and ["STAGE_LB", "STAGE_L3"] == [s for s in res.stages if s in ("STAGE_LB",
                                                                                                       "STAGE_L3")]
        assert frame[Ether].src == (RIF_G if frame[IP].dst == M_GREEN else RIF_B)  # routed by the router
        assert res.packet.haslayer(VXLAN) == (frame[IP].dst == M_REMOTE)
        back = pipe.maps["lb_reverse"].lookup({"saddr": be(frame[IP].dst), "daddr": be(OUTSIDE),
                                               "sport": socket.htons(MEMBER_PORT), "dport": socket.htons(sport),
                                               "proto": socket.IPPROTO_TCP})
        assert (back.addr, back.port, back.flags) == (be(FIP), socket.htons(80), lib.LB_NAT_F_FLOATING)
        seen.add(frame[IP].dst)
    assert seen == {M_LOCAL, M_REMOTE, M_GREEN}


def test_an_outside_flow_keeps_its_member(home):
    sport = first_flow_to(home, M_GREEN)
    assert all(inner(run(home, from_outside(sport, syn=False), "external"))[IP].dst == M_GREEN for _ in range(3))


def test_local_member_answers_as_the_floating_ip(home):
    sport = first_flow_to(home, M_LOCAL)
    res = run(home, answer(M_LOCAL, M_LOCAL_MAC, sport), "member")
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == home[1]["external"]
    out = res.packet
    assert (out[IP].src, out[TCP].sport, out[IP].dst, out[TCP].dport) == (FIP, 80, OUTSIDE, sport)
    assert (out[Ether].src, out[Ether].dst, out[IP].ttl) == (FIP_MAC, OUTSIDE_MAC, 63) and valid_checksums(res.data)


def test_remote_member_answer_comes_home_and_leaves_as_the_floating_ip(home):
    sport = first_flow_to(home, M_REMOTE)
    back = tunnelled(answer(M_REMOTE, M_REMOTE_MAC, sport, dmac=FIP_MAC), EXT["key"])
    res = run(home, back, "underlay", entry="underlay")
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == home[1]["external"]
    assert res.stages == ["STAGE_ENTRY_UNDERLAY", "STAGE_LB", "STAGE_OUTPUT"]
    out = res.packet
    assert (out[IP].src, out[TCP].sport, out[IP].dst, out[TCP].dport) == (FIP, 80, OUTSIDE, sport)
    assert (out[Ether].src, out[Ether].dst) == (FIP_MAC, OUTSIDE_MAC) and valid_checksums(res.data)


def test_tunnelled_frame_for_the_external_nic_without_a_flow_is_dropped(home):
    pinged = Ether(src=M_REMOTE_MAC, dst=FIP_MAC) / IP(src=M_REMOTE, dst=OUTSIDE) / ICMP(id=4, seq=1)
    for frame in (answer(M_REMOTE, M_REMOTE_MAC, 5555, dmac=FIP_MAC), pinged):  # no flow; not TCP/UDP
        res = run(home, tunnelled(frame, EXT["key"]), "underlay", entry="underlay")
        assert res.verdict == "XDP_DROP" and res.drop_reason == "DROP_LB_NO_FLOW"


def test_answer_without_a_known_next_hop_is_dropped(home):
    sport = first_flow_to(home, M_LOCAL)
    home[0].maps["ext_neigh"].delete(be(OUTSIDE))
    res = run(home, answer(M_LOCAL, M_LOCAL_MAC, sport), "member")
    assert res.verdict == "XDP_DROP" and res.drop_reason == "DROP_NO_ROUTE"


def test_answer_whose_ttl_runs_out_is_dropped(home):
    sport = first_flow_to(home, M_LOCAL)
    frame = answer(M_LOCAL, M_LOCAL_MAC, sport)
    frame[IP].ttl = 1
    res = run(home, Ether(bytes(frame)), "member")
    assert res.verdict == "XDP_DROP" and res.drop_reason == "DROP_TTL_EXCEEDED"


def test_floating_ip_is_balanced_for_outside_frames_only(home):
    pipe = home[0]
    inside = Ether(src=CLIENT_MAC, dst=RIF_B) / IP(src=CLIENT, dst=FIP) / TCP(sport=22000, dport=80, flags="S")
    res = run(home, inside, "client")
    assert "STAGE_LB" in res.stages and res.meta["flags"] & lib.PKT_F_LB_DNAT == 0
    assert pipe.maps["lb_flows"].lookup({"saddr": be(CLIENT), "daddr": be(FIP), "sport": socket.htons(22000),
                                         "dport": socket.htons(80), "proto": socket.IPPROTO_TCP}) is None
    # and the VIP itself is not balanced for a frame from outside
    outside = Ether(src=OUTSIDE_MAC, dst=VIP_MAC) / IP(src=OUTSIDE, dst=VIP) / TCP(sport=22001, dport=80, flags="S")
    res = run(home, outside, "external")
    assert "STAGE_LB" in res.stages and res.verdict != "XDP_REDIRECT"
    assert pipe.maps["lb_flows"].lookup({"saddr": be(OUTSIDE), "daddr": be(VIP), "sport": socket.htons(22001),
                                         "dport": socket.htons(80), "proto": socket.IPPROTO_TCP}) is None
    ping = Ether(src=OUTSIDE_MAC, dst=VIP_MAC) / IP(src=OUTSIDE, dst=VIP) / ICMP(id=5, seq=1)
    assert run(home, ping, "external").verdict == "XDP_PASS"  # not answered by the VIP either


def test_member_answer_to_an_outside_client_goes_home(member_chassis):
    res = run(member_chassis, answer(M_REMOTE, M_REMOTE_MAC, 43000), "member")
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == member_chassis[1]["underlay"]
    out = res.packet
    assert out[IP].dst == TUNNEL_LOCAL and out[VXLAN].vni == EXT["key"]
    frame = inner(res)
    assert frame[Ether].dst == FIP_MAC and (frame[IP].src, frame[IP].dst) == (M_REMOTE, OUTSIDE)
    assert res.stages[-2:] == ["STAGE_LB", "STAGE_OUTPUT"]


def test_member_answers_inside_go_their_usual_way(member_chassis):
    bridged = answer(M_REMOTE, M_REMOTE_MAC, 43001, dmac=CLIENT_MAC, dst=CLIENT)
    res = run(member_chassis, bridged, "member")
    assert res.packet[VXLAN].vni == BLUE["key"] and inner(res)[Ether].dst == CLIENT_MAC
    routed = answer(M_REMOTE, M_REMOTE_MAC, 43002, dst=CLIENT_G)  # to the router, for green
    res = run(member_chassis, routed, "member")
    assert "STAGE_L3" in res.stages and inner(res)[Ether].src == RIF_G
    other = Ether(src=M_REMOTE_MAC, dst=RIF_B) / IP(src=M_REMOTE, dst=OUTSIDE) / TCP(sport=22, dport=43003)
    res = run(member_chassis, other, "member")  # not the member's service port
    assert "STAGE_L3" in res.stages and not res.packet.haslayer(VXLAN)


def test_a_member_with_a_floating_ip_of_its_own_answers_through_it(member_chassis):
    member_chassis[0].maps["fip_snat"].update({"net_key": BLUE["key"], "fixed_ip": be(M_REMOTE)},
                                              {"floating_ip": be("198.19.0.60"), "mac": [2, 0, 0, 0, 0, 0x60]})
    res = run(member_chassis, answer(M_REMOTE, M_REMOTE_MAC, 43004), "member")
    assert "STAGE_L3" in res.stages and not res.packet.haslayer(VXLAN)
