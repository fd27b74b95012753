"""Cross-project references (dfxdp/api/references.py, dfxdp/api/scope.py) through the real API,
with two projects: what a request names must be visible to it (else 404, as if absent) and,
where Neutron says so, its own; admins may name anything."""
import pytest
from fastapi.testclient import TestClient

from dfxdp.api.app import create_app
from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService
from tests.fixtures.projects import ADMIN, ALICE, BOB, error, make


@pytest.fixture
def client():
    return TestClient(create_app(NBService(open_store("memory://"))))


@pytest.fixture
def world(client):
    """Bob's private network with a subnet and a port, an admin's shared network with a subnet,
    an external network, Alice's router; and each project's security group."""
    bob_net = make(client, "networks", BOB, name="bob")
    bob_subnet = make(client, "subnets", BOB, network_id=bob_net["id"], cidr="10.1.0.0/24")
    bob_port = make(client, "ports", BOB, network_id=bob_net["id"])
    shared = make(client, "networks", ADMIN, name="shared", shared=True)
    shared_subnet = make(client, "subnets", ADMIN, network_id=shared["id"], cidr="10.2.0.0/24")
    public = make(client, "networks", ADMIN, name="public", **{"router:external": True})
    make(client, "subnets", ADMIN, network_id=public["id"], cidr="198.18.10.0/24")
    alice_net = make(client, "networks", ALICE, name="alice")
    alice_subnet = make(client, "subnets", ALICE, network_id=alice_net["id"], cidr="10.3.0.0/24")
    return {"bob_net": bob_net, "bob_subnet": bob_subnet, "bob_port": bob_port, "shared": shared,
            "shared_subnet": shared_subnet, "public": public, "alice_net": alice_net, "alice_subnet": alice_subnet,
            "router": make(client, "routers", ALICE, name="r"),
            "alice_sg": make(client, "security-groups", ALICE, name="a"),
            "bob_sg": make(client, "security-groups", BOB, name="b")}


def test_ports_on_others_networks(client, world):
    # another project's private network is hidden; a shared one (no RBAC) takes ports from everyone
    message = error(client.post("/v2.0/ports", json={"port": {"network_id": world["bob_net"]["id"]}}, headers=ALICE),
                    404, "NetworkNotFound")
    assert message == f"Network {world['bob_net']['id']} could not be found."
    assert make(client, "ports", ALICE, network_id=world["shared"]["id"])["project_id"] == "alice"
    assert make(client, "ports", ADMIN, network_id=world["bob_net"]["id"], project_id="bob")["project_id"] == "bob"


