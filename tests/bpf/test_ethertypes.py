"""What each ethertype gets, in both directions, through BPF_PROG_TEST_RUN.

A port with port security (here p-local2) sends and receives ARP, and IPv4 as its
rules say; IPv6 is dropped at its security groups (no IPv6 rules yet), and any
other ethertype (VLAN tags, LLDP, MPLS, 802.3 lengths) is dropped wherever it
comes from: its own tap, a port without port security (p-local), or another
chassis through the underlay. Ports without port security keep today's paths."""
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, LLC, STP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.packet import Raw

from dfxdp.datapath.libbpf import lib
from dfxdp.datapath.pktrun import run_packet
from tests.bpf import l2_fixtures as fx
from tests.bpf.l2_fixtures import vxlan_from_remote

FILTERED_MAC, FILTERED_IP, FILTERED_KEY = fx.LOCAL2_MAC, "10.0.0.2", 2
OPEN_MAC, OPEN_IP = fx.LOCAL_MAC, "10.0.0.1"
LINK_LOCAL = "fe80::f816:3eff:fe00:2"  # the filtered port's, from its MAC
LLDP_MULTICAST = "01:80:c2:00:00:0e"


@pytest.fixture
def world(pipeline, test_iface):
    """p-local without port security, p-local2 with it (and the open IPv4 group)."""
    (_, open_if), (_, filtered_if), (_, underlay) = test_iface(), test_iface(), test_iface()
    fx.program(pipeline, fx.build_view(open_if, filtered_if, underlay, portsec=False))
    return pipeline, open_if, filtered_if, underlay


def ipv6_udp(src_mac, dst_mac, dst="fe80::1"):
    return Ether(src=src_mac, dst=dst_mac) / IPv6(src="fe80::99", dst=dst) / UDP(sport=4000, dport=5000) / b"x"


def others(src_mac, dst_mac, src_ip, dst_ip):
    """One frame per ethertype class that is neither ARP, IPv4 nor IPv6 (VLAN-tagged ones carry IPv4)."""
    tagged = IP(src=src_ip, dst=dst_ip) / UDP(dport=5000)
    return {
        "802.1q": Ether(src=src_mac, dst=dst_mac) / Dot1Q(vlan=10) / tagged,
        "802.1ad": Ether(src=src_mac, dst=dst_mac) / Dot1AD(vlan=20) / Dot1Q(vlan=10) / tagged,
        "lldp": Ether(src=src_mac, dst=dst_mac, type=0x88cc) / Raw(b"\x02\x07\x04" + b"\x00" * 40),
        "mpls": Ether(src=src_mac, dst=dst_mac, type=0x8847) / Raw(b"\x00\x01\x41\x40") / tagged,
        "802.3-llc": Dot3(src=src_mac, dst=dst_mac) / LLC() / STP(),
    }


OTHER_CLASSES = list(others(OPEN_MAC, FILTERED_MAC, OPEN_IP, FILTERED_IP))


def assert_dropped(res, reason, last_stage):
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", reason)
    assert res.counters["drops"][reason]["packets"] == 1
    assert res.stages[-1] == last_stage


def sg_denied(pipe, direction) -> int:
    stats = pipe.maps["sg_stats"].lookup_sum({"port_key": FILTERED_KEY, "direction": direction})
    return stats.get("denied_packets", 0)


# --- from the port with port security -------------------------------------------------------


@pytest.mark.parametrize("kind", OTHER_CLASSES)
def test_other_ethertypes_from_a_port_with_port_security_are_dropped(world, kind):
    """Own MAC, own IP inside the tag: still not ARP, IPv4 or IPv6."""
    pipe, _, filtered_if, _ = world
    for dst in (OPEN_MAC, LLDP_MULTICAST, fx.REMOTE_MAC):
        frame = others(FILTERED_MAC, dst, FILTERED_IP, OPEN_IP)[kind]
        res = run_packet(pipe, frame, ingress_ifindex=filtered_if)
        assert_dropped(res, "DROP_PORTSEC_ETHERTYPE", "STAGE_PORTSEC")


