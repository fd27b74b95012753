"""stage_lb through BPF_PROG_TEST_RUN: the VIP answers ARP and ping; new flows
are steered by the pool's ring (5-tuple hash, source IP, round robin), DNATed
with valid checksums and pinned; replies from a local or a remote member are
reverse-NATed; established flows survive ring changes; an empty pool drops;
the rings are swapped whole."""
import socket

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from dfxdp.controller.maglev import RING_SIZE
from dfxdp.datapath.libbpf import BpfError, lib
from dfxdp.datapath.pktrun import run_packet

from .lb_fixtures import (BLUE, CLIENT, CLIENT_G, CLIENT_G_MAC, CLIENT_MAC, M_GREEN, M_GREEN_MAC, M_LOCAL,
                          M_LOCAL_MAC, M_REMOTE, M_REMOTE_MAC, MEMBER_PORT, RIF_B, RIF_G, TUNNEL_LOCAL,
                          TUNNEL_REMOTE, UNDERLAY_MAC, UNDERLAY_PEER_MAC, VIP, VIP_MAC, Programmer, build_view)
from .test_l3 import valid_checksums

# where each member's frames end up: bridged, tunnelled, routed (source: the router's port on green)
MEMBER_MACS = {M_LOCAL: (CLIENT_MAC, M_LOCAL_MAC), M_REMOTE: (CLIENT_MAC, M_REMOTE_MAC), M_GREEN: (RIF_G, M_GREEN_MAC)}


@pytest.fixture
def world(pipeline, test_iface):
    ifs = [test_iface()[1] for _ in range(5)]
    view = build_view(*ifs)
    program = Programmer(pipeline)
    program(view)
    return pipeline, view, program, dict(zip(("client", "client_g", "member", "member_g", "underlay"), ifs))


def to_vip(sport, dport=80, proto=TCP, src=CLIENT, smac=CLIENT_MAC, dmac=VIP_MAC, syn=True):
    """A frame to the VIP: a TCP SYN (a new connection) unless syn=False (a segment of one under way)."""
    l4 = TCP(sport=sport, dport=dport, flags="S" if syn else "A") if proto is TCP else proto(sport=sport, dport=dport)
    return Ether(src=smac, dst=dmac) / IP(src=src, dst=VIP) / l4 / b"hello"


def send(world, frame, iface="client", entry="port"):
    pipe, _, _, ifs = world
    return run_packet(pipe, frame, ingress_ifindex=ifs[iface], entry=entry)


def delivered(res):
    """The frame as its destination gets it (the inner one when tunnelled)."""
    out = res.packet
    return Ether(bytes(out[VXLAN].payload)) if out.haslayer(VXLAN) else out


def member_of(res):
    """Where a DNATed frame went: (member address, port), checked for valid checksums."""
    frame = delivered(res)
    assert valid_checksums(bytes(frame)), frame.show(dump=True)
    return frame[IP].dst, frame[IP].payload.dport


def test_vip_answers_arp(world):
    res = send(world, Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") /
               ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT, pdst=VIP))
    assert res.verdict == "XDP_REDIRECT" and res.packet[ARP].op == 2 and res.packet[ARP].hwsrc == VIP_MAC


def test_vip_answers_ping(world):
    res = send(world, Ether(src=CLIENT_MAC, dst=VIP_MAC) / IP(src=CLIENT, dst=VIP) / ICMP(id=9, seq=1) / b"x")
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == world[3]["client"]
    out = res.packet
    assert (out[IP].src, out[IP].dst, out[ICMP].type, out[Ether].src) == (VIP, CLIENT, 0, VIP_MAC)
    assert valid_checksums(res.data) and "STAGE_LB" in res.stages


def test_new_flows_spread_over_members_each_sent_to_its_next_hop(world):
    seen = {}
    for sport in range(20000, 20060):
        res = send(world, to_vip(sport))
        assert res.verdict == "XDP_REDIRECT"
        addr, dport = member_of(res)
        frame = delivered(res)
        assert dport == MEMBER_PORT and (frame.src, frame.dst) == MEMBER_MACS[addr]
        assert (addr == M_GREEN) == ("STAGE_L3" in res.stages and frame[IP].ttl == 63)
        seen[addr] = seen.get(addr, 0) + 1
    assert set(seen) == {M_LOCAL, M_REMOTE, M_GREEN}


def test_a_flow_is_pinned_both_ways(world):
    pipe = world[0]
    res = send(world, to_vip(31000))
    addr, port = member_of(res)
    flow = pipe.maps["lb_flows"].lookup({"saddr": _be(CLIENT), "daddr": _be(VIP),
                                         "sport": socket.htons(31000), "dport": socket.htons(80),
                                         "proto": socket.IPPROTO_TCP})
    assert flow is not None and (flow.member.addr, flow.member.port) == (_be(addr), socket.htons(port))
    assert flow.last_seen_ns > 0
    back = pipe.maps["lb_reverse"].lookup({"saddr": _be(addr), "daddr": _be(CLIENT), "sport": socket.htons(port),
                                           "dport": socket.htons(31000), "proto": socket.IPPROTO_TCP})
    assert back is not None and (back.addr, back.port) == (_be(VIP), socket.htons(80))


