"""The resource CLI against a real server: happy paths by name and id, JSON
output, and one clear error line (non-zero exit, no traceback) for mistakes."""
import json
import os
import subprocess
import sys

import pytest

from tests.fixtures.server import REPO, ServerProcess


@pytest.fixture
def dfxdp(tmp_path):
    srv = ServerProcess(f"sqlite:///{tmp_path}/cli.db")

    def run(*args, ok=True):
        proc = subprocess.run([sys.executable, "-m", "dfxdp.cli.main", *args], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO), "DFXDP_URL": srv.url}, timeout=60)
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    try:
        yield run
    finally:
        srv.close()


def js(proc):
    return json.loads(proc.stdout)


def test_build_a_topology_from_the_cli(dfxdp):
    net = js(dfxdp("network", "create", "--name", "blue", "-f", "json"))
    dfxdp("network", "create", "--name", "ext", "--external")
    sub = js(dfxdp("subnet", "create", "--network", "blue", "--cidr", "10.40.0.0/24", "--name", "blue-sub", "-f", "json"))
    dfxdp("subnet", "create", "--network", "ext", "--cidr", "198.19.40.0/24")
    assert sub["network_id"] == net["id"] and sub["gateway_ip"] == "10.40.0.1"
    # an address beyond the ones the subnet's DHCP port picks its own from (ipam.ALLOCATION_WINDOW)
    port = js(dfxdp("port", "create", "--network", "blue", "--name", "vm1", "--fixed-ip", "10.40.0.200",
                    "--host", "node1", "-f", "json"))
    assert port["fixed_ips"][0]["ip_address"] == "10.40.0.200" and port["binding:host_id"] == "node1"
    dfxdp("router", "create", "--name", "r1", "--external-gateway", "ext")
    rif = js(dfxdp("router", "add-interface", "r1", "--subnet", "blue-sub", "-f", "json"))
    assert rif["subnet_id"] == sub["id"]
    fip = js(dfxdp("floatingip", "create", "--network", "ext", "--port", "vm1", "-f", "json"))
    assert fip["fixed_ip_address"] == "10.40.0.200"
    dfxdp("security-group", "create", "--name", "web")
    rule = js(dfxdp("security-group-rule", "create", "--group", "web", "--protocol", "tcp", "--port-range", "80:90",
                    "-f", "json"))
    assert (rule["port_range_min"], rule["port_range_max"]) == (80, 90)
    renamed = js(dfxdp("port", "set", "vm1", "--name", "vm1b", "-f", "json"))
    assert renamed["name"] == "vm1b"
    table = dfxdp("port", "list").stdout
    assert "vm1b" in table and "10.40.0.200" in table
    listed = js(dfxdp("port", "list", "--filter", "name=vm1b", "-f", "json"))
    assert [p["id"] for p in listed] == [port["id"]]
    dfxdp("floatingip", "delete", fip["id"])
    dfxdp("router", "remove-interface", "r1", "--subnet", "blue-sub")
    dfxdp("port", "delete", "vm1b")
    dfxdp("network", "delete", "blue")
    assert [n["name"] for n in js(dfxdp("network", "list", "-f", "json"))] == ["ext"]


def test_address_scopes_from_the_cli(dfxdp):
    scope = js(dfxdp("address-scope", "create", "--name", "s6", "--ip-version", "6", "--share", "-f", "json"))
    assert (scope["ip_version"], scope["shared"]) == (6, True)
    table = dfxdp("address-scope", "list").stdout
    assert "s6" in table and "True" in table
    assert js(dfxdp("address-scope", "set", "s6", "--name", "scope6", "-f", "json"))["name"] == "scope6"
    unshare = dfxdp("address-scope", "set", "scope6", "--property", "shared=false", ok=False)
    assert unshare.returncode != 0 and "Shared address scope can't be unshared" in unshare.stderr
    dfxdp("address-scope", "delete", "scope6")
    assert js(dfxdp("address-scope", "list", "-f", "json")) == []


@pytest.mark.parametrize("args,words", [
    (("network", "show", "nope"), "NetworkNotFound"),
    (("subnet", "create", "--network", "nope", "--cidr", "10.0.0.0/24"), "not be found"),
    (("security-group-rule", "create", "--group", "x", "--port-range", "a:b"), "expected PORT or MIN:MAX"),
    (("port", "set", "x"), "nothing to set"),
    (("network", "list", "--url", "http://127.0.0.1:1"), "cannot reach the dfxdp API"),
])
def test_mistakes_are_one_clear_line(dfxdp, args, words):
    proc = dfxdp(*args, ok=False)
    assert proc.returncode != 0
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr
