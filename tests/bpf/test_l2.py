"""L2 stages through BPF_PROG_TEST_RUN: port security, the ARP responder, local
redirect, VXLAN encapsulation to a remote chassis, decapsulation and delivery,
isolation between networks."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from dfxdp.datapath.pktrun import run_packet
from tests.bpf import l2_fixtures as fx
from tests.bpf.l2_fixtures import vxlan_from_remote


@pytest.fixture
def world(pipeline, test_iface):
    (_, local), (_, local2), (_, underlay) = test_iface(), test_iface(), test_iface()
    view = fx.build_view(local, local2, underlay)
    fx.program(pipeline, view)
    return pipeline, local, local2, underlay


def from_local(**ip):
    return Ether(src=fx.LOCAL_MAC, dst=fx.LOCAL2_MAC) / IP(src="10.0.0.1", dst="10.0.0.2", **ip) / TCP(dport=80)


def test_local_unicast_is_redirected_to_the_destination_tap(world):
    pipe, local, local2, _ = world
    res = run_packet(pipe, from_local(), ingress_ifindex=local)
    assert res.verdict == "XDP_REDIRECT"
    assert res.meta["out_ifindex"] == local2 and res.meta["dst_port_key"] == 2
    assert res.stages == ["STAGE_ENTRY_PORT", "STAGE_PORTSEC", "STAGE_SG_EGRESS", "STAGE_LB", "STAGE_DNS", "STAGE_L3",
                          "STAGE_L2", "STAGE_SG_INGRESS", "STAGE_OUTPUT"]
    assert res.data == bytes(from_local())


@pytest.mark.parametrize("frame,reason", [
    (Ether(src="fa:16:3e:00:00:99", dst=fx.LOCAL2_MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(), "DROP_PORTSEC_MAC"),
    (Ether(src=fx.LOCAL_MAC, dst=fx.LOCAL2_MAC) / IP(src="10.0.0.77", dst="10.0.0.2") / TCP(), "DROP_PORTSEC_IP"),
    (Ether(src=fx.LOCAL_MAC, dst=fx.LOCAL2_MAC) / IP(src="10.0.9.5", dst="10.0.0.2") / TCP(), "DROP_PORTSEC_MAC"),
    (Ether(src=fx.LOCAL_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=fx.LOCAL_MAC, psrc="10.0.0.50", pdst="10.0.0.2"),
     "DROP_PORTSEC_IP"),
    (Ether(src=fx.LOCAL_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc="fa:16:3e:00:00:99", psrc="10.0.0.1", pdst="10.0.0.2"),
     "DROP_PORTSEC_MAC"),
    (Ether(src="fa:16:3e:00:00:99", dst="33:33:00:00:00:01") / IPv6(), "DROP_PORTSEC_MAC"),
], ids=["foreign-mac", "foreign-ip", "pair-ip-with-port-mac", "arp-foreign-ip", "arp-sha-mismatch", "ipv6-foreign-mac"])
def test_spoofed_sources_are_dropped_and_counted(world, frame, reason):
    pipe, local, _, _ = world
    res = run_packet(pipe, frame, ingress_ifindex=local)
    assert res.verdict == "XDP_DROP" and res.drop_reason == reason
    assert res.counters["drops"][reason]["packets"] == 1


def test_allowed_address_pair_with_its_mac_passes(world):
    pipe, local, local2, _ = world
    frame = Ether(src="fa:16:3e:00:00:aa", dst=fx.LOCAL2_MAC) / IP(src="10.0.9.5", dst="10.0.0.2") / UDP()
    res = run_packet(pipe, frame, ingress_ifindex=local)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == local2


def test_port_security_off_lets_any_source_through(pipeline, test_iface):
    (_, local), (_, local2), (_, underlay) = test_iface(), test_iface(), test_iface()
    fx.program(pipeline, fx.build_view(local, local2, underlay, portsec=False))
    frame = Ether(src="fa:16:3e:00:00:99", dst=fx.LOCAL2_MAC) / IP(src="10.9.9.9", dst="10.0.0.2") / TCP()
    res = run_packet(pipeline, frame, ingress_ifindex=local)
    assert res.verdict == "XDP_REDIRECT"


def test_arp_request_for_a_known_ip_is_answered_in_xdp(world):
    pipe, local, _, _ = world
    request = Ether(src=fx.LOCAL_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=fx.LOCAL_MAC, psrc="10.0.0.1",
                                                                     pdst="10.0.0.254")
    res = run_packet(pipe, request, ingress_ifindex=local)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == local
    reply = res.packet
    assert reply[Ether].dst == fx.LOCAL_MAC and reply[Ether].src == fx.ROUTER_MAC
    assert (reply[ARP].op, reply[ARP].hwsrc, reply[ARP].psrc) == (2, fx.ROUTER_MAC, "10.0.0.254")
    assert (reply[ARP].hwdst, reply[ARP].pdst) == (fx.LOCAL_MAC, "10.0.0.1")
    assert len(res.data) == len(bytes(request))


def test_arp_for_an_unknown_ip_or_another_network_goes_to_the_fallback(world):
    pipe, local, _, _ = world
    for target in ("10.0.0.99", "10.0.1.1"):
        request = Ether(src=fx.LOCAL_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=fx.LOCAL_MAC, psrc="10.0.0.1", pdst=target)
        res = run_packet(pipe, request, ingress_ifindex=local)
        assert res.verdict == "XDP_PASS" and res.data == bytes(request)


def test_broadcast_and_unknown_unicast_go_to_the_fallback(world):
    pipe, local, _, _ = world
    for dst in ("ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "fa:16:3e:12:34:56"):
        frame = Ether(src=fx.LOCAL_MAC, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.255") / UDP()
        res = run_packet(pipe, frame, ingress_ifindex=local)
        assert res.verdict == "XDP_PASS" and res.data == bytes(frame)


def test_remote_port_gets_vxlan_to_its_chassis(world):
    pipe, local, _, underlay = world
    inner = Ether(src=fx.LOCAL_MAC, dst=fx.REMOTE_MAC) / IP(src="10.0.0.1", dst="10.0.0.3") / TCP(sport=1234, dport=80)
    res = run_packet(pipe, inner, ingress_ifindex=local)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == underlay
    out = res.packet
    assert (out[Ether].src, out[Ether].dst) == (fx.UNDERLAY_MAC, fx.UNDERLAY_PEER_MAC)
    assert (out[IP].src, out[IP].dst, out[IP].ttl, out[IP].flags.DF) == (fx.TUNNEL_LOCAL, fx.TUNNEL_REMOTE, 64, True)
    assert out[UDP].dport == 4789 and 49152 <= out[UDP].sport <= 65535
    assert out[VXLAN].vni == fx.NET_A["key"] and int(out[VXLAN].flags) & 0x08
    assert bytes(out[VXLAN].payload) == bytes(inner)
    checked = IP(bytes(out[IP]))
    expected = checked.chksum
    del checked.chksum
    assert IP(bytes(checked))[IP].chksum == expected  # the outer header checksum is right
    assert out[IP].len == len(bytes(inner)) + 36 and out[UDP].len == len(bytes(inner)) + 16


def test_vxlan_for_a_local_port_is_decapsulated_and_delivered(world):
    pipe, local, _, underlay = world
    inner = Ether(src=fx.REMOTE_MAC, dst=fx.LOCAL_MAC) / IP(src="10.0.0.3", dst="10.0.0.1") / ICMP()
    res = run_packet(pipe, vxlan_from_remote(inner), ingress_ifindex=underlay, entry="underlay")
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == local
    assert res.data == bytes(inner)
    assert res.meta["net_key"] == fx.NET_A["key"]
    assert res.stages == ["STAGE_ENTRY_UNDERLAY", "STAGE_LB", "STAGE_SG_INGRESS", "STAGE_OUTPUT"]


def test_vni_isolation_same_mac_other_network_is_not_delivered(world):
    pipe, local, _, underlay = world
    inner = Ether(src=fx.REMOTE_MAC, dst=fx.LOCAL_MAC) / IP(src="10.0.0.3", dst="10.0.0.1") / ICMP()
    res = run_packet(pipe, vxlan_from_remote(inner, vni=fx.NET_B["key"]), ingress_ifindex=underlay, entry="underlay")
    assert res.verdict == "XDP_PASS" and res.meta["out_ifindex"] == 0


def test_l2_isolation_between_networks(world):
    """p-local (net A) sends to the MAC that lives in net B: the fdb of net A does not know it locally."""
    pipe, local, _, _ = world
    frame = Ether(src=fx.LOCAL_MAC, dst=fx.REMOTE_MAC) / IP(src="10.0.0.1", dst="10.0.0.3") / TCP()
    res = run_packet(pipe, frame, ingress_ifindex=local)
    assert res.meta["dst_port_key"] == 3  # net A's remote port, never net B's local one (key 4)


@pytest.mark.parametrize("mutate,verdict,reason", [
    (lambda f: f[:14 + 20 + 8 + 4], "XDP_DROP", "DROP_TRUNCATED"),  # VXLAN header cut
    (lambda f: f[:14 + 20 + 8 + 8 + 6], "XDP_DROP", "DROP_TRUNCATED"),  # inner Ethernet cut
    (lambda f: f[:42] + b"\x00" + f[43:], "XDP_DROP", "DROP_MALFORMED"),  # I flag missing
], ids=["vxlan-header", "inner-ethernet", "no-vni-flag"])
def test_broken_vxlan_is_dropped_and_counted(world, mutate, verdict, reason):
    pipe, _, _, underlay = world
    inner = Ether(src=fx.REMOTE_MAC, dst=fx.LOCAL_MAC) / IP(src="10.0.0.3", dst="10.0.0.1") / ICMP()
    frame = bytes(vxlan_from_remote(inner))
    broken = bytearray(mutate(frame))
    # keep the outer IP/UDP lengths consistent with the cut so only VXLAN itself is broken
    broken[16:18] = (len(broken) - 14).to_bytes(2, "big")
    broken[38:40] = (len(broken) - 34).to_bytes(2, "big")
    b = IP(bytes(broken[14:34]))
    del b.chksum
    broken[14:34] = bytes(IP(bytes(b)))[:20]
    res = run_packet(pipe, bytes(broken), ingress_ifindex=underlay, entry="underlay")
    assert (res.verdict, res.drop_reason) == (verdict, reason)


def test_underlay_traffic_that_is_not_ours_passes(world):
    pipe, _, _, underlay = world
    for frame in (vxlan_from_remote(Ether(), dst="198.18.0.77"),
                  Ether() / IP(src="198.18.0.2", dst=fx.TUNNEL_LOCAL) / TCP(dport=22)):
        res = run_packet(pipe, frame, ingress_ifindex=underlay, entry="underlay")
        assert res.verdict == "XDP_PASS" and res.data == bytes(frame)


def test_missing_tunnel_endpoint_is_counted(world):
    pipe, local, _, _ = world
    pipe.maps["tunnel_endpoints"].delete(int.from_bytes(bytes([198, 18, 0, 2]), "little"))
    frame = Ether(src=fx.LOCAL_MAC, dst=fx.REMOTE_MAC) / IP(src="10.0.0.1", dst="10.0.0.3") / TCP()
    res = run_packet(pipe, frame, ingress_ifindex=local)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_NO_TUNNEL")
