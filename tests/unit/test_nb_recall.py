"""A create's first attempt takes its network, the network's subnets and the project's quota
overrides from what the process last knew (dfxdp/nb/recall.py), guarded at the commit: a port
create is one store request (counted, never timed), and what another server changed in between
is never written over or missed (the commit fails, the retry reads the store), on every driver."""
import threading

import pytest

from dfxdp.nb.errors import NBError
from dfxdp.nb.service import NBService
from tests.fixtures.etcd import etcd  # noqa: F401 - fixture
from tests.fixtures.stores import store  # noqa: F401 - fixture

READS = ("get", "get_many", "range", "count")


class Server:
    """The store as another process sees it: the same data, its own memory of it (a process'
    memory is kept per store object). Counts the requests made through it."""

    def __init__(self, inner):
        self.inner = inner
        self.requests: list[str] = []

    def __getattr__(self, name):
        found = getattr(self.inner, name)
        if name not in READS + ("txn",):
            return found

        def counted(*args, **kwargs):
            if name != "get_many" or args[0]:  # no keys asked: no request
                self.requests.append(name)
            return found(*args, **kwargs)

        return counted


def _network(svc: NBService, cidr: str = "10.0.0.0/24") -> tuple[dict, dict]:
    net = svc.create("network", {"name": "n"})
    return net, svc.create("subnet", {"network_id": net["id"], "cidr": cidr})


def _port(svc: NBService, net: dict) -> dict:
    return svc.create("port", {"network_id": net["id"]}, enforce_quota=True)


def test_a_port_create_is_one_store_request_once_its_network_is_known(store):
    server = Server(store)
    svc = NBService(server)
    net, _subnet = _network(svc)
    svc.quotas.update(svc.default_project, {"port": -1})
    _port(svc, net)  # the first reads the network, its subnets, the quota
    server.requests.clear()
    _port(svc, net)
    assert server.requests == ["txn"]
    # a project with a limit: its count, then the commit
    svc.quotas.update(svc.default_project, {"port": 100})
    _port(svc, net)
    server.requests.clear()
    _port(svc, net)
    assert server.requests == ["count", "txn"]


def test_reads_that_decide_nothing_are_never_taken_from_memory(store):
    mine, theirs = NBService(Server(store)), NBService(Server(store))
    net, _subnet = _network(mine)
    _port(mine, net)
    theirs.update("network", net["id"], {"name": "renamed"})
    assert mine.get("network", net["id"])["name"] == "renamed"


def test_a_subnet_another_server_added_since_is_not_missed(store):
    mine, theirs = Server(store), Server(store)
    svc, other = NBService(mine), NBService(theirs)
    net, subnet = _network(svc)
    _port(svc, net)  # known: the network with one subnet
    added = other.create("subnet", {"network_id": net["id"], "cidr": "fd00::/64", "ip_version": 6})
    mine.requests.clear()
    port = _port(svc, net)
    assert {f["subnet_id"] for f in port["fixed_ips"]} == {subnet["id"], added["id"]}
    assert mine.requests.count("txn") == 2  # the first commit refused, the retry read the store


def test_a_subnet_or_network_another_server_changed_since_is_taken_as_it_is_now(store):
    svc, other = NBService(Server(store)), NBService(Server(store))
    net, subnet = _network(svc)
    _port(svc, net)
    other.update("subnet", subnet["id"], {"allocation_pools": [{"start": "10.0.0.200", "end": "10.0.0.210"}]})
    port = _port(svc, net)
    assert 200 <= int(port["fixed_ips"][0]["ip_address"].rsplit(".", 1)[1]) <= 210
    other.update("network", net["id"], {"port_security_enabled": False})
    port = _port(svc, net)
    assert port["port_security_enabled"] is False and port["security_groups"] == []


def test_a_quota_another_server_lowered_since_is_enforced(store):
    svc, other = NBService(Server(store)), NBService(Server(store))
    net, _subnet = _network(svc)
    svc.quotas.update(svc.default_project, {"port": -1})
    _port(svc, net)  # known: no limit
    used = len(svc.list("port"))
    other.quotas.update(svc.default_project, {"port": used})
    with pytest.raises(NBError) as refused:
        _port(svc, net)
    assert refused.value.type == "OverQuota"
    assert len(svc.list("port")) == used


def test_a_network_another_server_deleted_since_takes_no_port(store):
    svc, other = NBService(Server(store)), NBService(Server(store))
    net, subnet = _network(svc)
    port = _port(svc, net)
    svc.delete("port", port["id"])  # known: the network, its subnet
    other.delete("network", net["id"])
    with pytest.raises(NBError) as refused:
        _port(svc, net)
    assert refused.value.type == "NetworkNotFound"
    assert svc.list("port") == [] and svc.list("subnet") == []


def test_a_refused_bulk_leaves_its_addresses_free_for_the_next(store):
    svc = NBService(store)
    net, subnet = _network(svc, "10.0.0.0/29")  # .2-.6: the DHCP port holds one, four free
    _port(svc, net)
    svc.delete("port", svc.list("port", {"device_owner": [""]})[0]["id"])
    with pytest.raises(NBError):
        svc.create_many("port", [{"network_id": net["id"]}] * 4 + [{"network_id": "no-such-network"}])
    made = svc.create_many("port", [{"network_id": net["id"]}] * 4)
    assert len({p["fixed_ips"][0]["ip_address"] for p in made}) == 4
    with pytest.raises(NBError) as full:
        _port(svc, net)
    assert full.value.type == "IpAddressGenerationFailure"


def test_an_address_released_by_another_server_is_handed_out_again(store):
    svc, other = NBService(Server(store)), NBService(Server(store))
    net, _subnet = _network(svc, "10.0.0.0/29")
    made = svc.create_many("port", [{"network_id": net["id"]}] * 4)  # full (with the DHCP port)
    other.delete("port", made[0]["id"])
    assert _port(svc, net)["fixed_ips"] == made[0]["fixed_ips"]


def test_concurrent_creates_of_two_servers_never_share_an_address(store):
    servers = [NBService(Server(store)), NBService(Server(store))]
    net, _subnet = _network(servers[0], "10.0.0.0/26")
    made, errors = [], []

    def creates(svc: NBService) -> None:
        try:
            for _ in range(12):
                made.append(_port(svc, net))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=creates, args=(svc,)) for svc in servers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    addresses = [f["ip_address"] for p in svc_ports(servers[1]) for f in p["fixed_ips"]]
    assert len(addresses) == len(set(addresses)) == 48 + 1  # and the DHCP port's
    assert {p["id"] for p in made} <= {p["id"] for p in svc_ports(servers[1])}


def svc_ports(svc: NBService) -> list[dict]:
    return svc.list("port")
