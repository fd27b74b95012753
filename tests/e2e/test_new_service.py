"""A new service from one file per part (tests/example_service/: kind.py, app.py,
stage.c) reaches every layer with nothing else written for it: the kind in the API
(routes, listing, /openapi.json) and the CLI, the agent's selective view and the
view's index, its app's entries in its stage's map, and its stage in the live
pipeline, dropping what it must (docs/architecture.md, "Where to add a new service")."""
from __future__ import annotations

import json
import pathlib
import time

import click
import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dfxdp.api.app import create_app
from dfxdp.cli import resources
from dfxdp.controller.agent import Agent, AgentConfig
from dfxdp.controller.apps import APPS
from dfxdp.controller.binding import tap_name
from dfxdp.datapath.hooks import HookSlots
from dfxdp.datapath.pktrun import run_packet
from dfxdp.nb import kinds
from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService
from dfxdp.testing.hooks import build_hook
from dfxdp.testing.netns import ifindex, run, unique_suffix
from dfxdp.trace import trace
from tests.example_service.app import BlackholeApp, blackhole_key
from tests.example_service.kind import BLACKHOLE

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "example_service"
CHASSIS, TUNNEL_IP = "ch1", "198.18.0.1"
DEADLINE = 30.0


@pytest.fixture
def blackhole_service():
    """The example's kind and app listed, as their lines in KINDS and APPS would list them."""
    kinds.register(BLACKHOLE)
    APPS.append(BlackholeApp)
    try:
        yield
    finally:
        APPS.remove(BlackholeApp)
        kinds.unregister(BLACKHOLE)


@pytest.fixture
def veth():
    """veth pairs in this namespace named as asked (a port's tap), deleted afterwards."""
    made = []

    def make(name: str) -> int:
        run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"dfp{unique_suffix()}"[:15]])
        made.append(name)
        run(["ip", "link", "set", name, "up"])
        return ifindex(name)

    try:
        yield make
    finally:
        for name in made:
            run(["ip", "link", "del", name], check=False)


@pytest.fixture
def api(blackhole_service):
    svc = NBService(open_store("memory://"))
    return svc, TestClient(create_app(svc))


def test_the_kind_is_served_by_the_api(api):
    svc, client = api
    net = svc.create("network", {"name": "n"})
    made = client.post("/v2.0/blackholes", json={"blackhole": {"name": "h", "network_id": net["id"],
                                                                "ip_address": "10.0.0.99"}})
    assert made.status_code == 201, made.text
    hole = made.json()["blackhole"]
    assert client.get(f"/v2.0/blackholes/{hole['id']}").json()["blackhole"]["ip_address"] == "10.0.0.99"
    assert [h["id"] for h in client.get(f"/v2.0/blackholes?network_id={net['id']}").json()["blackholes"]] == \
        [hole["id"]]
    assert client.get("/v2.0/blackholes?network_id=other").json()["blackholes"] == []
    bad = client.post("/v2.0/blackholes", json={"blackhole": {"network_id": net["id"], "ip_address": "nope"}})
    assert bad.status_code == 400 and bad.json()["NeutronError"]["type"] == "HTTPBadRequest"
    changed = client.put(f"/v2.0/blackholes/{hole['id']}", json={"blackhole": {"network_id": "another"}})
    assert changed.status_code == 400 and "cannot be changed" in changed.json()["NeutronError"]["message"]
    assert "blackholes" in [r["collection"] for r in client.get("/v2.0").json()["resources"]]
    assert "/v2.0/blackholes/{obj_id}" in client.get("/openapi.json").json()["paths"]
    assert client.delete(f"/v2.0/blackholes/{hole['id']}").status_code == 204
    assert client.get("/v2.0/blackholes").json()["blackholes"] == []


