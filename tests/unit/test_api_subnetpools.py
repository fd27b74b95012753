"""subnet_allocation and default-subnetpools through the real API: pools, their checks, and
subnets allocated from them (a free prefix of the asked length, never one twice)."""
import ipaddress
import threading

import pytest
from fastapi.testclient import TestClient

from dfxdp.api.app import create_app
from dfxdp.nb.db import open_store
from dfxdp.nb.errors import NBError
from dfxdp.nb.service import NBService
from dfxdp.testing.nb_integrity import problems


@pytest.fixture
def service():
    return NBService(open_store("memory://"))


@pytest.fixture
def client(service):
    return TestClient(create_app(service))


def _pool(client, **fields) -> dict:
    r = client.post("/v2.0/subnetpools", json={"subnetpool": {"name": "p", **fields}})
    assert r.status_code == 201, r.json()
    return r.json()["subnetpool"]


def _net(client) -> str:
    return client.post("/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]["id"]


def _subnet(client, net: str, **fields):
    return client.post("/v2.0/subnets", json={"subnet": {"network_id": net, "ip_version": 4, **fields}})


def test_pool_defaults_merging_and_crud(client):
    pool = _pool(client, prefixes=["10.10.0.0/17", "10.10.128.0/17", "10.20.0.5/16"])
    assert pool["prefixes"] == ["10.10.0.0/16", "10.20.0.0/16"]  # merged, host bits dropped
    assert (pool["ip_version"], pool["min_prefixlen"], pool["max_prefixlen"], pool["default_prefixlen"]) == \
        (4, 8, 32, 8)
    assert pool["is_default"] is False and pool["shared"] is False and pool["address_scope_id"] is None
    six = _pool(client, prefixes=["2001:db8::/48"], default_prefixlen=64)
    assert (six["ip_version"], six["min_prefixlen"], six["max_prefixlen"]) == (6, 64, 128)
    assert [p["id"] for p in client.get("/v2.0/subnetpools?ip_version=6").json()["subnetpools"]] == [six["id"]]
    r = client.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"prefixes": [
        "10.10.0.0/16", "10.20.0.0/16", "10.30.0.0/16"], "name": "bigger"}})
    assert r.status_code == 200 and r.json()["subnetpool"]["prefixes"][-1] == "10.30.0.0/16"
    assert client.put(f"/v2.0/subnetpools/{pool['id']}/tags/x").status_code == 201
    assert client.delete(f"/v2.0/subnetpools/{pool['id']}").status_code == 204
    r = client.get(f"/v2.0/subnetpools/{pool['id']}")
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "SubnetPoolNotFound"


@pytest.mark.parametrize("fields,error", [
    ({"prefixes": ["10.0.0.0/8", "2001:db8::/32"]}, "PrefixVersionMismatch"),
    ({"prefixes": []}, "HTTPBadRequest"),
    ({"prefixes": ["10.0.0.0/8"], "min_prefixlen": 24, "max_prefixlen": 16}, "IllegalSubnetPoolPrefixBounds"),
    ({"prefixes": ["10.0.0.0/8"], "min_prefixlen": 16, "default_prefixlen": 12}, "IllegalSubnetPoolPrefixBounds"),
    ({"prefixes": ["10.0.0.0/8"], "max_prefixlen": 24, "default_prefixlen": 28}, "IllegalSubnetPoolPrefixBounds"),
    ({"prefixes": ["10.0.0.0/8"], "max_prefixlen": 33}, "IllegalSubnetPoolPrefixBounds"),
    ({"prefixes": ["10.0.0.0/8"], "address_scope_id": "no-such-scope"}, "AddressScopeNotFound"),
    ({"prefixes": ["not-a-prefix"]}, "HTTPBadRequest"),
    ({"prefixes": ["10.0.0.0/8"], "ip_version": 4}, "HTTPBadRequest"),
])
def test_bad_pools_are_refused(client, fields, error):
    r = client.post("/v2.0/subnetpools", json={"subnetpool": fields})
    assert r.json()["NeutronError"]["type"] == error and r.status_code in (400, 404)
    assert client.get("/v2.0/subnetpools").json()["subnetpools"] == []


