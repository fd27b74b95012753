"""NB service validation: every bad input gets its Neutron error and status, and
leaves the store exactly as it was; a check decides the write it guards, even when
another server commits in between."""
import threading

import pytest

from dfxdp.nb.db import open_store
from dfxdp.nb.errors import NBError
from dfxdp.nb.model import DEFAULT_PROJECT
from dfxdp.nb.families.security_groups import default_group_key
from dfxdp.nb.index import members_prefix
from dfxdp.nb.service import NBService
from dfxdp.testing.nb_integrity import problems


@pytest.fixture
def svc():
    return NBService(open_store("memory://"))


@pytest.fixture
def topo(svc):
    """ext network + router with gateway, a tenant network with a /29 and one port."""
    t = {}
    t["ext"] = svc.create("network", {"name": "ext", "router:external": True})
    t["ext_subnet"] = svc.create("subnet", {"network_id": t["ext"]["id"], "cidr": "198.19.0.0/24"})
    t["net"] = svc.create("network", {"name": "n1"})
    t["subnet"] = svc.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.0.0.0/29"})
    t["port"] = svc.create("port", {"network_id": t["net"]["id"], "name": "p1"})
    t["router"] = svc.create("router", {"name": "r1", "external_gateway_info": {"network_id": t["ext"]["id"]}})
    svc.add_router_interface(t["router"]["id"], {"subnet_id": t["subnet"]["id"]})
    t["sg"] = t["port"]["security_groups"][0]
    return t


def snapshot(svc):
    return svc.store.range("/")