def test_the_kind_has_its_cli_verbs(api, monkeypatch):
    svc, client = api
    net = svc.create("network", {"name": "n"})
    # the CLI's HTTP calls reach the app (whose test client takes no timeout); the CLI imports
    # httpx when it calls, so the module's own function is the one to replace
    monkeypatch.setattr(httpx, "request",
                        lambda method, url, timeout, **kw: client.request(method, url, **kw))
    cli = click.Group("dfxdp")
    resources.register(cli)
    common = ["--url", "http://testserver", "-f", "json"]

    def dfxdp(*args: str):
        result = CliRunner().invoke(cli, [*args, *common])
        assert result.exit_code == 0, result.output
        return json.loads(result.output) if result.output.strip() else None

    made = dfxdp("blackhole", "create", "--name", "h", "--property", f"network_id={net['id']}",
                 "--property", "ip_address=10.0.0.99")
    assert (made["network_id"], made["ip_address"]) == (net["id"], "10.0.0.99")
    assert [h["id"] for h in dfxdp("blackhole", "list")] == [made["id"]]
    assert dfxdp("blackhole", "set", "h", "--name", "renamed")["name"] == "renamed"
    assert dfxdp("blackhole", "show", "renamed")["id"] == made["id"]
    dfxdp("blackhole", "delete", "renamed")
    assert dfxdp("blackhole", "list") == []
    refused = CliRunner().invoke(cli, ["blackhole", "create", "--property", "ip_address=10.0.0.1", *common])
    assert refused.exit_code == 1 and "network_id" in refused.output


def _sync_until(agent: Agent, done) -> object:
    """Run the agent's passes until done(view); the NB watch feeds its cache in its own thread."""
    deadline = time.monotonic() + DEADLINE
    while True:
        view = agent.sync_once()
        if done(view) or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


def test_the_agent_views_programs_and_runs_the_new_service(blackhole_service, bpffs_dir, test_iface, veth,
                                                            tmp_path):
    store = open_store("memory://")
    svc = NBService(store)
    served = svc.create("network", {"name": "served"})
    svc.create("subnet", {"network_id": served["id"], "cidr": "10.0.0.0/24"})
    elsewhere = svc.create("network", {"name": "elsewhere"})
    port = svc.create("port", {"network_id": served["id"], "binding:host_id": CHASSIS,
                               "fixed_ips": [{"ip_address": "10.0.0.105"}]})
    hole = svc.create("blackhole", {"network_id": served["id"], "ip_address": "10.0.0.99"})
    far = svc.create("blackhole", {"network_id": elsewhere["id"], "ip_address": "10.0.0.98"})
    tap = veth(tap_name(port["id"]))
    underlay, _ = test_iface()
    stage = build_hook((EXAMPLE / "stage.c").read_text(), tmp_path, "blackhole")
    agent = Agent(AgentConfig(chassis=CHASSIS, tunnel_ip=TUNNEL_IP, underlay=underlay, db_url="memory://",
                              bpffs=str(bpffs_dir / CHASSIS), stage_objects=(stage,)), store=store)
    agent.start()
    try:
        view = _sync_until(agent, lambda v: hole["id"] in v.blackholes and port["id"] in v.local_ports)
        # the agent's view: what its relation keeps (a blackhole of a network served here), by its index
        assert set(view.blackholes) == {hole["id"]} and far["id"] not in view.objects["blackhole"]
        assert [h["id"] for h in view.find("blackhole", "network", served["id"])] == [hole["id"]]
        # the app's entry in the stage's map, none for the network this chassis does not serve
        holes = agent.pipeline.maps["blackholes"]
        assert holes.lookup(blackhole_key(served["key"], "10.0.0.99")) == 1
        assert holes.lookup(blackhole_key(elsewhere["key"], "10.0.0.98")) is None

        with HookSlots(agent.pipeline.dir) as slots:
            plugged = slots.attach(stage)

        def to(dst: str):
            return Ether(src=port["mac_address"], dst="fa:16:3e:00:00:99") / IP(src="10.0.0.105", dst=dst) / \
                UDP(sport=4000, dport=53)

        frame = to("10.0.0.99")
        dropped = run_packet(agent.pipeline, frame, ingress_ifindex=tap)
        assert dropped.verdict == "XDP_DROP" and dropped.drop_reason == "DROP_HOOK"
        assert dropped.stages[-1] == plugged.stage
        other = run_packet(agent.pipeline, to("10.0.0.77"), ingress_ifindex=tap)
        assert plugged.stage in other.stages and other.drop_reason != "DROP_HOOK"
        story = trace(agent.pipeline.dir, tap, bytes(frame)).story()
        assert f"user hook {plugged.index}: blackhole" in story and "DROP_HOOK" in story

        svc.delete("blackhole", hole["id"])  # the service's own cycle: gone from NB, gone from the map
        _sync_until(agent, lambda v: not v.blackholes)
        assert holes.lookup(blackhole_key(served["key"], "10.0.0.99")) is None
        assert run_packet(agent.pipeline, frame, ingress_ifindex=tap).drop_reason != "DROP_HOOK"
    finally:
        agent.stop()
