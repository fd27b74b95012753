"""The datapath collector: sums per-CPU maps at scrape time, passes promtool,
and its counters move with the packets sent."""
from prometheus_client import CollectorRegistry, generate_latest

from dfxdp.metrics.datapath import DatapathCollector
from dfxdp.testing.prom import promtool_check, sample as value
from tests.bpf.test_sg import MAC_A, MAC_B, sg, to_b  # noqa: F401 - fixture
from scapy.layers.inet import TCP


def scrape(pipe) -> str:
    registry = CollectorRegistry()
    registry.register(DatapathCollector(lambda: pipe.maps))
    return generate_latest(registry).decode()


def test_promtool_accepts_and_counters_follow_traffic(sg):  # noqa: F811
    pipe, ifs = sg
    before = scrape(pipe)
    ok, why = promtool_check(before)
    assert ok, why
    for port in (80, 81, 99):
        to_b(pipe, ifs, TCP(sport=1000 + port, dport=port, flags="S"))
    after = scrape(pipe)
    assert value(after, "dfxdp_verdict_packets_total", verdict="XDP_REDIRECT") == \
        (value(before, "dfxdp_verdict_packets_total", verdict="XDP_REDIRECT") or 0) + 2
    assert value(after, "dfxdp_drop_packets_total", reason="DROP_SG_INGRESS") == 1
    assert value(after, "dfxdp_port_packets_total", port_key="2", direction="ingress", verdict="denied") == 1
    assert value(after, "dfxdp_conntrack_entries") == 2
    assert value(after, "dfxdp_map_capacity", map="conntrack") == pipe.maps["conntrack"].info.max_entries
