"""VLAN external networks on external NICs through BPF_PROG_TEST_RUN (bpf/lib/vlan.h):
tags taken off on the way in (floating IP DNAT, ARP for a floating IP and a router gateway),
put on on the way out (SNAT, ARP replies, ICMP errors), tags no network claims dropped and
counted, untagged frames on the same NIC still the flat network's, one NIC per physical network."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

from dfxdp.controller.apps import LocalView
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.datapath.libbpf import to_dict
from dfxdp.datapath.pktrun import run_packet

from .test_l3 import port, valid_checksums

VID, VID_OTHER = 100, 300


def external(nid, key, kind, physnet, vid=None):
    return {"id": nid, "key": key, "router:external": True, "provider:network_type": kind,
            "provider:physical_network": physnet, "provider:segmentation_id": vid}


BLUE, GREEN = {"id": "blue", "key": 10}, {"id": "green", "key": 20}
FLAT = external("flat", 30, "flat", "provider")
VLAN = external("vlan", 40, "vlan", "provider", VID)
OTHER = external("other", 50, "vlan", "physnet2", VID_OTHER)  # on a second NIC
VM_B, VM_G, RIF_B, RIF_G = "fa:16:3e:00:01:01", "fa:16:3e:00:02:01", "fa:16:3e:00:0a:01", "fa:16:3e:00:0a:02"
GW_VLAN, GW_FLAT, FIP_VLAN, FIP_FLAT = "fa:16:3e:00:0b:01", "fa:16:3e:00:0b:02", "fa:16:3e:00:0f:01", "fa:16:3e:00:0f:02"
OUTSIDE_MAC, NIC_MAC = "02:00:00:00:99:99", "02:00:00:00:00:03"
OUTSIDE_VLAN, OUTSIDE_FLAT = "198.19.40.100", "198.19.30.100"


@pytest.fixture
def vlans(pipeline, test_iface):
    """vm-b behind r1 whose gateway and floating IP are on VLAN 100, vm-g behind r2 on the flat
    network, both external networks on one NIC; VLAN 300 of physnet2 on a second NIC."""
    (_, vm_b), (_, vm_g), (_, underlay), (_, nic), (_, nic2) = (test_iface() for _ in range(5))
    ports = [
        port("vm-b", 1, BLUE, VM_B, "10.0.0.5", "sb", "ch1"),
        port("vm-g", 2, GREEN, VM_G, "10.1.0.5", "sg", "ch1"),
        port("rif-b", 3, BLUE, RIF_B, "10.0.0.1", "sb", owner="network:router_interface", device="r1"),
        port("rif-g", 4, GREEN, RIF_G, "10.1.0.1", "sg", owner="network:router_interface", device="r2"),
        port("gw-v", 5, VLAN, GW_VLAN, "198.19.40.10", "sv", owner="network:router_gateway", device="r1"),
        port("gw-f", 6, FLAT, GW_FLAT, "198.19.30.10", "sf", owner="network:router_gateway", device="r2"),
        port("fip-v", 7, VLAN, FIP_VLAN, "198.19.40.20", "sv", owner="network:floatingip", device="fip-v"),
        port("fip-f", 8, FLAT, FIP_FLAT, "198.19.30.20", "sf", owner="network:floatingip", device="fip-f"),
    ]
    view = LocalView(
        chassis="ch1", tunnel_ip="198.18.0.11", networks={n["id"]: n for n in (BLUE, GREEN, FLAT, VLAN, OTHER)},
        subnets={"sb": {"id": "sb", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1"},
                 "sg": {"id": "sg", "cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.1"},
                 "sv": {"id": "sv", "cidr": "198.19.40.0/24", "gateway_ip": "198.19.40.1"},
                 "sf": {"id": "sf", "cidr": "198.19.30.0/24", "gateway_ip": "198.19.30.1"}},
        ports={p["id"]: p for p in ports},
        routers={"r1": {"id": "r1", "key": 77, "routes": []}, "r2": {"id": "r2", "key": 78, "routes": []}},
        floatingips={"fip-v": {"id": "fip-v", "floating_ip_address": "198.19.40.20", "floating_network_id": "vlan",
                               "port_id": "vm-b", "fixed_ip_address": "10.0.0.5", "router_id": "r1"},
                     "fip-f": {"id": "fip-f", "floating_ip_address": "198.19.30.20", "floating_network_id": "flat",
                               "port_id": "vm-g", "fixed_ip_address": "10.1.0.5", "router_id": "r2"}},
        local_ports={"vm-b": vm_b, "vm-g": vm_g}, underlay_ifindex=underlay, underlay_mac="02:00:00:00:00:01",
        bridges={"provider": (nic, NIC_MAC), "physnet2": (nic2, "02:00:00:00:00:04")})
    result = build_datapath_control(pipeline.maps).apply(view)
    assert not result.errors
    return pipeline, vm_b, vm_g, nic, nic2


def learn_outside(pipe, nic):
    """The outside hosts' MACs, learned from frames they send to the floating IPs."""
    for frame in (Ether(src=OUTSIDE_MAC, dst=FIP_VLAN) / Dot1Q(vlan=VID) / IP(src=OUTSIDE_VLAN, dst="198.19.40.20") / ICMP(),
                  Ether(src=OUTSIDE_MAC, dst=FIP_FLAT) / IP(src=OUTSIDE_FLAT, dst="198.19.30.20") / ICMP()):
        assert run_packet(pipe, frame, ingress_ifindex=nic).verdict == "XDP_REDIRECT"


