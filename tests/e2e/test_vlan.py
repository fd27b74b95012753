"""A VLAN external network in the XDP datapath, on a two-chassis cluster: the outside host
reaches a floating IP over VLAN 213 (802.1Q on the wire both ways), while a flat external
network on the same NIC keeps working untagged; a second physical network on a second NIC of
the same agent (--bridge-mappings) carries its own VLAN of the same id. This kernel has no
802.1Q devices, so the outside host's VLAN side is dfxdp/testing/vlan.py (scapy), not a VLAN
sub-interface."""
import sys
import time

import pytest

from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, run

VID = 213
OUTSIDE_VLAN_IP = "198.19.50.100"


@pytest.fixture(scope="module")
def vlan_cluster():
    """Chassis 1 maps two physical networks: `provider` to ext0 (bridge br-x, the flat network and
    VLAN VID) and `physnet2` to ext1 (bridge br-y, VLAN VID again: another network); the outside
    host is on both (eth0, eth1). Chassis 2 maps `provider` only."""
    with Topology("vlan") as topo:
        cl = Cluster(topo, chassis=2, start_agents=False)
        try:
            topo.ip(cl.fabric, "link add br-y type bridge")
            topo.ip(cl.fabric, "link set br-y up")
            topo.veth("ext1", cl.chassis[0].ns, "y1", cl.fabric, vm_end="peer")
            topo.ip(cl.fabric, "link set y1 master br-y")
            topo.veth("eth1", cl.outside, "yo", cl.fabric, vm_end="both")
            topo.ip(cl.fabric, "link set yo master br-y")
            # The fabric's ends of the chassis' external NICs put the tag in the frame (no VLAN
            # TX offload), as a switch port does: XDP sees only what is in the frame.
            for nic in ("x1", "x2", "y1"):
                run(["ethtool", "-K", nic, "txvlan", "off"], ns=cl.fabric)
            cl.chassis[0].start_agent("--bridge-mappings", "physnet2:ext1")
            cl.chassis[1].start_agent()
            c = cl.connect()
            flat = c.network.create_network(name="flat", is_router_external=True)
            c.network.create_subnet(network_id=flat.id, cidr="198.19.0.0/24", ip_version=4, gateway_ip="198.19.0.1",
                                    allocation_pools=[{"start": "198.19.0.10", "end": "198.19.0.99"}])
            vlans = {}
            for physnet, cidr in (("provider", "198.19.50"), ("physnet2", "198.19.60")):
                vlans[physnet] = c.network.create_network(
                    name=f"vlan-{physnet}", is_router_external=True, provider_network_type="vlan",
                    provider_physical_network=physnet, provider_segmentation_id=VID)
                c.network.create_subnet(network_id=vlans[physnet].id, cidr=f"{cidr}.0/24", ip_version=4,
                                        gateway_ip=f"{cidr}.1",
                                        allocation_pools=[{"start": f"{cidr}.10", "end": f"{cidr}.99"}])
            cl.fips = {}
            for name, ext, cidr, chassis in (("b", vlans["provider"], "10.0.0.0/24", 1), ("g", flat, "10.1.0.0/24", 2),
                                             ("c", vlans["physnet2"], "10.2.0.0/24", 1)):
                net = c.network.create_network(name=f"net-{name}")
                sub = c.network.create_subnet(network_id=net.id, cidr=cidr, ip_version=4)
                router = c.network.create_router(name=f"r-{name}", external_gateway_info={"network_id": ext.id})
                c.network.add_interface_to_router(router, subnet_id=sub.id)
                port = c.network.create_port(network_id=net.id, binding_host_id=f"ch{chassis}", name=name)
                cl.plug(port, cl.chassis[chassis - 1], name=name)
                cl.wait_active(port.id)
                cl.fips[name] = c.network.create_ip(floating_network_id=ext.id, port_id=port.id).floating_ip_address
            default = next(c.network.security_groups(name="default"))
            c.network.create_security_group_rule(security_group_id=default.id, direction="ingress", protocol="icmp",
                                                 remote_ip_prefix="0.0.0.0/0")  # the outside host may ping
            yield cl
        finally:
            cl.close()


def ping_tagged(cl, dst: str, iface: str = "eth0", src: str = OUTSIDE_VLAN_IP, wait: float = 30) -> str:
    """The outside host's ARP and ping to `dst` over VLAN VID on `iface`, retried until the
    agents have programmed it: "ok", or the last problem."""
    deadline, out = time.monotonic() + wait, ""
    while time.monotonic() < deadline:
        done = run([sys.executable, "-m", "dfxdp.testing.vlan", iface, str(VID), src, dst],
                   ns=cl.outside, check=False, env=cl.env)
        out = done.stdout.strip() or done.stderr.strip()
        if done.returncode == 0:
            return out
        time.sleep(0.5)
    return out


def test_floating_ip_on_a_vlan_network_over_vlan(vlan_cluster):
    cl = vlan_cluster
    capture = cl.topo.popen(["tcpdump", "-enli", "x1", "-c", "2", f"vlan {VID} and icmp"], ns=cl.fabric,
                            stdout=-1, stderr=-1, text=True)
    try:
        assert ping_tagged(cl, cl.fips["b"]) == "ok"
        out, _ = capture.communicate(timeout=30)
    finally:
        capture.kill()
    # chassis 1's NIC sees both tagged: the request in, the reply (SNATed back to the floating IP) out
    assert "echo request" in out and "echo reply" in out and f"vlan {VID}" in out and cl.fips["b"] in out


def test_each_physical_network_by_its_own_nic(vlan_cluster):
    """VLAN VID of physnet2 (chassis 1's ext1) is a network of its own: its floating IP answers
    there, and not on VLAN VID of the `provider` NIC."""
    cl = vlan_cluster
    assert ping_tagged(cl, cl.fips["c"], iface="eth1", src="198.19.60.100") == "ok"
    assert ping_tagged(cl, cl.fips["c"], iface="eth0", src="198.19.60.100", wait=3).startswith("no ARP answer")


def test_the_flat_network_on_the_same_nic_keeps_working(vlan_cluster):
    assert vlan_cluster.ping(vlan_cluster.outside, vlan_cluster.fips["g"])


def test_the_vlan_floating_ip_is_not_reachable_untagged(vlan_cluster):
    """Sent untagged (the flat network) to the VLAN floating IP's address, nothing answers."""
    cl = vlan_cluster
    cl.topo.ip(cl.outside, f"route add {cl.fips['b']}/32 dev eth0")
    try:
        assert run(["ping", "-c", "2", "-i", "0.2", "-W", "1", cl.fips["b"]], ns=cl.outside, check=False).returncode != 0
    finally:
        cl.topo.ip(cl.outside, f"route del {cl.fips['b']}/32 dev eth0")
