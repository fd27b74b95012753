"""Neutron's address-scope through the real API: the address-scopes resource and its policy,
subnet pools in a scope (unique prefixes, same IP version), networks' derived scopes."""
import pytest
from fastapi.testclient import TestClient

from dfxdp.api.app import create_app
from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService
from tests.fixtures.projects import ADMIN, ALICE, BOB, error, make


@pytest.fixture
def client():
    return TestClient(create_app(NBService(open_store("memory://"))))


def test_address_scope_crud(client):
    scope = make(client, "address-scopes", name="s4", ip_version="4")
    assert scope["ip_version"] == 4 and scope["shared"] is False and scope["project_id"] == scope["tenant_id"]
    r = client.put(f"/v2.0/address-scopes/{scope['id']}", json={"address_scope": {"name": "t", "shared": True}})
    assert r.status_code == 200 and r.json()["address_scope"]["shared"] is True
    # as Neutron: the IP version is fixed, and a shared scope stays shared
    error(client.put(f"/v2.0/address-scopes/{scope['id']}", json={"address_scope": {"ip_version": 6}}),
          400, "HTTPBadRequest")
    message = error(client.put(f"/v2.0/address-scopes/{scope['id']}", json={"address_scope": {"shared": False}}),
                    400, "AddressScopeUpdateError")
    assert message == f"Unable to update address scope {scope['id']} : Shared address scope can't be unshared."
    error(client.post("/v2.0/address-scopes", json={"address_scope": {"name": "x", "ip_version": 5}}),
          400, "HTTPBadRequest")
    error(client.post("/v2.0/address-scopes", json={"address_scope": {"name": "x"}}), 400, "HTTPBadRequest")
    assert [s["name"] for s in client.get("/v2.0/address-scopes?ip_version=4").json()["address_scopes"]] == ["t"]
    assert client.delete(f"/v2.0/address-scopes/{scope['id']}").status_code == 204
    message = error(client.get(f"/v2.0/address-scopes/{scope['id']}"), 404, "AddressScopeNotFound")
    assert message == f"Address scope {scope['id']} could not be found."


def test_pools_in_a_scope_have_unique_prefixes(client):
    scope = make(client, "address-scopes", name="s", ip_version=4)
    first = make(client, "subnetpools", name="a", prefixes=["10.0.0.0/16"], address_scope_id=scope["id"])
    message = error(client.post("/v2.0/subnetpools", json={"subnetpool": {
        "name": "b", "prefixes": ["10.0.128.0/17"], "address_scope_id": scope["id"]}}), 409,
        "AddressScopePrefixConflict")
    assert message == ("Failed to associate address scope: subnetpools within an address scope must have unique "
                       "prefixes.")
    # outside the scope the same prefixes are fine; joining it later is checked again
    other = make(client, "subnetpools", name="b", prefixes=["10.0.128.0/17"])
    error(client.put(f"/v2.0/subnetpools/{other['id']}", json={"subnetpool": {"address_scope_id": scope["id"]}}),
          409, "AddressScopePrefixConflict")
    disjoint = make(client, "subnetpools", name="c", prefixes=["10.1.0.0/16"], address_scope_id=scope["id"])
    # and so is growing a pool of the scope onto another's prefixes
    error(client.put(f"/v2.0/subnetpools/{disjoint['id']}", json={"subnetpool": {
        "prefixes": ["10.1.0.0/16", "10.0.0.0/8"]}}), 409, "AddressScopePrefixConflict")
    assert client.get(f"/v2.0/subnetpools/{disjoint['id']}").json()["subnetpool"]["prefixes"] == ["10.1.0.0/16"]
    v6 = make(client, "subnetpools", name="v6", prefixes=["2001:db8::/32"])
    message = error(client.put(f"/v2.0/subnetpools/{v6['id']}", json={"subnetpool": {
        "address_scope_id": scope["id"]}}), 400, "IllegalSubnetPoolIpVersionAssociationToAddressScope")
    assert message.endswith("because subnetpool ip_version is not 4.")
    # a scope with pools stays; leaving it frees it
    error(client.delete(f"/v2.0/address-scopes/{scope['id']}"), 409, "AddressScopeInUse")
    for pool in (first, disjoint):
        r = client.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"address_scope_id": None}})
        assert r.status_code == 200 and r.json()["subnetpool"]["address_scope_id"] is None
    assert client.delete(f"/v2.0/address-scopes/{scope['id']}").status_code == 204


