"""Hostile input against a real `dfxdp server`, on sqlite and on etcd.

Every request answers Neutron's status and error type in a NeutronError document, and a
refused request leaves the store exactly as it was (every key under /dfxdp/, byte for byte).
"""
import json

import httpx
import pytest

from dfxdp.nb.db import open_store
from dfxdp.testing.etcd import EtcdServer
from tests.fixtures.server import ServerProcess

BIG = 10 << 20


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def api(request, tmp_path_factory):
    """(server, http client, store URL, the objects the cases refer to)."""
    etcd = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile')}/nb.db"
    else:
        etcd = EtcdServer().start()
        url = etcd.url
    server = ServerProcess(url)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            yield server, http, url, _topology(http)
    finally:
        server.close()
        if etcd:
            etcd.close()


def _ok(response: httpx.Response, status: int = 201) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def _topology(http: httpx.Client) -> dict:
    net = _ok(http.post("/v2.0/networks", json={"network": {"name": "net"}}))["network"]
    subnet = _ok(http.post("/v2.0/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "10.7.0.0/24",
        "allocation_pools": [{"start": "10.7.0.10", "end": "10.7.0.200"}]}}))["subnet"]
    outside = _ok(http.post("/v2.0/ports", json={"port": {   # an address outside the pools
        "network_id": net["id"], "fixed_ips": [{"ip_address": "10.7.0.5"}]}}))["port"]
    pooled = _ok(http.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}))["port"]
    ext = _ok(http.post("/v2.0/networks", json={"network": {"name": "ext", "router:external": True}}))["network"]
    return {"net": net, "subnet": subnet, "outside": outside, "pooled": pooled, "ext": ext}


def _store(url: str) -> dict[str, bytes]:
    store = open_store(url)
    try:
        kvs, _ = store.range("/dfxdp/")
        return {kv.key: kv.value for kv in kvs}
    finally:
        store.close()


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