def test_a_ports_security_groups_are_its_projects(client, world):
    net = world["shared"]["id"]
    bob_sg = world["bob_sg"]["id"]
    message = error(client.post("/v2.0/ports", json={"port": {"network_id": net, "security_groups": [bob_sg]}},
                                headers=ALICE), 404, "SecurityGroupNotFound")
    assert message == f"Security group {bob_sg} does not exist"
    port = make(client, "ports", ALICE, network_id=net, security_groups=[world["alice_sg"]["id"]])
    error(client.put(f"/v2.0/ports/{port['id']}", json={"port": {"security_groups": [bob_sg]}}, headers=ALICE),
          404, "SecurityGroupNotFound")
    # an admin may give any project's port any group
    r = client.put(f"/v2.0/ports/{port['id']}", json={"port": {"security_groups": [bob_sg]}}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["port"]["security_groups"] == [bob_sg]
    # the network's owner changes a port on it, but its groups stay the port's project's
    bobs_port = world["bob_port"]["id"]
    other = make(client, "security-groups", ADMIN, name="o", project_id="carol")
    error(client.put(f"/v2.0/ports/{bobs_port}", json={"port": {"security_groups": [other["id"]]}}, headers=BOB),
          404, "SecurityGroupNotFound")


def test_a_rules_remote_group_is_its_projects(client, world):
    rule = {"security_group_id": world["alice_sg"]["id"], "direction": "ingress",
            "remote_group_id": world["bob_sg"]["id"]}
    error(client.post("/v2.0/security-group-rules", json={"security_group_rule": rule}, headers=ALICE),
          404, "SecurityGroupNotFound")
    # nor may a rule go into another project's group
    error(client.post("/v2.0/security-group-rules", json={"security_group_rule": {
        **rule, "security_group_id": world["bob_sg"]["id"], "remote_group_id": None}}, headers=ALICE),
        404, "SecurityGroupNotFound")
    assert make(client, "security-group-rules", ALICE, **{**rule, "remote_group_id": world["alice_sg"]["id"]})
    assert make(client, "security-group-rules", ADMIN, **rule)["remote_group_id"] == world["bob_sg"]["id"]


def test_router_interfaces_by_others_subnets_and_ports(client, world):
    router = world["router"]["id"]

    def add(body, headers=ALICE):
        return client.put(f"/v2.0/routers/{router}/add_router_interface", json=body, headers=headers)

    message = error(add({"subnet_id": world["bob_subnet"]["id"]}), 404, "SubnetNotFound")
    assert message == f"Subnet {world['bob_subnet']['id']} could not be found."
    error(add({"port_id": world["bob_port"]["id"]}), 404, "PortNotFound")
    # a shared network's subnet is seen but not the caller's: refused as Neutron refuses one
    # of a globally shared network
    message = error(add({"subnet_id": world["shared_subnet"]["id"]}), 400, "BadRequest")
    assert message == (f"Bad router request: Cannot add interface to router because subnet "
                       f"{world['shared_subnet']['id']} is not owned by project making the request.")
    assert add({"subnet_id": world["alice_subnet"]["id"]}).status_code == 200
    # removing names them too
    r = client.put(f"/v2.0/routers/{router}/remove_router_interface", json={"subnet_id": world["bob_subnet"]["id"]},
                   headers=ALICE)
    error(r, 404, "SubnetNotFound")
    assert add({"subnet_id": world["bob_subnet"]["id"]}, ADMIN).status_code == 200


def test_a_port_on_a_subnet_of_another_project(client, world):
    """Alice's ports on the admin's shared subnet: one whose address is outside the subnet's
    pools (an admin gave it) may not become her router's interface, one inside may."""
    subnet = world["shared_subnet"]
    client.put(f"/v2.0/subnets/{subnet['id']}", json={"subnet": {"allocation_pools": [
        {"start": "10.2.0.10", "end": "10.2.0.200"}]}}, headers=ADMIN)
    outside = make(client, "ports", ADMIN, network_id=subnet["network_id"], project_id="alice",
                   fixed_ips=[{"subnet_id": subnet["id"], "ip_address": "10.2.0.250"}])
    inside = make(client, "ports", ALICE, network_id=subnet["network_id"])
    router = world["router"]["id"]
    r = client.put(f"/v2.0/routers/{router}/add_router_interface", json={"port_id": outside["id"]}, headers=ALICE)
    assert error(r, 400, "BadRequest") == (
        f"Bad router request: Cannot add interface to router because specified port {outside['id']} has an IP "
        f"address out of the allocation pool of subnet {subnet['id']}, which is not owned by the project making "
        f"the request.")
    r = client.put(f"/v2.0/routers/{router}/add_router_interface", json={"port_id": inside["id"]}, headers=ALICE)
    assert r.status_code == 200, r.text


def test_router_gateways_on_others_networks(client, world):
    router = world["router"]["id"]
    message = error(client.put(f"/v2.0/routers/{router}", json={"router": {"external_gateway_info": {
        "network_id": world["bob_net"]["id"]}}}, headers=ALICE), 404, "NetworkNotFound")
    assert world["bob_net"]["id"] in message
    error(client.post("/v2.0/routers", json={"router": {"name": "g", "external_gateway_info": {
        "network_id": world["bob_net"]["id"]}}}, headers=ALICE), 404, "NetworkNotFound")
    # a network it sees that is not external: Neutron's 400
    error(client.post("/v2.0/routers", json={"router": {"name": "g", "external_gateway_info": {
        "network_id": world["shared"]["id"]}}}, headers=ALICE), 400, "BadRequest")
    r = client.put(f"/v2.0/routers/{router}", json={"router": {"external_gateway_info": {
        "network_id": world["public"]["id"]}}}, headers=ALICE)
    assert r.status_code == 200, r.text


def test_floating_ips_with_others_ports_and_networks(client, world):
    public = world["public"]["id"]
    error(client.post("/v2.0/floatingips", json={"floatingip": {"floating_network_id": world["bob_net"]["id"]}},
                      headers=ALICE), 404, "NetworkNotFound")
    error(client.post("/v2.0/floatingips", json={"floatingip": {"floating_network_id": public,
                                                                "port_id": world["bob_port"]["id"]}},
                      headers=ALICE), 404, "PortNotFound")
    fip = make(client, "floatingips", ALICE, floating_network_id=public)
    error(client.put(f"/v2.0/floatingips/{fip['id']}", json={"floatingip": {"port_id": world["bob_port"]["id"]}},
                     headers=ALICE), 404, "PortNotFound")
    # a port Bob sees (on his network) but Alice owns: not for Bob's floating IP
    alices = make(client, "ports", ADMIN, network_id=world["bob_net"]["id"], project_id="alice")
    bob_fip = make(client, "floatingips", BOB, floating_network_id=public)
    message = error(client.put(f"/v2.0/floatingips/{bob_fip['id']}", json={"floatingip": {"port_id": alices["id"]}},
                               headers=BOB), 400, "BadRequest")
    assert message == (f"Bad floatingip request: Cannot process floating IP association with Port {alices['id']}, "
                       f"since that port is owned by a different project.")
    assert client.get(f"/v2.0/floatingips/{bob_fip['id']}", headers=BOB).json()["floatingip"]["port_id"] is None


def test_subnets_from_others_pools(client, world):
    private = make(client, "subnetpools", BOB, name="p", prefixes=["10.50.0.0/16"])
    shared = make(client, "subnetpools", ADMIN, name="s", prefixes=["10.60.0.0/16"], shared=True)
    net = world["alice_net"]["id"]
    message = error(client.post("/v2.0/subnets", json={"subnet": {"network_id": net, "subnetpool_id": private["id"],
                                                                  "prefixlen": 24}}, headers=ALICE),
                    404, "SubnetPoolNotFound")
    assert message == f"Subnet pool {private['id']} could not be found."
    other = make(client, "networks", ALICE, name="n2")
    assert make(client, "subnets", ALICE, network_id=other["id"], subnetpool_id=shared["id"],
                prefixlen=24)["cidr"] == "10.60.0.0/24"


def test_a_default_pool_the_caller_may_not_see_is_none(client, world):
    make(client, "subnetpools", ADMIN, name="d", prefixes=["10.90.0.0/16"], is_default=True)
    body = {"network_id": world["alice_net"]["id"], "use_default_subnetpool": True, "ip_version": 4,
            "prefixlen": 24}
    message = error(client.post("/v2.0/subnets", json={"subnet": body}, headers=ALICE), 400, "BadRequest")
    assert message == "Bad subnet request: No default subnetpool for IPv4 found."
    shared = make(client, "subnetpools", ADMIN, name="d6", prefixes=["2001:db8:90::/48"], is_default=True, shared=True)
    made = make(client, "subnets", ALICE, **{**body, "ip_version": 6, "prefixlen": 64})
    assert made["subnetpool_id"] == shared["id"]


def test_octavia_objects_join_only_the_callers_load_balancer(client, world):
    def lbaas(path: str, headers: dict, **fields):
        singular = path.rstrip("s").split("/")[-1]
        return client.post(f"/v2/lbaas/{path}", json={singular: fields}, headers=headers)

    # a VIP on a subnet the caller does not see: as if there were none
    error(lbaas("loadbalancers", ALICE, vip_subnet_id=world["bob_subnet"]["id"]), 404, "SubnetNotFound")
    lb = lbaas("loadbalancers", BOB, vip_subnet_id=world["bob_subnet"]["id"]).json()["loadbalancer"]
    message = error(lbaas("listeners", ALICE, loadbalancer_id=lb["id"], protocol="TCP", protocol_port=80),
                    403, "PolicyForbidden")
    assert message == "Policy does not allow this request to be performed."
    listener = lbaas("listeners", BOB, loadbalancer_id=lb["id"], protocol="TCP", protocol_port=80).json()["listener"]
    error(lbaas("pools", ALICE, listener_id=listener["id"], protocol="TCP", lb_algorithm="ROUND_ROBIN"),
          403, "PolicyForbidden")
    pool = lbaas("pools", BOB, listener_id=listener["id"], protocol="TCP",
                 lb_algorithm="ROUND_ROBIN").json()["pool"]
    error(lbaas(f"pools/{pool['id']}/members", ALICE, address="10.1.0.9", protocol_port=80), 403, "PolicyForbidden")
    error(lbaas("healthmonitors", ALICE, pool_id=pool["id"], type="TCP", delay=5, timeout=3, max_retries=3),
          403, "PolicyForbidden")
    assert lbaas(f"pools/{pool['id']}/members", ADMIN, address="10.1.0.9", protocol_port=80).status_code == 201


def test_looking_up_references_makes_no_default_group_for_a_project_nobody_used(client):
    """Neutron makes a project's default group on that project's request; the server's own
    lookups of what a request names (a port's groups) are no project's request."""
    net = make(client, "networks", ALICE, name="n")
    make(client, "subnets", ALICE, network_id=net["id"], cidr="10.4.0.0/24")
    mine = make(client, "security-groups", ALICE, name="mine")
    make(client, "ports", ALICE, network_id=net["id"], security_groups=[mine["id"]])
    groups = client.get("/v2.0/security-groups", headers=ADMIN).json()["security_groups"]
    assert sorted((g["project_id"], g["name"]) for g in groups) == [("alice", "default"), ("alice", "mine"),
                                                                   ("ops", "default")]  # the admin listed: its own
    # a project that only lists its groups finds its default group there
    carol = {"X-Project-Id": "carol", "X-Roles": "member"}
    assert [g["name"] for g in client.get("/v2.0/security-groups", headers=carol).json()["security_groups"]] \
        == ["default"]
