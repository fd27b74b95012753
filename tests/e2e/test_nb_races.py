"""Racing requests on two `dfxdp server`s sharing one store leave no duplicate and no
orphan: eight clients (four per server) fire together, round after round, at each
check that reads a list (overlapping CIDRs, a project's default group, duplicate
rules, a network or subnet in use). Every round's answers must be those of some
serial order, and the store read afterwards must hold nothing that no serial order
leaves (dfxdp/testing/nb_integrity.py)."""
from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from dfxdp.nb.db import open_store
from dfxdp.nb.quotas import DEFAULTS as DEFAULT_QUOTAS
from dfxdp.testing.nb_integrity import load, problems
from tests.fixtures.etcd import etcd  # noqa: F401 - fixture
from tests.fixtures.server import ServerProcess

CLIENTS = 8
ROUNDS = 10
SINGULAR = {"networks": "network", "subnets": "subnet", "ports": "port", "routers": "router",
            "security-groups": "security_group", "security-group-rules": "security_group_rule",
            "floatingips": "floatingip"}


class Client:
    """One API client bound to one server; answers are (status, NeutronError type or body)."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url + "/v2.0", timeout=60)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        resp = self.http.request(method, path, json=body)
        assert resp.status_code < 500, (method, path, resp.status_code, resp.text)
        if resp.status_code >= 400:
            return resp.status_code, resp.json()["NeutronError"]["type"]
        return resp.status_code, resp.json() if resp.content else None

    def create(self, collection: str, body: dict) -> tuple[int, object]:
        return self.call("POST", f"/{collection}", {SINGULAR[collection]: body})

    def made(self, collection: str, body: dict) -> dict:
        status, answer = self.create(collection, body)
        assert status == 201, (collection, body, answer)
        return next(iter(answer.values()))


class Race:
    """Eight clients on two servers that start each round's requests together."""

    def __init__(self, url: str, servers: list[ServerProcess]):
        self.url, self.servers = url, servers
        self.clients = [Client(servers[i % len(servers)].url) for i in range(CLIENTS)]
        self.pool = ThreadPoolExecutor(CLIENTS)

    @property
    def setup(self) -> Client:
        return self.clients[0]

    def run(self, calls) -> list[tuple[int, object]]:
        """calls[i](client) on client i, all released at once; their answers in order."""
        assert len(calls) == CLIENTS
        start = threading.Barrier(CLIENTS)

        def one(i):
            start.wait(timeout=60)
            return calls[i](self.clients[i])

        return [f.result() for f in [self.pool.submit(one, i) for i in range(CLIENTS)]]

    def close(self):
        self.pool.shutdown()
        for c in self.clients:
            c.http.close()


@pytest.fixture(params=["etcd", "sqlite"])
def race(request, tmp_path):
    url = request.getfixturevalue("etcd").url if request.param == "etcd" else f"sqlite:///{tmp_path}/nb.db"
    servers = []
    try:
        servers += [ServerProcess(url), ServerProcess(url)]
        r = Race(url, servers)
        # the rounds make more routers, groups and rules than Neutron's default quotas allow
        status, _ = r.setup.call("PUT", "/quotas/dfxdp", {"quota": {kind: -1 for kind in DEFAULT_QUOTAS}})
        assert status == 200
        yield r
        r.close()
    finally:
        for s in servers:
            s.close()


def _statuses(answers) -> list:
    return [status if status < 400 else kind for status, kind in answers]


def overlapping_cidrs(race: Race, n: int) -> None:
    net = race.setup.made("networks", {"name": f"cidr-{n}"})
    cidrs = [f"10.{n}.0.0/{24 + i % 3}" for i in range(CLIENTS)]  # /24, /25, /26: all overlap
    answers = race.run([lambda c, cidr=cidr: c.create("subnets", {"network_id": net["id"], "cidr": cidr})
                        for cidr in cidrs])
    assert sorted(map(str, _statuses(answers))) == ["201"] + ["InvalidInput"] * (CLIENTS - 1)