BAD_INPUTS = [
    ("invalid cidr", lambda s, t: s.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.0.0.300/24"}),
     400, "HTTPBadRequest", "not a valid IP subnet"),
    ("invalid ip", lambda s, t: s.create("port", {"network_id": t["net"]["id"], "fixed_ips": [{"ip_address": "10.0.0.999"}]}),
     400, "HTTPBadRequest", "not a valid IP address"),
    ("gateway outside subnet", lambda s, t: s.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.9.0.0/24",
                                                                "gateway_ip": "10.8.0.1"}),
     400, "InvalidInput", "not a usable address"),
    ("overlapping subnets", lambda s, t: s.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.0.0.0/30"}),
     400, "InvalidInput", "overlaps with another subnet"),
    ("fixed ip outside subnet", lambda s, t: s.create("port", {"network_id": t["net"]["id"], "fixed_ips": [
        {"subnet_id": t["subnet"]["id"], "ip_address": "10.0.1.5"}]}), 400, "InvalidIpForSubnet", "not a valid IP"),
    ("fixed ip in use", lambda s, t: s.create("port", {"network_id": t["net"]["id"], "fixed_ips": [
        {"ip_address": t["port"]["fixed_ips"][0]["ip_address"]}]}), 409, "IpAddressAlreadyAllocated", "already allocated"),
    ("mac in use", lambda s, t: s.create("port", {"network_id": t["net"]["id"], "mac_address": t["port"]["mac_address"]}),
     409, "MacAddressInUse", "is in use"),
    ("unknown network", lambda s, t: s.create("port", {"network_id": "no-such-net"}), 404, "NetworkNotFound", "could not be found"),
    ("unknown security group", lambda s, t: s.create("port", {"network_id": t["net"]["id"], "security_groups": ["nope"]}),
     404, "SecurityGroupNotFound", "does not exist"),
    ("delete network with ports", lambda s, t: s.delete("network", t["net"]["id"]), 409, "NetworkInUse", "ports still in use"),
    ("delete router with interfaces", lambda s, t: s.delete("router", t["router"]["id"]), 409, "RouterInUse", "still has ports"),
    ("reversed port range", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "ingress",
                                                                         "protocol": "tcp", "port_range_min": 90, "port_range_max": 80}),
     400, "SecurityGroupInvalidPortRange", "port_range_min must be <= port_range_max"),
    ("port out of range", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "ingress",
                                                                       "protocol": "udp", "port_range_min": 0, "port_range_max": 70000}),
     400, "SecurityGroupInvalidPortValue", "Invalid value for port 70000"),
    ("ports without protocol", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "ingress",
                                                                            "port_range_min": 22, "port_range_max": 22}),
     400, "SecurityGroupProtocolRequiredWithPorts", "Must also specify protocol"),
    ("unknown protocol", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "ingress",
                                                                      "protocol": "bogus"}),
     400, "SecurityGroupRuleInvalidProtocol", "protocol bogus not supported"),
    ("bad direction", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "sideways"}),
     400, "HTTPBadRequest", "direction"),
    ("unknown field", lambda s, t: s.create("network", {"name": "x", "colour": "blue"}), 400, "HTTPBadRequest", "colour"),
    ("server-owned field", lambda s, t: s.create("network", {"id": "mine"}), 400, "HTTPBadRequest", "cannot be set"),
    ("fip on internal network", lambda s, t: s.create("floatingip", {"floating_network_id": t["net"]["id"]}),
     400, "BadRequest", "not a valid external network"),
    ("gateway on internal network", lambda s, t: s.create("router", {"external_gateway_info": {"network_id": t["net"]["id"]}}),
     400, "BadRequest", "not an external network"),
    ("route to unconnected nexthop", lambda s, t: s.update("router", t["router"]["id"], {
        "routes": [{"destination": "172.16.0.0/16", "nexthop": "192.0.2.1"}]}), 400, "InvalidRoutes", "not connected"),
    ("immutable cidr", lambda s, t: s.update("subnet", t["subnet"]["id"], {"cidr": "10.1.0.0/24"}),
     400, "HTTPBadRequest", "cannot be changed"),
    ("delete a router's port directly", lambda s, t: s.delete("port", [p for p in s.list("port")
                                                                        if p["device_owner"] == "network:router_interface"][0]["id"]),
     409, "PortInUse", "remove it through its owner"),
    ("duplicate rule", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "egress",
                                                                    "ethertype": "IPv4"}), 409, "SecurityGroupRuleExists", "already exists"),
    *[(f"tcp ports {lo}-{hi}", lambda s, t, lo=lo, hi=hi: s.create("security_group_rule", {
        "security_group_id": t["sg"], "direction": "ingress", "protocol": "tcp", "port_range_min": lo,
        "port_range_max": hi}), 400, type_, words)
      for lo, hi, type_, words in [  # Tempest's negative cases, with Neutron's words
          (-16, 80, "SecurityGroupInvalidPortValue", "Invalid value for port -16"),
          (80, 65536, "SecurityGroupInvalidPortValue", "Invalid value for port 65536"),
          (None, 6, "SecurityGroupInvalidPortRange", "port_range_min must be <= port_range_max"),
          (6, None, "SecurityGroupInvalidPortRange", "port_range_min must be <= port_range_max")]],
    *[(f"icmp {lo}/{hi}", lambda s, t, lo=lo, hi=hi: s.create("security_group_rule", {
        "security_group_id": t["sg"], "direction": "ingress", "protocol": "icmp", "port_range_min": lo,
        "port_range_max": hi}), 400, type_, words)
      for lo, hi, type_, words in [
          (1, 256, "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP code (port_range_max) 256"),
          (300, 1, "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP type (port_range_min) 300"),
          (-1, 25, "SecurityGroupInvalidPortValue", "Invalid value"),
          (None, 6, "SecurityGroupMissingIcmpType", "ICMP type (port-range-min) is missing")]],
    ("ports on gre", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "ingress",
                                                                  "protocol": "gre", "port_range_min": 1,
                                                                  "port_range_max": 1}),
     400, "SecurityGroupInvalidProtocolForPort", "Invalid protocol 47 for port range"),
    ("IPv6 prefix on an IPv4 rule", lambda s, t: s.create("security_group_rule", {
        "security_group_id": t["sg"], "direction": "ingress", "remote_ip_prefix": "2001:db8::/64"}),
     400, "SecurityGroupRuleParameterConflict", "Conflicting value ethertype IPv4 for CIDR 2001:db8::/64"),
    ("IPv4 prefix on an IPv6 rule", lambda s, t: s.create("security_group_rule", {
        "security_group_id": t["sg"], "direction": "ingress", "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/24"}),
     400, "SecurityGroupRuleParameterConflict", "Conflicting value ethertype IPv6 for CIDR 10.0.0.0/24"),
    ("ipv6-icmp on an IPv4 rule", lambda s, t: s.create("security_group_rule", {
        "security_group_id": t["sg"], "direction": "ingress", "protocol": "ipv6-icmp"}),
     400, "SecurityGroupEthertypeConflictWithProtocol", "Invalid ethertype IPv4 for protocol ipv6-icmp"),
    ("protocol 256", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"],
                                                                  "direction": "ingress", "protocol": 256}),
     400, "SecurityGroupRuleInvalidProtocol", "not supported"),
]