def test_tagged_frame_to_a_floating_ip_is_untagged_and_dnated(vlans):
    pipe, vm_b, _, nic, _ = vlans
    frame = Ether(src=OUTSIDE_MAC, dst=FIP_VLAN) / Dot1Q(vlan=VID) / IP(src=OUTSIDE_VLAN, dst="198.19.40.20") / TCP(dport=22)
    res = run_packet(pipe, frame, ingress_ifindex=nic)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == vm_b
    out = res.packet
    assert Dot1Q not in out and out[Ether].type == 0x0800
    assert (out[IP].src, out[IP].dst, out[Ether].dst, out[Ether].src) == (OUTSIDE_VLAN, "10.0.0.5", VM_B, RIF_B)
    assert valid_checksums(res.data)
    learned = pipe.maps["ext_neigh"].lookup(int.from_bytes(bytes([198, 19, 40, 100]), "little"))
    assert bytes(to_dict(learned)["mac"]) == bytes.fromhex(OUTSIDE_MAC.replace(":", ""))


def test_snat_toward_a_vlan_network_leaves_tagged(vlans):
    pipe, vm_b, _, nic, _ = vlans
    learn_outside(pipe, nic)
    frame = Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst=OUTSIDE_VLAN) / UDP(sport=4000, dport=53) / b"q"
    res = run_packet(pipe, frame, ingress_ifindex=vm_b)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == nic
    out = res.packet
    assert out[Ether].type == 0x8100 and out[Dot1Q].vlan == VID and out[Dot1Q].type == 0x0800
    assert (out[IP].src, out[Ether].src, out[Ether].dst) == ("198.19.40.20", FIP_VLAN, OUTSIDE_MAC)
    assert bytes(out[UDP].payload) == b"q" and len(res.data) == len(frame) + 4


def arp_request(target, tag=Dot1Q(vlan=VID)):
    return (Ether(src=OUTSIDE_MAC, dst="ff:ff:ff:ff:ff:ff") / tag
            / ARP(op=1, hwsrc=OUTSIDE_MAC, psrc=OUTSIDE_VLAN, pdst=target))


def test_arp_for_a_floating_ip_on_a_vlan_is_answered_tagged(vlans):
    pipe, _, _, nic, _ = vlans
    res = run_packet(pipe, arp_request("198.19.40.20"), ingress_ifindex=nic)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == nic
    reply = res.packet
    assert reply[Dot1Q].vlan == VID and reply[Ether].dst == OUTSIDE_MAC
    assert (reply[ARP].op, reply[ARP].psrc, reply[ARP].hwsrc, reply[ARP].pdst) == (2, "198.19.40.20", FIP_VLAN,
                                                                                  OUTSIDE_VLAN)


def test_what_goes_to_the_kernel_keeps_its_tag(vlans):
    """ARP for the router gateway is the fallback's (as on flat networks): it gets the frame as
    it came, tagged, never untagged as if it were the flat network's."""
    pipe, _, _, nic, _ = vlans
    request = arp_request("198.19.40.10")
    res = run_packet(pipe, request, ingress_ifindex=nic)
    assert res.verdict == "XDP_PASS" and res.data == bytes(request)


