"""stage_l3 through BPF_PROG_TEST_RUN: routing bytes, remote delivery, static
routes, router ping, TTL expiry, floating IP NAT with valid checksums,
external neighbour learning, missing routes."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from dfxdp.controller.apps import LocalView
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.datapath.libbpf import lib, to_dict
from dfxdp.datapath.pktrun import run_packet

BLUE, GREEN, EXT = {"id": "blue", "key": 10}, {"id": "green", "key": 20}, {"id": "ext", "key": 30, "router:external": True}
VM_B, VM_G, VM_G_REMOTE = "fa:16:3e:00:01:01", "fa:16:3e:00:02:01", "fa:16:3e:00:02:02"
RIF_B, RIF_G, GW, FIP_MAC = "fa:16:3e:00:0a:01", "fa:16:3e:00:0a:02", "fa:16:3e:00:0a:03", "fa:16:3e:00:0f:01"
OUTSIDE_MAC = "02:00:00:00:99:99"


def port(pid, key, net, mac, ip, subnet, host="", owner="", device=""):
    return {"id": pid, "key": key, "network_id": net["id"], "mac_address": mac, "binding:host_id": host,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}], "port_security_enabled": False,
            "allowed_address_pairs": [], "device_owner": owner, "device_id": device}


@pytest.fixture
def routed(pipeline, test_iface):
    (_, vm_b), (_, vm_g), (_, underlay), (_, external) = test_iface(), test_iface(), test_iface(), test_iface()
    ports = [
        port("vm-b", 1, BLUE, VM_B, "10.0.0.5", "sb", "ch1"),
        port("vm-g", 2, GREEN, VM_G, "10.1.0.5", "sg", "ch1"),
        port("vm-g2", 3, GREEN, VM_G_REMOTE, "10.1.0.6", "sg", "ch2"),
        port("rif-b", 4, BLUE, RIF_B, "10.0.0.1", "sb", owner="network:router_interface", device="r1"),
        port("rif-g", 5, GREEN, RIF_G, "10.1.0.1", "sg", owner="network:router_interface", device="r1"),
        port("gw", 6, EXT, GW, "198.19.0.10", "se", owner="network:router_gateway", device="r1"),
        port("fip-port", 7, EXT, FIP_MAC, "198.19.0.20", "se", owner="network:floatingip", device="fip1"),
    ]
    view = LocalView(
        chassis="ch1", tunnel_ip="198.18.0.11", networks={n["id"]: n for n in (BLUE, GREEN, EXT)},
        subnets={"sb": {"id": "sb", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1"},
                 "sg": {"id": "sg", "cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.1"},
                 "se": {"id": "se", "cidr": "198.19.0.0/24", "gateway_ip": "198.19.0.1"}},
        ports={p["id"]: p for p in ports},
        routers={"r1": {"id": "r1", "key": 77, "routes": [{"destination": "172.16.0.0/16", "nexthop": "10.1.0.6"}]}},
        floatingips={"fip1": {"id": "fip1", "floating_ip_address": "198.19.0.20", "floating_network_id": "ext",
                              "port_id": "vm-b", "fixed_ip_address": "10.0.0.5", "router_id": "r1"}},
        chassis_by_name={"ch2": {"tunnel_ip": "198.18.0.12"}},
        local_ports={"vm-b": vm_b, "vm-g": vm_g}, underlay_ifindex=underlay, underlay_mac="02:00:00:00:00:01",
        underlay_neighbors={"198.18.0.12": "02:00:00:00:00:02"}, bridges={"provider": (external, "02:00:00:00:00:03")})
    result = build_datapath_control(pipeline.maps).apply(view)
    assert not result.errors
    return pipeline, vm_b, vm_g, external


def valid_checksums(frame: bytes) -> bool:
    pkt = Ether(frame)
    again = pkt.copy()
    for layer in (IP, TCP, UDP, ICMP):
        if again.haslayer(layer):
            del again[layer].chksum
    return bytes(Ether(bytes(again))) == frame


def test_routed_to_a_local_port(routed):
    pipe, vm_b, vm_g, _ = routed
    frame = Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="10.1.0.5", ttl=64) / TCP(dport=80)
    res = run_packet(pipe, frame, ingress_ifindex=vm_b)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == vm_g
    out = res.packet
    assert (out[Ether].src, out[Ether].dst, out[IP].ttl) == (RIF_G, VM_G, 63)
    assert valid_checksums(res.data)
    assert res.meta["net_key"] == GREEN["key"] and res.meta["flags"] & 2  # PKT_F_ROUTED
    assert res.stages[:6] == ["STAGE_ENTRY_PORT", "STAGE_PORTSEC", "STAGE_SG_EGRESS", "STAGE_LB", "STAGE_DNS",
                              "STAGE_L3"]


def test_routed_to_a_remote_port_is_tunnelled_in_the_out_network(routed):
    pipe, vm_b, _, _ = routed
    frame = Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="10.1.0.6") / UDP(dport=53)
    res = run_packet(pipe, frame, ingress_ifindex=vm_b)
    assert res.verdict == "XDP_REDIRECT"
    out = res.packet
    assert out[VXLAN].vni == GREEN["key"] and out[IP].dst == "198.18.0.12"
    inner = Ether(bytes(out[VXLAN].payload))
    assert (inner.src, inner.dst, inner[IP].ttl) == (RIF_G, VM_G_REMOTE, 63)


def test_static_route_goes_to_its_next_hop(routed):
    pipe, vm_b, _, _ = routed
    frame = Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="172.16.3.4") / TCP()
    res = run_packet(pipe, frame, ingress_ifindex=vm_b)
    inner = Ether(bytes(res.packet[VXLAN].payload))
    assert inner.dst == VM_G_REMOTE and inner[IP].dst == "172.16.3.4"


def test_router_answers_ping_on_any_of_its_addresses(routed):
    pipe, vm_b, _, _ = routed
    request = Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="10.1.0.1") / ICMP(id=7, seq=3) / b"payload"
    res = run_packet(pipe, request, ingress_ifindex=vm_b)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == vm_b
    reply = res.packet
    assert (reply[Ether].dst, reply[IP].src, reply[IP].dst) == (VM_B, "10.1.0.1", "10.0.0.5")
    assert (reply[ICMP].type, reply[ICMP].id, reply[ICMP].seq) == (0, 7, 3) and bytes(reply[ICMP].payload) == b"payload"
    assert valid_checksums(res.data)


def test_ttl_expiry_sends_time_exceeded_quoting_the_packet(routed):
    pipe, vm_b, _, _ = routed
    frame = Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="10.1.0.5", ttl=1, id=4242) / TCP(sport=33434, dport=80)
    res = run_packet(pipe, frame, ingress_ifindex=vm_b)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == vm_b
    out = res.packet
    assert (out[Ether].dst, out[Ether].src) == (VM_B, RIF_B)
    assert (out[IP].src, out[IP].dst, out[ICMP].type, out[ICMP].code) == ("10.0.0.1", "10.0.0.5", 11, 0)
    assert out[IPerror].id == 4242 and out[TCPerror].sport == 33434
    assert len(res.data) == 14 + 20 + 8 + 28 and valid_checksums(res.data)
    assert res.counters["drops"]["DROP_TTL_EXCEEDED"]["packets"] == 1


def test_floating_ip_dnat_from_outside_and_neighbour_learning(routed):
    pipe, vm_b, _, external = routed
    frame = Ether(src=OUTSIDE_MAC, dst=FIP_MAC) / IP(src="198.19.0.100", dst="198.19.0.20") / TCP(sport=5555, dport=22)
    res = run_packet(pipe, frame, ingress_ifindex=external)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == vm_b
    out = res.packet
    assert (out[IP].src, out[IP].dst, out[Ether].dst, out[Ether].src) == ("198.19.0.100", "10.0.0.5", VM_B, RIF_B)
    assert valid_checksums(res.data)
    learned = pipe.maps["ext_neigh"].lookup(int.from_bytes(bytes([198, 19, 0, 100]), "little"))
    assert bytes(to_dict(learned)["mac"]) == bytes.fromhex(OUTSIDE_MAC.replace(":", ""))


def test_floating_ip_snat_toward_outside(routed):
    pipe, vm_b, _, external = routed
    run_packet(pipe, Ether(src=OUTSIDE_MAC, dst=FIP_MAC) / IP(src="198.19.0.100", dst="198.19.0.20") / ICMP(),
               ingress_ifindex=external)  # learn the outside host
    frame = Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="198.19.0.100") / UDP(sport=4000, dport=53) / b"q"
    res = run_packet(pipe, frame, ingress_ifindex=vm_b)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == external
    out = res.packet
    assert (out[IP].src, out[Ether].src, out[Ether].dst) == ("198.19.0.20", FIP_MAC, OUTSIDE_MAC)
    assert valid_checksums(res.data)


def test_no_floating_ip_leaves_it_to_the_fallback(routed):
    pipe, _, vm_g, _ = routed
    frame = Ether(src=VM_G, dst=RIF_G) / IP(src="10.1.0.5", dst="8.8.8.8") / ICMP()
    res = run_packet(pipe, frame, ingress_ifindex=vm_g)
    assert res.verdict == "XDP_PASS" and res.data == bytes(frame)


def test_frames_not_for_a_router_mac_are_bridged(routed):
    pipe, vm_b, _, _ = routed
    frame = Ether(src=VM_B, dst="fa:16:3e:77:77:77") / IP(src="10.0.0.5", dst="10.1.0.5") / ICMP()
    res = run_packet(pipe, frame, ingress_ifindex=vm_b)
    assert "STAGE_L2" in res.stages and res.meta["flags"] & 2 == 0


def test_no_route_is_counted(pipeline, routed):
    pipe, vm_b, _, _ = routed
    pipe.maps["routes"].delete({"prefixlen": lib.ROUTE_PREFIX_BASE, "router_key": 77, "dst": 0})  # drop the default route
    frame = Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="203.0.113.9") / ICMP()
    res = run_packet(pipe, frame, ingress_ifindex=vm_b)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_NO_ROUTE")