def _be(address):
    return int.from_bytes(socket.inet_aton(address), "little")


def _first_flow_to(world, address, dport=80, proto=TCP):
    for sport in range(40000, 40200):
        res = send(world, to_vip(sport, dport, proto))
        if res.verdict == "XDP_REDIRECT" and member_of(res)[0] == address:
            return sport
    raise AssertionError(f"no flow went to {address}")


def test_local_member_reply_leaves_as_the_vip(world):
    sport = _first_flow_to(world, M_LOCAL)
    reply = Ether(src=M_LOCAL_MAC, dst=CLIENT_MAC) / IP(src=M_LOCAL, dst=CLIENT) / \
        TCP(sport=MEMBER_PORT, dport=sport, flags="SA") / b"world"
    res = send(world, reply, iface="member")
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == world[3]["client"]
    out = res.packet
    assert (out[IP].src, out[TCP].sport, out[IP].dst, out[TCP].dport) == (VIP, 80, CLIENT, sport)
    assert valid_checksums(res.data)


def test_remote_member_reply_is_reverse_natted_at_the_client_chassis(world):
    sport = _first_flow_to(world, M_REMOTE)
    res = send(world, to_vip(sport))
    out = res.packet
    assert out[IP].dst == TUNNEL_REMOTE and Ether(bytes(out[VXLAN].payload))[Ether].dst == M_REMOTE_MAC
    reply = Ether(src=M_REMOTE_MAC, dst=CLIENT_MAC) / IP(src=M_REMOTE, dst=CLIENT) / \
        TCP(sport=MEMBER_PORT, dport=sport, flags="SA")
    tunnelled = Ether(src=UNDERLAY_PEER_MAC, dst=UNDERLAY_MAC) / IP(src=TUNNEL_REMOTE, dst=TUNNEL_LOCAL) / \
        UDP(sport=50000, dport=4789) / VXLAN(vni=BLUE["key"], flags="Instance") / reply
    res = send(world, tunnelled, iface="underlay", entry="underlay")
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == world[3]["client"]
    assert res.stages == ["STAGE_ENTRY_UNDERLAY", "STAGE_LB", "STAGE_SG_INGRESS", "STAGE_OUTPUT"]
    out = res.packet
    assert (out[IP].src, out[TCP].sport, out[IP].dst) == (VIP, 80, CLIENT) and valid_checksums(res.data)


def test_tunnelled_frames_of_no_balanced_flow_are_untouched(world):
    frame = Ether(src=M_REMOTE_MAC, dst=CLIENT_MAC) / IP(src=M_REMOTE, dst=CLIENT) / TCP(sport=22, dport=5555)
    tunnelled = Ether(src=UNDERLAY_PEER_MAC, dst=UNDERLAY_MAC) / IP(src=TUNNEL_REMOTE, dst=TUNNEL_LOCAL) / \
        UDP(sport=50000, dport=4789) / VXLAN(vni=BLUE["key"], flags="Instance") / frame
    res = send(world, tunnelled, iface="underlay", entry="underlay")
    assert res.verdict == "XDP_REDIRECT" and res.data == bytes(frame)


def test_routed_client_reaches_the_vip_through_the_router(world):
    frame = to_vip(23000, src=CLIENT_G, smac=CLIENT_G_MAC, dmac=RIF_G)
    res = send(world, frame, iface="client_g")
    assert res.verdict == "XDP_REDIRECT"
    frame = delivered(res)
    assert frame[IP].src == CLIENT_G and member_of(res)[0] in (M_LOCAL, M_REMOTE, M_GREEN)
    assert "STAGE_L3" in res.stages and frame[IP].ttl == 63


def test_established_flow_keeps_its_member_when_it_leaves_the_pool(world):
    pipe, view, program, _ = world
    sport = _first_flow_to(world, M_LOCAL)
    view.members = {i: m for i, m in view.members.items() if m["address"] != M_LOCAL}
    program(view)
    assert member_of(send(world, to_vip(sport, syn=False)))[0] == M_LOCAL  # pinned
    for other in range(50000, 50040):  # new flows no longer go there
        assert member_of(send(world, to_vip(other)))[0] != M_LOCAL
    # a new connection from the remembered 5-tuple is a new flow: it does not go to the gone member
    assert member_of(send(world, to_vip(sport)))[0] != M_LOCAL
    assert member_of(send(world, to_vip(sport, syn=False)))[0] != M_LOCAL  # and is pinned there now


def test_a_flow_picked_up_mid_stream_is_balanced_and_pinned(world):
    first = member_of(send(world, to_vip(32000, syn=False)))[0]
    assert all(member_of(send(world, to_vip(32000, syn=False)))[0] == first for _ in range(3))


