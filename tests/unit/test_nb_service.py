"""NB service validation: every bad input gets its Neutron error and status, and
leaves the store exactly as it was."""
import threading

import pytest

from dfxdp.nb.db import open_store
from dfxdp.nb.errors import NBError
from dfxdp.nb.service import NBService


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
     400, "HTTPBadRequest", "not a valid CIDR"),
    ("invalid ip", lambda s, t: s.create("port", {"network_id": t["net"]["id"], "fixed_ips": [{"ip_address": "10.0.0.999"}]}),
     400, "HTTPBadRequest", "not a valid IP address"),
    ("gateway outside subnet", lambda s, t: s.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.9.0.0/24",
                                                                "gateway_ip": "10.8.0.1"}),
     400, "InvalidInput", "not a usable address"),
    ("overlapping subnets", lambda s, t: s.create("subnet", {"network_id": t["net"]["id"], "cidr": "10.0.0.0/30"}),
     400, "InvalidInput", "overlaps"),
    ("fixed ip outside subnet", lambda s, t: s.create("port", {"network_id": t["net"]["id"], "fixed_ips": [
        {"subnet_id": t["subnet"]["id"], "ip_address": "10.0.1.5"}]}), 400, "InvalidIpForSubnet", "not a valid IP"),
    ("fixed ip in use", lambda s, t: s.create("port", {"network_id": t["net"]["id"], "fixed_ips": [
        {"ip_address": t["port"]["fixed_ips"][0]["ip_address"]}]}), 409, "IpAddressAlreadyAllocated", "already allocated"),
    ("mac in use", lambda s, t: s.create("port", {"network_id": t["net"]["id"], "mac_address": t["port"]["mac_address"]}),
     409, "MacAddressInUse", "is in use"),
    ("unknown network", lambda s, t: s.create("port", {"network_id": "no-such-net"}), 404, "NetworkNotFound", "could not be found"),
    ("unknown security group", lambda s, t: s.create("port", {"network_id": t["net"]["id"], "security_groups": ["nope"]}),
     404, "SecurityGroupNotFound", "could not be found"),
    ("delete network with ports", lambda s, t: s.delete("network", t["net"]["id"]), 409, "NetworkInUse", "ports still in use"),
    ("delete router with interfaces", lambda s, t: s.delete("router", t["router"]["id"]), 409, "RouterInUse", "still has ports"),
    ("reversed port range", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "ingress",
                                                                         "protocol": "tcp", "port_range_min": 90, "port_range_max": 80}),
     400, "SecurityGroupInvalidPortRange", "min must be <= max"),
    ("port out of range", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "ingress",
                                                                       "protocol": "udp", "port_range_min": 0, "port_range_max": 70000}),
     400, "SecurityGroupInvalidPortRange", "1-65535"),
    ("ports without protocol", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "ingress",
                                                                            "port_range_min": 22, "port_range_max": 22}),
     400, "SecurityGroupInvalidPortRange", "need protocol"),
    ("unknown protocol", lambda s, t: s.create("security_group_rule", {"security_group_id": t["sg"], "direction": "ingress",
                                                                      "protocol": "bogus"}),
     400, "HTTPBadRequest", "not supported"),
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
    # /29: .1 gateway (router interface), .2 p1; 4 more fit
    for _ in range(4):
        svc.create("port", {"network_id": topo["net"]["id"]})
    before = snapshot(svc)
    with pytest.raises(NBError) as err:
        svc.create("port", {"network_id": topo["net"]["id"]})
    assert (err.value.status, err.value.type) == (409, "IpAddressGenerationFailure")
    assert snapshot(svc) == before


def test_concurrent_port_creation_never_duplicates_an_ip(svc):
    net = svc.create("network", {"name": "busy"})
    svc.create("subnet", {"network_id": net["id"], "cidr": "10.5.0.0/27"})  # 29 addresses
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
    assert len(got) == len(set(got)) == 29
    assert set(errors) == {"IpAddressGenerationFailure"} and len(errors) == 11


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
