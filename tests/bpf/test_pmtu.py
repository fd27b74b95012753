"""Frames too big for the tunnel, through BPF_PROG_TEST_RUN: what fits is
tunnelled; IPv4 with DF gets "fragmentation needed" (bridged: from the subnet's
gateway or DHCP address; routed: from the router port) through the sender's
ingress security groups; everything else is dropped and counted."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from dfxdp.controller.apps import LocalView
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.datapath.libbpf import lib
from dfxdp.datapath.pktrun import run_packet

UNDERLAY_MTU = 1500
BLUE = {"id": "blue", "key": 10, "mtu": 1450}
GREEN = {"id": "green", "key": 20, "mtu": 1450}
SMALL = {"id": "small", "key": 30, "mtu": 1400}     # no gateway: ICMP from its DHCP port
BARE = {"id": "bare", "key": 40, "mtu": 1450}       # neither gateway nor DHCP port: nothing to answer from
EXT = {"id": "ext", "key": 50, "mtu": 1450, "router:external": True}
SUBNETS = {
    "sb": {"id": "sb", "network_id": "blue", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1"},
    "sb6": {"id": "sb6", "network_id": "blue", "cidr": "fd00::/64", "ip_version": 6, "gateway_ip": "fd00::1"},
    "sg": {"id": "sg", "network_id": "green", "cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.1"},
    "ss": {"id": "ss", "network_id": "small", "cidr": "10.2.0.0/24", "gateway_ip": None},
    "ss2": {"id": "ss2", "network_id": "small", "cidr": "10.4.0.0/24", "gateway_ip": None},  # no DHCP port either
    "sx": {"id": "sx", "network_id": "bare", "cidr": "10.3.0.0/24", "gateway_ip": None},
    "se": {"id": "se", "network_id": "ext", "cidr": "198.19.0.0/24", "gateway_ip": "198.19.0.1"},
}
VM, OPEN, VM_S, VM_X = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:03", "fa:16:3e:00:00:04"
VM_S2 = "fa:16:3e:00:00:05"
FAR, FAR_G, FAR_S, FAR_X, FAR_E = ("fa:16:3e:00:01:01", "fa:16:3e:00:01:02", "fa:16:3e:00:01:03",
                                   "fa:16:3e:00:01:04", "fa:16:3e:00:01:05")
RIF_B, RIF_G = "fa:16:3e:00:0a:01", "fa:16:3e:00:0a:02"
OUTSIDE_MAC = "02:00:00:00:99:99"
# The sender's group lets everything out and nothing in: only a related ICMP error gets back.
GUARDED_RULES = {"out": {"id": "out", "security_group_id": "guarded", "direction": "egress", "ethertype": "IPv4",
                         "protocol": None, "port_range_min": None, "port_range_max": None,
                         "remote_ip_prefix": None, "remote_group_id": None}}


def port(pid, key, net, mac, ip, subnet, host="", portsec=False, owner="", device=""):
    return {"id": pid, "key": key, "network_id": net["id"], "mac_address": mac, "binding:host_id": host,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}], "port_security_enabled": portsec,
            "security_groups": ["guarded"] if portsec else [], "allowed_address_pairs": [],
            "device_owner": owner, "device_id": device}


def world(ifs: dict, underlay_mtu: int = UNDERLAY_MTU) -> LocalView:
    ports = [
        port("vm", 1, BLUE, VM, "10.0.0.5", "sb", "ch1", portsec=True),
        port("open", 2, BLUE, OPEN, "10.0.0.6", "sb", "ch1"),
        port("vm-s", 3, SMALL, VM_S, "10.2.0.5", "ss", "ch1"),
        port("vm-x", 4, BARE, VM_X, "10.3.0.5", "sx", "ch1"),
        port("vm-s2", 13, SMALL, VM_S2, "10.4.0.5", "ss2", "ch1"),
        port("far", 5, BLUE, FAR, "10.0.0.9", "sb", "ch2"),
        port("far-g", 6, GREEN, FAR_G, "10.1.0.9", "sg", "ch2"),
        port("far-s", 7, SMALL, FAR_S, "10.2.0.9", "ss", "ch2"),
        port("far-x", 8, BARE, FAR_X, "10.3.0.9", "sx", "ch2"),
        port("far-e", 9, EXT, FAR_E, "198.19.0.50", "se", "ch2"),
        port("dhcp-s", 10, SMALL, "fa:16:3e:00:0d:01", "10.2.0.2", "ss", owner="network:dhcp"),
        port("rif-b", 11, BLUE, RIF_B, "10.0.0.1", "sb", owner="network:router_interface", device="r1"),
        port("rif-g", 12, GREEN, RIF_G, "10.1.0.1", "sg", owner="network:router_interface", device="r1"),
    ]
    return LocalView(
        chassis="ch1", tunnel_ip="198.18.0.11", networks={n["id"]: n for n in (BLUE, GREEN, SMALL, BARE, EXT)},
        subnets=SUBNETS, ports={p["id"]: p for p in ports}, routers={"r1": {"id": "r1", "key": 77}},
        security_group_rules=GUARDED_RULES, chassis_by_name={"ch2": {"tunnel_ip": "198.18.0.12"}},
        local_ports={name: ifs[name] for name in ("vm", "open", "vm-s", "vm-s2", "vm-x")},
        underlay_ifindex=ifs["underlay"], underlay_mac="02:00:00:00:00:01", underlay_mtu=underlay_mtu,
        underlay_neighbors={"198.18.0.12": "02:00:00:00:00:02"}, bridges={"provider": (ifs["external"], "02:00:00:00:00:03")})


def program(pipe, view: LocalView) -> None:
    result = build_datapath_control(pipe.maps).apply(view)
    assert not result.errors, result.errors


@pytest.fixture
def pmtu(pipeline, test_iface):
    ifs = {name: test_iface()[1] for name in ("vm", "open", "vm-s", "vm-s2", "vm-x", "underlay", "external")}
    program(pipeline, world(ifs))
    return pipeline, ifs


def ipv4(src, dst, ip_len, df=True, **ip_fields):
    """An IPv4/UDP packet of exactly ip_len bytes."""
    head = IP(src=src, dst=dst, flags="DF" if df else 0, **ip_fields) / UDP(sport=4000, dport=5000)
    return head / Raw(b"x" * (ip_len - len(head)))


def valid_checksums(frame: bytes) -> bool:
    again = Ether(frame).copy()
    for layer in (IP, ICMP):
        del again[layer].chksum
    return bytes(Ether(bytes(again))) == frame


def assert_frag_needed(res, frame, out_ifindex, src_mac, dst_mac, src_ip, mtu):
    """res is "fragmentation needed" about `frame`, on its way back to its sender."""
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == out_ifindex
    out = res.packet
    assert (out[Ether].src, out[Ether].dst) == (src_mac, dst_mac)
    assert (out[IP].src, out[IP].dst) == (src_ip, frame[IP].src)
    assert (out[ICMP].type, out[ICMP].code, out[ICMP].nexthopmtu) == (3, 4, mtu)
    assert res.counters["drops"]["DROP_FRAG_NEEDED"]["packets"] == 1
    assert "DROP_TOO_BIG" not in res.counters["drops"]
    assert len(res.data) == 14 + 20 + 8 + 548 and valid_checksums(res.data)
    return res.data[14 + 20 + 8:]


def test_a_frame_that_fits_is_tunnelled(pmtu):
    pipe, ifs = pmtu
    frame = Ether(src=VM, dst=FAR) / ipv4("10.0.0.5", "10.0.0.9", UNDERLAY_MTU - 50)
    res = run_packet(pipe, frame, ingress_ifindex=ifs["vm"])
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == ifs["underlay"]
    assert res.packet[IP].len == UNDERLAY_MTU and res.packet[VXLAN].vni == BLUE["key"]
    assert "drops" not in res.counters


def test_bridged_ipv4_with_df_gets_fragmentation_needed_from_the_gateway(pmtu):
    pipe, ifs = pmtu
    frame = Ether(src=VM, dst=FAR) / ipv4("10.0.0.5", "10.0.0.9", UNDERLAY_MTU - 49, id=4242)
    res = run_packet(pipe, frame, ingress_ifindex=ifs["vm"])
    quoted = assert_frag_needed(res, frame, ifs["vm"], FAR, VM, "10.0.0.1", 1450)
    assert quoted == bytes(frame[IP])[:548] and IPerror(quoted).id == 4242
    assert res.meta["net_key"] == BLUE["key"] and res.meta["dst_port_key"] == 1
    # judged by the sender's ingress security groups (no stage a tunnelled frame enters), which
    # let it in although they allow no ingress at all: an error about the port's own flow
    assert "STAGE_SG_INGRESS" in res.stages
    sg = pipe.maps["sg_stats"].lookup_sum({"port_key": 1, "direction": lib.SG_INGRESS})
    assert sg["allowed_packets"] == 1 and sg["denied_packets"] == 0


def test_a_tcp_segment_error_is_matched_with_its_connection(pmtu):
    """The quote holds the whole TCP header, which the guarded sender's ingress check reads to find
    its connection (Linux quotes as much; 28 bytes would cut it and the error would be refused)."""
    pipe, ifs = pmtu
    syn = Ether(src=VM, dst=FAR) / IP(src="10.0.0.5", dst="10.0.0.9", flags="DF") / TCP(sport=40000, dport=80,
                                                                                           flags="S")
    assert run_packet(pipe, syn, ingress_ifindex=ifs["vm"]).verdict == "XDP_REDIRECT"
    head = IP(src="10.0.0.5", dst="10.0.0.9", flags="DF") / TCP(sport=40000, dport=80, flags="A", seq=1000)
    segment = Ether(src=VM, dst=FAR) / head / Raw(b"y" * (1451 - len(head)))
    res = run_packet(pipe, segment, ingress_ifindex=ifs["vm"])
    assert_frag_needed(res, segment, ifs["vm"], FAR, VM, "10.0.0.1", 1450)
    assert "DROP_SG_INGRESS" not in res.counters["drops"]


def test_the_icmp_carries_the_smaller_of_network_and_tunnel_mtu(pmtu):
    pipe, ifs = pmtu
    frame = Ether(src=VM_S, dst=FAR_S) / ipv4("10.2.0.5", "10.2.0.9", 1451)
    res = run_packet(pipe, frame, ingress_ifindex=ifs["vm-s"])
    # network MTU 1400 < 1450: no gateway, so from the subnet's DHCP port
    assert_frag_needed(res, frame, ifs["vm-s"], FAR_S, VM_S, "10.2.0.2", 1400)

    program(pipe, world(ifs, underlay_mtu=1480))  # the tunnel now carries 1430, less than 1450
    frame = Ether(src=VM, dst=FAR) / ipv4("10.0.0.5", "10.0.0.9", 1431)
    assert_frag_needed(run_packet(pipe, frame, ingress_ifindex=ifs["vm"]), frame, ifs["vm"], FAR, VM, "10.0.0.1",
                       1430)


def test_routed_frames_get_it_from_the_router_port_they_entered_by(pmtu):
    pipe, ifs = pmtu
    frame = Ether(src=OPEN, dst=RIF_B) / ipv4("10.0.0.6", "10.1.0.9", 1451, ttl=64)
    res = run_packet(pipe, frame, ingress_ifindex=ifs["open"])
    quoted = assert_frag_needed(res, frame, ifs["open"], RIF_B, OPEN, "10.0.0.1", GREEN["mtu"])
    assert IPerror(quoted).dst == "10.1.0.9" and IPerror(quoted).ttl == 63  # quoted as it left the router
    assert res.meta["net_key"] == BLUE["key"]


@pytest.mark.parametrize("name,frame", [
    ("IPv4 without DF", Ether(src=OPEN, dst=FAR) / ipv4("10.0.0.6", "10.0.0.9", 1451, df=False)),
    ("IPv6", Ether(src=OPEN, dst=FAR) / IPv6(src="fe80::2", dst="fe80::9") / UDP() / Raw(b"x" * 1450)),
    ("802.1Q", Ether(src=OPEN, dst=FAR) / Dot1Q(vlan=7) / ipv4("10.0.0.6", "10.0.0.9", 1451)),
    ("an ICMP error", Ether(src=OPEN, dst=FAR) / IP(src="10.0.0.6", dst="10.0.0.9", flags="DF") /
     ICMP(type=3, code=3) / Raw(b"x" * 1451)),
])
def test_other_frames_too_big_are_dropped_and_counted(pmtu, name, frame):
    pipe, ifs = pmtu
    res = run_packet(pipe, frame, ingress_ifindex=ifs["open"])
    assert res.verdict == "XDP_DROP" and res.drop_reason == "DROP_TOO_BIG", name
    assert "DROP_FRAG_NEEDED" not in res.counters["drops"]


def test_the_same_frames_fitting_the_tunnel_still_go(pmtu):
    pipe, ifs = pmtu
    for frame in (Ether(src=OPEN, dst=FAR) / IPv6(src="fe80::2", dst="fe80::9") / UDP() / Raw(b"x" * 1402),
                  Ether(src=OPEN, dst=FAR) / Dot1Q(vlan=7) / ipv4("10.0.0.6", "10.0.0.9", 1446)):
        res = run_packet(pipe, frame, ingress_ifindex=ifs["open"])
        assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == ifs["underlay"]


def test_a_subnet_without_an_address_of_its_own_answers_from_the_network_s(pmtu):
    pipe, ifs = pmtu
    frame = Ether(src=VM_S2, dst=FAR_S) / ipv4("10.4.0.5", "10.2.0.9", 1451)
    res = run_packet(pipe, frame, ingress_ifindex=ifs["vm-s2"])
    assert_frag_needed(res, frame, ifs["vm-s2"], FAR_S, VM_S2, "10.2.0.2", SMALL["mtu"])


def test_no_address_to_answer_from_drops(pmtu):
    pipe, ifs = pmtu
    frame = Ether(src=VM_X, dst=FAR_X) / ipv4("10.3.0.5", "10.3.0.9", 1451)
    res = run_packet(pipe, frame, ingress_ifindex=ifs["vm-x"])
    assert res.verdict == "XDP_DROP" and res.drop_reason == "DROP_TOO_BIG"


def test_from_the_external_network_the_icmp_goes_back_out_of_it(pmtu):
    pipe, ifs = pmtu
    frame = Ether(src=OUTSIDE_MAC, dst=FAR_E) / ipv4("198.19.0.100", "198.19.0.50", 1451)
    res = run_packet(pipe, frame, ingress_ifindex=ifs["external"])
    assert_frag_needed(res, frame, ifs["external"], FAR_E, OUTSIDE_MAC, "198.19.0.1", 1450)


def test_an_unknown_underlay_mtu_checks_nothing(pmtu):
    pipe, ifs = pmtu
    program(pipe, world(ifs, underlay_mtu=0))
    frame = Ether(src=VM, dst=FAR) / ipv4("10.0.0.5", "10.0.0.9", 1451)
    res = run_packet(pipe, frame, ingress_ifindex=ifs["vm"])
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == ifs["underlay"]