def test_prefixes_only_grow(client):
    pool = _pool(client, prefixes=["10.10.0.0/16"])
    r = client.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"prefixes": ["10.10.0.0/17"]}})
    assert r.status_code == 400 and r.json()["NeutronError"]["type"] == "IllegalSubnetPoolPrefixUpdate"
    r = client.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"prefixes": ["2001:db8::/32"]}})
    assert r.status_code == 400
    assert client.get(f"/v2.0/subnetpools/{pool['id']}").json()["subnetpool"]["prefixes"] == ["10.10.0.0/16"]


def test_subnets_are_allocated_from_the_pool(client):
    pool = _pool(client, prefixes=["10.50.0.0/22"], default_prefixlen=24, min_prefixlen=23, max_prefixlen=26)
    net = _net(client)
    first = _subnet(client, net, subnetpool_id=pool["id"]).json()["subnet"]
    assert first["cidr"] == "10.50.0.0/24" and first["subnetpool_id"] == pool["id"]
    assert first["gateway_ip"] == "10.50.0.1" and "prefixlen" not in first
    second = _subnet(client, net, subnetpool_id=pool["id"], prefixlen=26).json()["subnet"]
    assert second["cidr"] == "10.50.1.0/26"  # from the smallest free block that holds a /26
    third = _subnet(client, net, subnetpool_id=pool["id"], prefixlen=23).json()["subnet"]
    assert third["cidr"] == "10.50.2.0/23"
    assert _subnet(client, net, subnetpool_id=pool["id"], prefixlen=25).json()["subnet"]["cidr"] == "10.50.1.128/25"
    r = _subnet(client, net, subnetpool_id=pool["id"], prefixlen=25)
    assert r.json()["NeutronError"]["type"] == "SubnetAllocationError" and r.status_code == 409
    assert "Insufficient prefix space" in r.json()["NeutronError"]["message"]
    fourth = _subnet(client, net, subnetpool_id=pool["id"], cidr="10.50.1.64/26").json()["subnet"]
    assert fourth["cidr"] == "10.50.1.64/26"
    for fields, error in (({"cidr": "10.50.1.64/26"}, "SubnetAllocationError"),
                          ({"cidr": "10.60.0.0/24"}, "SubnetAllocationError"),
                          ({"prefixlen": 27}, "MaxPrefixSubnetAllocationError"),
                          ({"prefixlen": 22}, "MinPrefixSubnetAllocationError"),
                          ({"ip_version": 6}, "BadRequest")):
        r = _subnet(client, net, subnetpool_id=pool["id"], **fields)
        assert r.json()["NeutronError"]["type"] == error, fields
    used = [s["cidr"] for s in client.get(f"/v2.0/subnets?subnetpool_id={pool['id']}").json()["subnets"]]
    assert len(used) == 5
    r = client.delete(f"/v2.0/subnetpools/{pool['id']}")
    assert r.status_code == 409 and r.json()["NeutronError"]["type"] == "SubnetPoolInUse"
    client.delete(f"/v2.0/subnets/{first['id']}")
    again = _subnet(client, net, subnetpool_id=pool["id"]).json()["subnet"]
    assert again["cidr"] == "10.50.0.0/24"  # freed, given again
    r = client.put(f"/v2.0/subnets/{again['id']}", json={"subnet": {"prefixlen": 25}})
    assert r.status_code == 400


