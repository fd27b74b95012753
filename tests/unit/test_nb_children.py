"""Children read by parent (dfxdp/nb/index.py member keys): the member keys are exactly
what the stored objects name after creates, updates, deletes, bulks and refused requests,
on every driver; a store from before them is upgraded (dfxdp/nb/layout.py); and a subnet
create or a port create reads as many keys with few ports in the store as with many
(counted, never timed)."""
import pytest

from dfxdp.nb import layout
from dfxdp.nb.db.memory import MemoryStore
from dfxdp.nb.errors import NBError
from dfxdp.nb.index import IDX
from dfxdp.nb.service import NBService
from dfxdp.nb.txn import Txn
from dfxdp.testing.nb_integrity import expected_members, load, problems
from tests.fixtures.etcd import etcd  # noqa: F401 - fixture
from tests.fixtures.stores import CountingStore, store  # noqa: F401 - fixture


def _member_keys(store) -> set[str]:
    _objects, other = load(store)
    return {key for key in other if key.startswith(IDX) and key.count("/") == IDX.count("/") + 3}


def _members_right(store) -> None:
    objects, _other = load(store)
    assert _member_keys(store) == expected_members(objects)
    assert problems(store) == []


def _refused(call) -> str:
    with pytest.raises(NBError) as refused:
        call()
    return refused.value.type


def test_member_keys_follow_every_write_and_none_of_a_refused_one(store):
    svc = NBService(store)
    net = svc.create("network", {"name": "n"})
    subnet = svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    sg = svc.create("security_group", {"name": "web"})
    ports = svc.create_many("port", [{"network_id": net["id"]} for _ in range(5)])
    _members_right(store)
    dhcp = Txn(store).children("port", "network:dhcp", net["id"])
    assert [p["device_owner"] for p in dhcp] == ["network:dhcp"]
    assert {p["id"] for p in Txn(store).children("port", "network", net["id"])} == \
        {p["id"] for p in ports} | {dhcp[0]["id"]}

    # an update that changes what a port names: its group, its subnet
    other = svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.1.0/24"})
    svc.update("port", ports[0]["id"], {"security_groups": [sg["id"]], "fixed_ips": [{"subnet_id": other["id"]}]})
    _members_right(store)
    assert [p["id"] for p in Txn(store).children("port", "security_group", sg["id"])] == [ports[0]["id"]]
    assert [p["id"] for p in Txn(store).children("port", "subnet", other["id"])] == \
        sorted([ports[0]["id"], dhcp[0]["id"]])

    # refused: a bulk with one bad item, a delete the children forbid; nothing changes
    before = store.range("/dfxdp/")[0]
    taken = ports[1]["fixed_ips"][0]["ip_address"]
    assert _refused(lambda: svc.create_many("port", [{"network_id": net["id"]},
                                                     {"network_id": net["id"], "fixed_ips": [
                                                         {"subnet_id": subnet["id"], "ip_address": taken}]}])) \
        == "IpAddressAlreadyAllocated"
    assert _refused(lambda: svc.delete("network", net["id"])) == "NetworkInUse"
    assert _refused(lambda: svc.delete("security_group", sg["id"])) == "SecurityGroupInUse"
    assert store.range("/dfxdp/")[0] == before

    # a commit refused because something read changed: none of its member keys either
    txn = Txn(store)
    port = txn.require("port", ports[2]["id"])
    txn.put("port", {**port, "security_groups": [sg["id"]]})
    svc.update("port", ports[2]["id"], {"name": "changed meanwhile"})
    assert txn.commit() is None
    _members_right(store)

    for port in ports:
        svc.delete("port", port["id"])
    svc.delete("subnet", other["id"])
    _members_right(store)
    svc.delete("network", net["id"])  # its DHCP port and subnet go with it
    svc.delete("security_group", sg["id"])
    _members_right(store)
    assert not any(key.startswith(f"{IDX}network") for key in _member_keys(store))


