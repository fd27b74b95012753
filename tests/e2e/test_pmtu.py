"""Path-MTU discovery across chassis: guests that ignore DHCP's MTU option (1500
on their interface) on a 1450 network over a 1500 underlay, both in the default
security group. A ping too big for the tunnel gets "fragmentation needed" with
the network's MTU back instead of vanishing, from the router port when routed;
a 4 MB TCP transfer adapts through it and arrives byte-exact."""
import hashlib
import os

import pytest

from dfxdp.controller.binding import tap_name
from dfxdp.datapath.libbpf import Map
from dfxdp.datapath.pipeline import DROP_REASONS
from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, run, wait_listening

GUEST_MTU = 1500
NETWORK_MTU = 1450  # the network's default on VXLAN: 1500 - 50
ROUTED_MTU = 1400   # a network behind the router with a smaller MTU of its own
PORT = 5001


@pytest.fixture(scope="module")
def cluster():
    with Topology("pmtu") as topo:
        cl = Cluster(topo, chassis=2)
        try:
            conn = cl.connect()
            cl.net = conn.network.create_network(name="pmtu")
            subnet = conn.network.create_subnet(network_id=cl.net.id, cidr="10.0.0.0/24", ip_version=4)
            cl.small = conn.network.create_network(name="small", mtu=ROUTED_MTU)
            small_subnet = conn.network.create_subnet(network_id=cl.small.id, cidr="10.1.0.0/24", ip_version=4)
            router = conn.network.create_router(name="r")
            for sub in (subnet, small_subnet):
                conn.network.add_interface_to_router(router, subnet=sub.id)
            yield cl
        finally:
            cl.close()


def guest(cl, chassis_index, network=None, mtu=GUEST_MTU):
    """A VM in the default group whose guest keeps MTU 1500: on its interface, and on the tap,
    which, like a real tap, takes whatever the guest sends (mtu=None: the network's MTU)."""
    port = cl.connect().network.create_port(network_id=(network or cl.net).id, binding_host_id=f"ch{chassis_index}")
    chassis = cl.chassis[chassis_index - 1]
    vm = cl.plug(port, chassis)
    if mtu:
        cl.topo.ip(vm, f"link set eth0 mtu {mtu}")
        cl.topo.ip(chassis.ns, f"link set {tap_name(port.id)} mtu {mtu}")
    cl.wait_active(port.id)
    return port, vm


def ip_of(port):
    return port.fixed_ips[0]["ip_address"]


def frag_needed(cl, chassis_index):
    m = Map.pinned(cl.chassis[chassis_index - 1].bpffs / "maps" / "drop_stats")
    try:
        return m.lookup_sum(DROP_REASONS["DROP_FRAG_NEEDED"])["packets"]
    finally:
        m.close()


def learnt_mtu(vm, dst, mtu=NETWORK_MTU) -> bool:
    """The guest's route cache holds `mtu` toward dst: path-MTU discovery ran."""
    return f"mtu {mtu} " in run(["ip", "route", "get", dst], ns=vm).stdout + " "


def too_big_ping(cl, vm, dst, mtu):
    """A ping of 1500 bytes with DF gets "fragmentation needed" for `mtu` (counted on ch1), after
    which the largest ping that fits `mtu` crosses. Returns ping's report of the error."""
    before = frag_needed(cl, 1)
    out = run(["ping", "-c", "1", "-W", "5", "-s", str(GUEST_MTU - 28), "-M", "do", dst], ns=vm, check=False)
    assert out.returncode != 0 and f"mtu = {mtu}" in out.stdout, out.stdout
    assert frag_needed(cl, 1) == before + 1
    assert learnt_mtu(vm, dst, mtu)
    assert run(["ping", "-c", "1", "-W", "5", "-s", str(mtu - 28), "-M", "do", dst], ns=vm, check=False).returncode == 0
    return out.stdout


def test_a_ping_too_big_for_the_tunnel_gets_fragmentation_needed(cluster):
    (_, v1), (p2, _) = guest(cluster, 1), guest(cluster, 2)
    assert cluster.ping(v1, ip_of(p2))
    report = too_big_ping(cluster, v1, ip_of(p2), NETWORK_MTU)
    assert "From 10.0.0.1 " in report  # the subnet's gateway, the first hop the guest knows


def test_a_routed_ping_gets_it_from_the_router_with_the_out_network_mtu(cluster):
    (_, v1), (p2, _) = guest(cluster, 1), guest(cluster, 2, network=cluster.small, mtu=None)
    assert cluster.ping(v1, ip_of(p2))
    report = too_big_ping(cluster, v1, ip_of(p2), ROUTED_MTU)
    assert "From 10.0.0.1 " in report  # the router port the guest sent it to


def test_tcp_across_chassis_adapts_and_arrives_byte_exact(cluster, tmp_path):
    (_, v1), (p2, v2) = guest(cluster, 1), guest(cluster, 2)
    assert cluster.ping(v1, ip_of(p2))
    assert not learnt_mtu(v1, ip_of(p2))
    sent, received = tmp_path / "sent", tmp_path / "received"
    sent.write_bytes(os.urandom(4 << 20))
    before = frag_needed(cluster, 1)
    with open(received, "wb") as sink:
        server = cluster.topo.popen(["nc", "-l", "-n", ip_of(p2), str(PORT)], ns=v2, stdout=sink,
                                    stdin=open(os.devnull, "rb"))
    wait_listening(v2, PORT)
    with open(sent, "rb") as data:
        client = run(["nc", "-N", "-n", ip_of(p2), str(PORT)], ns=v1, check=False, timeout=120, stdin=data)
    assert client.returncode == 0, client.stderr
    assert server.wait(timeout=60) == 0
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    assert received.stat().st_size == sent.stat().st_size and digest(received) == digest(sent)
    assert frag_needed(cluster, 1) > before and learnt_mtu(v1, ip_of(p2))