# (id, method, path (with {net}, {subnet}, {outside}, {pooled}, {ext} filled in), body bytes or a
#  function of the topology, headers, status, NeutronError type)
JSON = {"content-type": "application/json"}
CASES = [
    ("lone surrogate in a name", "POST", "/v2.0/networks", b'{"network": {"name": "x\\ud800y"}}', JSON,
     400, "MalformedRequestBody"),
    ("lone surrogate in a description", "PUT", "/v2.0/networks/{net}",
     b'{"network": {"description": "\\udfff"}}', JSON, 400, "MalformedRequestBody"),
    ("JSON nested 1,000 deep", "POST", "/v2.0/networks",
     b'{"network": {"name": ' + b"[" * 1000 + b"]" * 1000 + b"}}", JSON, 400, "MalformedRequestBody"),
    ("not JSON", "POST", "/v2.0/networks", b"{not json", JSON, 400, "MalformedRequestBody"),
    ("not UTF-8", "POST", "/v2.0/networks", b'{"network": {"name": "\xff\xfe"}}', JSON, 400, "MalformedRequestBody"),
    ("10 MB body", "POST", "/v2.0/networks", b'{"network": {"name": "' + b"a" * BIG + b'"}}', JSON,
     413, "HTTPRequestEntityTooLarge"),
    ("10 MB body on an update", "PUT", "/v2.0/ports/{pooled}",
     b'{"port": {"description": "' + b"a" * BIG + b'"}}', JSON, 413, "HTTPRequestEntityTooLarge"),
    ("10 MB body on a list", "GET", "/v2.0/networks", b"[" + b" " * BIG + b"]", JSON, 413, "HTTPRequestEntityTooLarge"),
    ("chunked body over the limit", "POST", "/v2.0/networks",
     lambda t: iter([b'{"network": {"name": "'] + [b"a" * 4096] * 64 + [b'"}}']), JSON,
     413, "HTTPRequestEntityTooLarge"),
    ("300-character name", "POST", "/v2.0/networks", _json({"network": {"name": "n" * 300}}), JSON,
     400, "HTTPBadRequest"),
    ("300-character description", "PUT", "/v2.0/subnets/{subnet}", _json({"subnet": {"description": "d" * 300}}),
     JSON, 400, "HTTPBadRequest"),
    ("IPv6 gateway on an IPv4 subnet", "POST", "/v2.0/subnets",
     lambda t: _json({"subnet": {"network_id": t["net"]["id"], "cidr": "10.8.0.0/24", "gateway_ip": "fd00::1"}}),
     JSON, 400, "InvalidInput"),
    ("IPv6 gateway set on an IPv4 subnet", "PUT", "/v2.0/subnets/{subnet}",
     _json({"subnet": {"gateway_ip": "fd00::1"}}), JSON, 400, "InvalidInput"),
    ("IPv6 pool on an IPv4 subnet", "POST", "/v2.0/subnets",
     lambda t: _json({"subnet": {"network_id": t["net"]["id"], "cidr": "10.8.0.0/24",
                                 "allocation_pools": [{"start": "fd00::2", "end": "fd00::9"}]}}),
     JSON, 400, "InvalidAllocationPool"),
    ("floating IP on an external network without a subnet", "POST", "/v2.0/floatingips",
     lambda t: _json({"floatingip": {"floating_network_id": t["ext"]["id"]}}), JSON, 400, "ExternalIpAddressExhausted"),
    ("subnet 0.0.0.0/0", "POST", "/v2.0/subnets",
     lambda t: _json({"subnet": {"network_id": t["ext"]["id"], "cidr": "0.0.0.0/0"}}), JSON, 400, "InvalidInput"),
    ("subnet with host bits", "POST", "/v2.0/subnets",
     lambda t: _json({"subnet": {"network_id": t["ext"]["id"], "cidr": "10.9.0.5/24"}}), JSON,
     400, "HTTPBadRequest"),
    ("network address as a fixed IP", "POST", "/v2.0/ports",
     lambda t: _json({"port": {"network_id": t["net"]["id"], "fixed_ips": [{"ip_address": "10.7.0.0"}]}}),
     JSON, 400, "InvalidIpForSubnet"),
    ("broadcast address as a fixed IP", "PUT", "/v2.0/ports/{pooled}",
     lambda t: _json({"port": {"fixed_ips": [{"subnet_id": t["subnet"]["id"], "ip_address": "10.7.0.255"}]}}),
     JSON, 400, "InvalidIpForSubnet"),
    ("broadcast MAC", "POST", "/v2.0/ports",
     lambda t: _json({"port": {"network_id": t["net"]["id"], "mac_address": "ff:ff:ff:ff:ff:ff"}}),
     JSON, 400, "HTTPBadRequest"),
    ("all-zero MAC", "PUT", "/v2.0/ports/{pooled}", _json({"port": {"mac_address": "00:00:00:00:00:00"}}),
     JSON, 400, "HTTPBadRequest"),
    ("address pair MAC zz", "PUT", "/v2.0/ports/{pooled}",
     _json({"port": {"allowed_address_pairs": [{"ip_address": "10.7.0.99", "mac_address": "zz"}]}}),
     JSON, 400, "HTTPBadRequest"),
    ("gateway moved onto a port's address", "PUT", "/v2.0/subnets/{subnet}",
     lambda t: _json({"subnet": {"gateway_ip": t["outside"]["fixed_ips"][0]["ip_address"]}}),
     JSON, 409, "GatewayIpInUse"),
    ("gateway moved into the allocation pool", "PUT", "/v2.0/subnets/{subnet}",
     _json({"subnet": {"gateway_ip": "10.7.0.50"}}), JSON, 409, "GatewayConflictWithAllocationPools"),
    ("boolean 'yes'", "POST", "/v2.0/networks", _json({"network": {"shared": "yes"}}), JSON, 400, "InvalidInput"),
    ("tenant_id differs from project_id", "POST", "/v2.0/networks",
     _json({"network": {"name": "t", "tenant_id": "a", "project_id": "b"}}), JSON, 400, "HTTPBadRequest"),
    ("text/plain content type", "POST", "/v2.0/networks", _json({"network": {"name": "p"}}),
     {"content-type": "text/plain"}, 400, "HTTPBadRequest"),
    ("form content type", "POST", "/v2.0/networks", b"network=x",
     {"content-type": "application/x-www-form-urlencoded"}, 400, "HTTPBadRequest"),
    ("URI of 20,000 bytes", "GET", "/v2.0/networks?name=" + "a" * 20000, None, {}, 414, "HTTPRequestURITooLong"),
    ("negative limit", "GET", "/v2.0/networks?limit=-1", None, {}, 400, "BadRequest"),
    ("unknown marker", "GET", "/v2.0/networks?limit=1&marker=no-such-network", None, {}, 404, "NetworkNotFound"),
    ("sort_key without sort_dir", "GET", "/v2.0/networks?sort_key=name", None, {}, 400, "HTTPBadRequest"),
    ("unknown sort_key", "GET", "/v2.0/networks?sort_key=colour&sort_dir=asc", None, {}, 400, "HTTPBadRequest"),
    ("unknown object", "PUT", "/v2.0/networks/no-such-network", _json({"network": {"name": "x"}}), JSON,
     404, "NetworkNotFound"),
    ("unknown path", "GET", "/v2.0/nothing", None, {}, 404, "HTTPNotFound"),
    ("unknown method", "PATCH", "/v2.0/networks", b"{}", JSON, 405, "HTTPMethodNotAllowed"),
    ("address already in use", "POST", "/v2.0/ports",
     lambda t: _json({"port": {"network_id": t["net"]["id"], "fixed_ips": [{"ip_address": "10.7.0.5"}]}}),
     JSON, 409, "IpAddressAlreadyAllocated"),
]


