"""The NB kinds, declared once (dfxdp/nb/kinds.py): the service, the API, the cache and
the view all follow the list; a kind is listed once; the view's indexes follow the
documents they were built from."""
import dataclasses
import json

import pytest

from dfxdp.api.app import create_app
from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.cache import SelectiveCache
from dfxdp.nb import kinds
from dfxdp.nb.db import open_store
from dfxdp.nb.db.base import KV
from dfxdp.nb.service import NBService


def kv(kind, doc):
    return KV(f"/dfxdp/nb/{kind}/{doc['id']}", json.dumps(doc).encode(), 1, 1)


def test_every_kind_with_a_collection_is_served_and_every_kind_is_kept_by_the_cache():
    app = create_app(NBService(open_store("memory://")))
    paths = {route.path for route in app.routes}
    served = [kind for kind in kinds.KINDS if kind.collection]
    assert {kind.name for kind in served} >= {"network", "port", "loadbalancer", "member", "healthmonitor"}
    for kind in served:
        assert any(path.endswith(f"/{kind.collection}") for path in paths), kind.name
    assert set(SelectiveCache("ch1").objects) == {kind.name for kind in kinds.KINDS}
    assert set(kinds.MODELS) == set(kinds.BY_NAME) == {kind.name for kind in kinds.KINDS}


def test_a_kind_is_listed_once():
    with pytest.raises(ValueError, match="registered already"):
        kinds.register(kinds.BY_NAME["port"])
    again = dataclasses.replace(kinds.BY_NAME["port"], name="port2")  # another name, the same view
    with pytest.raises(ValueError, match="view ports"):
        kinds.register(again)
    assert again not in kinds.KINDS


def test_each_kind_s_relation_decides_what_a_chassis_keeps():
    objs = [("network", {"id": "n1", "key": 1}), ("network", {"id": "n2", "key": 2}),
            ("subnet", {"id": "s1", "network_id": "n1"}), ("subnet", {"id": "s2", "network_id": "n2"}),
            ("port", {"id": "p1", "network_id": "n1", "binding:host_id": "ch1", "device_owner": ""}),
            ("port", {"id": "p2", "network_id": "n2", "binding:host_id": "ch2", "device_owner": ""}),
            ("floatingip", {"id": "f1", "port_id": "p1"}), ("floatingip", {"id": "f2", "port_id": "p2"}),
            ("loadbalancer", {"id": "lb", "vip_port_id": "p2"}), ("member", {"id": "m", "pool_id": "pool"})]
    cache = SelectiveCache("ch1")
    cache.load([kv(kind, doc) for kind, doc in objs], 5)
    assert (set(cache.objects["network"]), set(cache.objects["subnet"]), set(cache.objects["floatingip"])) == \
        ({"n1"}, {"s1"}, {"f1"})
    # Octavia's objects are kept everywhere, as their declarations say
    assert set(cache.objects["loadbalancer"]) == {"lb"} and set(cache.objects["member"]) == {"m"}


def test_the_view_holds_each_kind_under_its_name_and_finds_by_index():
    port = {"id": "p", "network_id": "n", "device_owner": "network:router_interface", "device_id": "r"}
    view = LocalView("ch1", "198.18.0.1", ports={"p": port}, objects={"member": {"m": {"id": "m", "pool_id": "x"}}},
                     local_ports={"p": 3})
    assert view.objects["port"] is view.ports and view.local_ports == {"p": 3}
    assert view.find("port", "network", "n") == [port] and view.ports_of("network:router_interface", "r") == [port]
    assert view.find("member", "pool", "x") == [view.members["m"]] and view.find("port", "network", "z") == []
    view.ports = {}  # replaced whole (a test moving on): the index follows
    assert view.find("port", "network", "n") == [] and view.objects["port"] == {}
    copy = dataclasses.replace(view, ofports={"br": 1})
    assert copy.members is view.members and copy.ofports == {"br": 1} and copy.local_ports == {"p": 3}
    with pytest.raises(TypeError, match="no field 'bogus'"):
        LocalView("ch1", "198.18.0.1", bogus={})
