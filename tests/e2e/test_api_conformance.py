"""Neutron conformance against a real `dfxdp server`, as OpenStack's own clients use it: the
`openstack` CLI (python-openstackclient) and openstacksdk, each case one that Tempest's network
API tests or the install guide found wrong (issue 17)."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import httpx
import openstack.exceptions
import pytest

from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService
from tests.fixtures.server import ServerProcess

OPENSTACK = shutil.which("openstack", path=str(pathlib.Path(sys.executable).parent)) or "openstack"


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(f"sqlite:///{tmp_path}/nb.db")
    srv.db_url = f"sqlite:///{tmp_path}/nb.db"
    try:
        yield srv
    finally:
        srv.close()


def _run(server, *args: str) -> subprocess.CompletedProcess:
    """One `openstack` command without Keystone (auth none, the server as endpoint)."""
    return subprocess.run([OPENSTACK, "--os-auth-type", "none", "--os-endpoint", server.url, *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OS_CLOUD": ""})


def cli(server, *args: str) -> dict | list:
    """A command that answers JSON (create, list, show): its JSON."""
    done = _run(server, *args, "-f", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "null")


def cli_quiet(server, *args: str) -> None:
    """A command that answers nothing (set, delete)."""
    done = _run(server, *args)
    assert done.returncode == 0, done.stderr


def cli_error(server, *args: str) -> str:
    done = _run(server, *args)
    assert done.returncode != 0, done.stdout
    return done.stderr


def test_the_cli_as_a_new_user_uses_it(server):
    """The issue's first steps: extensions discovered, a port on a network, the default group
    listed, the install guide's flat provider network, the agents."""
    aliases = {e["Alias"] for e in cli(server, "extension", "list", "--network")}
    assert {"router", "external-net", "security-group", "binding", "agent"} <= aliases
    cli(server, "network", "create", "blue")
    port = cli(server, "port", "create", "--network", "blue", "p1")
    assert port["binding_vif_type"] == "unbound" and port["binding_vnic_type"] == "normal"
    assert [g["Name"] for g in cli(server, "security", "group", "list")] == ["default"]
    public = cli(server, "network", "create", "--external", "--provider-network-type", "flat",
                 "--provider-physical-network", "provider", "public")
    assert (public["provider:network_type"], public["provider:physical_network"]) == ("flat", "provider")
    assert "Physical network provider is in use" in cli_error(
        server, "network", "create", "--external", "--provider-network-type", "flat", "--provider-physical-network",
        "provider", "public2")
    NBService(open_store(server.db_url)).upsert_chassis("node-1", "198.18.0.31")
    agents = cli(server, "network", "agent", "list")
    assert [(a["Host"], a["Agent Type"], a["Alive"]) for a in agents] == [("node-1", "dfxdp agent", True)]


def test_security_group_rules_speak_neutron(server):
    cli(server, "security", "group", "create", "web")
    rule = cli(server, "security", "group", "rule", "create", "--ethertype", "IPv6", "--protocol", "ipv6-icmp",
               "web")
    assert rule["protocol"] == "ipv6-icmp"
    assert cli(server, "security", "group", "rule", "create", "--ethertype", "IPv6", "--protocol", "icmpv6",
               "--icmp-type", "128", "web")["protocol"] == "ipv6-icmp"
    group = server.connect().network.find_security_group("web")
    with pytest.raises(openstack.exceptions.BadRequestException, match="port_range_min must be <= port_range_max"):
        server.connect().network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                                            protocol="tcp", port_range_min=80, port_range_max=79)
    err = cli_error(server, "security", "group", "rule", "create", "--ethertype", "IPv6", "--remote-ip",
                    "10.0.0.0/24", "web")
    assert "Conflicting value ethertype IPv6 for CIDR 10.0.0.0/24" in err
    err = cli_error(server, "security", "group", "set", "--name", "default", "web")
    assert "Default security group already exists" in err