def default_group(race: Race, n: int) -> str:
    """A new project's first requests, all at once: each needs its default group."""
    project = f"race-{n}-{uuid.uuid4().hex[:8]}"
    net = race.setup.made("networks", {"name": f"dg-{n}"})
    race.setup.made("subnets", {"network_id": net["id"], "cidr": "10.203.0.0/24"})
    firsts = [lambda c: c.create("ports", {"network_id": net["id"], "project_id": project}),
              lambda c: c.create("networks", {"project_id": project}),
              lambda c: c.create("security-groups", {"name": f"sg-{uuid.uuid4().hex[:6]}", "project_id": project}),
              lambda c: c.call("GET", f"/security-groups?project_id={project}")]
    answers = race.run([firsts[i % len(firsts)] for i in range(CLIENTS)])
    assert all(status in (200, 201) for status, _ in answers), answers
    return project


def duplicate_rules(race: Race, n: int) -> None:
    sg = race.setup.made("security-groups", {"name": f"rules-{n}"})
    rule = {"security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp",
            "port_range_min": 22, "port_range_max": 22}
    answers = race.run([lambda c: c.create("security-group-rules", rule)] * CLIENTS)
    assert sorted(map(str, _statuses(answers))) == ["201"] + ["SecurityGroupRuleExists"] * (CLIENTS - 1)


def _in_use_or_gone(answers, deleter: int, in_use: str, gone: str, made: int) -> None:
    """A delete racing creates of children: either it went first (every create then finds
    the parent gone) or it found a child (and every create went through)."""
    statuses = _statuses(answers)
    others = statuses[:deleter] + statuses[deleter + 1:]
    if statuses[deleter] == 204:
        assert set(others) == {gone}, statuses
    else:
        assert statuses[deleter] == in_use and set(others) == {made}, statuses


def ports_vs_network_delete(race: Race, n: int) -> None:
    net = race.setup.made("networks", {"name": f"pn-{n}"})
    race.setup.made("subnets", {"network_id": net["id"], "cidr": "10.200.0.0/24"})
    deleter = n % CLIENTS
    answers = race.run([(lambda c: c.call("DELETE", f"/networks/{net['id']}")) if i == deleter else
                        (lambda c: c.create("ports", {"network_id": net["id"]})) for i in range(CLIENTS)])
    _in_use_or_gone(answers, deleter, "NetworkInUse", "NetworkNotFound", 201)


def addresses_vs_subnet_delete(race: Race, n: int) -> None:
    """New ports on the subnet and existing ports moving onto it, racing its delete."""
    net = race.setup.made("networks", {"name": f"ps-{n}"})
    bare = [race.setup.made("ports", {"network_id": net["id"]}) for _ in range(3)]  # no subnet yet: no address
    subnet = race.setup.made("subnets", {"network_id": net["id"], "cidr": "10.201.0.0/24"})
    on_subnet = {"fixed_ips": [{"subnet_id": subnet["id"]}]}
    deleter = n % CLIENTS
    calls = []
    for i in range(CLIENTS):
        if i == deleter:
            calls.append(lambda c: c.call("DELETE", f"/subnets/{subnet['id']}"))
        elif bare and i % 2:
            calls.append(lambda c, port=bare.pop(): c.call("PUT", f"/ports/{port['id']}", {"port": on_subnet}))
        else:
            calls.append(lambda c: c.create("ports", {"network_id": net["id"], **on_subnet}))
    answers = race.run(calls)
    statuses = _statuses(answers)
    others = statuses[:deleter] + statuses[deleter + 1:]
    if statuses[deleter] == 204:
        assert set(others) == {"InvalidInput"}, statuses
    else:
        assert statuses[deleter] == "SubnetInUse" and set(others) <= {200, 201}, statuses


