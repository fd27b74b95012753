"""Neutron's default policy (dfxdp/api/policy.py, dfxdp/api/scope.py): the personas admin,
member and reader, owner checks through a parent, attributes hidden from those who may not see
them, and a policy file that overrides a rule."""
import pytest
from fastapi.testclient import TestClient

from dfxdp.api.app import create_app
from dfxdp.api.auth import oslo_config
from dfxdp.api.policy import Policy
from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService


def _as(project: str, *roles: str) -> dict:
    return {"X-Project-Id": project, "X-Roles": ",".join(roles)}


ADMIN, ALICE, ALICE_READER, BOB = _as("ops", "admin"), _as("alice", "member"), _as("alice", "reader"), _as("bob", "member")


@pytest.fixture
def client():
    return TestClient(create_app(NBService(open_store("memory://"))))


def _make(client, path: str, headers: dict, **fields) -> dict:
    singular = path.rstrip("s").replace("-", "_")
    r = client.post(f"/v2.0/{path}", json={singular: fields}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()[singular]


def _refused(r, status: int = 403) -> None:
    assert r.status_code == status, r.text
    assert r.json()["NeutronError"]["type"] == ("PolicyNotAuthorized" if status == 403 else "NetworkNotFound")


def test_a_reader_reads_and_never_writes(client):
    net = _make(client, "networks", ALICE, name="a")
    assert [n["id"] for n in client.get("/v2.0/networks", headers=ALICE_READER).json()["networks"]] == [net["id"]]
    _refused(client.post("/v2.0/networks", json={"network": {"name": "r"}}, headers=ALICE_READER))
    _refused(client.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "r"}}, headers=ALICE_READER))
    _refused(client.delete(f"/v2.0/networks/{net['id']}", headers=ALICE_READER))
    assert client.get(f"/v2.0/networks/{net['id']}", headers=ALICE).json()["network"]["name"] == "a"


def test_admin_only_attributes(client):
    _refused(client.post("/v2.0/networks", json={"network": {"name": "s", "shared": True}}, headers=ALICE))
    net = _make(client, "networks", ALICE, name="a")
    _refused(client.put(f"/v2.0/networks/{net['id']}", json={"network": {"shared": True}}, headers=ALICE))
    assert client.put(f"/v2.0/networks/{net['id']}", json={"network": {"shared": True}},
                      headers=ADMIN).json()["network"]["shared"] is True
    # a member does not see provider attributes or binding details; an admin does
    assert "provider:network_type" not in net
    assert client.get(f"/v2.0/networks/{net['id']}", headers=ADMIN).json()["network"]["provider:network_type"] == "vxlan"
    port = _make(client, "ports", ALICE, network_id=net["id"])
    assert "binding:vif_type" not in port and "binding:host_id" not in port
    _refused(client.post("/v2.0/ports", json={"port": {"network_id": net["id"], "binding:host_id": "node-1"}},
                         headers=ALICE))
    assert client.get(f"/v2.0/ports/{port['id']}", headers=ADMIN).json()["port"]["binding:vif_type"] == "unbound"


def test_the_owner_of_a_network_manages_the_ports_on_it(client):
    net = _make(client, "networks", ADMIN, name="shared", shared=True)
    _make(client, "subnets", ADMIN, network_id=net["id"], cidr="10.9.0.0/24")
    mine = _make(client, "ports", ALICE, network_id=net["id"])
    # alice's port on the admin's shared network: hers to see and delete, not bob's
    assert client.get(f"/v2.0/ports/{mine['id']}", headers=BOB).status_code == 404
    # a fixed address on someone else's network is the network owner's (or an admin's) to give
    r = client.post("/v2.0/ports", json={"port": {"network_id": net["id"],
                                                  "fixed_ips": [{"ip_address": "10.9.0.50"}]}}, headers=ALICE)
    _refused(r)
    # bob's private network is none of alice's business: as if it did not exist
    theirs = _make(client, "networks", BOB, name="b")
    _refused(client.post("/v2.0/subnets", json={"subnet": {"network_id": theirs["id"], "cidr": "10.8.0.0/24",
                                                             "ip_version": 4}}, headers=ALICE), 404)
    _refused(client.post("/v2.0/ports", json={"port": {"network_id": theirs["id"]}}, headers=ALICE), 404)
    assert client.delete(f"/v2.0/ports/{mine['id']}", headers=ALICE).status_code == 204


def test_security_group_rules_follow_their_group(client):
    group = _make(client, "security-groups", ALICE, name="web")
    body = {"security_group_rule": {"security_group_id": group["id"], "direction": "ingress", "protocol": "tcp"}}
    r = client.post("/v2.0/security-group-rules", json=body, headers=BOB)  # bob does not see alice's group
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "SecurityGroupNotFound"
    r = client.post("/v2.0/security-group-rules", json={"security_group_rule": {
        **body["security_group_rule"], "security_group_id": "no-such-group"}}, headers=ALICE)
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "SecurityGroupNotFound"
    rule = client.post("/v2.0/security-group-rules", json=body, headers=ALICE).json()["security_group_rule"]
    assert client.get(f"/v2.0/security-group-rules/{rule['id']}", headers=BOB).status_code == 404
    assert client.get(f"/v2.0/security-group-rules/{rule['id']}", headers=ALICE_READER).status_code == 200


def test_a_policy_file_overrides_a_default(tmp_path):
    (tmp_path / "policy.yaml").write_text('"create_network": "role:admin"\n')
    (tmp_path / "dfxdp.conf").write_text(f"[oslo_policy]\npolicy_file = {tmp_path / 'policy.yaml'}\n")
    client = TestClient(create_app(NBService(open_store("memory://")),
                                   policy=Policy(oslo_config(str(tmp_path / "dfxdp.conf")))))
    _refused(client.post("/v2.0/networks", json={"network": {"name": "a"}}, headers=ALICE))
    assert client.post("/v2.0/networks", json={"network": {"name": "a"}}, headers=ADMIN).status_code == 201