@pytest.mark.parametrize("dst_mac,dst", [
    (OPEN_MAC, "fe80::f816:3eff:fe00:1"),           # a local port without port security
    (fx.REMOTE_MAC, "fe80::f816:3eff:fe00:3"),      # a port on another chassis
    ("33:33:ff:00:00:01", "ff02::1:ff00:1"),         # neighbour discovery: would go to the fallback
    ("33:33:00:00:00:01", "ff02::1"),
], ids=["local", "remote", "solicited-node", "all-nodes"])
def test_ipv6_from_a_port_with_security_groups_is_dropped(world, dst_mac, dst):
    pipe, _, filtered_if, _ = world
    before = sg_denied(pipe, lib.SG_EGRESS)
    frame = Ether(src=FILTERED_MAC, dst=dst_mac) / IPv6(src=LINK_LOCAL, dst=dst) / UDP(dport=5000) / b"x"
    res = run_packet(pipe, frame, ingress_ifindex=filtered_if)
    assert_dropped(res, "DROP_SG_IPV6", "STAGE_SG_EGRESS")
    assert sg_denied(pipe, lib.SG_EGRESS) == before + 1


def test_neighbour_solicitation_from_a_port_with_security_groups_is_dropped(world):
    pipe, _, filtered_if, _ = world
    frame = Ether(src=FILTERED_MAC, dst="33:33:ff:00:00:01") / IPv6(src="::", dst="ff02::1:ff00:1") / \
        ICMPv6ND_NS(tgt="fe80::f816:3eff:fe00:1")
    assert_dropped(run_packet(pipe, frame, ingress_ifindex=filtered_if), "DROP_SG_IPV6", "STAGE_SG_EGRESS")


def test_ipv6_from_a_foreign_mac_is_a_port_security_drop(world):
    pipe, _, filtered_if, _ = world
    res = run_packet(pipe, ipv6_udp("fa:16:3e:00:00:99", OPEN_MAC), ingress_ifindex=filtered_if)
    assert_dropped(res, "DROP_PORTSEC_MAC", "STAGE_PORTSEC")


def bad_arp(src_mac, dst_mac, field, value):
    """A full-sized ARP frame with one header field patched (scapy would fix it up)."""
    offset, size = {"htype": (0, 2), "ptype": (2, 2), "hlen": (4, 1), "plen": (5, 1)}[field]
    arp = bytearray(bytes(ARP(op=2, hwsrc=src_mac, psrc="10.0.0.3", hwdst=dst_mac, pdst=FILTERED_IP)))
    arp[offset:offset + size] = value.to_bytes(size, "big")
    return Ether(src=src_mac, dst=dst_mac, type=0x0806) / Raw(bytes(arp))


BAD_ARP = {"htype-ieee802": ("htype", 6), "ptype-ipv6": ("ptype", 0x86dd), "hlen-8": ("hlen", 8),
           "plen-16": ("plen", 16)}


@pytest.mark.parametrize("bad", BAD_ARP)
def test_malformed_arp_from_a_port_with_port_security_is_dropped(world, bad):
    pipe, _, filtered_if, _ = world
    frame = bad_arp(FILTERED_MAC, "ff:ff:ff:ff:ff:ff", *BAD_ARP[bad])
    assert_dropped(run_packet(pipe, frame, ingress_ifindex=filtered_if), "DROP_MALFORMED", "STAGE_PORTSEC")


def test_arp_and_ipv4_from_a_port_with_port_security_keep_their_paths(world):
    pipe, open_if, filtered_if, _ = world
    request = Ether(src=FILTERED_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=FILTERED_MAC, psrc=FILTERED_IP,
                                                                     pdst=OPEN_IP)
    answered = run_packet(pipe, request, ingress_ifindex=filtered_if)
    assert answered.verdict == "XDP_REDIRECT" and answered.packet[ARP].op == 2
    unicast = Ether(src=FILTERED_MAC, dst=OPEN_MAC) / IP(src=FILTERED_IP, dst=OPEN_IP) / UDP(dport=5000)
    res = run_packet(pipe, unicast, ingress_ifindex=filtered_if)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == open_if


# --- toward the port with port security ------------------------------------------------------


