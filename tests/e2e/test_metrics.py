"""The agent's and the server's /metrics: promtool-clean, and moving with traffic."""
import time

import pytest

from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, run
from dfxdp.testing.prom import promtool_check as promtool_ok, sample


@pytest.fixture(scope="module")
def cluster():
    with Topology("mt") as topo:
        cl = Cluster(topo, chassis=2)
        try:
            yield cl
        finally:
            cl.close()


def agent_metrics(cl, ch):
    return run(["curl", "-sf", f"http://{ch.tunnel_ip}:9870/metrics"], ns=ch.ns).stdout


def test_agent_metrics_pass_promtool_and_move_with_traffic(cluster):
    c = cluster.connect()
    net = c.network.create_network(name="m")
    c.network.create_subnet(network_id=net.id, cidr="10.0.0.0/24", ip_version=4)
    p1 = c.network.create_port(network_id=net.id, binding_host_id="ch1")
    p2 = c.network.create_port(network_id=net.id, binding_host_id="ch2")
    v1, _ = cluster.plug(p1, cluster.chassis[0]), cluster.plug(p2, cluster.chassis[1])
    for p in (p1, p2):
        cluster.wait_active(p.id)
    ch1 = cluster.chassis[0]
    before = agent_metrics(cluster, ch1)
    ok, why = promtool_ok(before)
    assert ok, why
    assert cluster.ping(v1, p2.fixed_ips[0]["ip_address"], count=5)
    after = agent_metrics(cluster, ch1)
    assert sample(after, "dfxdp_stage_packets_total", stage="STAGE_OUTPUT") >= \
        (sample(before, "dfxdp_stage_packets_total", stage="STAGE_OUTPUT") or 0) + 5
    assert sample(after, "dfxdp_reconcile_runs_total") >= 1
    assert sample(after, "dfxdp_bound_ports") == 1
    assert sample(after, "dfxdp_convergence_seconds_count") >= 1
    assert sample(after, "dfxdp_heartbeat_timestamp_seconds") > time.time() - 60


def test_server_metrics_pass_promtool_and_count_requests(cluster):
    import urllib.request

    cluster.connect().network.create_network(name="counted")
    text = urllib.request.urlopen(cluster.api_url + "/metrics", timeout=5).read().decode()
    ok, why = promtool_ok(text)
    assert ok, why
    assert sample(text, "dfxdp_api_requests_total", method="POST", route="/v2.0/networks", status="201") >= 1
