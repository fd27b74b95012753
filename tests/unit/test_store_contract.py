"""Every NB driver honours one contract (etcd's): revisions, CAS transactions,
ordered prefix watches from any revision, compaction, and the resyncing Watcher."""
import queue
import threading

import pytest

from dfxdp.nb.db import CompactedError, Compare, Delete, Put, StoreError, open_store
from dfxdp.nb.watcher import Snapshot, Watcher
from tests.fixtures.etcd import etcd  # noqa: F401 - fixture
from tests.fixtures.stores import store  # noqa: F401 - fixture


def _drain(watch, n, timeout=10):
    """Collect n events from a watch in a thread, so a broken watch fails instead of hanging."""
    out: queue.Queue = queue.Queue()

    def run():
        try:
            for ev in watch:
                out.put(ev)
        except Exception as exc:  # noqa: BLE001 - hand it to the test
            out.put(exc)

    threading.Thread(target=run, daemon=True).start()
    events = []
    for _ in range(n):
        item = out.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        events.append(item)
    return events


def test_get_range_and_revisions(store):
    r0 = store.revision()
    r1 = store.put("/t/a", b"1")
    r2 = store.put("/t/b", b"\x00\xff")
    store.put("/u/c", b"3")
    assert r0 < r1 < r2
    kv = store.get("/t/a")
    assert (kv.value, kv.create_revision, kv.mod_revision) == (b"1", r1, r1)
    kvs, rev = store.range("/t/")
    assert [k.key for k in kvs] == ["/t/a", "/t/b"] and kvs[1].value == b"\x00\xff"
    assert rev == store.revision()
    r4 = store.put("/t/a", b"2")
    kv = store.get("/t/a")
    assert (kv.create_revision, kv.mod_revision) == (r1, r4)
    assert store.get("/nope") is None


def test_get_many_reads_each_key_in_order_past_one_transactions_worth(store):
    from dfxdp.nb.db.etcd import READS_PER_TXN
    keys = [f"/m/{i:04d}" for i in range(READS_PER_TXN + 5)]
    revisions = {key: store.put(key, key.encode()) for key in keys[::2]}  # every other one exists
    store.put("/m/empty", b"")
    asked = ["/m/empty", *reversed(keys), "/m/0000"]
    found = store.get_many(asked)
    assert len(found) == len(asked) and found[0].value == b""
    for key, kv in zip(asked[1:], found[1:]):
        assert (kv.key, kv.value, kv.mod_revision) == (key, key.encode(), revisions[key]) if key in revisions \
            else kv is None
    assert store.get_many([]) == []


def test_count_counts_a_prefix_without_reading_it(store):
    for key in ("/c/a", "/c/b", "/c/b/x", "/cd", "/d"):
        store.put(key, b"")
    assert store.count("/c/") == (3, store.revision())
    assert store.count("/nothing/")[0] == 0


def test_range_in_pages_reads_every_key_at_one_revision(store):
    for i in range(7):
        store.put(f"/p/{i}", str(i).encode())
    store.put("/q/x", b"outside")
    whole, revision = store.range("/p/")
    pages, paged_revision = store.range_pages("/p/", page_size=3)
    first = next(pages)
    store.put("/p/9", b"later")  # after the first page: not in the snapshot
    store.delete("/p/5")
    rest = [kv for page in pages for kv in page]
    assert paged_revision == revision and len(first) <= 3
    assert [(kv.key, kv.value) for kv in first + rest] == [(kv.key, kv.value) for kv in whole]


def test_cas_failure_changes_nothing(store):
    rev = store.put("/k", b"v1")
    before = store.range("/")
    assert store.txn([Compare("/k", rev - 1)], [Put("/k", b"v2"), Put("/other", b"x")]) is None
    assert store.txn([Compare("/k", 0)], [Put("/k", b"v2")]) is None  # exists: not absent
    assert store.range("/") == before
    new = store.txn([Compare("/k", rev), Compare("/absent", 0)], [Put("/k", b"v2"), Delete("/gone")])
    assert new == rev + 1 and store.get("/k").value == b"v2"


