"""quotas and quota_details through the real API: limits per project, Neutron's defaults,
OverQuota on create (a bulk counted as a whole), -1 unlimited, admin-only changes."""
import threading

import pytest
from fastapi.testclient import TestClient

from dfxdp.api.app import create_app
from dfxdp.nb.db import open_store
from dfxdp.nb.errors import Conflict
from dfxdp.nb.quotas import DEFAULTS
from dfxdp.nb.service import NBService

ADMIN = {"X-Project-Id": "admin-project", "X-Roles": "admin"}
MEMBER = {"X-Project-Id": "p1", "X-Roles": "member"}


@pytest.fixture
def client():
    return TestClient(create_app(NBService(open_store("memory://"))))


def test_limits_defaults_and_changes(client):
    assert client.get("/v2.0/quotas/p1").json()["quota"] == DEFAULTS
    assert DEFAULTS["port"] == 500 and DEFAULTS["network"] == 100  # Neutron's
    assert client.get("/v2.0/quotas/p1/default").json()["quota"] == DEFAULTS
    assert client.get("/v2.0/quotas", headers=ADMIN).json() == {"quotas": []}
    r = client.put("/v2.0/quotas/p1", json={"quota": {"network": 3, "router": -1}}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["quota"] == {**DEFAULTS, "network": 3, "router": -1}
    assert client.get("/v2.0/quotas/p1", headers=MEMBER).json()["quota"]["network"] == 3
    listed = client.get("/v2.0/quotas", headers=ADMIN).json()["quotas"]
    assert [(q["project_id"], q["network"]) for q in listed] == [("p1", 3)]
    assert client.get("/v2.0/quotas/p1/default").json()["quota"] == DEFAULTS
    assert client.delete("/v2.0/quotas/p1", headers=ADMIN).status_code == 204
    assert client.get("/v2.0/quotas/p1").json()["quota"] == DEFAULTS


def test_only_admins_change_quotas_and_projects_see_their_own(client):
    r = client.put("/v2.0/quotas/p1", json={"quota": {"network": 1000}}, headers=MEMBER)
    assert r.status_code == 403 and r.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    assert client.delete("/v2.0/quotas/p1", headers=MEMBER).status_code == 403
    assert client.get("/v2.0/quotas/p2", headers=MEMBER).status_code == 403
    assert client.get("/v2.0/quotas", headers=MEMBER).status_code == 403
    assert client.get("/v2.0/quotas/p1", headers=MEMBER).json()["quota"]["network"] == 100


@pytest.mark.parametrize("quota,words", [({"network": -2}, "not in range -1"),
                                         ({"network": "many"}, "not an integer"),
                                         ({"bogus": 1}, "Unrecognized attribute"),
                                         ({"network": True}, "not an integer")])
def test_bad_limits_are_refused(client, quota, words):
    r = client.put("/v2.0/quotas/p1", json={"quota": quota}, headers=ADMIN)
    assert r.status_code == 400 and words in r.json()["NeutronError"]["message"]
    assert client.get("/v2.0/quotas", headers=ADMIN).json() == {"quotas": []}


def test_creates_past_the_limit_are_over_quota(client):
    client.put("/v2.0/quotas/p1", json={"quota": {"network": 2, "port": 3}}, headers=ADMIN)
    for name in ("a", "b"):
        assert client.post("/v2.0/networks", json={"network": {"name": name}}, headers=MEMBER).status_code == 201
    r = client.post("/v2.0/networks", json={"network": {"name": "c"}}, headers=MEMBER)
    assert r.status_code == 409
    assert r.json()["NeutronError"] == {"type": "OverQuota", "message": "Quota exceeded for resources: ['network'].",
                                        "detail": ""}
    # another project is not limited by p1's quota
    assert client.post("/v2.0/networks", json={"network": {"name": "c"}},
                       headers={"X-Project-Id": "p2", "X-Roles": "member"}).status_code == 201
    net = client.get("/v2.0/networks?name=a", headers=MEMBER).json()["networks"][0]
    # a bulk is counted as a whole: four ports do not fit in three, none is made
    r = client.post("/v2.0/ports", json={"ports": [{"network_id": net["id"]}] * 4}, headers=MEMBER)
    assert r.status_code == 409 and r.json()["NeutronError"]["type"] == "OverQuota"
    assert client.get("/v2.0/ports", headers=MEMBER).json()["ports"] == []
    r = client.post("/v2.0/ports", json={"ports": [{"network_id": net["id"]}] * 3}, headers=MEMBER)
    assert r.status_code == 201
    details = client.get("/v2.0/quotas/p1/details", headers=MEMBER).json()["quota"]
    assert details["network"] == {"limit": 2, "used": 2, "reserved": 0}
    assert details["port"] == {"limit": 3, "used": 3, "reserved": 0}
    # deleting frees a unit; -1 is unlimited
    client.delete(f"/v2.0/networks/{client.get('/v2.0/networks?name=b', headers=MEMBER).json()['networks'][0]['id']}",
                  headers=MEMBER)
    assert client.post("/v2.0/networks", json={"network": {"name": "c"}}, headers=MEMBER).status_code == 201
    client.put("/v2.0/quotas/p1", json={"quota": {"network": -1}}, headers=ADMIN)
    for i in range(3):
        assert client.post("/v2.0/networks", json={"network": {"name": f"u{i}"}}, headers=MEMBER).status_code == 201


def test_racing_creates_never_pass_the_limit():
    service = NBService(open_store("memory://"))
    service.quotas.update("p1", {"router": 4})
    made, refused = [], []

    def create(i: int) -> None:
        try:
            made.append(service.create("router", {"name": f"r{i}", "project_id": "p1"}, enforce_quota=True))
        except Conflict as exc:
            refused.append(exc.type)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 4 and refused == ["OverQuota"] * 8
    assert len(service.list("router", {"project_id": ["p1"]})) == 4


def test_server_config_sets_default_limits():
    import configparser

    import click

    from dfxdp.cli.server import quota_defaults
    config = configparser.ConfigParser()
    config.read_string("[quotas]\nquota_port = -1\nquota_network = 7\n")
    assert quota_defaults(config) == {"port": -1, "network": 7}
    service = NBService(open_store("memory://"), quota_defaults=quota_defaults(config))
    assert service.quotas.limits("any") == {**DEFAULTS, "port": -1, "network": 7}
    config.read_string("[quotas]\nquota_nothing = 1\n")
    with pytest.raises(click.ClickException, match="Unrecognized attribute"):
        quota_defaults(config)
