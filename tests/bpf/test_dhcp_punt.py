"""DHCP client frames through BPF_PROG_TEST_RUN: a bound port's requests (broadcast
from 0.0.0.0, or unicast RENEW from its own address) are punted to the agent
after port security's checks; spoofed ones are dropped; other UDP goes on."""
import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dfxdp.controller.punt import parse_record
from dfxdp.datapath.pktrun import run_packet
from dfxdp.testing.punt import drained
from tests.bpf import l2_fixtures as fx


def dhcp(src_mac, src_ip, dst_ip, sport=68, dst_mac="ff:ff:ff:ff:ff:ff", kind="discover"):
    return (Ether(src=src_mac, dst=dst_mac) / IP(src=src_ip, dst=dst_ip) / UDP(sport=sport, dport=67)
            / BOOTP(chaddr=bytes.fromhex(src_mac.replace(":", "")), xid=7)
            / DHCP(options=[("message-type", kind), "end"]))


@pytest.fixture(params=[True, False], ids=["portsec", "no-portsec"])
def world(request, pipeline, test_iface):
    (_, local), (_, local2), (_, underlay) = test_iface(), test_iface(), test_iface()
    fx.program(pipeline, fx.build_view(local, local2, underlay, portsec=request.param))
    return pipeline, local, request.param


@pytest.mark.parametrize("frame", [
    dhcp(fx.LOCAL_MAC, "0.0.0.0", "255.255.255.255"),
    dhcp(fx.LOCAL_MAC, "10.0.0.1", "10.0.0.250", dst_mac="fa:16:3e:00:00:fa", kind="request"),  # RENEW
    dhcp(fx.LOCAL_MAC, "10.0.0.1", "10.0.0.250", dst_mac="fa:16:3e:00:00:fa", kind="release"),
], ids=["discover", "renew", "release"])
def test_a_ports_dhcp_requests_are_punted_with_the_port(world, frame):
    pipe, local, _ = world
    res = run_packet(pipe, frame, ingress_ifindex=local)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_PUNTED")
    assert res.stages == ["STAGE_ENTRY_PORT", "STAGE_PORTSEC"]
    [record] = drained(pipe)
    fields, punted = parse_record(record)
    assert fields["ifindex"] == local and fields["port_key"] == 1 and fields["net_key"] == fx.NET_A["key"]
    assert punted == bytes(frame)


@pytest.mark.parametrize("frame, reason", [
    (dhcp("fa:16:3e:00:00:99", "0.0.0.0", "255.255.255.255"), "DROP_PORTSEC_MAC"),
    (dhcp(fx.LOCAL_MAC, "10.0.0.77", "10.0.0.250"), "DROP_PORTSEC_IP"),
], ids=["spoofed-mac", "spoofed-ip"])
def test_spoofed_dhcp_requests_are_dropped_not_punted(pipeline, test_iface, frame, reason):
    (_, local), (_, local2), (_, underlay) = test_iface(), test_iface(), test_iface()
    fx.program(pipeline, fx.build_view(local, local2, underlay, portsec=True))
    res = run_packet(pipeline, frame, ingress_ifindex=local)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", reason)
    assert drained(pipeline) == []


def test_udp_to_67_from_another_port_goes_on(world):
    pipe, local, _ = world
    frame = dhcp(fx.LOCAL_MAC, "10.0.0.1", "10.0.0.2", sport=5000, dst_mac=fx.LOCAL2_MAC)
    res = run_packet(pipe, frame, ingress_ifindex=local)
    assert res.drop_reason != "DROP_PUNTED" and "STAGE_L2" in res.stages
    assert drained(pipe) == []
