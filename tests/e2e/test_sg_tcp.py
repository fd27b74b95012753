"""TCP through security groups on both ends, across chassis: an established
transfer keeps its conntrack entries, so no segment of it is dropped as
"not a SYN" (DROP_CT_NOT_SYN) on either chassis, whichever way data flows; and a
half-closed connection still carries the answer that comes after a pause."""
import json
import subprocess
import sys
import time

import pytest

from dfxdp.datapath import fastpath
from dfxdp.datapath.libbpf import lib
from dfxdp.datapath.pipeline import pinned_counters
from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, run, stop_process


@pytest.fixture(scope="module")
def pair():
    """Two VMs in the default group (ingress from the group, egress anywhere) on two chassis."""
    with Topology("sgtcp") as topo:
        cl = Cluster(topo, chassis=2)
        try:
            c = cl.connect()
            net = c.network.create_network(name="n")
            c.network.create_subnet(network_id=net.id, cidr="10.0.0.0/24", ip_version=4)
            ports = [c.network.create_port(network_id=net.id, binding_host_id=f"ch{i}") for i in (1, 2)]
            assert all(p.is_port_security_enabled and p.security_group_ids for p in ports)
            cl.vms = [cl.plug(p, ch, name=f"vm{i}") for i, (p, ch) in enumerate(zip(ports, cl.chassis), 1)]
            for p in ports:
                cl.wait_active(p.id)
            cl.addrs = [p.fixed_ips[0]["ip_address"] for p in ports]
            assert cl.ping(cl.vms[0], cl.addrs[1], wait=30)
            yield cl
        finally:
            cl.close()


def not_syn_drops(cl) -> list[int]:
    return [pinned_counters(ch.bpffs)["drops"]["DROP_CT_NOT_SYN"]["packets"] for ch in cl.chassis]


def fast_path_hits(cl) -> list[int]:
    return [fastpath.pinned_stats(ch.bpffs)["FAST_HIT"]["packets"] for ch in cl.chassis]


def wait_listening(ns: str, port: int, deadline: float = 15) -> None:
    end = time.monotonic() + deadline
    while f":{port} " not in run(["ss", "-Htln"], ns=ns).stdout:
        assert time.monotonic() < end, f"nothing listens on {port} in {ns}"
        time.sleep(0.1)


@pytest.mark.parametrize("reverse", [False, True], ids=["vm1-sends", "vm2-sends"])
def test_established_transfer_loses_no_segment(pair, reverse):
    """Both directions of each flow stamp its entries at once on the two CPUs: no
    entry may look expired to one while the other refreshes it."""
    server = pair.topo.popen(["iperf3", "-s", "-1", "-p", "5201"], ns=pair.vms[1], stdout=subprocess.DEVNULL)
    try:
        wait_listening(pair.vms[1], 5201)
        before, hits_before = not_syn_drops(pair), fast_path_hits(pair)
        # several streams for 4 s: many segments cross many ACKs of the same flows
        out = run(["iperf3", "-c", pair.addrs[1], "-p", "5201", "-t", "4", "-P", "4", "-J", *(["-R"] * reverse)],
                  ns=pair.vms[0], check=False, timeout=120).stdout
        after, hits_after = not_syn_drops(pair), fast_path_hits(pair)
    finally:
        stop_process(server)
    assert [a - b for a, b in zip(after, before)] == [0, 0], "established segments dropped as DROP_CT_NOT_SYN"
    # the segments one way and the ACKs the other, each at its VM's chassis: from the fast path's cache
    assert all(a > b for a, b in zip(hits_after, hits_before)), (hits_before, hits_after)
    result = json.loads(out)
    assert "error" not in result, result["error"]
    assert result["end"]["sum_received"]["bytes"] > 0


HALF_CLOSED_SERVER = """
import socket, sys, time
listener = socket.create_server(("0.0.0.0", int(sys.argv[1])))
conn, _ = listener.accept()
while conn.recv(65536):  # the request, until the client's FIN
    pass
time.sleep(float(sys.argv[2]))  # a slow answer
end = time.monotonic() + 3
while time.monotonic() < end:
    conn.sendall(b"x" * 65536)
    time.sleep(0.1)
conn.sendall(b"end")
conn.close()
"""

HALF_CLOSING_CLIENT = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
conn.sendall(b"request")
conn.shutdown(socket.SHUT_WR)
data = b""
while chunk := conn.recv(65536):
    data += chunk
print(len(data), data.endswith(b"end"))
"""


def test_half_closed_connection_answers_after_a_pause(pair):
    """The client sends its request and half-closes; the server answers after a pause
    longer than the closing timeout, and the whole answer arrives."""
    pause = lib.CT_TIMEOUT_CLOSING + 2
    server = pair.topo.popen([sys.executable, "-c", HALF_CLOSED_SERVER, "5301", str(pause)], ns=pair.vms[1])
    try:
        wait_listening(pair.vms[1], 5301)
        before = not_syn_drops(pair)
        out = run([sys.executable, "-c", HALF_CLOSING_CLIENT, pair.addrs[1], "5301"], ns=pair.vms[0],
                  check=False, timeout=pause + 120).stdout.split()
        after = not_syn_drops(pair)
    finally:
        stop_process(server)
    assert [a - b for a, b in zip(after, before)] == [0, 0], "the answer was dropped as DROP_CT_NOT_SYN"
    assert len(out) == 2 and out[1] == "True" and int(out[0]) > 65536, out  # the answer, then the server's close
