"""The REST layer: envelopes, filters, fields, sorting, pagination, Neutron errors, version
documents, auth, /openapi.json."""
import json
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient

from dfxdp.api.app import create_app
from dfxdp.nb.db import Put, StoreError, open_store
from dfxdp.api.auth import StaticToken
from dfxdp.nb.db.memory import MemoryStore
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
    client = TestClient(create_app(NBService(open_store("memory://")), auth=StaticToken("s3cret")))
    r = client.get("/v2.0/networks")
    assert r.status_code == 401 and r.json()["NeutronError"]["type"] == "Unauthorized"
    assert client.get("/v2.0/networks", headers={"X-Auth-Token": "wrong"}).status_code == 401
    assert client.get("/v2.0/networks", headers={"X-Auth-Token": "s3cret"}).status_code == 200


def _names(answer: dict, plural: str = "networks") -> list[str]:
    return [n["name"] for n in answer[plural]]


@pytest.fixture
def five(client):
    """Networks e, d, c, b, a (created in that order); b and d not admin up."""
    for name in "edcba":
        client.post("/v2.0/networks", json={"network": {"name": name, "admin_state_up": name not in "bd"}})
    return client


def test_sorting_by_several_keys(five):
    r = five.get("/v2.0/networks?sort_key=admin_state_up&sort_dir=desc&sort_key=name&sort_dir=asc")
    assert _names(r.json()) == ["a", "c", "e", "b", "d"]
    assert _names(five.get("/v2.0/networks?sort_key=name&sort_dir=desc").json()) == list("edcba")
    for query, words in [("sort_key=name", "must be same"), ("sort_key=colour&sort_dir=asc", "sort_keys"),
                         ("sort_key=subnets&sort_dir=asc", "sort_keys"), ("sort_key=name&sort_dir=up", "sort_dirs")]:
        r = five.get(f"/v2.0/networks?{query}")
        assert r.status_code == 400 and words in r.json()["NeutronError"]["message"], query


def _query(href: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(href).query)


def test_pagination_walks_forward_and_back_with_neutrons_links(five):
    first = five.get("/v2.0/networks?limit=2&sort_key=name&sort_dir=asc").json()
    assert _names(first) == ["a", "b"]
    links = {link["rel"]: link["href"] for link in first["networks_links"]}
    assert links["next"].startswith("http://testserver/v2.0/networks?")
    assert dict(_query(links["next"])) == {"limit": "2", "sort_key": "name", "sort_dir": "asc",
                                           "marker": first["networks"][1]["id"]}
    assert dict(_query(links["previous"]))["page_reverse"] == "True"
    second = five.get(links["next"]).json()
    assert _names(second) == ["c", "d"]
    third = five.get({l["rel"]: l["href"] for l in second["networks_links"]}["next"]).json()
    assert _names(third) == ["e"]
    assert [l["rel"] for l in third["networks_links"]] == ["previous"]  # a short forward page: no next
    back = five.get({l["rel"]: l["href"] for l in third["networks_links"]}["previous"]).json()
    assert _names(back) == ["c", "d"]  # the page before the marker, in forward order
    start = five.get({l["rel"]: l["href"] for l in first["networks_links"]}["previous"]).json()
    assert start["networks"] == [] and [l["rel"] for l in start["networks_links"]] == ["next"]


def test_pagination_keeps_fields_and_filters(five):
    r = five.get("/v2.0/networks?limit=1&fields=name&admin_state_up=true&colour=blue"
                 "&sort_key=name&sort_dir=desc").json()
    assert r["networks"] == [{"name": "e"}]
    assert dict(_query(r["networks_links"][0]["href"]))["colour"] == "blue"  # kept in the links, as Neutron does
    assert sorted(_names(five.get("/v2.0/networks?limit=0").json())) == list("abcde")
    assert "networks_links" not in five.get("/v2.0/networks").json()
    r = five.get("/v2.0/networks?limit=x")
    assert r.status_code == 400 and r.json()["NeutronError"]["type"] == "BadRequest"
    r = five.get("/v2.0/networks?limit=2&marker=gone")
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "NetworkNotFound"


def test_fixed_ips_filters(client):
    net = client.post("/v2.0/networks", json={"network": {}}).json()["network"]
    # no DHCP port: its address, picked at random, could be one of those asked for below
    sub = client.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.3.0.0/24",
                                                        "enable_dhcp": False}}).json()["subnet"]
    for address in ("10.3.0.7", "10.3.0.8"):
        client.post("/v2.0/ports", json={"port": {"network_id": net["id"], "name": address,
                                                  "fixed_ips": [{"ip_address": address}]}})
    found = client.get("/v2.0/ports", params=[("fixed_ips", "ip_address=10.3.0.7"),
                                               ("fixed_ips", f"subnet_id={sub['id']}")]).json()["ports"]
    assert [p["name"] for p in found] == ["10.3.0.7"]
    assert client.get("/v2.0/ports?fixed_ips=ip_address=10.3.0.9").json()["ports"] == []


