"""`openstack loadbalancer …` (python-octaviaclient) against a real dfxdp server:
the whole tree built, listed, refused where the provider cannot do it (with its
message), and removed by a cascade delete."""
import json
import pathlib
import subprocess
import sys

import pytest

from tests.fixtures.server import ServerProcess

OPENSTACK = pathlib.Path(sys.executable).parent / "openstack"


@pytest.fixture
def server():
    srv = ServerProcess("memory://")
    try:
        yield srv
    finally:
        srv.close()


def cli(server, *args, ok=True):
    proc = subprocess.run([str(OPENSTACK), "--os-auth-type", "none", "--os-endpoint", server.url,
                           "loadbalancer", *args], capture_output=True, text=True, timeout=120)
    assert (proc.returncode == 0) == ok, proc.stderr
    return json.loads(proc.stdout) if ok and "-f" in args else proc


def test_openstack_loadbalancer_commands(server):
    c = server.connect()
    net = c.network.create_network(name="n")
    subnet = c.network.create_subnet(network_id=net.id, cidr="10.0.0.0/24", ip_version=4)
    lb = cli(server, "create", "--name", "web", "--vip-subnet-id", subnet.id, "-f", "json")
    assert lb["vip_address"].startswith("10.0.0.") and lb["provisioning_status"] == "PENDING_CREATE"
    refused = cli(server, "listener", "create", "--protocol", "HTTP", "--protocol-port", "80", "web", ok=False)
    assert "use one of TCP, UDP" in refused.stderr
    listener = cli(server, "listener", "create", "--name", "l80", "--protocol", "TCP", "--protocol-port", "80",
                   "web", "-f", "json")
    assert (listener["protocol"], listener["protocol_port"]) == ("TCP", 80)
    refused = cli(server, "pool", "create", "--listener", "l80", "--protocol", "TCP",
                  "--lb-algorithm", "LEAST_CONNECTIONS", ok=False)
    assert "LEAST_CONNECTIONS" in refused.stderr and "SOURCE_IP_PORT" in refused.stderr
    pool = cli(server, "pool", "create", "--name", "p", "--listener", "l80", "--protocol", "TCP",
               "--lb-algorithm", "ROUND_ROBIN", "--session-persistence", "type=SOURCE_IP", "-f", "json")
    assert pool["session_persistence"]["type"] == "SOURCE_IP" and pool["lb_algorithm"] == "ROUND_ROBIN"
    member = cli(server, "member", "create", "--address", "10.0.0.20", "--protocol-port", "8080", "--weight", "3",
                 "p", "-f", "json")
    assert (member["address"], member["weight"], member["operating_status"]) == ("10.0.0.20", 3, "NO_MONITOR")
    hm = cli(server, "healthmonitor", "create", "--delay", "2", "--timeout", "1", "--max-retries", "2",
             "--type", "HTTP", "--url-path", "/health", "--expected-codes", "200-204", "p", "-f", "json")
    assert (hm["type"], hm["url_path"], hm["expected_codes"]) == ("HTTP", "/health", "200-204")
    assert [x["name"] for x in cli(server, "list", "-f", "json")] == ["web"]
    cli(server, "delete", "--cascade", "web")
    assert cli(server, "list", "-f", "json") == []
    assert list(c.load_balancer.pools()) == [] and list(c.load_balancer.health_monitors()) == []