def test_subnet_requests_without_or_across_pools(client):
    net = _net(client)
    r = _subnet(client, net)
    assert r.status_code == 400 and "cidr must be specified" in r.json()["NeutronError"]["message"]
    r = _subnet(client, net, cidr="10.1.0.0/24", prefixlen=24)
    assert r.status_code == 400
    r = _subnet(client, net, subnetpool_id="no-such-pool")
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "SubnetPoolNotFound"
    a = _pool(client, prefixes=["10.70.0.0/16"], default_prefixlen=24)
    b = _pool(client, prefixes=["10.80.0.0/16"], default_prefixlen=24)
    assert _subnet(client, net, subnetpool_id=a["id"]).status_code == 201
    for fields in ({"subnetpool_id": b["id"]}, {"cidr": "10.90.0.0/24"}):
        r = _subnet(client, net, **fields)
        assert r.status_code == 400 and r.json()["NeutronError"]["type"] == "NetworkSubnetPoolAffinityError"


def test_one_default_pool_per_ip_version(client):
    net = _net(client)
    r = _subnet(client, net, use_default_subnetpool=True)
    assert r.status_code == 400 and "No default subnetpool" in r.json()["NeutronError"]["message"]
    default = _pool(client, prefixes=["10.100.0.0/16"], default_prefixlen=24, is_default=True)
    r = client.post("/v2.0/subnetpools", json={"subnetpool": {"prefixes": ["10.101.0.0/16"], "is_default": True}})
    assert r.status_code == 400 and "A default subnetpool for this IP family" in r.json()["NeutronError"]["message"]
    assert _pool(client, prefixes=["2001:db8:1::/48"], is_default=True)["is_default"]  # another family
    subnet = _subnet(client, net, use_default_subnetpool=True).json()["subnet"]
    assert subnet["subnetpool_id"] == default["id"] and subnet["cidr"] == "10.100.0.0/24"
    other = _pool(client, prefixes=["10.102.0.0/16"])
    r = client.put(f"/v2.0/subnetpools/{other['id']}", json={"subnetpool": {"is_default": True}})
    assert r.status_code == 400
    client.put(f"/v2.0/subnetpools/{default['id']}", json={"subnetpool": {"is_default": False}})
    r = client.put(f"/v2.0/subnetpools/{other['id']}", json={"subnetpool": {"is_default": True}})
    assert r.status_code == 200 and r.json()["subnetpool"]["is_default"]


def test_default_quota_counts_a_projects_addresses(client):
    pool = _pool(client, prefixes=["10.110.0.0/16"], default_prefixlen=26, default_quota=128)
    net = _net(client)
    assert _subnet(client, net, subnetpool_id=pool["id"]).status_code == 201
    assert _subnet(client, net, subnetpool_id=pool["id"]).status_code == 201
    r = _subnet(client, net, subnetpool_id=pool["id"])
    assert r.status_code == 409 and r.json()["NeutronError"]["type"] == "SubnetPoolQuotaExceeded"


def test_shared_pools_are_seen_by_every_project(client):
    member = {"X-Project-Id": "p1", "X-Roles": "member"}
    shared = _pool(client, prefixes=["10.120.0.0/16"], shared=True)
    _pool(client, prefixes=["10.121.0.0/16"])
    assert [p["id"] for p in client.get("/v2.0/subnetpools", headers=member).json()["subnetpools"]] == [shared["id"]]


def test_racing_allocations_never_share_a_prefix(service):
    pool = service.create("subnetpool", {"prefixes": ["10.130.0.0/24"], "default_prefixlen": 28})
    nets = [service.create("network", {"name": f"n{i}"}) for i in range(20)]
    made, refused = [], []

    def allocate(net: dict) -> None:
        try:
            made.append(service.create("subnet", {"network_id": net["id"], "subnetpool_id": pool["id"]}))
        except NBError as exc:
            refused.append(exc.type)

    threads = [threading.Thread(target=allocate, args=(net,)) for net in nets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cidrs = [ipaddress.ip_network(s["cidr"]) for s in made]
    assert len(made) == 16 and refused == ["SubnetAllocationError"] * 4  # a /24 holds sixteen /28s
    assert all(not a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1:])
    assert problems(service.store) == []
