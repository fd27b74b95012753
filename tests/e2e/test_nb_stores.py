"""The NB stores under real conditions: concurrent writers in several processes,
an etcd restart under a watch, sqlite shared between processes."""
import multiprocessing as mp
import queue
import threading

import pytest

from dfxdp.nb.db import Compare, Put, open_store
from dfxdp.nb.watcher import Snapshot, Watcher
from tests.fixtures.etcd import etcd  # noqa: F401 - fixture


def _increment(url: str, n: int) -> None:
    store = open_store(url)
    done = 0
    while done < n:
        kv = store.get("/counter")
        value = int(kv.value) if kv else 0
        if store.txn([Compare("/counter", kv.mod_revision if kv else 0)], [Put("/counter", str(value + 1).encode())]):
            done += 1


def _claim(url: str, who: str, pool: int, out) -> None:
    """Claim free 'addresses' with create-if-absent, as IPAM does."""
    store = open_store(url)
    mine = [i for i in range(pool) if store.txn([Compare(f"/ip/{i}", 0)], [Put(f"/ip/{i}", who.encode())])]
    out.put((who, mine))


@pytest.fixture(params=["sqlite", "etcd"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nb.db"
    return request.getfixturevalue("etcd").url


def test_concurrent_processes_never_lose_an_update(url):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(url, 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert int(open_store(url).get("/counter").value) == 100


def test_concurrent_processes_never_hand_out_one_address_twice(url):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(url, f"w{i}", 60, out)) for i in range(3)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    claimed = [ip for ips in results.values() for ip in ips]
    assert sorted(claimed) == list(range(60))  # every address once, none twice
    store = open_store(url)
    assert all(store.get(f"/ip/{ip}").value.decode() == who for who, ips in results.items() for ip in ips)


def test_watch_resumes_across_an_etcd_restart_without_loss(etcd):
    store = open_store(etcd.url)
    watcher = Watcher(store, "/nb/")
    seen: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [seen.put(item) for item in watcher], daemon=True).start()
    assert isinstance(seen.get(timeout=10), Snapshot)
    for i in range(5):
        store.put(f"/nb/{i}", b"before")
    etcd.stop()
    etcd.start()
    for i in range(5, 10):
        store.put(f"/nb/{i}", b"after")
    store.delete("/nb/0")
    events = [seen.get(timeout=30) for _ in range(11)]
    watcher.cancel()
    assert all(not isinstance(e, Snapshot) for e in events)
    assert [(e.type, e.key) for e in events] == [("put", f"/nb/{i}") for i in range(10)] + [("delete", "/nb/0")]
    revs = [e.revision for e in events]
    assert revs == sorted(revs) and len(set(revs)) == len(revs)


def test_sqlite_watch_sees_another_process(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    store = open_store(url)
    watch = store.watch("/counter", store.revision() + 1)
    got: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [got.put(e) for e in watch], daemon=True).start()
    proc = mp.get_context("spawn").Process(target=_increment, args=(url, 3))
    proc.start()
    proc.join(60)
    values = [got.get(timeout=10).value for _ in range(3)]
    watch.cancel()
    assert values == [b"1", b"2", b"3"]


def test_sqlite_survives_reopen(tmp_path):
    url = f"sqlite:///{tmp_path}/keep.db"
    first = open_store(url)
    rev = first.put("/keep", b"yes")
    first.close()
    again = open_store(url)
    assert again.get("/keep").value == b"yes" and again.revision() == rev
