"""dfxdp behind a real Keystone (pip-installed, sqlite, fernet tokens, served by gunicorn) that
lists it as the network service (issue 17): keystonemiddleware's auth_token checks the tokens,
the `openstack` CLI finds dfxdp in the catalog, each project sees its own, and OpenStack's own
integration suite for the network API, Tempest's `tempest.api.network`, passes (every test
passes or is skipped for an extension dfxdp does not advertise)."""
import json
import os
import re
import shutil
import subprocess
import sys

import httpx

import pytest

from dfxdp.testing.etcd import free_port
from dfxdp.testing.keystone import ADMIN_PASSWORD, KeystoneServer
from dfxdp.testing.tempest import TempestWorkspace
from tests.fixtures.server import ServerProcess

OPENSTACK = shutil.which("openstack", path=os.path.dirname(sys.executable)) or "openstack"
# 221 pass today (tempest 47, IPv6 subnet attributes on); issue 17's bar is 200. Fewer passes
# and no failure means tests that used to run now skip or are not found.
MIN_PASSED = 215
# Tempest's reasons to skip that are allowed: an extension dfxdp does not advertise (tempest.conf's
# api_extensions is its GET /v2.0/extensions); Nova, which this deployment lacks (dfxdp is the
# network service only).
ALLOWED_SKIP = re.compile(r"extensions? (is |are )?not (enabled|available)|extensions? .*are enabled|"
                          r"network extension: \S+ is not enabled|compute service is not available",
                          re.IGNORECASE)


@pytest.fixture(scope="module")
def keystone():
    """One Keystone for the module (setting one up takes a while): each test its own projects."""
    with KeystoneServer() as ks:
        yield ks


@pytest.fixture(scope="module")
def dfxdp_behind_keystone(keystone, tmp_path_factory):
    """A dfxdp server that takes Keystone tokens, in Keystone's catalog as the network service."""
    tmp_path = tmp_path_factory.mktemp("dfxdp")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    keystone.add_network_service(url)
    conf = tmp_path / "dfxdp.conf"
    conf.write_text(keystone.authtoken_section())
    server = ServerProcess(f"sqlite:///{tmp_path}/nb.db", "--config", str(conf), port=port)
    try:
        yield url
    finally:
        server.close()


