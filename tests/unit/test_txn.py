"""Txn reads: a key seen by a range read of the same transaction costs no second
round trip, yet stays guarded; a blind claim of a taken key fails the commit."""
import random

from dfxdp.nb.db import open_store
from dfxdp.nb.families.ports import mac_key
from dfxdp.nb.service import NBService
from dfxdp.nb.txn import Txn, run_txn


class CountingStore:
    """A memory store that counts point reads."""

    def __init__(self):
        self.inner, self.gets = open_store("memory://"), 0

    def get(self, key):
        self.gets += 1
        return self.inner.get(key)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_gets_after_a_range_read_are_served_from_it_and_still_guarded():
    store = CountingStore()
    setup = Txn(store)
    setup.set_raw("/dfxdp/alloc/ip/s/10.0.0.2", b"p1")
    setup.commit()
    txn = Txn(store)
    assert txn.keys_under("/dfxdp/alloc/ip/s/") == {"/dfxdp/alloc/ip/s/10.0.0.2"}
    assert txn.reserve("/dfxdp/alloc/ip/s/10.0.0.2", "p2") is False  # held: seen in the range
    assert txn.reserve("/dfxdp/alloc/ip/s/10.0.0.3", "p2") is True   # absent under a prefix read whole
    assert store.gets == 0
    # someone takes .3 meanwhile: the guard from the range read refuses the commit
    other = Txn(store)
    other.set_raw("/dfxdp/alloc/ip/s/10.0.0.3", b"p3")
    other.commit()
    assert txn.commit() is None


def test_a_random_mac_that_is_taken_costs_a_retry_not_an_error(monkeypatch):
    svc = NBService(open_store("memory://"))
    net = svc.create("network", {"name": "n"})
    svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    first = svc.create("port", {"network_id": net["id"]})
    taken = [int(x, 16) for x in first["mac_address"].split(":")[3:]]
    picks = iter(taken + [1, 2, 3])
    monkeypatch.setattr(random, "randrange", lambda n: next(picks))
    second = svc.create("port", {"network_id": net["id"]})
    assert second["mac_address"] == "fa:16:3e:01:02:03"
    assert run_txn(svc.store, lambda t: t.get_raw(mac_key(net["id"], first["mac_address"]))) == first["id"].encode()


def test_two_ports_of_one_bulk_never_share_a_random_mac(monkeypatch):
    """The store's compare guards a MAC against other transactions only: two ports of one
    bulk that draw the same MAC must not both get it (at 100,000 ports in bulks of 400 one
    network had two ports with one MAC, so one of them had no fdb entry anywhere)."""
    svc = NBService(open_store("memory://"))
    net = svc.create("network", {"name": "n"})
    svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    picks = iter([7, 7, 7, 7, 7, 7, 1, 2, 3])
    monkeypatch.setattr(random, "randrange", lambda n: next(picks))
    first, second = svc.create_many("port", [{"network_id": net["id"]}, {"network_id": net["id"]}])
    assert first["mac_address"] == "fa:16:3e:07:07:07"
    assert second["mac_address"] == "fa:16:3e:01:02:03"
    assert run_txn(svc.store, lambda t: t.get_raw(mac_key(net["id"], second["mac_address"]))) == second["id"].encode()