def test_ip_substring_filtering(client):
    net = client.post("/v2.0/networks", json={"network": {}}).json()["network"]
    sub = client.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.4.0.0/24",
                                                        "enable_dhcp": False}}).json()["subnet"]
    for address in ("10.4.0.17", "10.4.0.71", "10.4.0.5"):
        client.post("/v2.0/ports", json={"port": {"network_id": net["id"], "name": address,
                                                  "fixed_ips": [{"ip_address": address}]}})

    def names(*params) -> list[str]:
        return sorted(p["name"] for p in client.get("/v2.0/ports", params=list(params)).json()["ports"])

    assert names(("fixed_ips", "ip_address_substr=7")) == ["10.4.0.17", "10.4.0.71"]
    assert names(("fixed_ips", "ip_address_substr=.71")) == ["10.4.0.71"]
    assert names(("fixed_ips", "ip_address_substr=10.4"), ("fixed_ips", f"subnet_id={sub['id']}")) == \
        ["10.4.0.17", "10.4.0.5", "10.4.0.71"]
    assert names(("fixed_ips", "ip_address_substr=10.5")) == []


def test_a_string_stored_before_bodies_were_checked_still_renders(client):
    """A name with a lone surrogate (stored by an older server) must not break every list."""
    net = client.post("/v2.0/networks", json={"network": {"name": "x"}}).json()["network"]
    store = client.app.state.service.store
    key = f"/dfxdp/nb/network/{net['id']}"
    doc = json.loads(store.get(key).value)
    store.txn([], [Put(key, json.dumps({**doc, "name": "x\ud800y"}).encode())])
    r = client.get("/v2.0/networks")
    assert r.status_code == 200 and json.loads(r.content)["networks"][0]["name"] == "x\ud800y"


class FailingStore(MemoryStore):
    def range(self, prefix):
        raise StoreError("etcd 198.18.0.1:2379 unreachable")


def test_store_failures_are_503_and_surprises_500_neutron_errors(monkeypatch):
    client = TestClient(create_app(NBService(FailingStore("memory://"))))
    r = client.get("/v2.0/networks")
    assert r.status_code == 503 and r.json()["NeutronError"]["type"] == "ServiceUnavailable"
    client = TestClient(create_app(NBService(open_store("memory://"))), raise_server_exceptions=False)
    monkeypatch.setattr(NBService, "list", lambda *a: 1 / 0)
    r = client.get("/v2.0/networks")
    assert r.status_code == 500 and r.json()["NeutronError"]["type"] == "HTTPInternalServerError"


def test_a_damaged_sqlite_file_is_503_not_500(tmp_path):
    """sqlite's own errors are store failures too: the same 503 as an unreachable etcd."""
    store = open_store(f"sqlite:///{tmp_path}/nb.db")
    client = TestClient(create_app(NBService(store)), raise_server_exceptions=False)
    assert client.get("/v2.0/networks").status_code == 200
    store.close()
    for leftover in tmp_path.glob("nb.db-*"):  # WAL and shared-memory files
        leftover.unlink()
    (tmp_path / "nb.db").write_bytes(b"not a database" * 512)
    for method, path, body in (("GET", "/v2.0/networks", None),
                               ("POST", "/v2.0/networks", {"network": {"name": "n"}})):
        r = client.request(method, path, json=body)
        assert r.status_code == 503 and r.json()["NeutronError"]["type"] == "ServiceUnavailable", r.text


def test_openapi_document_describes_every_collection(client):
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v2.0/networks", "/v2.0/ports/{obj_id}", "/v2/lbaas/pools/{parent_id}/members",
                 "/v2.0/routers/{router_id}/add_router_interface"):
        assert path in doc["paths"], path
    port = doc["components"]["schemas"]["PortCreate"]
    assert port["required"] == ["network_id"] and "status" not in port["properties"]
    assert "network_id" not in doc["components"]["schemas"]["PortUpdate"]["properties"]


