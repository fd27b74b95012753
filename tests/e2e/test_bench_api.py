"""dfxdp/bench/api.py end to end at a tiny size: bulk creates through a real server on a real
etcd, then the lists; the numbers are reported, never asserted."""
from dfxdp.bench import api


def test_api_bench_fills_and_lists(monkeypatch):
    monkeypatch.setattr(api, "PORTS_PER_NETWORK", 60)
    monkeypatch.setattr(api, "BULK", 25)
    messages = []
    point = api.measure(130, messages.append)
    assert point.ports == 130 + 3  # and each network's DHCP port
    assert messages[-1].startswith("api: 130 ports")
    assert point.bulk_create_per_second > 0 and point.list_seconds > 0
