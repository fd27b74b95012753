"""Distributed routing and floating IPs with real agents on a three-chassis
cluster: across subnets on one and on different chassis, router pings,
traceroute sees the router as one hop, a floating IP both ways, isolation of
networks that no router joins."""
import json
import re
import subprocess

import pytest

from dfxdp.testing.cluster import OUTSIDE_IP, Cluster
from dfxdp.testing.netns import Topology, run, wait_listening


@pytest.fixture(scope="module")
def routed():
    with Topology("l3") as topo:
        cl = Cluster(topo, chassis=3)
        try:
            c = cl.connect()
            ext = c.network.create_network(name="ext", is_router_external=True)
            c.network.create_subnet(network_id=ext.id, cidr="198.19.0.0/24", ip_version=4, gateway_ip="198.19.0.1",
                                    allocation_pools=[{"start": "198.19.0.10", "end": "198.19.0.99"}])
            blue = c.network.create_network(name="blue")
            cl.blue_sub = c.network.create_subnet(network_id=blue.id, cidr="10.0.0.0/24", ip_version=4)
            green = c.network.create_network(name="green")
            cl.green_sub = c.network.create_subnet(network_id=green.id, cidr="10.1.0.0/24", ip_version=4)
            lonely = c.network.create_network(name="lonely")  # joined to nothing
            c.network.create_subnet(network_id=lonely.id, cidr="10.2.0.0/24", ip_version=4)
            router = c.network.create_router(name="r", external_gateway_info={"network_id": ext.id})
            c.network.add_interface_to_router(router, subnet_id=cl.blue_sub.id)
            c.network.add_interface_to_router(router, subnet_id=cl.green_sub.id)
            cl.ports, cl.vm = {}, {}
            for name, net, chassis in (("b1", blue, 1), ("g2", green, 2), ("g1", green, 1), ("l3", lonely, 3)):
                port = c.network.create_port(network_id=net.id, binding_host_id=f"ch{chassis}", name=name)
                cl.ports[name], cl.vm[name] = port, cl.plug(port, cl.chassis[chassis - 1], name=name)
            for port in cl.ports.values():
                cl.wait_active(port.id)
            cl.fip = c.network.create_ip(floating_network_id=ext.id, port_id=cl.ports["b1"].id)
            default = next(c.network.security_groups(name="default"))
            c.network.create_security_group_rule(security_group_id=default.id, direction="ingress", protocol="icmp",
                                                 remote_ip_prefix="0.0.0.0/0")  # the outside host may ping
            yield cl
        finally:
            cl.close()


def ip(cl, name):
    return cl.ports[name].fixed_ips[0]["ip_address"]


def test_router_interfaces_answer_ping(routed):
    assert routed.ping(routed.vm["b1"], "10.0.0.1")
    assert routed.ping(routed.vm["b1"], "10.1.0.1")  # the router's address on the other subnet


def test_routed_across_chassis(routed):
    assert routed.ping(routed.vm["b1"], ip(routed, "g2"))
    assert routed.ping(routed.vm["g2"], ip(routed, "b1"))


def test_routed_on_one_chassis(routed):
    assert routed.ping(routed.vm["b1"], ip(routed, "g1"))


def test_tcp_across_subnets(routed):
    server = routed.topo.popen(["iperf3", "-s", "-1"], ns=routed.vm["g2"])
    wait_listening(routed.vm["g2"], 5201)
    out = run(["iperf3", "-c", ip(routed, "g2"), "-t", "1", "-J"], ns=routed.vm["b1"], check=False, timeout=30).stdout
    server.wait(10)
    assert json.loads(out)["end"]["sum_received"]["bytes"] > 1_000_000


def test_traceroute_shows_the_router_as_one_hop(routed):
    assert routed.ping(routed.vm["b1"], ip(routed, "g2"))
    out = run(["traceroute", "-n", "-q", "1", "-w", "2", ip(routed, "g2")], ns=routed.vm["b1"]).stdout
    hops = re.findall(r"^\s*(\d+)\s+(\S+)", out, re.M)
    assert [(int(n), addr) for n, addr in hops] == [(1, "10.0.0.1"), (2, ip(routed, "g2"))], out


def test_floating_ip_both_ways(routed):
    assert routed.ping(routed.outside, routed.fip.floating_ip_address)
    assert routed.ping(routed.vm["b1"], OUTSIDE_IP)
    # the outside host sees the floating IP, never the fixed one
    capture = routed.topo.popen(["tcpdump", "-nli", "eth0", "-c", "2", "icmp"], ns=routed.outside,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert any(line.startswith(b"listening on") for line in capture.stderr), "tcpdump never started"
    run(["ping", "-c", "2", "-W", "1", OUTSIDE_IP], ns=routed.vm["b1"], check=False)
    out = capture.communicate(timeout=10)[0].decode()
    assert routed.fip.floating_ip_address in out and ip(routed, "b1") not in out


def test_no_router_no_path(routed):
    assert not routed.ping(routed.vm["l3"], ip(routed, "b1"), count=1, wait=3)
    assert not routed.ping(routed.vm["b1"], ip(routed, "l3"), count=1, wait=3)
