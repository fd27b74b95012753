"""Path-MTU discovery across chassis: guests that ignore DHCP's MTU option (1500
on their interface) on a 1450 network over a 1500 underlay, both in the default
security group. A ping too big for the tunnel gets "fragmentation needed" with
the network's MTU back instead of vanishing; a 4 MB TCP transfer adapts through
it and arrives byte-exact."""
import hashlib
import os
import time

import pytest

from dfxdp.controller.binding import tap_name
from dfxdp.datapath.libbpf import Map
from dfxdp.datapath.pipeline import DROP_REASONS
from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, run

GUEST_MTU = 1500
NETWORK_MTU = 1450  # the network's default on VXLAN: 1500 - 50
PORT = 5001


@pytest.fixture(scope="module")
def cluster():
    with Topology("pmtu") as topo:
        cl = Cluster(topo, chassis=2)
        try:
            conn = cl.connect()
            cl.net = conn.network.create_network(name="pmtu")
            conn.network.create_subnet(network_id=cl.net.id, cidr="10.0.0.0/24", ip_version=4)
            yield cl
        finally:
            cl.close()


def guest(cl, chassis_index):
    """A VM in the default group whose guest keeps MTU 1500: on its interface, and on the tap,
    which, like a real tap, takes whatever the guest sends."""
    port = cl.connect().network.create_port(network_id=cl.net.id, binding_host_id=f"ch{chassis_index}")
    chassis = cl.chassis[chassis_index - 1]
    vm = cl.plug(port, chassis)
    cl.topo.ip(vm, f"link set eth0 mtu {GUEST_MTU}")
    cl.topo.ip(chassis.ns, f"link set {tap_name(port.id)} mtu {GUEST_MTU}")
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


def learnt_mtu(vm, dst) -> bool:
    """The guest's route cache holds the network's MTU toward dst: path-MTU discovery ran."""
    return f"mtu {NETWORK_MTU}" in run(["ip", "route", "get", dst], ns=vm).stdout


def test_a_ping_too_big_for_the_tunnel_gets_fragmentation_needed(cluster):
    (_, v1), (p2, _) = guest(cluster, 1), guest(cluster, 2)
    assert cluster.ping(v1, ip_of(p2))
    before = frag_needed(cluster, 1)
    out = run(["ping", "-c", "1", "-W", "5", "-s", "1472", "-M", "do", ip_of(p2)], ns=v1, check=False)
    assert out.returncode != 0 and f"mtu = {NETWORK_MTU}" in out.stdout, out.stdout
    assert "From 10.0.0.1 " in out.stdout  # the subnet's gateway, the first hop the guest knows
    assert frag_needed(cluster, 1) == before + 1
    assert learnt_mtu(v1, ip_of(p2))
    # the largest ping the network carries crosses with DF
    assert run(["ping", "-c", "1", "-W", "5", "-s", str(NETWORK_MTU - 28), "-M", "do", ip_of(p2)],
               ns=v1, check=False).returncode == 0


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
    deadline = time.monotonic() + 20
    while f":{PORT} " not in run(["ss", "-Htln"], ns=v2).stdout:
        assert time.monotonic() < deadline and server.poll() is None, "nc never listened"
        time.sleep(0.1)
    with open(sent, "rb") as data:
        client = run(["nc", "-N", "-n", ip_of(p2), str(PORT)], ns=v1, check=False, timeout=120, stdin=data)
    assert client.returncode == 0, client.stderr
    assert server.wait(timeout=60) == 0
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    assert received.stat().st_size == sent.stat().st_size and digest(received) == digest(sent)
    assert frag_needed(cluster, 1) > before and learnt_mtu(v1, ip_of(p2))