# each advertised extension -> (collection, attribute its objects then carry)
EXTENSION_ATTRIBUTES = {
    "router": ("routers", "external_gateway_info"), "external-net": ("networks", "router:external"),
    "extraroute": ("routers", "routes"), "security-group": ("security-groups", "security_group_rules"),
    "port-security": ("ports", "port_security_enabled"), "allowed-address-pairs": ("ports", "allowed_address_pairs"),
    "binding": ("ports", "binding:vif_type"), "net-mtu": ("networks", "mtu"), "net-mtu-writable": ("networks", "mtu"),
    "standard-attr-description": ("subnets", "description"), "standard-attr-timestamp": ("ports", "updated_at"),
    "standard-attr-revisions": ("routers", "revision_number"), "project-id": ("security-groups", "project_id"),
    "pagination": (None, None), "sorting": (None, None), "agent": (None, None),
    "dns-integration": ("ports", "dns_assignment"), "extra_dhcp_opt": ("ports", "extra_dhcp_opts"),
    "standard-attr-tag": ("subnets", "tags"), "tag": ("networks", "tags"), "ip-substring-filtering": (None, None),
    "quotas": (None, None), "quota_details": (None, None), "subnet_allocation": ("subnets", "subnetpool_id"),
    "default-subnetpools": (None, None), "tag-creation": (None, None), "tag-ports-during-bulk-creation": (None, None),
    "address-scope": ("networks", "ipv4_address_scope"),
}


def test_extensions_list_what_is_implemented(client):
    aliases = [e["alias"] for e in client.get("/v2.0/extensions").json()["extensions"]]
    assert sorted(aliases) == sorted(EXTENSION_ATTRIBUTES)
    net = client.post("/v2.0/networks", json={"network": {"name": "x"}}).json()["network"]
    client.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.1.0.0/24"}})
    client.post("/v2.0/ports", json={"port": {"network_id": net["id"]}})
    client.post("/v2.0/routers", json={"router": {"name": "r"}})
    for alias, (collection, attribute) in EXTENSION_ATTRIBUTES.items():
        if collection:
            shown = client.get(f"/v2.0/{collection}").json()[collection.replace("-", "_")]
            assert shown and all(attribute in obj for obj in shown), alias
    one = client.get("/v2.0/extensions/binding").json()["extension"]
    assert one["alias"] == "binding" and {"name", "description", "updated", "links"} <= one.keys()
    r = client.get("/v2.0/extensions/dvr")
    assert r.status_code == 404 and "Extension with alias dvr does not exist" in r.json()["NeutronError"]["message"]


def test_bulk_create_makes_all_or_nothing(client):
    r = client.post("/v2.0/networks", json={"networks": [{"name": "b1"}, {"name": "b2"}]})
    assert r.status_code == 201 and [n["name"] for n in r.json()["networks"]] == ["b1", "b2"]
    net = r.json()["networks"][0]
    r = client.post("/v2.0/ports", json={"ports": [{"network_id": net["id"], "name": f"p{i}"} for i in range(3)]})
    assert r.status_code == 201 and len({p["mac_address"] for p in r.json()["ports"]}) == 3
    groups = client.get("/v2.0/security-groups").json()["security_groups"]
    assert [g["name"] for g in groups] == ["default"]  # one default group, made once for the bulk
    before = client.get("/v2.0/ports").json()["ports"]
    r = client.post("/v2.0/ports", json={"ports": [{"network_id": net["id"], "name": "ok"},
                                                   {"network_id": "no-such-network"}]})
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "NetworkNotFound"
    assert client.get("/v2.0/ports").json()["ports"] == before
    r = client.post("/v2.0/ports", json={"ports": [{"network_id": net["id"], "mac_address": "fa:16:3e:00:00:01"},
                                                   {"network_id": net["id"], "mac_address": "fa:16:3e:00:00:01"}]})
    assert r.status_code == 409 and client.get("/v2.0/ports").json()["ports"] == before
    for bad in ({"networks": []}, {"networks": [1]}, {"networks": {"name": "x"}}, {"networks": [{}], "x": 1}):
        r = client.post("/v2.0/networks", json=bad)
        assert r.status_code == 400 and r.json()["NeutronError"]["type"] == "HTTPBadRequest", bad
    assert len(client.get("/v2.0/networks").json()["networks"]) == 2


def _as(project: str, admin: bool = False) -> dict:
    return {"X-Project-Id": project, "X-Roles": "admin,member" if admin else "member,reader"}


