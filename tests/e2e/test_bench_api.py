"""dfxdp/bench/api.py end to end at tiny sizes: bulk creates, single creates by several clients,
lists and pages through a real server on a real etcd; the numbers are reported, never asserted."""
from dfxdp.bench import api


def test_api_bench_grows_lists_and_pages(monkeypatch):
    monkeypatch.setattr(api, "PORTS_PER_NETWORK", 60)
    monkeypatch.setattr(api, "BULK", 25)
    messages = []
    first, second = api.measure([50, 130], messages.append, singles=10)
    assert len(messages) == api.steps([50, 130])
    # each network's DHCP port (the singles' network's too), and the first size's single creates:
    # 10, then one before each of the four timed answers after a write
    assert first.ports == 50 + 1 and second.ports == 130 + 3 + (10 + 4) + 1
    assert any(m.startswith("api: 130 ports") for m in messages)
    for point in (first, second):
        assert point.bulk_create_per_second > 0 and point.single_create_per_second > 0 and point.list_seconds > 0
        assert point.clients == api.CLIENTS and point.list_megabytes > 0
    assert api.summary([vars(first)])[2].startswith("| ports")