@pytest.mark.parametrize("name,call,status,type_,words", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_and_changes_nothing(svc, topo, name, call, status, type_, words):
    before = snapshot(svc)
    with pytest.raises(NBError) as err:
        call(svc, topo)
    assert (err.value.status, err.value.type) == (status, type_)
    assert words in err.value.message
    assert snapshot(svc) == before


def test_subnet_exhaustion_is_409_and_changes_nothing(svc, topo):
    # /29: .1 gateway (router interface), the DHCP port, p1; 3 more fit
    for _ in range(3):
        svc.create("port", {"network_id": topo["net"]["id"]})
    before = snapshot(svc)
    with pytest.raises(NBError) as err:
        svc.create("port", {"network_id": topo["net"]["id"]})
    assert (err.value.status, err.value.type) == (409, "IpAddressGenerationFailure")
    assert snapshot(svc) == before


def test_concurrent_port_creation_never_duplicates_an_ip(svc):
    net = svc.create("network", {"name": "busy"})
    svc.create("subnet", {"network_id": net["id"], "cidr": "10.5.0.0/27"})  # 29 addresses, one the DHCP port's
    got, errors = [], []

    def worker():
        for _ in range(10):
            try:
                got.append(svc.create("port", {"network_id": net["id"]})["fixed_ips"][0]["ip_address"])
            except NBError as exc:
                errors.append(exc.type)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 28
    assert set(errors) == {"IpAddressGenerationFailure"} and len(errors) == 12


def test_revision_numbers_and_keys(svc):
    a = svc.create("network", {"name": "a"})
    b = svc.create("network", {"name": "b"})
    assert a["key"] != b["key"] and a["provider:segmentation_id"] == a["key"]
    assert a["revision_number"] == 1
    assert svc.update("network", a["id"], {"name": "a2"})["revision_number"] == 2
    ext = svc.create("network", {"router:external": True})
    assert ext["provider:network_type"] == "flat" and ext["provider:segmentation_id"] is None


def test_default_security_group_and_rules(svc):
    net = svc.create("network", {"name": "n"})
    svc.create("subnet", {"network_id": net["id"], "cidr": "10.1.0.0/24"})
    port = svc.create("port", {"network_id": net["id"]})
    (sg,) = svc.list("security_group", {"name": ["default"]})
    assert port["security_groups"] == [sg["id"]]
    rules = {(r["direction"], r["ethertype"], r["remote_group_id"]) for r in sg["security_group_rules"]}
    assert rules == {("egress", "IPv4", None), ("egress", "IPv6", None),
                     ("ingress", "IPv4", sg["id"]), ("ingress", "IPv6", sg["id"])}


def test_router_interface_and_floating_ip(svc, topo):
    rif = [p for p in svc.list("port", {"device_id": [topo["router"]["id"]]})
           if p["device_owner"] == "network:router_interface"]
    assert rif[0]["fixed_ips"][0]["ip_address"] == "10.0.0.1"
    fip = svc.create("floatingip", {"floating_network_id": topo["ext"]["id"], "port_id": topo["port"]["id"]})
    assert fip["fixed_ip_address"] == topo["port"]["fixed_ips"][0]["ip_address"]
    assert fip["router_id"] == topo["router"]["id"] and fip["floating_ip_address"].startswith("198.19.0.")
    svc.update("floatingip", fip["id"], {"port_id": None})
    assert svc.get("floatingip", fip["id"])["router_id"] is None
    svc.remove_router_interface(topo["router"]["id"], {"subnet_id": topo["subnet"]["id"]})
    svc.delete("floatingip", fip["id"])
    svc.delete("router", topo["router"]["id"])
    assert not svc.list("port", {"device_owner": ["network:router_gateway", "network:floatingip"]})


def test_agent_calls(svc, topo):
    ch = svc.upsert_chassis("node1", "198.18.0.11")
    assert ch["id"] == "node1" and svc.heartbeat("node1")["heartbeat"] >= ch["heartbeat"]
    port = svc.set_port_status(topo["port"]["id"], "ACTIVE")
    assert port["status"] == "ACTIVE" and port["revision_number"] == topo["port"]["revision_number"] + 1
    with pytest.raises(NBError):
        svc.set_port_status(topo["port"]["id"], "HAPPY")


class Interleaving:
    """A store that runs another server's request at a chosen moment of the next
    transaction: just before its commit (its reads are then stale), or just before it
    reads a prefix (its reads then disagree with each other)."""

    def __init__(self, store):
        self.inner, self.competitor, self.at = store, None, "commit"

    def _cut_in(self, moment):
        if self.competitor and moment == self.at:
            competitor, self.competitor = self.competitor, None
            competitor()

    def txn(self, compares, ops):
        self._cut_in("commit")
        return self.inner.txn(compares, ops)

    def range(self, prefix):
        self._cut_in(prefix)
        return self.inner.range(prefix)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def servers():
    """Two servers on one store; the first one's next commit lets the second go first."""
    store = Interleaving(open_store("memory://"))
    return NBService(store), NBService(store.inner)


def _outcome(call):
    try:
        call()
    except NBError as exc:
        return exc.type
    return "ok"


def _net(svc, t=None):
    t = t or {}
    t["net"] = svc.create("network", {"name": "n"})
    t["subnet"] = svc.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.0.0.0/24"})
    return t


def _ext(svc, t=None):
    t = t or {}
    t["ext"] = svc.create("network", {"name": "ext", "router:external": True})
    svc.create("subnet", {"network_id": t["ext"]["id"], "cidr": "198.19.0.0/24"})
    return t


def _routed(svc):
    t = _ext(svc, _net(svc))
    t["router"] = svc.create("router", {"external_gateway_info": {"network_id": t["ext"]["id"]}})
    return t


def _groups(svc):
    t = _net(svc)
    t["sg"], t["other_sg"] = (svc.create("security_group", {"name": name}) for name in ("web", "other"))
    return t


def _balanced(svc):
    t = _net(svc)
    t["lb"] = svc.create("loadbalancer", {"vip_subnet_id": t["subnet"]["id"]})
    return t


def _port_without_address(svc):
    t = {"net": svc.create("network", {"name": "n"})}
    t["port"] = svc.create("port", {"network_id": t["net"]["id"]})  # no subnet yet: no address
    t["subnet"] = svc.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.0.0.0/24"})
    return t


def _floating(svc):
    t = _routed(svc)
    svc.add_router_interface(t["router"]["id"], {"subnet_id": t["subnet"]["id"]})
    t["port"] = svc.create("port", {"network_id": t["net"]["id"]})
    return t


def _rule(t):
    return {"security_group_id": t["sg"]["id"], "direction": "ingress", "protocol": "tcp",
            "port_range_min": 80, "port_range_max": 80}


def _port_on_subnet(t):
    return {"network_id": t["net"]["id"], "fixed_ips": [{"subnet_id": t["subnet"]["id"]}]}


# (name, the objects it starts from, the request whose reads go stale, the other server's
#  request that commits in between, what the first one answers once it has run again)
RACES = [
    ("overlapping cidr", _net, lambda s, t: s.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.1.0.0/24"}),
     lambda s, t: s.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.1.0.0/25"}), "InvalidInput"),
    ("duplicate rule", _groups, lambda s, t: s.create("security_group_rule", _rule(t)),
     lambda s, t: s.create("security_group_rule", _rule(t)), "SecurityGroupRuleExists"),
    ("duplicate listener port", _balanced,
     lambda s, t: s.create("listener", {"loadbalancer_id": t["lb"]["id"], "protocol": "TCP", "protocol_port": 80}),
     lambda s, t: s.create("listener", {"loadbalancer_id": t["lb"]["id"], "protocol": "TCP", "protocol_port": 80}),
     "DuplicateListener"),
    ("network delete vs port create", _net, lambda s, t: s.delete("network", t["net"]["id"]),
     lambda s, t: s.create("port", {"network_id": t["net"]["id"]}), "NetworkInUse"),
    ("port create vs network delete", _net, lambda s, t: s.create("port", {"network_id": t["net"]["id"]}),
     lambda s, t: s.delete("network", t["net"]["id"]), "NetworkNotFound"),
    ("subnet create vs network delete", _net,
     lambda s, t: s.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.2.0.0/24"}),
     lambda s, t: s.delete("network", t["net"]["id"]), "NetworkNotFound"),
    ("subnet delete vs port create", _net, lambda s, t: s.delete("subnet", t["subnet"]["id"]),
     lambda s, t: s.create("port", _port_on_subnet(t)), "SubnetInUse"),
    ("port create vs subnet delete", _net, lambda s, t: s.create("port", _port_on_subnet(t)),
     lambda s, t: s.delete("subnet", t["subnet"]["id"]), "InvalidInput"),
    ("fixed ip update vs subnet delete", _port_without_address,
     lambda s, t: s.update("port", t["port"]["id"], {"fixed_ips": [{"subnet_id": t["subnet"]["id"]}]}),
     lambda s, t: s.delete("subnet", t["subnet"]["id"]), "InvalidInput"),
    ("subnet delete vs router interface", _routed, lambda s, t: s.delete("subnet", t["subnet"]["id"]),
     lambda s, t: s.add_router_interface(t["router"]["id"], {"subnet_id": t["subnet"]["id"]}), "SubnetInUse"),
    ("router interface vs subnet delete", _routed,
     lambda s, t: s.add_router_interface(t["router"]["id"], {"subnet_id": t["subnet"]["id"]}),
     lambda s, t: s.delete("subnet", t["subnet"]["id"]), "SubnetNotFound"),
    ("router delete vs router interface", _routed, lambda s, t: s.delete("router", t["router"]["id"]),
     lambda s, t: s.add_router_interface(t["router"]["id"], {"subnet_id": t["subnet"]["id"]}), "RouterInUse"),
    # (an unused floating IP goes with its network, as in Neutron: a port keeps it)
    ("external network delete vs port", _ext, lambda s, t: s.delete("network", t["ext"]["id"]),
     lambda s, t: s.create("port", {"network_id": t["ext"]["id"]}), "NetworkInUse"),
    ("floating ip vs external network delete", _ext,
     lambda s, t: s.create("floatingip", {"floating_network_id": t["ext"]["id"]}),
     lambda s, t: s.delete("network", t["ext"]["id"]), "NetworkNotFound"),
    ("group delete vs port using it", _groups, lambda s, t: s.delete("security_group", t["sg"]["id"]),
     lambda s, t: s.create("port", {"network_id": t["net"]["id"], "security_groups": [t["sg"]["id"]]}),
     "SecurityGroupInUse"),
    ("group delete vs rule naming it", _groups, lambda s, t: s.delete("security_group", t["sg"]["id"]),
     lambda s, t: s.create("security_group_rule", {"security_group_id": t["other_sg"]["id"], "direction": "ingress",
                                                   "remote_group_id": t["sg"]["id"]}), "SecurityGroupInUse"),
    ("port delete vs floating ip association", _floating, lambda s, t: s.delete("port", t["port"]["id"]),
     lambda s, t: s.create("floatingip", {"floating_network_id": t["ext"]["id"], "port_id": t["port"]["id"]}),
     "ok"),
]


@pytest.mark.parametrize("name,setup,first,second,answer", RACES, ids=[r[0] for r in RACES])
def test_a_check_is_guarded_by_the_commit_it_decides(servers, name, setup, first, second, answer):
    """Alone, the first request goes through; with the other server's request committed
    between its reads and its commit, it runs again and answers as if it came second.
    Without the guard both would pass their checks and commit (write skew)."""
    a, b = servers
    assert _outcome(lambda: first(a, setup(b))) == "ok"
    t = setup(b)
    second_outcome = []
    a.store.competitor = lambda: second_outcome.append(_outcome(lambda: second(b, t)))
    assert _outcome(lambda: first(a, t)) == answer
    assert second_outcome == ["ok"]  # the other request did commit in between
    assert problems(a.store) == []


def test_a_child_changed_under_a_check_is_read_again(servers):
    """A subnet changed under a port create (its pool moved, no subnet added or removed)
    rewrites its network's index key too: the create runs again on the new pool."""
    a, b = servers
    t = _net(b)
    pool = [{"start": "10.0.0.200", "end": "10.0.0.210"}]
    a.store.competitor = lambda: b.update("subnet", t["subnet"]["id"], {"allocation_pools": pool})
    port = a.create("port", {"network_id": t["net"]["id"]})
    assert a.store.competitor is None
    assert 200 <= int(port["fixed_ips"][0]["ip_address"].rsplit(".", 1)[1]) <= 210


@pytest.mark.parametrize("name,setup,network,request_,delete,answer", [
    ("floating ip", _ext, "ext", lambda s, t: s.create("floatingip", {"floating_network_id": t["ext"]["id"]}),
     lambda s, t: s.delete("network", t["ext"]["id"]), "NetworkNotFound"),
    ("router interface", _routed, "net",
     lambda s, t: s.add_router_interface(t["router"]["id"], {"subnet_id": t["subnet"]["id"]}),
     lambda s, t: s.delete("subnet", t["subnet"]["id"]), "SubnetNotFound"),
], ids=["floating ip", "router interface"])
def test_reads_that_disagree_are_not_answered_but_read_again(servers, name, setup, network, request_, delete, answer):
    """A network (or subnet) is read, then deleted before the network's subnet list is
    read: the request runs again rather than answer (or crash) on a state that never was."""
    a, b = servers
    t = setup(b)
    a.store.at = members_prefix("network", t[network]["id"], "subnet")
    a.store.competitor = lambda: delete(b, t)
    assert _outcome(lambda: request_(a, t)) == answer
    assert a.store.competitor is None and problems(a.store) == []


def test_a_list_check_costs_one_compare_however_long_the_list(svc, monkeypatch):
    """etcd takes at most 128 compares in a transaction: a rule create in a group that
    already has 200 rules must not guard each of them."""
    sg = svc.create("security_group", {"name": "big"})
    rule = {"security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp"}
    for port in range(1, 201):
        svc.create("security_group_rule", {**rule, "port_range_min": port, "port_range_max": port})
    compares = []
    commit = svc.store.txn
    monkeypatch.setattr(svc.store, "txn", lambda c, o: compares.append(len(c)) or commit(c, o))
    svc.create("security_group_rule", {**rule, "port_range_min": 1000, "port_range_max": 1000})
    assert compares and max(compares) < 10


def test_racing_first_requests_of_a_project_make_one_default_group(servers):
    a, b = servers
    a.store.competitor = lambda: b.create("network", {"name": "theirs", "project_id": "fresh"})
    a.create("port", {"network_id": b.create("network", {"project_id": "other"})["id"], "project_id": "fresh"})
    (sg,) = b.list("security_group", {"project_id": ["fresh"], "name": ["default"]})
    assert a.list("port", {"project_id": ["fresh"]})[0]["security_groups"] == [sg["id"]]
    assert len(sg["security_group_rules"]) == 4 and problems(a.store) == []


def test_default_group_comes_with_a_projects_first_request_and_only_once(svc):
    for kind, body in [("network", {}), ("security_group", {"name": "web"})]:
        project = f"first-{kind}"
        svc.create(kind, {**body, "project_id": project})
        assert [sg["name"] for sg in svc.list("security_group", {"project_id": [project]})].count("default") == 1
    svc.ensure_default_security_group("only-looked")  # what the API's listing of its groups does
    assert svc.list("security_group", {"project_id": ["only-looked"]})[0]["name"] == "default"
    with pytest.raises(NBError) as err:
        svc.create("security_group", {"name": "default"})
    assert (err.value.status, err.value.type) == (409, "SecurityGroupDefaultAlreadyExists")
    default = svc.list("security_group", {"project_id": ["only-looked"]})[0]
    with pytest.raises(NBError) as err:
        svc.update("security_group", default["id"], {"name": "renamed"})
    assert err.value.type == "SecurityGroupCannotUpdateDefault"
    assert problems(svc.store) == []


def test_a_deleted_default_group_is_made_again_even_by_a_server_that_remembers_it(servers):
    a, b = servers
    net = a.create("network", {"name": "n"})
    a.create("subnet", {"network_id": net["id"], "cidr": "10.3.0.0/24"})
    old = a.ensure_default_security_group()
    b.delete("security_group", old)  # a remembers the reservation it saw: a stale memory
    port = a.create("port", {"network_id": net["id"]})
    assert port["security_groups"] != [old]
    assert b.get("security_group", port["security_groups"][0])["name"] == "default"
    assert problems(a.store) == []


def test_a_default_group_from_an_older_store_is_adopted():
    store = open_store("memory://")
    old = NBService(store).ensure_default_security_group()
    store.delete(default_group_key(DEFAULT_PROJECT))  # as stored before default groups were reserved
    NBService(store).create("network", {"name": "n"})
    assert [sg["id"] for sg in NBService(store).list("security_group", {"name": ["default"]})] == [old]
    assert store.get(default_group_key(DEFAULT_PROJECT)).value == old.encode()


@pytest.mark.parametrize("given,ethertype,stored", [
    ("ipv6-icmp", "IPv6", "ipv6-icmp"), ("icmpv6", "IPv6", "ipv6-icmp"), ("ICMP", "IPv6", "icmp"),
    (1, "IPv6", "58"), ("58", "IPv6", "58"), (6, "IPv4", "6"), ("vrrp", "IPv4", "vrrp"), ("any", "IPv4", None),
    ("icmpv6", "ipv6", "ipv6-icmp"),  # ethertypes in any case, as Neutron converts them
])
def test_rule_protocols_spelled_as_neutron_stores_them(svc, given, ethertype, stored):
    sg = svc.create("security_group", {"name": "protocols"})
    rule = svc.create("security_group_rule", {"security_group_id": sg["id"], "direction": "ingress",
                                              "ethertype": ethertype, "protocol": given})
    assert rule["protocol"] == stored
    assert svc.get("security_group_rule", rule["id"])["protocol"] == stored


def test_router_with_an_empty_gateway_has_none(svc):
    router = svc.create("router", {"name": "r", "external_gateway_info": {}})
    assert router["external_gateway_info"] is None
    assert svc.update("router", router["id"], {"external_gateway_info": {}})["external_gateway_info"] is None


def test_port_binding_follows_the_host(svc, topo):
    port = topo["port"]
    assert (port["binding:vnic_type"], port["binding:vif_type"], port["binding:vif_details"]) == \
        ("normal", "unbound", {})
    assert svc.update("port", port["id"], {"binding:host_id": "nowhere"})["binding:vif_type"] == "binding_failed"
    svc.upsert_chassis("c1", "198.18.0.1")
    bound = svc.update("port", port["id"], {"binding:host_id": "c1"})
    assert bound["binding:vif_type"] == "tap" and bound["binding:vif_details"]["port_filter"] is True
    assert [p["binding:vif_type"] for p in svc.list("port", {"id": [port["id"]]})] == ["tap"]
    for body in ({"binding:vif_type": "ovs"}, {"binding:vnic_type": "direct"}):
        with pytest.raises(NBError) as err:
            svc.update("port", port["id"], body)
        assert err.value.status == 400


def test_deleting_an_external_network_deletes_its_unused_floating_ips(svc, topo):
    svc.create("floatingip", {"floating_network_id": topo["ext"]["id"]})
    used = svc.create("floatingip", {"floating_network_id": topo["ext"]["id"], "port_id": topo["port"]["id"]})
    svc.remove_router_interface(topo["router"]["id"], {"subnet_id": topo["subnet"]["id"]})
    svc.update("floatingip", used["id"], {"port_id": None})
    svc.update("router", topo["router"]["id"], {"external_gateway_info": None})
    svc.delete("network", topo["ext"]["id"])
    assert svc.list("floatingip") == [] and svc.list("port", {"network_id": [topo["ext"]["id"]]}) == []
    assert problems(svc.store) == []


def test_an_external_network_with_an_associated_floating_ip_stays(svc, topo):
    svc.create("floatingip", {"floating_network_id": topo["ext"]["id"], "port_id": topo["port"]["id"]})
    before = snapshot(svc)
    with pytest.raises(NBError) as err:
        svc.delete("network", topo["ext"]["id"])
    assert err.value.type == "NetworkInUse" and snapshot(svc) == before


@pytest.mark.parametrize("body,type_,words", [
    ({"provider:network_type": "flat"}, "InvalidInput", "physical_network required for flat provider network"),
    ({"provider:network_type": "vlan", "provider:physical_network": "p"}, "InvalidInput",
     "segmentation_id required for VLAN provider network"),
    ({"provider:network_type": "vlan", "provider:physical_network": "p", "provider:segmentation_id": 4095},
     "InvalidInput", "segmentation_id out of range (1 through 4094)"),
    ({"provider:network_type": "flat", "provider:physical_network": "p", "provider:segmentation_id": 3},
     "InvalidInput", "segmentation_id prohibited for flat provider network"),
    ({"provider:network_type": "vxlan"}, "InvalidInput", "external network is flat or vlan"),
    ({"provider:network_type": "geneve"}, "HTTPBadRequest", "provider:network_type"),
])
def test_bad_provider_networks_are_refused(svc, body, type_, words):
    with pytest.raises(NBError) as err:
        svc.create("network", {"router:external": True, **body})
    assert (err.value.status, err.value.type) == (400, type_) and words in err.value.message
    assert svc.list("network") == []


def test_provider_networks_own_their_segment(svc):
    flat = {"router:external": True, "provider:network_type": "flat", "provider:physical_network": "provider"}
    public = svc.create("network", {"name": "public", **flat})
    assert (public["provider:network_type"], public["provider:physical_network"],
            public["provider:segmentation_id"]) == ("flat", "provider", None)
    with pytest.raises(NBError) as err:
        svc.create("network", flat)
    assert (err.value.status, err.value.type) == (409, "FlatNetworkInUse")
    vlan = {"router:external": True, "provider:network_type": "vlan", "provider:physical_network": "provider",
            "provider:segmentation_id": 100}
    svc.create("network", vlan)
    with pytest.raises(NBError) as err:
        svc.create("network", vlan)
    assert err.value.type == "VlanIdInUse" and "VLAN 100 on physical network provider" in err.value.message
    svc.create("network", {**vlan, "provider:segmentation_id": 101})
    with pytest.raises(NBError) as err:
        svc.create("network", {**flat, "router:external": False})
    assert "tenant networks are vxlan" in err.value.message
    svc.delete("network", public["id"])
    assert svc.create("network", flat)["provider:physical_network"] == "provider"  # free again
    assert problems(svc.store) == []