def toward_filtered(world, source, frame_from):
    """frame_from(src_mac) sent by the port without port security, or by a remote port through the underlay."""
    pipe, open_if, _, underlay = world
    if source == "same-chassis":
        return run_packet(pipe, frame_from(OPEN_MAC), ingress_ifindex=open_if)
    return run_packet(pipe, vxlan_from_remote(frame_from(fx.REMOTE_MAC)), ingress_ifindex=underlay, entry="underlay")


SOURCES = ["same-chassis", "other-chassis"]


@pytest.mark.parametrize("source", SOURCES)
def test_ipv6_toward_a_port_with_security_groups_is_dropped(world, source):
    """The issue's datagram: UDP to the filtered port's link-local address, sent to its MAC."""
    pipe = world[0]
    before = sg_denied(pipe, lib.SG_INGRESS)
    res = toward_filtered(world, source, lambda mac: ipv6_udp(mac, FILTERED_MAC, dst=LINK_LOCAL))
    assert_dropped(res, "DROP_SG_IPV6", "STAGE_SG_INGRESS")
    assert sg_denied(pipe, lib.SG_INGRESS) == before + 1


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", OTHER_CLASSES)
def test_other_ethertypes_toward_a_port_with_port_security_are_dropped(world, source, kind):
    res = toward_filtered(world, source, lambda mac: others(mac, FILTERED_MAC, OPEN_IP, FILTERED_IP)[kind])
    assert_dropped(res, "DROP_PORTSEC_ETHERTYPE", "STAGE_SG_INGRESS")


@pytest.mark.parametrize("bad", BAD_ARP)
def test_malformed_arp_toward_a_port_with_port_security_is_dropped(world, bad):
    """ARP reaches a port's ingress stage only from another chassis (the local L2 stage answers or passes it)."""
    res = toward_filtered(world, "other-chassis", lambda mac: bad_arp(mac, FILTERED_MAC, *BAD_ARP[bad]))
    assert_dropped(res, "DROP_MALFORMED", "STAGE_SG_INGRESS")


@pytest.mark.parametrize("source", SOURCES)
def test_ipv4_toward_a_port_with_port_security_keeps_its_path(world, source):
    filtered_if = world[2]
    res = toward_filtered(world, source, lambda mac: Ether(src=mac, dst=FILTERED_MAC) /
                          IP(src=OPEN_IP, dst=FILTERED_IP) / UDP(dport=5000))
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == filtered_if


def test_arp_toward_a_port_with_port_security_keeps_its_path(world):
    filtered_if = world[2]
    res = toward_filtered(world, "other-chassis", lambda mac: Ether(src=mac, dst=FILTERED_MAC) /
                          ARP(op=2, hwsrc=mac, psrc="10.0.0.3", hwdst=FILTERED_MAC, pdst=FILTERED_IP))
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == filtered_if


# --- ports without port security: unchanged --------------------------------------------------


@pytest.mark.parametrize("frame", [
    ipv6_udp(OPEN_MAC, "33:33:00:00:00:01", dst="ff02::1"),
    *others(OPEN_MAC, LLDP_MULTICAST, OPEN_IP, "10.0.0.255").values(),
], ids=["ipv6-multicast", *OTHER_CLASSES])
def test_group_frames_from_a_port_without_port_security_go_to_the_fallback(world, frame):
    pipe, open_if, _, _ = world
    res = run_packet(pipe, frame, ingress_ifindex=open_if)
    assert res.verdict == "XDP_PASS" and res.data == bytes(frame)


def test_ipv6_between_ports_without_port_security_is_forwarded(world):
    pipe, open_if, _, underlay = world
    out = run_packet(pipe, ipv6_udp(OPEN_MAC, fx.REMOTE_MAC), ingress_ifindex=open_if)
    assert out.verdict == "XDP_REDIRECT" and out.meta["out_ifindex"] == underlay
    inbound = ipv6_udp(fx.REMOTE_MAC, OPEN_MAC)
    res = run_packet(pipe, vxlan_from_remote(inbound), ingress_ifindex=underlay, entry="underlay")
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == open_if and res.data == bytes(inbound)
