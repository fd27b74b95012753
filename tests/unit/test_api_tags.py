"""standard-attr-tag through the real API: the …/tags sub-resource on every standard resource,
Neutron's validation and answers, and the tags/tags-any/not-tags/not-tags-any list filters."""
import pytest
from fastapi.testclient import TestClient

from dfxdp.api.app import create_app
from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService


@pytest.fixture
def client():
    return TestClient(create_app(NBService(open_store("memory://"))))


@pytest.fixture
def objects(client):
    """One object of each taggable collection: collection -> id."""
    net = client.post("/v2.0/networks", json={"network": {"name": "n", "router:external": True}}).json()["network"]
    subnet = client.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.9.0.0/24"}}).json()
    port = client.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
    router = client.post("/v2.0/routers", json={"router": {"name": "r"}}).json()["router"]
    sg = client.post("/v2.0/security-groups", json={"security_group": {"name": "g"}}).json()["security_group"]
    rule = client.post("/v2.0/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress"}}).json()["security_group_rule"]
    fip = client.post("/v2.0/floatingips", json={"floatingip": {"floating_network_id": net["id"]}}).json()
    return {"networks": net["id"], "subnets": subnet["subnet"]["id"], "ports": port["id"], "routers": router["id"],
            "security-groups": sg["id"], "security-group-rules": rule["id"], "floatingips": fip["floatingip"]["id"]}


def test_every_standard_resource_takes_tags(client, objects):
    for collection, obj_id in objects.items():
        singular = collection.replace("-", "_")[:-1]
        base = f"/v2.0/{collection}/{obj_id}"
        revision = client.get(base).json()[singular]["revision_number"]
        assert client.put(f"{base}/tags/red").status_code == 201, collection
        assert client.put(f"{base}/tags/red").status_code == 201  # again: still one
        assert client.put(f"{base}/tags/blue").status_code == 201
        shown = client.get(base).json()[singular]
        assert shown["tags"] == ["red", "blue"] and shown["revision_number"] == revision + 2
        assert client.get(f"{base}/tags").json() == {"tags": ["red", "blue"]}
        assert client.get(f"{base}/tags/red").status_code == 204
        r = client.get(f"{base}/tags/green")
        assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "TagNotFound"
        assert client.delete(f"{base}/tags/red").status_code == 204
        assert client.get(f"{base}/tags").json() == {"tags": ["blue"]}
        r = client.delete(f"{base}/tags/red")
        assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "TagNotFound"
        r = client.put(f"{base}/tags", json={"tags": ["a", "b"]})
        assert r.status_code == 200 and r.json() == {"tags": ["a", "b"]}
        assert client.delete(f"{base}/tags").status_code == 204
        assert client.get(f"{base}/tags").json() == {"tags": []}


def test_tags_are_checked_as_neutron_checks_them(client, objects):
    base = f"/v2.0/networks/{objects['networks']}"
    client.put(f"{base}/tags/keep")
    for bad, words in ((f"{base}/tags/{'x' * 256}", "exceeds maximum length of 255"),):
        r = client.put(bad)
        assert r.status_code == 400 and words in r.json()["NeutronError"]["message"]
    assert client.put(f"{base}/tags/{'x' * 255}").status_code == 201
    for body, words in (({"tags": ["a", "a"]}, "Duplicate items"), ({"tags": "a"}, "is not a list"),
                        ({"tag": ["a"]}, "Invalid tags body"), ({"tags": [1]}, "is not a valid string"),
                        ({"tags": ["y" * 256]}, "exceeds maximum length")):
        for method in ("PUT", "POST"):
            r = client.request(method, f"{base}/tags", json=body)
            assert r.status_code == 400 and r.json()["NeutronError"]["type"] == "InvalidInput", body
            assert words in r.json()["NeutronError"]["message"]
    r = client.put(f"{base}/tags", json={"tags": [f"t{i}" for i in range(51)]})
    assert r.status_code == 400 and r.json()["NeutronError"]["message"] == (
        "Bad networks request: The number of tags exceed the per-resource limit of 50.")
    assert client.get(f"{base}/tags").json()["tags"] == ["keep", "x" * 255]  # refused requests changed nothing
    r = client.put("/v2.0/networks/no-such/tags/a")
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "NetworkNotFound"
    r = client.put(base, json={"network": {"tags": ["a"]}})
    assert r.status_code == 400  # an update changes tags through …/tags only