def test_unchanged_since_guard_needs_no_read(store):
    """Compare(..., result="less"): the key was not written after a revision (absent counts as 0)."""
    seen_at = store.put("/g/other", b"x")
    assert store.txn([Compare("/g/idx", seen_at + 1, "less")], [Put("/g/a", b"1")]) is not None  # absent
    written = store.put("/g/idx", b"bump")
    assert store.txn([Compare("/g/idx", seen_at + 1, "less")], [Put("/g/b", b"2")]) is None
    assert store.get("/g/b") is None
    assert store.txn([Compare("/g/idx", written + 1, "less")], [Put("/g/b", b"2")]) is not None
    store.delete("/g/idx")
    assert store.txn([Compare("/g/idx", seen_at + 1, "less")], [Put("/g/c", b"3")]) is not None


def test_multi_op_txn_is_atomic_and_one_revision(store):
    rev = store.txn([], [Put("/m/1", b"a"), Put("/m/2", b"b"), Put("/m/3", b"c")])
    kvs, _ = store.range("/m/")
    assert {k.mod_revision for k in kvs} == {rev}
    rev2 = store.txn([], [Delete("/m/1"), Put("/m/2", b"B")])
    assert rev2 == rev + 1
    assert [k.key for k in store.range("/m/")[0]] == ["/m/2", "/m/3"]


def test_watch_from_a_past_revision_in_order(store):
    start = store.put("/w/a", b"1")
    store.put("/x/ignored", b"0")
    store.put("/w/b", b"2")
    store.delete("/w/a")
    watch = store.watch("/w/", start)
    try:
        events = _drain(watch, 3)
    finally:
        watch.cancel()
    assert [(e.type, e.key, e.value) for e in events] == [
        ("put", "/w/a", b"1"), ("put", "/w/b", b"2"), ("delete", "/w/a", None)]
    assert [e.revision for e in events] == sorted(e.revision for e in events)


def test_watch_sees_writes_from_another_thread(store):
    watch = store.watch("/live/", store.revision() + 1)
    threading.Timer(0.2, lambda: [store.put(f"/live/{i}", str(i).encode()) for i in range(5)]).start()
    try:
        events = _drain(watch, 5)
    finally:
        watch.cancel()
    assert [e.key for e in events] == [f"/live/{i}" for i in range(5)]


def test_compaction_makes_old_watches_fail(store):
    first = store.put("/c/a", b"1")
    store.put("/c/a", b"2")
    store.compact(store.revision())
    with pytest.raises(CompactedError):
        _drain(store.watch("/c/", first), 1)


def test_watcher_snapshot_then_events_then_resync_after_compaction(store):
    store.put("/r/a", b"1")
    watcher = Watcher(store, "/r/")
    it = iter(watcher)
    snap = next(it)
    assert isinstance(snap, Snapshot) and [k.key for k in snap.kvs] == ["/r/a"]
    # History the watcher needs (snapshot revision + 1 onwards) is compacted away
    # before it starts watching: it must come back with a full snapshot.
    store.put("/r/b", b"2")
    store.put("/r/c", b"3")
    store.compact(store.revision())
    resync = next(it)
    assert isinstance(resync, Snapshot)
    assert [k.key for k in resync.kvs] == ["/r/a", "/r/b", "/r/c"]
    threading.Timer(0.2, lambda: store.delete("/r/a")).start()
    (ev,) = _drain(it, 1)
    assert (ev.type, ev.key) == ("delete", "/r/a") and watcher.revision == ev.revision
    watcher.cancel()


def test_bad_urls_are_clear_errors(tmp_path):
    for url, words in [("nonsense", "bad DB URL"), ("ftp://x", "unknown DB scheme"),
                       ("sqlite://relative.db", "ABSOLUTE"), ("etcd://", "bad DB URL"),
                       ("etcd://host", "HOST:PORT")]:
        with pytest.raises(StoreError) as err:
            open_store(url)
        assert words in str(err.value)


def test_unreachable_etcd_is_a_store_error():
    from dfxdp.testing.etcd import free_port

    s = open_store(f"etcd://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError) as err:
        s.get("/x")
    assert "no etcd endpoint reachable" in str(err.value)
