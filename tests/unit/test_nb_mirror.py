"""The API server's watched copy of the NB objects (dfxdp/nb/mirror.py): a list through it
shows every write that committed before the request, on the memory and sqlite stores."""
import pytest

from dfxdp.nb.db import open_store
from dfxdp.nb.db.base import KV
from dfxdp.nb.mirror import Mirror, order_key
from dfxdp.nb.service import NBService
from dfxdp.nb.txn import NB_REVISION


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    return open_store("memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/nb.db")


def test_lists_through_the_mirror_show_every_committed_write(store):
    service = NBService(store, mirror=True)
    try:
        writer = NBService(store)  # another server's writes reach it through the store
        names = []
        for i in range(5):
            net = (service if i % 2 else writer).create("network", {"name": f"n{i}"})
            names.append(net["name"])
            assert sorted(n["name"] for n in service.list("network")) == names  # at once, not eventually
        writer.update("network", net["id"], {"name": "renamed"})
        assert service.list("network", {"id": [net["id"]]})[0]["name"] == "renamed"
        writer.set_tags("network", net["id"], lambda _tags: ["t"])
        assert service.list("network", {"tags": ["t"]})[0]["id"] == net["id"]
        writer.delete("network", net["id"])
        assert net["id"] not in {n["id"] for n in service.list("network")}
        writer.quotas.update("p1", {"port": 1})  # a write outside NB objects: lists need not wait for it
        assert len(service.list("network")) == 4 and service.mirror.list("network") is not None
        listed = service.list("network")
        listed[0]["name"] = "changed by a caller"
        assert "changed by a caller" not in {n["name"] for n in service.list("network")}  # callers get copies
    finally:
        service.mirror.close()


def _ids(docs):
    return [doc["id"] for doc in docs]


def test_what_a_list_makes_is_kept_until_the_next_change():
    """Shared until a change; after one, only the changed objects are made anew (decorated),
    and the order is the stored one."""
    store = open_store("memory://")
    made = []
    mirror = Mirror(store, lambda kind, docs: made.append(sorted(d["name"] for d in docs)))
    try:
        service = NBService(store)
        b = service.create("network", {"name": "b"})
        a = service.create("network", {"name": "a"})
        assert _ids(mirror.list("network")) == _ids(sorted([a, b], key=order_key))
        assert mirror.list("network") is mirror.list("network") and made == [["a", "b"]]  # shared
        c = service.create("network", {"name": "c"})
        b2 = service.update("network", b["id"], {"name": "b2"})
        assert _ids(mirror.list("network")) == _ids(sorted([a, b2, c], key=order_key)) and made[1:] == [["b2", "c"]]
        assert mirror.list("network")[_ids(mirror.list("network")).index(b["id"])]["name"] == "b2"
    finally:
        mirror.close()


def test_a_mirror_that_cannot_catch_up_answers_none(monkeypatch):
    store = open_store("memory://")
    mirror = Mirror(store)
    try:
        assert mirror.list("network") == []
        monkeypatch.setattr("dfxdp.nb.mirror.WAIT_SECONDS", 0.05)
        marker = KV(NB_REVISION, b"", 1, mirror._revision + 1000)  # ahead of every event
        monkeypatch.setattr(store, "get", lambda key: marker)
        assert mirror.list("network") is None
    finally:
        mirror.close()


def test_etcd_watch_lines_are_split_wherever_chunks_end():
    from dfxdp.nb.db.etcd import _lines

    class Response:
        def __init__(self, chunks):
            self.chunks = chunks

        def iter_content(self, chunk_size):
            return iter(self.chunks)

    big = b"x" * 300000
    chunks = [b'{"a":', b'1}\n{"b"', b":2}\n", big[:1000], big[1000:] + b"\n\n", b'{"c":3}']
    assert list(_lines(Response(chunks))) == [b'{"a":1}', b'{"b":2}', big, b"", b'{"c":3}']


def test_events_of_one_transaction_are_complete_only_at_their_last():
    from dfxdp.nb.db.base import Event, mark_complete
    events = mark_complete([Event("put", "/a", b"1", 5), Event("put", "/b", b"2", 5), Event("delete", "/c", None, 6)])
    assert [e.complete for e in events] == [False, True, True]


def _walk(client, query: str) -> list[tuple[list[str], list[str]]]:
    """Every page forward from the first (names), each with the page its previous link gives."""
    pages, url = [], f"/v2.0/networks?{query}"
    while url:
        answer = client.get(url).json()
        links = {link["rel"]: link["href"] for link in answer.get("networks_links", [])}
        before = client.get(links["previous"]).json()["networks"] if "previous" in links else []
        pages.append(([n["name"] for n in answer["networks"]], [n["name"] for n in before]))
        url = links.get("next") if answer["networks"] else None
    return pages


def test_pages_of_the_stored_order_from_the_mirror_are_neutrons():
    """A page cut from the server's copy (shared, its marker found by an index) is the page a
    list read from the store gives, with filters and fields, forward and back."""
    from fastapi.testclient import TestClient

    from dfxdp.api.app import create_app

    store = open_store("memory://")
    mirrored = NBService(store, mirror=True)
    try:
        plain = TestClient(create_app(NBService(store)))
        served = TestClient(create_app(mirrored))
        for index, name in enumerate("abcdefg"):
            plain.post("/v2.0/networks", json={"network": {"name": name, "admin_state_up": index % 3 != 0}})
        for query in ("limit=2", "limit=3&admin_state_up=true", "limit=2&fields=name", "limit=10"):
            assert _walk(served, query) == _walk(plain, query), query
        middle = plain.get("/v2.0/networks").json()["networks"][3]["id"]
        for query in (f"limit=2&marker={middle}", f"limit=2&marker={middle}&page_reverse=True",
                      f"limit=2&marker={middle}&admin_state_up=true"):
            assert served.get(f"/v2.0/networks?{query}").json() == plain.get(f"/v2.0/networks?{query}").json(), query
        plain.post("/v2.0/networks", json={"network": {"name": "h"}})  # a change: a new list, a new index
        assert served.get(f"/v2.0/networks?limit=10&marker={middle}").json() == \
            plain.get(f"/v2.0/networks?limit=10&marker={middle}").json()
        assert served.get("/v2.0/networks?limit=2&marker=gone").status_code == 404
    finally:
        mirrored.mirror.close()


def test_a_large_make_is_moved_out_of_the_collectors_walks(monkeypatch):
    """After making many objects at once (a kind's first list at 100,000 ports), what is alive
    is frozen (gc.freeze): full collections no longer walk the copy's millions of objects."""
    import gc
    store = open_store("memory://")
    writer = NBService(store)
    for name in "abc":
        writer.create("network", {"name": name})
    gc.unfreeze()
    try:
        for freeze_at, frozen in ((4, False), (3, True)):  # a first list makes the three
            monkeypatch.setattr("dfxdp.nb.mirror.FREEZE_AT", freeze_at)
            mirror = Mirror(store)
            try:
                assert len(mirror.list("network")) == 3 and (gc.get_freeze_count() > 0) == frozen
            finally:
                mirror.close()
    finally:
        gc.unfreeze()
