"""Lists and pages through the server's copy (dfxdp/nb/mirror.py), kept object by object:
after every create, update and delete, what it shows (derived fields, order, pages, markers,
rendered bytes) is what a list read and sorted from the store anew shows."""
import random

import pytest
from fastapi.testclient import TestClient

from dfxdp.api.app import create_app
from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService

DECORATED = ("port", "network", "security_group", "loadbalancer", "pool")


@pytest.fixture
def services(monkeypatch):
    """(a server's service listing through its copy, one reading the store, the store). Its
    copy places every changed object by bisection (a small kind would be sorted anew)."""
    monkeypatch.setattr("dfxdp.nb.mirror.RESORT_SHARE", 1.0)
    store = open_store("memory://")
    served = NBService(store, mirror=True)
    try:
        yield served, NBService(store), store
    finally:
        served.mirror.close()


def _same_lists(served: NBService, plain: NBService, kinds=DECORATED) -> None:
    for kind in kinds:
        assert served.list(kind) == plain.list(kind), kind


def test_derived_fields_follow_what_they_are_derived_from(services):
    served, plain, _ = services
    net = plain.create("network", {"name": "n"})
    subnet = plain.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    port = plain.create("port", {"network_id": net["id"], "binding:host_id": "host-1"})
    group = plain.create("security_group", {"name": "g"})
    _same_lists(served, plain)
    assert {p["id"]: p["binding:vif_type"] for p in served.list("port")}[port["id"]] == "binding_failed"

    plain.chassis.upsert("host-1", "198.18.0.1")  # the port's host now runs an agent
    _same_lists(served, plain)
    assert {p["id"]: p["binding:vif_type"] for p in served.list("port")}[port["id"]] == "tap"
    before = next(p for p in served.mirror.list("port") if p["id"] == port["id"])
    plain.chassis.heartbeat("host-1")  # nothing a port shows: the port is not made anew
    assert next(p for p in served.mirror.list("port") if p["id"] == port["id"]) is before
    plain.delete("chassis", "host-1")
    _same_lists(served, plain)
    assert {p["id"]: p["binding:vif_type"] for p in served.list("port")}[port["id"]] == "binding_failed"

    second = plain.create("subnet", {"network_id": net["id"], "cidr": "10.0.1.0/24"})
    _same_lists(served, plain)
    assert served.list("network", {"id": [net["id"]]})[0]["subnets"] == sorted([subnet["id"], second["id"]])
    plain.delete("subnet", second["id"])
    _same_lists(served, plain)
    assert served.list("network", {"id": [net["id"]]})[0]["subnets"] == [subnet["id"]]

    rule = plain.create("security_group_rule", {"security_group_id": group["id"], "direction": "ingress",
                                                "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22,
                                                "port_range_max": 22})
    _same_lists(served, plain)
    assert rule["id"] in {r["id"] for r in served.list("security_group", {"id": [group["id"]]})[0]
                          ["security_group_rules"]}
    plain.delete("security_group_rule", rule["id"])
    _same_lists(served, plain)

    balancer = plain.create("loadbalancer", {"vip_subnet_id": subnet["id"]})
    listener = plain.create("listener", {"loadbalancer_id": balancer["id"], "protocol": "TCP", "protocol_port": 80})
    _same_lists(served, plain)
    pool = plain.create("pool", {"listener_id": listener["id"], "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"})
    member = plain.create("member", {"pool_id": pool["id"], "address": "10.0.0.20", "protocol_port": 80})
    _same_lists(served, plain)
    assert served.list("pool")[0]["members"] == [{"id": member["id"]}]
    plain.delete("member", member["id"])
    _same_lists(served, plain)
    assert served.list("pool")[0]["members"] == []


def test_a_pool_address_scope_shows_on_its_networks(services):
    served, plain, _ = services
    scope = plain.create("address_scope", {"name": "s", "ip_version": 4})
    pool = plain.create("subnetpool", {"name": "p", "prefixes": ["10.8.0.0/16"], "default_prefixlen": 24})
    net = plain.create("network", {"name": "n"})
    plain.create("subnet", {"network_id": net["id"], "subnetpool_id": pool["id"], "ip_version": 4})
    _same_lists(served, plain, ["network"])
    assert served.list("network")[0]["ipv4_address_scope"] is None
    plain.update("subnetpool", pool["id"], {"address_scope_id": scope["id"]})
    _same_lists(served, plain, ["network"])
    assert served.list("network")[0]["ipv4_address_scope"] == scope["id"]


def _pages(client: TestClient, query: str, headers: dict | None = None) -> list[dict]:
    """Every page forward from the first, then every page back from the last: (status, answer)."""
    answers, url = [], f"/v2.0/networks?{query}"
    for rel in ("next", "previous"):
        while url:
            answer = client.get(url, headers=headers)
            answers.append((answer.status_code, answer.json()))  # a marker the member may not see: 404
            links = {link["rel"]: link["href"] for link in answer.json().get("networks_links", [])}
            url = links.get(rel) if answer.json().get("networks") else None
        url = f"/v2.0/networks?{query}&page_reverse=True" if rel == "next" else None
    return answers


def test_pages_right_after_every_change_are_those_of_a_list_sorted_anew(services):
    """Creates, updates and deletes in a random order (many in one second: the order's ties
    are broken by id): after each, the whole list, its pages both ways, pages by a random
    marker, with fields, filters, sort keys and as a project's member, through the copy are
    what a server reading the store answers."""
    served, plain, store = services
    mirrored, direct = TestClient(create_app(served)), TestClient(create_app(plain))
    pick = random.Random(18)
    member = {"X-Project-Id": "p1", "X-Roles": "member"}
    names = []
    for step in range(24):
        listed = plain.list("network")
        action = pick.choice(["create"] * 3 + ["update", "delete"]) if listed else "create"
        if action == "create":
            project = pick.choice(["p1", "p2"])
            plain.create("network", {"name": f"n{step}", "shared": pick.random() < 0.3,
                                     "admin_state_up": pick.random() < 0.7}, project)
        elif action == "update":
            plain.update("network", pick.choice(listed)["id"], {"name": f"renamed{step}"})
        else:
            plain.delete("network", pick.choice(listed)["id"])
        names.append(action)
        listed = plain.list("network")
        marker = pick.choice(listed)["id"] if listed else "none"
        queries = ["", "limit=3", "limit=4&admin_state_up=true", "limit=2&fields=id&fields=name",
                   "limit=3&sort_key=name&sort_dir=desc", f"limit=3&marker={marker}",
                   f"limit=2&marker={marker}&page_reverse=True"]
        for query in queries:
            assert _pages(mirrored, query) == _pages(direct, query), (step, query)
            assert _pages(mirrored, query, member) == _pages(direct, query, member), (step, query, "member")
    assert {"create", "update", "delete"} <= set(names)


def test_a_marker_deleted_is_not_found_right_away(services):
    served, plain, _ = services
    mirrored, direct = TestClient(create_app(served)), TestClient(create_app(plain))
    made = [plain.create("network", {"name": f"n{i}"}) for i in range(6)]
    page = mirrored.get("/v2.0/networks?limit=2").json()["networks"]
    marker = page[-1]["id"]
    assert len(mirrored.get(f"/v2.0/networks?limit=2&marker={marker}").json()["networks"]) == 2
    plain.delete("network", marker)
    for client in (mirrored, direct):  # as Neutron's lookup of the marker: 404
        answer = client.get(f"/v2.0/networks?limit=2&marker={marker}")
        assert answer.status_code == 404 and answer.json()["NeutronError"]["type"] == "NetworkNotFound"
    assert len(made) == 6
