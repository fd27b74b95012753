"""TCP through security groups on both ends, across chassis: an established
transfer keeps its conntrack entries, so no segment of it is dropped as
"not a SYN" (DROP_CT_NOT_SYN) on either chassis, whichever way data flows."""
import json
import subprocess
import time

import pytest

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
        before = not_syn_drops(pair)
        # several streams for 4 s: many segments cross many ACKs of the same flows
        out = run(["iperf3", "-c", pair.addrs[1], "-p", "5201", "-t", "4", "-P", "4", "-J", *(["-R"] * reverse)],
                  ns=pair.vms[0], check=False, timeout=120).stdout
        after = not_syn_drops(pair)
    finally:
        stop_process(server)
    assert [a - b for a, b in zip(after, before)] == [0, 0], "established segments dropped as DROP_CT_NOT_SYN"
    result = json.loads(out)
    assert "error" not in result, result["error"]
    assert result["end"]["sum_received"]["bytes"] > 0