@pytest.mark.parametrize("name,method,path,body,headers,status,type_", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_refused_as_neutron_does_and_changes_nothing(api, name, method, path, body, headers,
                                                                      status, type_):
    server, http, url, topo = api
    path = path.format(**{k: v["id"] for k, v in topo.items()})
    content = body(topo) if callable(body) else body
    before = _store(url)
    response = http.request(method, path, content=content, headers=headers)
    assert response.status_code == status, response.text[:500]
    error = response.json()["NeutronError"]
    assert set(error) == {"type", "message", "detail"} and error["type"] == type_, error
    assert error["message"]
    assert _store(url) == before
    assert http.get("/v2.0/networks").status_code == 200  # nothing broke the lists either
    if status == 405:
        assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}


def test_what_neutron_accepts_is_shown_as_neutron_shows_it(api):
    server, http, url, topo = api
    net_id = topo["net"]["id"]
    # fixed_ips [] is a port without an address; left out, one address per IP version
    bare = _ok(http.post("/v2.0/ports", json={"port": {"network_id": net_id, "fixed_ips": []}}))["port"]
    assert bare["fixed_ips"] == []
    # an address pair without a MAC holds the port's
    paired = _ok(http.put(f"/v2.0/ports/{bare['id']}", json={"port": {
        "allowed_address_pairs": [{"ip_address": "10.7.0.99"}]}}), 200)["port"]
    assert paired["allowed_address_pairs"] == [{"ip_address": "10.7.0.99", "mac_address": bare["mac_address"]}]
    # a security group's embedded rules carry tenant_id like every object
    sg = _ok(http.post("/v2.0/security-groups", json={"security_group": {"name": "web"}}))["security_group"]
    assert sg["security_group_rules"] and all(r["tenant_id"] == sg["tenant_id"] for r in sg["security_group_rules"])
    # several values of one filter, an unknown filter ignored, fields kept
    listed = _ok(http.get("/v2.0/networks", params=[("name", "net"), ("name", "ext"), ("colour", "blue"),
                                                    ("fields", "name")]), 200)["networks"]
    assert sorted(n["name"] for n in listed) == ["ext", "net"] and all(n.keys() == {"name"} for n in listed)
    # sorted and paginated: one object and Neutron's links
    page = _ok(http.get("/v2.0/networks?limit=1&sort_key=name&sort_dir=desc"), 200)
    assert [n["name"] for n in page["networks"]] == ["net"]
    assert {link["rel"] for link in page["networks_links"]} == {"next", "previous"}
    nxt = _ok(http.get(next(lk["href"] for lk in page["networks_links"] if lk["rel"] == "next")), 200)
    assert [n["name"] for n in nxt["networks"]] == ["ext"]
    # openstacksdk walks Neutron's pagination links to the end
    every = sorted(n["id"] for n in _ok(http.get("/v2.0/networks"), 200)["networks"])
    assert sorted(n.id for n in server.connect().network.networks(limit=1)) == every
    _ok(http.delete(f"/v2.0/security-groups/{sg['id']}"), 204)
    _ok(http.delete(f"/v2.0/ports/{bare['id']}"), 204)


def test_an_unreachable_store_is_503_neutron_error(tmp_path):
    etcd = EtcdServer().start()
    server = ServerProcess(etcd.url)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            _ok(http.post("/v2.0/networks", json={"network": {"name": "before"}}))
            etcd.close()
            for method, path, body in [("GET", "/v2.0/networks", None),
                                       ("POST", "/v2.0/networks", {"network": {"name": "after"}})]:
                response = http.request(method, path, json=body)
                assert response.status_code == 503, response.text
                assert response.json()["NeutronError"]["type"] == "ServiceUnavailable"
    finally:
        server.close()
        etcd.close()
