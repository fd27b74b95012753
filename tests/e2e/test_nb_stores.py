"""The NB stores under real conditions: concurrent writers in several processes,
an etcd restart under a watch, sqlite shared between processes."""
import multiprocessing as mp
import queue
import threading

import pytest

from dfxdp.nb.db import Compare, Put, open_store
from dfxdp.nb.errors import NBError
from dfxdp.nb.service import NBService
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


def _create_ports(url: str, network_id: str, threads: int, each: int, out) -> None:
    """One API server's worth of concurrent port creates: (key, address) pairs and error types."""
    svc = NBService(open_store(url))
    made, errors = [], []

    def worker():
        for _ in range(each):
            try:
                port = svc.create("port", {"network_id": network_id})
                made.append((port["key"], port["fixed_ips"][0]["ip_address"]))
            except NBError as exc:
                errors.append(exc.type)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    out.put((made, errors))


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


def test_busy_servers_create_ports_concurrently_without_conflicts_or_duplicates(url):
    """Two servers, four writers each, one subnet: every create succeeds (keys come from
    per-server blocks, addresses from a random window) and no key or address is shared."""
    svc = NBService(open_store(url))
    net = svc.create("network", {"name": "busy"})
    svc.create("subnet", {"network_id": net["id"], "cidr": "10.6.0.0/22"})
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_create_ports, args=(url, net["id"], 4, 15, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    made = [pair for pairs, _ in results for pair in pairs]
    assert [e for _, errors in results for e in errors] == []
    assert len({key for key, _ in made}) == len({ip for _, ip in made}) == 120


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
