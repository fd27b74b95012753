"""Real agents on a three-chassis cluster with a real etcd: L2 within a network
on one chassis and across chassis (ping, iperf3), isolation, port security,
late ports, status write-back, and forwarding that survives an agent restart."""
import json
import re
import signal
import subprocess
import time

import pytest

from dfxdp.datapath.libbpf import Map, ffi
from dfxdp.datapath.pipeline import DROP_REASONS
from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, run, wait_listening


@pytest.fixture(scope="module")
def cluster():
    with Topology("l2") as topo:
        cl = Cluster(topo, chassis=3)
        try:
            conn = cl.connect()
            cl.net = conn.network.create_network(name="blue")
            conn.network.create_subnet(network_id=cl.net.id, cidr="10.0.0.0/24", ip_version=4)
            cl.red = conn.network.create_network(name="red")
            # the same range, addresses handed out from another end: every red IP is unknown in blue
            conn.network.create_subnet(network_id=cl.red.id, cidr="10.0.0.0/24", ip_version=4,
                                       allocation_pools=[{"start": "10.0.0.200", "end": "10.0.0.250"}])
            yield cl
        finally:
            cl.close()


def vm_on(cl, chassis_index, network=None, **kw):
    conn = cl.connect()
    port = conn.network.create_port(network_id=(network or cl.net).id, binding_host_id=f"ch{chassis_index}", **kw)
    vm = cl.plug(port, cl.chassis[chassis_index - 1])
    cl.wait_active(port.id)
    return port, vm


def ip_of(port):
    return port.fixed_ips[0]["ip_address"]


