"""Default SNAT on a three-chassis cluster with the OVS fallback: VMs without a floating IP
fetch a page from an HTTP server on the outside host, which sees the router gateway's
address; one chassis does it for the router, and another takes over when its agent stops;
`enable_snat: false` leaves them no way out.

One network behind the router, a VM on each chassis, none with a floating IP."""
import json
import pathlib
import time
import urllib.request
import uuid

import pytest

from dfxdp.testing.cluster import OUTSIDE_IP, Cluster
from dfxdp.testing.netns import Topology, run, stop_process, wait_listening
from dfxdp.testing.prom import sample

pytestmark = [pytest.mark.ovs, pytest.mark.etcd]

HTTP_PORT = 8080


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with Topology("sn") as topo:
        cl = Cluster(topo, chassis=3, ovs=True)
        server = None
        try:
            c = cl.connect()
            cl.ext = c.network.create_network(name="ext", is_router_external=True)
            c.network.create_subnet(network_id=cl.ext.id, cidr="198.19.0.0/24", ip_version=4,
                                    gateway_ip="198.19.0.1",
                                    allocation_pools=[{"start": "198.19.0.10", "end": "198.19.0.99"}])
            blue = c.network.create_network(name="blue")
            sub = c.network.create_subnet(network_id=blue.id, cidr="10.0.0.0/24", ip_version=4)
            cl.router = c.network.create_router(name="r", external_gateway_info={"network_id": cl.ext.id})
            c.network.add_interface_to_router(cl.router, subnet_id=sub.id)
            cl.router = c.network.get_router(cl.router.id)
            cl.gateway_ip = cl.router.external_gateway_info["external_fixed_ips"][0]["ip_address"]
            cl.vm, cl.ports = {}, {}
            for n in (1, 2, 3):
                port = c.network.create_port(network_id=blue.id, binding_host_id=f"ch{n}", name=f"v{n}")
                cl.ports[f"ch{n}"], cl.vm[f"ch{n}"] = port, cl.plug(port, cl.chassis[n - 1], name=f"v{n}")
            for port in cl.ports.values():
                cl.wait_active(port.id)
            # The outside host serves a page and logs who asked for it.
            root = tmp_path_factory.mktemp("www")
            cl.page = uuid.uuid4().hex
            (root / "page").write_text(cl.page)
            cl.http_log = root / "access.log"
            server = topo.popen(["python3", "-m", "http.server", str(HTTP_PORT), "--bind", OUTSIDE_IP,
                                 "--directory", str(root)], ns=cl.outside,
                                stdout=open(cl.http_log, "ab"), stderr=open(cl.http_log, "ab"))
            wait_listening(cl.outside, HTTP_PORT)
            yield cl
        finally:
            if server:
                stop_process(server)
            cl.close()


def agents(cl) -> dict[str, dict]:
    with urllib.request.urlopen(cl.api_url + "/v2.0/agents", timeout=10) as reply:
        return {a["host"]: a for a in json.load(reply)["agents"]}


def snat_chassis(cl, ignore: set[str] = frozenset()) -> list[str]:
    """The chassis whose agents say they SNAT for the router (a stopped agent's record is stale)."""
    return sorted(host for host, a in agents(cl).items()
                  if host not in ignore and cl.router.id in a["configurations"].get("snat_routers", []))


def wait_for(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.5)


def fetch(cl, chassis: str, attempts_for: float = 60) -> str | None:
    """The page as the VM on `chassis` gets it with curl, retried for a while (convergence)."""
    deadline = time.monotonic() + attempts_for
    while time.monotonic() < deadline:
        out = run(["curl", "-s", "-m", "5", f"http://{OUTSIDE_IP}:{HTTP_PORT}/page"], ns=cl.vm[chassis],
                  check=False, timeout=30)
        if out.returncode == 0:
            return out.stdout
        time.sleep(0.5)
    return None


def clients(cl) -> list[str]:
    """Source addresses of the requests the outside host served."""
    return [line.split()[0] for line in pathlib.Path(cl.http_log).read_text().splitlines() if "GET /page" in line]


def sessions(cl) -> float | None:
    """The SNAT sessions the chassis that SNATs for the router now reports, after a connection
    through it (while agents come up one by one, the first to publish is chosen for a moment)."""
    chosen = snat_chassis(cl)
    if len(chosen) != 1 or fetch(cl, "ch1") != cl.page:
        return None
    ch = cl.chassis[int(chosen[0][2:]) - 1]
    metrics = run(["curl", "-sf", f"http://{ch.tunnel_ip}:9870/metrics"], ns=ch.ns).stdout
    return sample(metrics, "dfxdp_fallback_snat_sessions", router=cl.router.id)


def test_vms_without_floating_ip_reach_the_outside_as_the_gateway(world):
    chosen = wait_for(lambda: len(snat_chassis(world)) == 1 and snat_chassis(world), "one SNAT chassis")
    for chassis in ("ch1", "ch2", "ch3"):  # the SNAT chassis' own VM and, through the tunnel, the others'
        assert fetch(world, chassis) == world.page, f"the VM on {chassis} got no page (SNAT on {chosen})"
    seen = clients(world)
    assert seen and set(seen) == {world.gateway_ip}, seen
    assert wait_for(lambda: (sessions(world) or 0) >= 1, "SNAT sessions in the SNAT chassis' metrics")


def test_another_chassis_takes_over_when_the_snat_chassis_agent_stops(world):
    first = wait_for(lambda: snat_chassis(world), "SNAT chassis")[0]
    world.chassis[int(first[2:]) - 1].stop_agent()
    try:
        second = wait_for(lambda: snat_chassis(world, ignore={first}), "new SNAT chassis", timeout=180)
        assert len(second) == 1 and second[0] != first
        before = len(clients(world))
        survivors = [c for c in ("ch1", "ch2", "ch3") if c != first]
        for chassis in survivors:
            assert fetch(world, chassis) == world.page, f"the VM on {chassis} got no page after the takeover"
        assert set(clients(world)[before:]) == {world.gateway_ip}
    finally:
        world.chassis[int(first[2:]) - 1].start_agent()


def test_enable_snat_false_leaves_no_way_out(world):
    c = world.connect()
    wait_for(lambda: snat_chassis(world), "SNAT chassis")
    chassis = "ch1"
    assert fetch(world, chassis) == world.page
    c.network.update_router(world.router, external_gateway_info={"network_id": world.ext.id, "enable_snat": False})
    try:
        wait_for(lambda: not snat_chassis(world), "router without SNAT chassis")
        # Every chassis' agent has taken its SNAT flows out (a restarted agent included: until it
        # runs, its OVS keeps what it had, fail_mode=secure): no new connection gets out.
        wait_for(lambda: not any("nat(src=" in f or "tun_dst" in f and "table=30" in f
                                 for ch in world.chassis for f in ch.ovs.ofctl("dump-flows", "br-int")
                                 .stdout.splitlines()), "SNAT flows gone from every chassis")
        before = len(clients(world))
        for vm in ("ch1", "ch2", "ch3"):
            assert fetch(world, vm, attempts_for=8) is None, f"the VM on {vm} still reaches the outside"
        assert len(clients(world)) == before
    finally:
        c.network.update_router(world.router, external_gateway_info={"network_id": world.ext.id,
                                                                     "enable_snat": True})