def test_a_store_from_before_member_keys_is_upgraded(store):
    svc = NBService(store)
    net = svc.create("network", {"name": "n"})
    svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    svc.create_many("port", [{"network_id": net["id"]} for _ in range(60)])  # more than a batch's worth
    made = _member_keys(store)
    # as an older version left it: no member keys, no layout
    Txn(store).commit()
    old = Txn(store)
    for key in made | {layout.LAYOUT_KEY}:
        old.release(key)
    assert old.commit() is not None and not _member_keys(store) and layout.layout(store) == 0

    assert layout.upgrade(store) == len(load(store)[0]["port"]) + len(load(store)[0]["network"]) + \
        len(load(store)[0]["subnet"]) + len(load(store)[0]["security_group"]) + \
        len(load(store)[0]["security_group_rule"])
    assert _member_keys(store) == made and layout.layout(store) == layout.CURRENT
    _members_right(store)
    assert layout.upgrade(store) == 0  # current: nothing to do
    assert _refused(lambda: NBService(store).delete("network", net["id"])) == "NetworkInUse"


def test_an_upgrade_indexes_an_object_changed_under_it_as_it_is_now():
    store = MemoryStore()
    svc = NBService(store)
    net = svc.create("network", {"name": "n"})
    subnet = svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    sg = svc.create("security_group", {"name": "web"})
    port = svc.create("port", {"network_id": net["id"]})
    old = Txn(store)
    for key in _member_keys(store) | {layout.LAYOUT_KEY}:
        old.release(key)
    old.commit()

    class Racing(MemoryStore):
        """The port moves to another group between the upgrade's read and its first batch."""

        def __init__(self, inner):
            self.inner, self.raced = inner, False

        def txn(self, compares, ops):
            if not self.raced and ops:
                self.raced = True
                svc.update("port", port["id"], {"security_groups": [sg["id"]]})
            return self.inner.txn(compares, ops)

        def __getattribute__(self, name):
            if name in ("txn", "inner", "raced"):
                return object.__getattribute__(self, name)
            return getattr(object.__getattribute__(self, "inner"), name)

    layout.upgrade(Racing(store))
    _members_right(store)
    assert [p["id"] for p in Txn(store).children("port", "security_group", sg["id"])] == [port["id"]]
    assert subnet["id"] in {f["subnet_id"] for f in Txn(store).children("port", "network", net["id"])[0]["fixed_ips"]}



def _store_with(ports_per_network: int, networks: int) -> tuple[CountingStore, NBService, dict]:
    store = CountingStore()
    svc = NBService(store, quota_defaults={"port": 1_000_000})  # counted: the quota check reads too
    for index in range(networks):
        net = svc.create("network", {"name": f"n{index}"})
        svc.create("subnet", {"network_id": net["id"], "cidr": f"10.{index}.0.0/20"})
        svc.create_many("port", [{"network_id": net["id"]}] * ports_per_network, enforce_quota=True)
    return store, svc, net


def _keys_read(store: CountingStore, call) -> int:
    store.keys = 0
    call()
    return store.keys


@pytest.mark.parametrize("ports_per_network,networks", [(300, 1), (100, 3)], ids=["one network", "three networks"])
def test_a_subnet_create_reads_as_many_keys_whatever_the_ports(ports_per_network, networks):
    few_store, few, few_net = _store_with(5, 1)
    many_store, many, many_net = _store_with(ports_per_network, networks)

    def subnet(svc, net):
        return lambda: svc.create("subnet", {"network_id": net["id"], "cidr": "10.200.0.0/24"}, enforce_quota=True)

    assert _keys_read(many_store, subnet(many, many_net)) == _keys_read(few_store, subnet(few, few_net))


def test_a_port_create_reads_as_many_keys_whatever_the_ports_of_other_networks():
    few_store, few, few_net = _store_with(5, 1)
    many_store, many, many_net = _store_with(5, 1)
    for index in range(3):  # many ports, in networks of their own
        net = many.create("network", {"name": f"other{index}"})
        many.create("subnet", {"network_id": net["id"], "cidr": f"10.10{index}.0.0/20"})
        many.create_many("port", [{"network_id": net["id"]}] * 200, enforce_quota=True)

    def port(svc, net):
        return lambda: svc.create("port", {"network_id": net["id"]}, enforce_quota=True)

    # (at most one more: the counter of datapath keys, when the server's block runs out)
    assert _keys_read(few_store, port(few, few_net)) <= _keys_read(many_store, port(many, many_net)) <= \
        _keys_read(few_store, port(few, few_net)) + 1
