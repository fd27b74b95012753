"""The end-to-end bench gives a router a few attempts (a saturated router can drop
a handshake or iperf3's TCP control connection), then reports the failure; a
router's cost is taken against the generator's own rate of the same run."""
import contextlib

import pytest

from dfxdp.bench import throughput
from dfxdp.bench.trafficgen import Rate


class FakeTopology:
    def __init__(self, prefix):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def one_router(monkeypatch):
    built = []

    @contextlib.contextmanager
    def router(topo, security_groups=True):
        built.append((topo, security_groups))
        yield "hosts"

    monkeypatch.setattr(throughput, "Topology", FakeTopology)
    monkeypatch.setattr(throughput, "ROUTERS", {"flaky": router})
    return built


# 1 ms per 1e6 frames through the router: 1000 ns; 1e6 frames per 0.25 ms CPU to the sink: 250 ns
ROUTER, DIRECT = Rate(1_000_000, 2.0, 1.0), Rate(1_000_000, 1.0, 0.25)


def test_a_failed_run_is_tried_again_on_a_fresh_topology(monkeypatch, one_router):
    outcomes = [RuntimeError("unable to read from stream socket"), "ok", "ok"]

    def runs(topo, hosts, protocols, seconds, count):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return {"udp": [(ROUTER, DIRECT)] * count}

    monkeypatch.setattr(throughput, "_router_runs", runs)
    results = throughput.measure(1, runs=3)
    assert [(r.name, r.protocol, r.security_groups) for r in results] == [("flaky", "udp", True),
                                                                         ("flaky", "udp", False)]
    assert [sg for _, sg in one_router] == [True, True, False]  # the failed one built afresh
    assert one_router[0][0] is not one_router[1][0]
    first = results[0]
    assert first.ns_per_packet == pytest.approx(750) and len(first.runs) == 3
    assert first.pps_per_cpu == pytest.approx(1e6) and first.pps == pytest.approx(5e5)
    assert first.generator_pps_per_cpu == pytest.approx(4e6)


def test_a_router_that_always_fails_is_reported(monkeypatch, one_router):
    def runs(topo, hosts, protocols, seconds, count):
        raise RuntimeError("no route")

    monkeypatch.setattr(throughput, "_router_runs", runs)
    with pytest.raises(RuntimeError, match=r"flaky, with security groups \(3 attempts\): no route"):
        throughput.measure(1)
    assert len(one_router) == throughput.ATTEMPTS