def test_objects_are_scoped_to_the_requests_project(client):
    alice, bob, admin = _as("alice"), _as("bob"), _as("ops", admin=True)
    ext = client.post("/v2.0/networks", json={"network": {"name": "ext", "router:external": True}},
                      headers=admin).json()["network"]
    client.post("/v2.0/subnets", json={"subnet": {"network_id": ext["id"], "cidr": "198.19.0.0/24"}}, headers=admin)
    net = client.post("/v2.0/networks", json={"network": {"name": "a"}}, headers=alice).json()["network"]
    assert net["project_id"] == net["tenant_id"] == "alice"
    fip = client.post("/v2.0/floatingips", json={"floatingip": {"floating_network_id": ext["id"]}},
                      headers=alice).json()["floatingip"]
    assert client.get("/v2.0/floatingips", headers=bob).json()["floatingips"] == []
    assert [f["id"] for f in client.get("/v2.0/floatingips", headers=alice).json()["floatingips"]] == [fip["id"]]
    assert client.get(f"/v2.0/floatingips/{fip['id']}", headers=bob).status_code == 404
    assert client.delete(f"/v2.0/floatingips/{fip['id']}", headers=bob).status_code == 404
    assert {n["name"] for n in client.get("/v2.0/networks", headers=bob).json()["networks"]} == {"ext"}
    assert client.get("/v2.0/subnets", headers=bob).json()["subnets"] == []  # not even the external network's
    r = client.put(f"/v2.0/networks/{ext['id']}", json={"network": {"name": "mine"}}, headers=bob)
    assert r.status_code == 403 and r.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    r = client.post("/v2.0/networks", json={"network": {"name": "b", "project_id": "alice"}}, headers=bob)
    assert r.status_code == 403
    groups = client.get("/v2.0/security-groups", headers=bob).json()["security_groups"]
    assert [(g["name"], g["project_id"]) for g in groups] == [("default", "bob")]
    everyone = client.get("/v2.0/security-groups", headers=admin).json()["security_groups"]
    assert sorted(g["project_id"] for g in everyone) == ["alice", "bob", "ops"]  # none made for another project
    assert {f["id"] for f in client.get("/v2.0/floatingips", headers=admin).json()["floatingips"]} == {fip["id"]}
    assert len(client.get("/v2.0/networks").json()["networks"]) == 2  # no project given: the operator's view
    made = client.post("/v2.0/networks", json={"network": {"name": "c", "project_id": "carol"}}, headers=admin)
    assert made.json()["network"]["project_id"] == "carol"


def test_agents_are_the_chassis(client):
    service = client.app.state.service
    service.upsert_chassis("node-a", "198.18.0.21", bridge_mappings={"provider": "eth1"})
    service.upsert_chassis("node-b", "198.18.0.22")
    stale = service.get("chassis", "node-b")
    service.store.put("/dfxdp/nb/chassis/node-b", json.dumps({**stale, "heartbeat": stale["heartbeat"] - 600}).encode())
    agents = {a["host"]: a for a in client.get("/v2.0/agents").json()["agents"]}
    assert agents["node-a"]["alive"] is True and agents["node-b"]["alive"] is False
    assert agents["node-a"]["agent_type"] == "dfxdp agent" and agents["node-a"]["binary"] == "dfxdp-agent"
    assert agents["node-a"]["configurations"]["bridge_mappings"] == {"provider": "eth1"}
    assert [a["host"] for a in client.get("/v2.0/agents?alive=False").json()["agents"]] == ["node-b"]
    assert [a["host"] for a in client.get("/v2.0/agents?host=node-a").json()["agents"]] == ["node-a"]
    r = client.put("/v2.0/agents/node-a", json={"agent": {"admin_state_up": False, "description": "drained"}})
    assert r.status_code == 200 and r.json()["agent"]["admin_state_up"] is False
    service.upsert_chassis("node-a", "198.18.0.21")  # the agent restarts: the operator's marks stay
    shown = client.get("/v2.0/agents/node-a").json()["agent"]
    assert (shown["admin_state_up"], shown["description"]) == (False, "drained")
    r = client.put("/v2.0/agents/node-a", json={"agent": {"host": "elsewhere"}})
    assert r.status_code == 400
    member = {"X-Project-Id": "alice", "X-Roles": "member"}
    assert client.get("/v2.0/agents", headers=member).json()["agents"] == []
    assert client.delete("/v2.0/agents/node-b", headers=member).status_code == 404
    assert client.delete("/v2.0/agents/node-b").status_code == 204
    r = client.get("/v2.0/agents/node-b")
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "AgentNotFound"


def test_only_admins_make_provider_networks(client):
    body = {"network": {"name": "public", "router:external": True, "provider:network_type": "flat",
                        "provider:physical_network": "provider"}}
    r = client.post("/v2.0/networks", json=body, headers=_as("alice"))
    assert r.status_code == 403 and r.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    r = client.post("/v2.0/networks", json=body, headers=_as("ops", admin=True))
    assert r.status_code == 201 and r.json()["network"]["provider:physical_network"] == "provider"
