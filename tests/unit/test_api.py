"""The REST layer: envelopes, filters, fields, Neutron errors, version documents, auth."""
import pytest
from fastapi.testclient import TestClient

from dfxdp.api.app import create_app
from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService


@pytest.fixture
def client():
    return TestClient(create_app(NBService(open_store("memory://"))))


def test_version_documents(client):
    assert client.get("/").json()["versions"][0]["id"] == "v2.0"
    names = {r["collection"] for r in client.get("/v2.0/").json()["resources"]}
    assert {"networks", "subnets", "ports", "routers", "floatingips", "security_groups"} <= names
    assert client.get("/v2").json()["version"]["status"] == "CURRENT"


def test_crud_filters_and_fields(client):
    a = client.post("/v2.0/networks", json={"network": {"name": "a"}}).json()["network"]
    client.post("/v2.0/networks", json={"network": {"name": "b", "admin_state_up": False}})
    assert [n["name"] for n in client.get("/v2.0/networks?name=a").json()["networks"]] == ["a"]
    assert len(client.get("/v2.0/networks?name=a&name=b").json()["networks"]) == 2
    assert [n["name"] for n in client.get("/v2.0/networks?admin_state_up=false").json()["networks"]] == ["b"]
    assert client.get("/v2.0/networks?fields=id&fields=name").json()["networks"][0].keys() == {"id", "name"}
    r = client.put(f"/v2.0/networks/{a['id']}", json={"network": {"name": "a2"}})
    assert r.status_code == 200 and r.json()["network"]["revision_number"] == 2
    assert client.delete(f"/v2.0/networks/{a['id']}").status_code == 204
    r = client.get(f"/v2.0/networks/{a['id']}")
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "NetworkNotFound"


@pytest.mark.parametrize("body,words", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object with a 'network' object"),
    (b'{"net": {}}', "'network' object"),
    (b'{"network": {"mtu": "big"}}', "mtu"),
])
def test_malformed_bodies_are_400_neutron_errors(client, body, words):
    r = client.post("/v2.0/networks", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert words in r.json()["NeutronError"]["message"]
    assert client.get("/v2.0/networks").json()["networks"] == []


def test_unknown_paths_and_methods_are_neutron_errors(client):
    r = client.get("/v2.0/nothing")
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "HTTPNotFound"
    r = client.patch("/v2.0/networks")
    assert r.status_code == 405 and "NeutronError" in r.json()


def test_router_interface_endpoints(client):
    net = client.post("/v2.0/networks", json={"network": {}}).json()["network"]
    sub = client.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.2.0.0/24"}}).json()["subnet"]
    router = client.post("/v2.0/routers", json={"router": {"name": "r"}}).json()["router"]
    r = client.put(f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]})
    assert r.status_code == 200 and r.json()["subnet_id"] == sub["id"]
    r = client.put(f"/v2.0/routers/{router['id']}/add_router_interface", json={})
    assert r.status_code == 400
    r = client.put(f"/v2.0/routers/{router['id']}/remove_router_interface", json={"subnet_id": sub["id"]})
    assert r.status_code == 200
    r = client.put(f"/v2.0/routers/{router['id']}/remove_router_interface", json={"subnet_id": sub["id"]})
    assert r.status_code == 404


def test_token_auth():
    client = TestClient(create_app(NBService(open_store("memory://")), auth_token="s3cret"))
    r = client.get("/v2.0/networks")
    assert r.status_code == 401 and r.json()["NeutronError"]["type"] == "Unauthorized"
    assert client.get("/v2.0/networks", headers={"X-Auth-Token": "wrong"}).status_code == 401
    assert client.get("/v2.0/networks", headers={"X-Auth-Token": "s3cret"}).status_code == 200