def iperf(cl, client_vm, server_vm, server_ip):
    server = subprocess.Popen(["ip", "netns", "exec", server_vm, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(server_vm, 5201)
        out = run(["iperf3", "-c", server_ip, "-t", "1", "-J"], ns=client_vm, check=False, timeout=30).stdout
        return json.loads(out)["end"]["sum_received"]["bytes"] if out else 0
    finally:
        server.kill()
        server.wait()


def drops(cl, chassis_index, reason):
    m = Map.pinned(cl.chassis[chassis_index - 1].bpffs / "maps" / "drop_stats")
    try:
        return m.lookup_sum(DROP_REASONS[reason])["packets"]
    finally:
        m.close()


def test_same_chassis_ping_and_tcp(cluster):
    (p1, v1), (p2, v2) = vm_on(cluster, 1), vm_on(cluster, 1)
    assert cluster.ping(v1, ip_of(p2))
    assert iperf(cluster, v1, v2, ip_of(p2)) > 1_000_000


def test_cross_chassis_ping_and_tcp(cluster):
    (p1, v1), (p3, v3) = vm_on(cluster, 1), vm_on(cluster, 3)
    assert cluster.ping(v1, ip_of(p3)) and cluster.ping(v3, ip_of(p1))
    assert iperf(cluster, v1, v3, ip_of(p3)) > 1_000_000


def test_networks_are_isolated(cluster):
    """A red VM with an address in the same range cannot reach a blue VM, on one chassis or across."""
    (pb, vb), (pr, vr) = vm_on(cluster, 2), vm_on(cluster, 2, network=cluster.red)
    (pr3, vr3) = vm_on(cluster, 3, network=cluster.red)
    assert cluster.ping(vr, ip_of(pr3))  # red to red works
    assert not cluster.ping(vr, ip_of(pb), count=1, wait=3)
    assert not cluster.ping(vb, ip_of(pr), count=1, wait=3)


def test_spoofed_source_ip_is_dropped(cluster):
    (p1, v1), (p2, v2) = vm_on(cluster, 1), vm_on(cluster, 2)
    assert cluster.ping(v1, ip_of(p2))
    run(["ip", "addr", "add", "10.0.0.250/24", "dev", "eth0"], ns=v1)
    before = drops(cluster, 1, "DROP_PORTSEC_IP")
    out = run(["ping", "-c", "3", "-W", "1", "-I", "10.0.0.250", ip_of(p2)], ns=v1, check=False)
    assert out.returncode != 0
    assert drops(cluster, 1, "DROP_PORTSEC_IP") >= before + 3
    run(["ip", "addr", "del", "10.0.0.250/24", "dev", "eth0"], ns=v1)


def test_port_status_follows_the_tap(cluster):
    p, vm = vm_on(cluster, 2)
    run(["ip", "netns", "del", vm])  # the VM goes, and with it the tap pair
    cluster.topo.namespaces.remove(vm)
    conn = cluster.connect()
    deadline = time.monotonic() + 20
    while conn.network.get_port(p.id).status != "DOWN":
        assert time.monotonic() < deadline, "port never went DOWN"
        time.sleep(0.2)


def test_forwarding_survives_agent_restart_and_catches_up(cluster):
    (p1, v1), (p2, v2) = vm_on(cluster, 1), vm_on(cluster, 2)
    assert cluster.ping(v1, ip_of(p2))
    pinger = subprocess.Popen(["ip", "netns", "exec", v1, "ping", "-c", "100", "-i", "0.05", "-W", "1", ip_of(p2)],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    ch2 = cluster.chassis[1]
    ch2.stop_agent(kill=True)          # no goodbye: the datapath must carry on by itself
    conn = cluster.connect()
    late = conn.network.create_port(network_id=cluster.net.id, binding_host_id="ch2")  # while ch2 is down
    time.sleep(1)
    ch2.start_agent()
    out, _ = pinger.communicate(timeout=60)
    assert " 0% packet loss" in out, out
    late_vm = cluster.plug(late, ch2)
    cluster.wait_active(late.id)
    assert cluster.ping(v1, ip_of(late))


def _recreated_and_filled(pin) -> bool:
    """The pin holds the new layout and every filtered port points at its policy."""
    try:
        m = Map.pinned(pin)
    except OSError:
        return False  # between the old pin's removal and the new one's
    try:
        return (m.info.value_size == ffi.sizeof("struct sg_port") and len(m) > 0
                and all(v.policy for _, v in m.items()))
    finally:
        m.close()


def test_upgrade_that_changes_a_map_layout_keeps_forwarding(cluster):
    """An older release pinned sg_ports with another layout: the new agent recreates it,
    fills it while the old programs forward, and only then switches to the new ones."""
    (p1, v1), (p2, v2) = vm_on(cluster, 1), vm_on(cluster, 2)
    assert cluster.ping(v1, ip_of(p2))
    ch2 = cluster.chassis[1]
    ch2.stop_agent(kill=True)
    pin = ch2.bpffs / "maps" / "sg_ports"
    pin.unlink()  # the running programs keep their map; the pin now shows an older release's layout
    subprocess.run(["bpftool", "map", "create", str(pin), "type", "hash", "key", "4", "value", "4",
                    "entries", "65536", "name", "sg_ports"], check=True)
    # ping until the new agent has recreated and filled the map, and a while after it went live
    pinger = subprocess.Popen(["ip", "netns", "exec", v1, "ping", "-i", "0.05", "-W", "1", ip_of(p2)],
                              stdout=subprocess.PIPE, text=True)
    try:
        ch2.start_agent()
        deadline = time.monotonic() + 30
        while not _recreated_and_filled(pin):
            assert time.monotonic() < deadline, "the recreated sg_ports map was never filled"
            time.sleep(0.1)
        cluster.wait_active(p2.id)
        time.sleep(1)  # traffic after the switch to the new programs
    finally:
        pinger.send_signal(signal.SIGINT)
        out, _ = pinger.communicate(timeout=30)
    # no gap in the answered sequence (the one in flight when ping was stopped may lack its reply)
    answered = [int(n) for n in re.findall(r"bytes from .* icmp_seq=(\d+)", out)]
    assert answered and answered == list(range(1, answered[-1] + 1)), out
    assert cluster.ping(v1, ip_of(p2))
