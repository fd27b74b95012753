"""The end-to-end bench gives a router a few attempts (a saturated OVS userspace
can drop iperf3's TCP control connection), then reports the failure."""
import contextlib

import pytest

from dfxdp.bench import throughput


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
    def router(topo):
        built.append(topo)
        yield "hosts"

    monkeypatch.setattr(throughput, "Topology", FakeTopology)
    monkeypatch.setattr(throughput, "ROUTERS", {"flaky": router})
    return built


def test_a_failed_run_is_tried_again_on_a_fresh_topology(monkeypatch, one_router):
    outcomes = [RuntimeError("unable to read from stream socket"), "ok"]

    def iperf3(topo, hosts, name, seconds):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(throughput, "_iperf3", iperf3)
    assert throughput.measure(1) == ["ok"]
    assert len(one_router) == 2 and one_router[0] is not one_router[1]


def test_a_router_that_always_fails_is_reported(monkeypatch, one_router):
    def iperf3(topo, hosts, name, seconds):
        raise RuntimeError("no route")

    monkeypatch.setattr(throughput, "_iperf3", iperf3)
    with pytest.raises(RuntimeError, match=r"flaky \(3 attempts\): no route"):
        throughput.measure(1)
    assert len(one_router) == throughput.ATTEMPTS