def interfaces_vs_subnet_delete(race: Race, n: int) -> None:
    """Four routers want the subnet's gateway address while four clients delete the subnet."""
    net = race.setup.made("networks", {"name": f"ri-{n}"})
    subnet = race.setup.made("subnets", {"network_id": net["id"], "cidr": "10.202.0.0/24"})
    routers = [race.setup.made("routers", {"name": f"ri-{n}-{i}"}) for i in range(CLIENTS // 2)]
    answers = race.run([(lambda c, r=routers[i // 2]: c.call("PUT", f"/routers/{r['id']}/add_router_interface",
                                                             {"subnet_id": subnet["id"]})) if i % 2 == 0 else
                        (lambda c: c.call("DELETE", f"/subnets/{subnet['id']}")) for i in range(CLIENTS)])
    statuses = _statuses(answers)
    adds, deletes = statuses[0::2], statuses[1::2]
    if 204 in deletes:
        assert sorted(map(str, deletes)) == ["204"] + ["SubnetNotFound"] * (len(deletes) - 1), statuses
        assert set(adds) == {"SubnetNotFound"}, statuses
    else:
        assert set(deletes) == {"SubnetInUse"}, statuses
        assert sorted(map(str, adds)) == ["200"] + ["IpAddressAlreadyAllocated"] * (len(adds) - 1), statuses


def floating_ips_vs_network_delete(race: Race, n: int) -> None:
    ext = race.setup.made("networks", {"name": f"fe-{n}", "router:external": True})
    race.setup.made("subnets", {"network_id": ext["id"], "cidr": "198.19.0.0/24"})
    deleter = (n + 3) % CLIENTS
    answers = race.run([(lambda c: c.call("DELETE", f"/networks/{ext['id']}")) if i == deleter else
                        (lambda c: c.create("floatingips", {"floating_network_id": ext["id"]}))
                        for i in range(CLIENTS)])
    # unused floating IPs go with their network (as in Neutron): the delete always wins, each
    # create came before it (and its floating IP went with the network) or found it gone
    statuses = _statuses(answers)
    assert statuses[deleter] == 204, statuses
    assert set(statuses[:deleter] + statuses[deleter + 1:]) <= {201, "NetworkNotFound"}, statuses
    assert race.setup.call("GET", f"/floatingips?floating_network_id={ext['id']}") == (200, {"floatingips": []})


def test_racing_requests_leave_no_duplicate_and_no_orphan(race):
    projects = []
    for n in range(ROUNDS):
        overlapping_cidrs(race, n)
        projects.append(default_group(race, n))
        duplicate_rules(race, n)
        ports_vs_network_delete(race, n)
        addresses_vs_subnet_delete(race, n)
        interfaces_vs_subnet_delete(race, n)
        floating_ips_vs_network_delete(race, n)
    assert _store_problems(race.url) == []
    store = open_store(race.url)
    try:
        objects, _ = load(store)
    finally:
        store.close()
    defaults = [sg["project_id"] for sg in objects["security_group"].values() if sg["name"] == "default"]
    assert all(defaults.count(p) == 1 for p in projects)


def _store_problems(url: str) -> list[str]:
    store = open_store(url)
    try:
        return problems(store)
    finally:
        store.close()


def test_a_server_killed_mid_burst_leaves_nothing_half_written(race):
    """Each request is one transaction: SIGKILL a server while eight clients create ports,
    subnets and rules (with their reservations and index keys) and nothing is left half-done."""
    net = race.setup.made("networks", {"name": "burst"})
    race.setup.made("subnets", {"network_id": net["id"], "cidr": "10.204.0.0/22"})
    sg = race.setup.made("security-groups", {"name": "burst"})
    victim, survivor = race.servers[1], race.setup
    failures = []

    def burst(c: Client, i: int) -> None:
        try:
            for k in range(25):
                c.create("ports", {"network_id": net["id"]})
                c.create("subnets", {"network_id": net["id"], "cidr": f"10.{205 + i}.{k}.0/24"})
                c.create("security-group-rules", {"security_group_id": sg["id"], "direction": "ingress",
                                                  "protocol": "tcp", "port_range_min": 1000 * i + k + 1,
                                                  "port_range_max": 1000 * i + k + 1})
        except httpx.TransportError:
            pass  # this client's server was killed
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            failures.append(repr(exc))

    workers = [threading.Thread(target=burst, args=(c, i)) for i, c in enumerate(race.clients)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 120
    while len(survivor.call("GET", f"/ports?network_id={net['id']}")[1]["ports"]) < 24:
        assert time.monotonic() < deadline, "the burst did not get going"
        time.sleep(0.05)  # polling interval
    victim.proc.kill()
    for w in workers:
        w.join(300)
    assert victim.proc.wait(10) == -9
    assert failures == []
    assert _store_problems(race.url) == []
