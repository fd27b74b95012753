"""A bulk create reads the store a bounded number of times, whatever its size (counted, not
timed): one transaction's reads are shared by every object in it."""
from dfxdp.nb.db.memory import MemoryStore
from dfxdp.nb.service import NBService
from tests.fixtures.stores import CountingStore


def _reads_for(count: int) -> int:
    store = CountingStore()
    service = NBService(store, quota_defaults={"port": 5000})  # counted, past Neutron's 500
    net = service.create("network", {"name": "n"})
    service.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/20"})
    service.create_many("port", [{"network_id": net["id"]}], enforce_quota=True)  # the default group, once
    store.reads = 0
    made = service.create_many("port", [{"network_id": net["id"], "dns_name": ""}] * count, enforce_quota=True)
    assert len({p["fixed_ips"][0]["ip_address"] for p in made}) == count
    return store.reads


def test_a_bulk_create_reads_as_much_for_ten_ports_as_for_a_thousand():
    # (at most one more: the counter of datapath keys, when the server's block runs out)
    assert _reads_for(10) <= _reads_for(1000) <= _reads_for(10) + 1


def test_a_taken_dns_name_is_still_refused_by_name():
    service = NBService(MemoryStore())
    net = service.create("network", {"name": "n"})
    service.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    service.create("port", {"network_id": net["id"], "dns_name": "web"})
    for bodies in ([{"network_id": net["id"], "dns_name": "web"}],
                   [{"network_id": net["id"], "dns_name": "db"}, {"network_id": net["id"], "dns_name": "DB"}]):
        try:
            service.create_many("port", bodies)
            raise AssertionError("a name held twice")
        except Exception as exc:  # noqa: BLE001 - the NB error's type is what counts
            assert getattr(exc, "type", None) == "DuplicateRecordSet", exc
    assert len(service.list("port", {"device_owner": [""]})) == 1