def test_openstacksdk_cases_tempest_found(server):
    c = server.connect()
    router = c.network.create_router(name="r", external_gateway_info={})
    assert router.external_gateway_info is None
    net = c.network.create_network(name="n")
    c.network.create_subnet(network_id=net.id, cidr="10.40.0.0/24", ip_version=4)
    with pytest.raises(openstack.exceptions.BadRequestException, match="overlaps with another subnet"):
        c.network.create_subnet(network_id=net.id, cidr="10.40.0.0/25", ip_version=4)
    made = c.network.post("/networks", json={"networks": [{"name": "b1"}, {"name": "b2"}]})
    assert made.status_code == 201 and [n["name"] for n in made.json()["networks"]] == ["b1", "b2"]
    ports = c.network.post("/ports", json={"ports": [{"network_id": net.id}, {"network_id": "missing"}]})
    # all or nothing: only the subnet's DHCP port is on the network
    assert ports.status_code == 404 and [p.device_owner for p in c.network.ports()] == ["network:dhcp"]
    port = c.network.create_port(network_id=net.id)
    address = port.fixed_ips[0]["ip_address"]
    assert [p.id for p in c.network.ports(fixed_ips=f"ip_address={address}")] == [port.id]
    listed = c.network.get("/networks?no_such_filter=x").json()["networks"]
    assert sorted(n["name"] for n in listed) == ["b1", "b2", "n"]  # an unknown filter is ignored
    ext = c.network.create_network(name="ext", is_router_external=True)
    c.network.create_subnet(network_id=ext.id, cidr="198.19.40.0/24", ip_version=4)
    fip = c.network.create_ip(floating_network_id=ext.id)
    c.network.delete_network(ext.id)
    assert c.network.find_ip(fip.id) is None


def test_a_project_sees_its_own_objects(server):
    admin = {"X-Project-Id": "ops", "X-Roles": "admin"}
    alice, bob = {"X-Project-Id": "alice", "X-Roles": "member"}, {"X-Project-Id": "bob", "X-Roles": "member"}
    with httpx.Client(base_url=server.url + "/v2.0", timeout=30) as http:
        ext = http.post("/networks", json={"network": {"name": "ext", "router:external": True}}, headers=admin)
        http.post("/subnets", json={"subnet": {"network_id": ext.json()["network"]["id"], "cidr": "198.19.41.0/24"}},
                  headers=admin)
        fip = http.post("/floatingips", json={"floatingip": {"floating_network_id": ext.json()["network"]["id"]}},
                        headers=alice).json()["floatingip"]
        assert fip["project_id"] == "alice"
        assert http.get("/floatingips", headers=bob).json()["floatingips"] == []
        assert http.get(f"/floatingips/{fip['id']}", headers=bob).status_code == 404
        assert [f["id"] for f in http.get("/floatingips", headers=alice).json()["floatingips"]] == [fip["id"]]


def test_address_scopes_and_tags_through_the_cli(server):
    """Neutron's address-scope as the `openstack` CLI drives it: scopes, pools in them (unique
    prefixes), a network's derived scope; tags given with a create."""
    scope = cli(server, "address", "scope", "create", "--ip-version", "4", "--share", "s4")
    assert (scope["ip_version"], scope["shared"]) == (4, True)
    assert [s["Name"] for s in cli(server, "address", "scope", "list")] == ["s4"]
    pool = cli(server, "subnet", "pool", "create", "--address-scope", "s4", "--pool-prefix", "10.70.0.0/16",
               "--default-prefix-length", "24", "p1")
    assert pool["address_scope_id"] == scope["id"]
    err = cli_error(server, "subnet", "pool", "create", "--address-scope", "s4", "--pool-prefix", "10.70.128.0/17",
                    "p2")
    assert "subnetpools within an address scope must have unique prefixes" in err
    net = cli(server, "network", "create", "--tag", "red", "--tag", "blue", "n")
    assert sorted(net["tags"]) == ["blue", "red"]
    cli(server, "subnet", "create", "--network", "n", "--subnet-pool", "p1", "sub")
    assert cli(server, "network", "show", "n")["ipv4_address_scope"] == scope["id"]
    cli_quiet(server, "address", "scope", "set", "--name", "scope4", "s4")
    assert "There are one or more subnet pools in use on the address scope" in cli_error(
        server, "address", "scope", "delete", "scope4")
    cli_quiet(server, "subnet", "delete", "sub")
    cli_quiet(server, "subnet", "pool", "delete", "p1")
    cli_quiet(server, "address", "scope", "delete", "scope4")
    assert cli(server, "address", "scope", "list") == []