def test_a_network_shows_its_subnets_scopes(client):
    scope4 = make(client, "address-scopes", name="s4", ip_version=4)
    scope6 = make(client, "address-scopes", name="s6", ip_version=6)
    pool4 = make(client, "subnetpools", name="p4", prefixes=["10.20.0.0/16"], address_scope_id=scope4["id"])
    pool6 = make(client, "subnetpools", name="p6", prefixes=["2001:db8::/48"], address_scope_id=scope6["id"])
    net = make(client, "networks", name="n")
    assert net["ipv4_address_scope"] is None and net["ipv6_address_scope"] is None
    make(client, "subnets", network_id=net["id"], subnetpool_id=pool4["id"], ip_version=4, prefixlen=24)
    shown = client.get(f"/v2.0/networks/{net['id']}").json()["network"]
    assert shown["ipv4_address_scope"] == scope4["id"] and shown["ipv6_address_scope"] is None
    make(client, "subnets", network_id=net["id"], subnetpool_id=pool6["id"], ip_version=6, prefixlen=64)
    listed = client.get(f"/v2.0/networks?id={net['id']}").json()["networks"][0]
    assert (listed["ipv4_address_scope"], listed["ipv6_address_scope"]) == (scope4["id"], scope6["id"])
    # the pool leaving its scope takes the network out of it
    client.put(f"/v2.0/subnetpools/{pool4['id']}", json={"subnetpool": {"address_scope_id": None}})
    assert client.get(f"/v2.0/networks/{net['id']}").json()["network"]["ipv4_address_scope"] is None
    error(client.post("/v2.0/networks", json={"network": {"name": "x", "ipv4_address_scope": scope4["id"]}}),
          400, "HTTPBadRequest")


def test_address_scope_policy(client):
    mine = make(client, "address-scopes", ALICE, name="mine", ip_version=4)
    error(client.post("/v2.0/address-scopes", json={"address_scope": {"name": "s", "ip_version": 4,
                                                                         "shared": True}}, headers=ALICE),
          403, "PolicyNotAuthorized")
    error(client.put(f"/v2.0/address-scopes/{mine['id']}", json={"address_scope": {"shared": True}},
                     headers=ALICE), 403, "PolicyNotAuthorized")
    public = make(client, "address-scopes", ADMIN, name="public", ip_version=4, shared=True)
    private = make(client, "address-scopes", ADMIN, name="private", ip_version=4)
    # others see a shared scope and their own, never another's private one
    assert {s["name"] for s in client.get("/v2.0/address-scopes", headers=BOB).json()["address_scopes"]} == {"public"}
    error(client.get(f"/v2.0/address-scopes/{mine['id']}", headers=BOB), 404, "AddressScopeNotFound")
    error(client.put(f"/v2.0/address-scopes/{public['id']}", json={"address_scope": {"name": "x"}}, headers=BOB),
          403, "PolicyNotAuthorized")
    error(client.delete(f"/v2.0/address-scopes/{mine['id']}", headers=BOB), 404, "AddressScopeNotFound")
    # a pool joins a scope it sees: its own or a shared one (404 for another's private scope)
    error(client.post("/v2.0/subnetpools", json={"subnetpool": {
        "name": "p", "prefixes": ["10.30.0.0/16"], "address_scope_id": private["id"]}}, headers=BOB),
        404, "AddressScopeNotFound")
    pool = make(client, "subnetpools", BOB, name="p", prefixes=["10.30.0.0/16"], address_scope_id=public["id"])
    # ... and, in a shared scope it does not own, is not changed again (Neutron's IllegalSubnetPoolUpdate)
    message = error(client.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"name": "q"}},
                               headers=BOB), 400, "IllegalSubnetPoolUpdate")
    assert message == (f"Illegal subnetpool update : subnetpool {pool['id']} cannot be updated when associated with "
                       f"shared address scope {public['id']}.")
    assert client.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"name": "q"}},
                      headers=ADMIN).status_code == 200