def test_a_vlan_frame_that_cannot_get_its_tag_back_is_dropped(vlans):
    """The kernel never gets a frame of a VLAN untagged: if its network loses the VLAN while
    it is in the pipeline (here: before the stage passes it), it is dropped."""
    pipe, _, _, nic, _ = vlans
    pipe.maps["ext_vlan_out"].delete({"ifindex": nic, "id": VLAN["key"]})
    res = run_packet(pipe, arp_request("198.19.40.10"), ingress_ifindex=nic)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_VLAN_UNKNOWN")


def test_icmp_error_to_a_vlan_sender_goes_back_tagged(vlans):
    pipe, _, _, nic, _ = vlans
    frame = Ether(src=OUTSIDE_MAC, dst=FIP_VLAN) / Dot1Q(vlan=VID) / IP(src=OUTSIDE_VLAN, dst="198.19.40.20", ttl=1) / TCP()
    res = run_packet(pipe, frame, ingress_ifindex=nic)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == nic
    out = res.packet
    assert out[Dot1Q].vlan == VID and (out[ICMP].type, out[IP].dst) == (11, OUTSIDE_VLAN)
    assert valid_checksums(bytes(Ether(src=out.src, dst=out.dst) / out[Dot1Q].payload))


def test_the_flat_network_on_the_same_nic_stays_untagged(vlans):
    pipe, _, vm_g, nic, _ = vlans
    learn_outside(pipe, nic)
    inbound = Ether(src=OUTSIDE_MAC, dst=FIP_FLAT) / IP(src=OUTSIDE_FLAT, dst="198.19.30.20") / TCP(dport=22)
    res = run_packet(pipe, inbound, ingress_ifindex=nic)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == vm_g and res.packet[IP].dst == "10.1.0.5"
    outbound = Ether(src=VM_G, dst=RIF_G) / IP(src="10.1.0.5", dst=OUTSIDE_FLAT) / UDP(dport=53)
    res = run_packet(pipe, outbound, ingress_ifindex=vm_g)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == nic
    assert Dot1Q not in res.packet and res.packet[IP].src == "198.19.30.20" and len(res.data) == len(outbound)
    arp = Ether(src=OUTSIDE_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=OUTSIDE_MAC, psrc=OUTSIDE_FLAT, pdst="198.19.30.20")
    res = run_packet(pipe, arp, ingress_ifindex=nic)
    assert res.verdict == "XDP_REDIRECT" and Dot1Q not in res.packet and res.packet[ARP].hwsrc == FIP_FLAT


@pytest.mark.parametrize("tag", [Dot1Q(vlan=200), Dot1Q(vlan=VID_OTHER), Dot1AD(vlan=VID) / Dot1Q(vlan=VID)],
                         ids=["unknown", "another-nics", "qinq"])
def test_a_tag_no_network_claims_is_dropped_and_counted(vlans, tag):
    pipe, _, _, nic, _ = vlans
    frame = Ether(src=OUTSIDE_MAC, dst=FIP_VLAN) / tag / IP(src=OUTSIDE_VLAN, dst="198.19.40.20") / ICMP()
    res = run_packet(pipe, frame, ingress_ifindex=nic)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_VLAN_UNKNOWN")
    assert res.counters["drops"]["DROP_VLAN_UNKNOWN"]["packets"] == 1


def test_a_truncated_tag_is_dropped(vlans):
    pipe, _, _, nic, _ = vlans
    res = run_packet(pipe, bytes(Ether(src=OUTSIDE_MAC, dst=FIP_VLAN, type=0x8100)) + b"\x00\x64", ingress_ifindex=nic)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_TRUNCATED")


def test_each_physical_network_has_its_own_nic(vlans):
    """physnet2's VLAN is its NIC's; that NIC has no flat network, so untagged frames are the kernel's."""
    pipe, _, _, nic, nic2 = vlans
    key = {"ifindex": nic2, "id": VID_OTHER}
    assert pipe.maps["ext_vlan_in"].lookup(key) == OTHER["key"]
    assert pipe.maps["ext_vlan_out"].lookup({"ifindex": nic2, "id": OTHER["key"]}) == VID_OTHER
    assert pipe.maps["ext_vlan_in"].lookup({"ifindex": nic, "id": VID_OTHER}) is None
    untagged = Ether(src=OUTSIDE_MAC, dst=FIP_FLAT) / IP(src=OUTSIDE_FLAT, dst="198.19.30.20") / ICMP()
    res = run_packet(pipe, untagged, ingress_ifindex=nic2)
    assert res.verdict == "XDP_PASS" and res.data == bytes(untagged)
