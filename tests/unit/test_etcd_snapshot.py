"""The agent's NB snapshot through a real etcd, a page at a time: the same cache as one
read of everything, with a write during the snapshot arriving as the first event after it,
and every page a bounded read (etcd 3.4 reads the whole rest of the range for a page that
asks for a sort order: quadratic at 100,000 ports)."""
import functools
import itertools

from dfxdp.controller.cache import SelectiveCache
from dfxdp.nb.db import open_store
from dfxdp.nb.db.base import Event
from dfxdp.nb.service import NBService
from dfxdp.nb.txn import NB
from dfxdp.nb.watcher import Snapshot, Watcher
from tests.fixtures.etcd import etcd  # noqa: F401 - fixture

PAGE = 7


def test_a_paged_snapshot_with_a_write_during_it_equals_one_read(etcd, monkeypatch):  # noqa: F811
    store = open_store(etcd.url)
    ranges: list[dict] = []
    post = store._post

    def recording(path, body):
        if path == "/kv/range" and not body.get("count_only"):
            ranges.append(body)
        return post(path, body)

    monkeypatch.setattr(store, "_post", recording)
    monkeypatch.setattr(store, "range_pages", functools.partial(type(store).range_pages, store, page_size=PAGE))
    nb = NBService(store)
    router = nb.create("router", {"name": "r"})
    for i in range(2):
        net = nb.create("network", {"name": f"n{i}"})
        subnet = nb.create("subnet", {"network_id": net["id"], "cidr": f"10.{i}.0.0/24"})
        nb.add_router_interface(router["id"], {"subnet_id": subnet["id"]})
        nb.create_many("port", [{"network_id": net["id"], "binding:host_id": "ch1" if i == 0 and n == 0 else "sim"}
                                for n in range(20)])
    watcher = Watcher(store, NB)
    items = iter(watcher)
    snapshot = next(items)
    assert isinstance(snapshot, Snapshot)
    kvs = iter(snapshot.kvs)
    first_page = list(itertools.islice(kvs, PAGE))
    late = nb.create("port", {"network_id": net["id"], "binding:host_id": "sim"})  # during the snapshot
    paged = SelectiveCache("ch1")
    paged.load(itertools.chain(first_page, kvs), snapshot.revision)
    assert late["id"] not in paged.objects["port"]
    event = next(items)
    assert isinstance(event, Event) and late["id"] in event.key
    paged.apply(event)
    watcher.cancel()

    whole = SelectiveCache("ch1")
    whole.load(*store.range(NB))
    assert paged.objects == whole.objects and len(paged.objects["port"]) == 2 * (20 + 2) + 1  # + DHCP, router legs
    pages = [body for body in ranges if body.get("limit") == PAGE]
    assert len(pages) > 5  # the snapshot came in many pages
    # a page bounded by its limit: no sort order (etcd applies limit only to an unsorted range)
    assert all("sort_order" not in body and "sort_target" not in body for body in ranges)