def test_post_adds_several_tags(client, objects):
    """Neutron's tag-creation: POST …/tags adds the tags given to those there (200, the tags asked)."""
    base = f"/v2.0/ports/{objects['ports']}"
    client.put(f"{base}/tags/old")
    revision = client.get(base).json()["port"]["revision_number"]
    r = client.post(f"{base}/tags", json={"tags": ["red", "old", "blue"]})
    assert r.status_code == 200 and r.json() == {"tags": ["red", "old", "blue"]}
    shown = client.get(base).json()["port"]
    assert shown["tags"] == ["old", "red", "blue"] and shown["revision_number"] == revision + 1


@pytest.mark.parametrize("collection, body", [
    ("networks", {"name": "t"}), ("security-groups", {"name": "t"}), ("routers", {"name": "t"}),
    ("subnetpools", {"name": "t", "prefixes": ["10.60.0.0/16"]})])
def test_tags_in_a_create_body_are_stored_with_the_object(client, collection, body):
    singular = collection.rstrip("s").replace("-", "_")
    r = client.post(f"/v2.0/{collection}", json={singular: {**body, "tags": ["a", "b"]}})
    assert r.status_code == 201, r.text
    made = r.json()[singular]
    assert made["tags"] == ["a", "b"] and made["revision_number"] == 1
    assert client.get(f"/v2.0/{collection}/{made['id']}/tags").json() == {"tags": ["a", "b"]}
    assert [o["id"] for o in client.get(f"/v2.0/{collection}?tags=a,b").json()[singular + "s"]] == [made["id"]]


def test_tags_in_a_bulk_of_ports_and_refused_tags_make_nothing(client, objects):
    net = objects["networks"]
    r = client.post("/v2.0/ports", json={"ports": [{"network_id": net, "tags": ["x"]}, {"network_id": net}]})
    assert r.status_code == 201 and [p["tags"] for p in r.json()["ports"]] == [["x"], []]
    before = len(client.get("/v2.0/ports").json()["ports"])
    for tags, kind in ((["a", "a"], "InvalidInput"), ("a", "InvalidInput"), ([7], "InvalidInput"),
                       ([str(i) for i in range(51)], "BadRequest")):
        r = client.post("/v2.0/ports", json={"ports": [{"network_id": net}, {"network_id": net, "tags": tags}]})
        assert r.status_code == 400 and r.json()["NeutronError"]["type"] == kind, tags
    assert len(client.get("/v2.0/ports").json()["ports"]) == before


def test_a_project_changes_only_its_own_objects_tags(client):
    member = {"X-Project-Id": "p1", "X-Roles": "member"}
    other = {"X-Project-Id": "p2", "X-Roles": "member"}
    net = client.post("/v2.0/networks", json={"network": {"name": "mine"}}, headers=member).json()["network"]
    shared = client.post("/v2.0/networks", json={"network": {"name": "s", "shared": True}}).json()["network"]
    assert client.put(f"/v2.0/networks/{net['id']}/tags/a", headers=member).status_code == 201
    assert client.get(f"/v2.0/networks/{net['id']}/tags", headers=other).status_code == 404
    assert client.put(f"/v2.0/networks/{net['id']}/tags/b", headers=other).status_code == 404
    assert client.get(f"/v2.0/networks/{shared['id']}/tags", headers=other).json() == {"tags": []}
    assert client.put(f"/v2.0/networks/{shared['id']}/tags/b", headers=other).status_code == 403


def test_list_filters_on_tags(client):
    tagged = {"n1": ["red", "blue"], "n2": ["red"], "n3": ["green"], "n4": []}
    for name, names in tagged.items():
        net = client.post("/v2.0/networks", json={"network": {"name": name}}).json()["network"]
        client.put(f"/v2.0/networks/{net['id']}/tags", json={"tags": names})

    def names(query: str) -> list[str]:
        return sorted(n["name"] for n in client.get(f"/v2.0/networks?{query}").json()["networks"])

    assert names("tags=red") == ["n1", "n2"]
    assert names("tags=red,blue") == ["n1"]
    assert names("tags=red&tags=blue") == ["n1"]
    assert names("tags-any=blue,green") == ["n1", "n3"]
    assert names("not-tags=red,blue") == ["n2", "n3", "n4"]
    assert names("not-tags-any=red,green") == ["n4"]
    assert names("tags=red&not-tags=blue") == ["n2"]
    assert names("tags=red&fields=name") == ["n1", "n2"]
