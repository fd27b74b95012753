"""The selective cache: it keeps what local ports can reach, widens on demand,
and with ports in 1 of 100 networks holds about 1% of the NB objects."""
import json

from dfxdp.controller.cache import SelectiveCache
from dfxdp.nb.db.base import KV, Event


def kv(kind, doc, rev=1):
    return KV(f"/dfxdp/nb/{kind}/{doc['id']}", json.dumps(doc).encode(), rev, rev)


def world(n_networks=100, ports_per_network=10, local_network=0, chassis="ch1"):
    objs = []
    for n in range(n_networks):
        objs.append(("network", {"id": f"net{n}", "key": n + 1}))
        objs.append(("subnet", {"id": f"sub{n}", "network_id": f"net{n}"}))
        for p in range(ports_per_network):
            host = chassis if (n == local_network and p == 0) else f"other{p}"
            objs.append(("port", {"id": f"port{n}-{p}", "network_id": f"net{n}", "binding:host_id": host,
                                  "security_groups": [f"sg{n}"], "device_owner": ""}))
        objs.append(("security_group", {"id": f"sg{n}"}))
        objs.append(("security_group_rule", {"id": f"rule{n}", "security_group_id": f"sg{n}",
                                             "remote_group_id": f"sg{n}"}))
    objs.append(("chassis", {"id": chassis, "name": chassis, "tunnel_ip": "198.18.0.11"}))
    return objs


def test_one_network_of_a_hundred_is_about_one_percent():
    objs = world()
    cache = SelectiveCache("ch1")
    cache.load([kv(k, d) for k, d in objs], 10)
    share = cache.size() / len(objs)
    assert 0.005 < share < 0.02, f"cache holds {cache.size()} of {len(objs)} objects"
    assert set(cache.objects["network"]) == {"net0"}
    assert len(cache.objects["port"]) == 10 and set(cache.objects["security_group"]) == {"sg0"}


def test_router_pulls_in_its_other_networks_and_widening_asks_for_a_reload():
    objs = world(n_networks=3, ports_per_network=2)
    cache = SelectiveCache("ch1")
    cache.load([kv(k, d) for k, d in objs], 10)
    assert set(cache.objects["network"]) == {"net0"}
    rif0 = {"id": "rif0", "network_id": "net0", "device_owner": "network:router_interface", "device_id": "r1"}
    # an interface on a network we serve: the router becomes interesting -> reload needed
    assert cache.apply(Event("put", "/dfxdp/nb/port/rif0", json.dumps(rif0).encode(), 11)) is True
    rif1 = {"id": "rif1", "network_id": "net1", "device_owner": "network:router_interface", "device_id": "r1"}
    objs += [("port", rif0), ("port", rif1), ("router", {"id": "r1"})]
    cache.load([kv(k, d) for k, d in objs], 12)
    assert set(cache.objects["network"]) == {"net0", "net1"} and "r1" in cache.objects["router"]
    assert "net2" not in cache.objects["network"]


def test_events_outside_the_interest_are_not_kept_and_deletes_prune():
    objs = world(n_networks=2, ports_per_network=2)
    cache = SelectiveCache("ch1")
    cache.load([kv(k, d) for k, d in objs], 10)
    far = {"id": "far", "network_id": "net1", "binding:host_id": "other", "device_owner": ""}
    assert cache.apply(Event("put", "/dfxdp/nb/port/far", json.dumps(far).encode(), 11)) is False
    assert "far" not in cache.objects["port"]
    near = {"id": "near", "network_id": "net0", "binding:host_id": "other", "device_owner": ""}
    cache.apply(Event("put", "/dfxdp/nb/port/near", json.dumps(near).encode(), 12))
    assert "near" in cache.objects["port"]
    cache.apply(Event("delete", "/dfxdp/nb/port/port0-0", None, 13))  # our only local port goes
    assert cache.objects["network"] == {} and cache.revision == 13


def test_a_new_local_port_on_a_served_network_needs_no_reload_but_a_new_network_does():
    objs = world(n_networks=3, ports_per_network=2)
    cache = SelectiveCache("ch1")
    cache.load([kv(k, d) for k, d in objs], 10)
    near = {"id": "vm2", "network_id": "net0", "binding:host_id": "ch1", "security_groups": ["sg0"], "device_owner": ""}
    assert cache.apply(Event("put", "/dfxdp/nb/port/vm2", json.dumps(near).encode(), 11)) is False
    assert "vm2" in cache.objects["port"] and "vm2" in cache.interest.local_ports
    neighbour = {"id": "n1", "network_id": "net0", "binding:host_id": "other", "device_owner": ""}
    assert cache.apply(Event("put", "/dfxdp/nb/port/n1", json.dumps(neighbour).encode(), 12)) is False
    assert "n1" in cache.objects["port"]
    assert cache.apply(Event("delete", "/dfxdp/nb/port/n1", b"", 13)) is False and "n1" not in cache.objects["port"]
    far = {"id": "vm3", "network_id": "net2", "binding:host_id": "ch1", "security_groups": ["sg2"], "device_owner": ""}
    assert cache.apply(Event("put", "/dfxdp/nb/port/vm3", json.dumps(far).encode(), 14)) is True