def test_failed_member_leaves_the_ring(world):
    pipe, view, program, _ = world
    view.members = {i: {**m, "operating_status": "ERROR"} if m["address"] == M_GREEN else m
                    for i, m in view.members.items()}
    program(view)
    assert all(member_of(send(world, to_vip(sport)))[0] != M_GREEN for sport in range(51000, 51040))


def test_a_udp_flow_idle_past_its_timeout_is_a_new_flow(world):
    pipe = world[0]
    first = member_of(send(world, to_vip(33000, 53, UDP)))[0]
    assert all(member_of(send(world, to_vip(33000, 53, UDP)))[0] == first for _ in range(3))  # pinned
    key = {"saddr": _be(CLIENT), "daddr": _be(VIP), "sport": socket.htons(33000), "dport": socket.htons(53),
           "proto": socket.IPPROTO_UDP}
    flows = pipe.maps["lb_flows"]
    entry = flows.lookup(key)
    entry.last_seen_ns -= (lib.LB_UDP_IDLE_SEC + 1) * 1_000_000_000  # idle for longer than the timeout
    flows.update(key, entry)
    cached = pipe.maps["fast_flows"]  # and so is the fast path's cached forwarding (due for revalidation)
    for fast_key, fast_entry in cached.items():
        fast_entry.decided_ns -= (lib.LB_UDP_IDLE_SEC + 1) * 1_000_000_000
        cached.update(fast_key, fast_entry)
    assert member_of(send(world, to_vip(33000, 53, UDP)))[0] != first  # round robin: the next member


def test_source_ip_sends_one_client_to_one_member(world):
    for dport in (81, 83):  # SOURCE_IP, and ROUND_ROBIN with SOURCE_IP session persistence
        chosen = {member_of(send(world, to_vip(sport, dport)))[0] for sport in range(24000, 24030)}
        assert len(chosen) == 1


def test_round_robin_takes_members_in_turn(world):
    chosen = [member_of(send(world, to_vip(sport, 53, UDP)))[0] for sport in range(25000, 25009)]
    assert all(len(set(chosen[i:i + 3])) == 3 for i in range(0, 9, 3)), chosen


def test_pool_without_members_drops_new_flows(world):
    res = send(world, to_vip(26000, 82))
    assert res.verdict == "XDP_DROP" and res.drop_reason == "DROP_LB_NO_MEMBER"


def test_other_ports_of_the_vip_and_other_addresses_pass_untouched(world):
    frame = to_vip(27000, 9999)
    res = send(world, frame)
    assert "STAGE_LB" in res.stages and res.packet[IP].dst == VIP and res.packet[TCP].dport == 9999
    other = Ether(src=CLIENT_MAC, dst=M_LOCAL_MAC) / IP(src=CLIENT, dst=M_LOCAL) / TCP(sport=1, dport=80)
    res = send(world, other)
    assert res.verdict == "XDP_REDIRECT" and res.data == bytes(other)


def test_udp_without_checksum_keeps_none(world):
    frame = to_vip(28000, 53, UDP)
    frame[UDP].chksum = 0
    res = send(world, Ether(bytes(frame)))
    out = delivered(res)
    assert res.verdict == "XDP_REDIRECT" and out[UDP].chksum == 0 and out[UDP].dport == MEMBER_PORT


def test_later_fragments_are_not_balanced(world):
    frame = Ether(src=CLIENT_MAC, dst=VIP_MAC) / IP(src=CLIENT, dst=VIP, frag=10, proto=6) / (b"x" * 24)
    res = send(world, frame)
    assert "STAGE_LB" in res.stages and res.packet[IP].dst == VIP


def test_truncated_ports_are_dropped_by_validation(world):
    frame = Ether(src=CLIENT_MAC, dst=VIP_MAC) / IP(src=CLIENT, dst=VIP, proto=6) / b"\x00\x50"
    assert send(world, frame).drop_reason == "DROP_TRUNCATED"


def test_rings_are_swapped_whole(world):
    pipe = world[0]
    rings = pipe.maps["lb_rings"]
    ring = rings.lookup(101)
    assert len(ring) == RING_SIZE and set(ring) == {1, 2, 3}
    rings.update(999, [7] * RING_SIZE)
    assert set(rings.lookup(999)) == {7}
    with pytest.raises(BpfError):  # the kernel takes only arrays shaped as declared
        rings.update(999, [7] * (RING_SIZE - 1))
    assert set(rings.lookup(999)) == {7}
    assert rings.raw_items()[rings.encode_key(999)] == rings.encode_value([7] * RING_SIZE)
    rings.update_batch_raw(rings.encode_key(998) + rings.encode_key(999),
                           rings.encode_value([8] * RING_SIZE) + rings.encode_value([9] * RING_SIZE))
    assert set(rings.lookup(998)) == {8} and set(rings.lookup(999)) == {9}
    rings.delete_batch_raw(rings.encode_key(998) + rings.encode_key(999))
    assert rings.lookup(998) is None and rings.lookup(999) is None
    assert lib.LB_RING_SIZE == RING_SIZE