def openstack(keystone, user: str, password: str, project: str, *args: str):
    """One `openstack` command as `user` of `project`, through Keystone's catalog; its JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=keystone.url, OS_USERNAME=user, OS_PASSWORD=password, OS_PROJECT_NAME=project,
               OS_USER_DOMAIN_ID="default", OS_PROJECT_DOMAIN_ID="default", OS_IDENTITY_API_VERSION="3",
               OS_REGION_NAME="RegionOne", OS_INTERFACE="public")
    done = subprocess.run([OPENSTACK, *args, "-f", "json"], capture_output=True, text=True, timeout=180, env=env)
    return done.returncode, (json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else done.stderr)


def member_of_new_project(keystone, name: str) -> dict:
    """A project `name` with a user `name` (password `name`-pw), a member of it; the project."""
    project = keystone.call("POST", "/projects", project={"name": name, "domain_id": "default"})["project"]
    user = keystone.call("POST", "/users", user={"name": name, "password": f"{name}-pw",
                                                 "domain_id": "default"})["user"]
    member = keystone.call("GET", "/roles?name=member")["roles"][0]["id"]
    keystone.call("PUT", f"/projects/{project['id']}/users/{user['id']}/roles/{member}")
    return project


def test_the_cli_through_keystone(keystone, dfxdp_behind_keystone):
    """The catalog leads the CLI to dfxdp; each project sees its own, a member is no admin."""
    project = member_of_new_project(keystone, "demo")

    rc, net = openstack(keystone, "demo", "demo-pw", "demo", "network", "create", "blue")
    assert rc == 0, net
    assert net["project_id"] == project["id"]
    rc, admins = openstack(keystone, "admin", ADMIN_PASSWORD, "admin", "network", "create", "--external", "ext")
    assert rc == 0, admins
    rc, seen = openstack(keystone, "demo", "demo-pw", "demo", "network", "list")
    assert rc == 0 and {n["Name"] for n in seen} == {"blue", "ext"}, seen
    rc, err = openstack(keystone, "demo", "demo-pw", "demo", "network", "create", "--share", "mine")
    assert rc != 0 and "disallowed by policy" in err, err
    rc, shown = openstack(keystone, "admin", ADMIN_PASSWORD, "admin", "network", "show", "blue")
    assert rc == 0 and shown["provider:network_type"] == "vxlan", shown


def test_two_projects_cannot_name_each_others_objects(keystone, dfxdp_behind_keystone):
    """Cross-project references with real Keystone tokens: what another project owns is 404 when
    named in a port, a router interface or a security group rule, as in Neutron."""
    member_of_new_project(keystone, "alpha")
    member_of_new_project(keystone, "beta")
    rc, net = openstack(keystone, "alpha", "alpha-pw", "alpha", "network", "create", "a-net")
    assert rc == 0, net
    rc, subnet = openstack(keystone, "alpha", "alpha-pw", "alpha", "subnet", "create", "--network", "a-net",
                           "--subnet-range", "10.81.0.0/24", "a-sub")
    assert rc == 0, subnet
    rc, group = openstack(keystone, "alpha", "alpha-pw", "alpha", "security", "group", "create", "a-sg")
    assert rc == 0, group
    rc, router = openstack(keystone, "beta", "beta-pw", "beta", "router", "create", "b-router")
    assert rc == 0, router
    beta = {"X-Auth-Token": keystone.token("beta", "beta-pw", "beta")}
    with httpx.Client(base_url=dfxdp_behind_keystone + "/v2.0", headers=beta, timeout=30) as http:
        own = http.post("/security-groups", json={"security_group": {"name": "b-sg"}}).json()["security_group"]
        for answer, kind in (
                (http.post("/ports", json={"port": {"network_id": net["id"]}}), "NetworkNotFound"),
                (http.put(f"/routers/{router['id']}/add_router_interface", json={"subnet_id": subnet["id"]}),
                 "SubnetNotFound"),
                (http.post("/security-group-rules", json={"security_group_rule": {
                    "security_group_id": own["id"], "direction": "ingress", "remote_group_id": group["id"]}}),
                 "SecurityGroupNotFound")):
            assert answer.status_code == 404 and answer.json()["NeutronError"]["type"] == kind, answer.text
    # the owner itself may
    rc, added = openstack(keystone, "alpha", "alpha-pw", "alpha", "port", "create", "--network", "a-net",
                          "--security-group", "a-sg", "a-port")
    assert rc == 0 and added["security_group_ids"] == [group["id"]], added


def test_only_keystone_tokens_pass(keystone, dfxdp_behind_keystone):
    """auth_token: no or a bad token is 401; the project comes from the token, not from the
    client's own X-Project-Id."""
    url = dfxdp_behind_keystone + "/v2.0/networks"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"X-Auth-Token": "bogus"}).status_code == 401
    assert httpx.get(dfxdp_behind_keystone + "/").status_code == 200  # the version document, as Neutron's
    token = keystone.token()
    admin_project = keystone.call("GET", "/projects?name=admin")["projects"][0]["id"]
    made = httpx.post(url, json={"network": {"name": "n"}}, timeout=30,
                      headers={"X-Auth-Token": token, "X-Project-Id": "spoofed", "X-Roles": "admin"}).json()
    assert made["network"]["project_id"] == admin_project


def test_tempest_network_api(keystone, dfxdp_behind_keystone):
    workspace = TempestWorkspace(keystone, dfxdp_behind_keystone)
    try:
        workspace.configure()
        results = workspace.run()
    finally:
        workspace.close()
    print(results.summary())
    assert not results.failed and results.returncode == 0, f"{results.summary()}; failed:\n" + "\n".join(results.failed) + \
        "\n\n" + results.output[-20000:]
    assert len(results.passed) >= MIN_PASSED, results.summary() + "\n" + results.output[-5000:]
    unexplained = {test: why for test, why in results.skipped.items() if not ALLOWED_SKIP.search(why)}
    assert not unexplained, unexplained
