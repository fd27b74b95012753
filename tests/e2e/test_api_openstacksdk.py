"""openstacksdk against a real `dfxdp server`, on sqlite and on a real etcd:
create, list, update and delete every resource; restarts keep data; two servers
on one etcd never hand out the same IP; a token guards the API when set."""
import concurrent.futures

import openstack.exceptions
import pytest

from tests.fixtures.etcd import etcd  # noqa: F401 - fixture
from tests.fixtures.server import ServerProcess


@pytest.fixture(params=["sqlite", "etcd"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nb.db"
    return request.getfixturevalue("etcd").url


@pytest.fixture
def server(db_url):
    srv = ServerProcess(db_url)
    try:
        yield srv
    finally:
        srv.close()


def test_every_resource_round_trips(server):
    c = server.connect()
    net = c.network.create_network(name="net1")
    ext = c.network.create_network(name="ext", is_router_external=True)
    assert net.provider_segmentation_id and ext.is_router_external
    ext_sub = c.network.create_subnet(network_id=ext.id, cidr="198.19.5.0/24", ip_version=4)
    sub = c.network.create_subnet(network_id=net.id, cidr="10.10.0.0/24", ip_version=4,
                                  dns_nameservers=["10.10.0.53"], host_routes=[{"destination": "10.20.0.0/16",
                                                                                "nexthop": "10.10.0.254"}])
    assert sub.gateway_ip == "10.10.0.1" and sub.allocation_pools == [{"start": "10.10.0.2", "end": "10.10.0.254"}]
    sg = c.network.create_security_group(name="web")
    rule = c.network.create_security_group_rule(security_group_id=sg.id, direction="ingress", protocol="tcp",
                                                port_range_min=80, port_range_max=443, remote_ip_prefix="0.0.0.0/0")
    # outside the first 16 free addresses, where the DHCP port takes its address at random (as Neutron)
    port = c.network.create_port(network_id=net.id, name="vm1", security_group_ids=[sg.id],
                                 fixed_ips=[{"ip_address": "10.10.0.100"}], binding_host_id="node1",
                                 allowed_address_pairs=[{"ip_address": "10.10.0.0/28"}])
    assert port.fixed_ips[0]["ip_address"] == "10.10.0.100" and port.mac_address.startswith("fa:16:3e")
    router = c.network.create_router(name="r1", external_gateway_info={"network_id": ext.id})
    c.network.add_interface_to_router(router, subnet_id=sub.id)
    router = c.network.update_router(router, routes=[{"destination": "10.30.0.0/16", "nexthop": "10.10.0.20"}])
    assert router.routes == [{"destination": "10.30.0.0/16", "nexthop": "10.10.0.20"}]
    fip = c.network.create_ip(floating_network_id=ext.id, port_id=port.id)
    assert fip.fixed_ip_address == "10.10.0.100" and fip.router_id == router.id

    assert [p.name for p in c.network.ports(network_id=net.id, name="vm1")] == ["vm1"]
    assert {n.name for n in c.network.networks()} == {"net1", "ext"}
    assert c.network.get_security_group(sg.id).security_group_rules
    c.network.update_port(port, name="vm1-renamed")
    assert c.network.get_port(port.id).name == "vm1-renamed"
    c.network.update_network(net, name="net1b")
    c.network.update_subnet(sub, name="sub1b")
    c.network.update_security_group(sg, description="web servers")

    lb = c.load_balancer.create_load_balancer(name="lb", vip_subnet_id=sub.id)
    listener = c.load_balancer.create_listener(loadbalancer_id=lb.id, protocol="TCP", protocol_port=80)
    pool = c.load_balancer.create_pool(listener_id=listener.id, protocol="TCP", lb_algorithm="ROUND_ROBIN")
    member = c.load_balancer.create_member(pool, address="10.10.0.100", protocol_port=8080, subnet_id=sub.id)
    hm = c.load_balancer.create_health_monitor(pool_id=pool.id, type="TCP", delay=5, timeout=3, max_retries=3)
    assert lb.vip_address.startswith("10.10.0.") and [m.address for m in c.load_balancer.members(pool)] == ["10.10.0.100"]
    c.load_balancer.update_load_balancer(lb, name="lb2")
    assert c.load_balancer.get_load_balancer(lb.id).name == "lb2"

    c.load_balancer.delete_health_monitor(hm)
    c.load_balancer.delete_member(member, pool)
    c.load_balancer.delete_pool(pool)
    c.load_balancer.delete_listener(listener)
    c.load_balancer.delete_load_balancer(lb)
    c.network.delete_ip(fip)
    with pytest.raises(openstack.exceptions.ConflictException):  # a static route still needs it
        c.network.remove_interface_from_router(router, subnet_id=sub.id)
    c.network.update_router(router, routes=[])
    c.network.remove_interface_from_router(router, subnet_id=sub.id)
    c.network.delete_router(router)
    c.network.delete_port(port)
    c.network.delete_security_group_rule(rule)
    c.network.delete_security_group(sg)
    c.network.delete_subnet(sub)
    c.network.delete_network(net)
    c.network.delete_subnet(ext_sub)
    c.network.delete_network(ext)
    assert list(c.network.networks()) == [] and list(c.network.ports()) == []
    assert list(c.load_balancer.load_balancers()) == []


def test_errors_reach_the_client(server):
    c = server.connect()
    net = c.network.create_network(name="n")
    c.network.create_subnet(network_id=net.id, cidr="10.11.0.0/24", ip_version=4)
    with pytest.raises(openstack.exceptions.BadRequestException) as err:
        c.network.create_subnet(network_id=net.id, cidr="10.11.0.128/25", ip_version=4)
    assert "overlaps" in str(err.value)
    c.network.create_port(network_id=net.id, fixed_ips=[{"ip_address": "10.11.0.109"}])
    with pytest.raises(openstack.exceptions.ConflictException):
        c.network.create_port(network_id=net.id, fixed_ips=[{"ip_address": "10.11.0.109"}])
    with pytest.raises(openstack.exceptions.NotFoundException):
        c.network.get_network("does-not-exist")


def test_sqlite_restart_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path}/keep.db"
    first = ServerProcess(url)
    try:
        net_id = first.connect().network.create_network(name="kept").id
    finally:
        first.close()
    second = ServerProcess(url)
    try:
        assert second.connect().network.get_network(net_id).name == "kept"
    finally:
        second.close()


def test_two_servers_on_one_etcd_never_hand_out_the_same_ip(etcd):
    a, b = ServerProcess(etcd.url), ServerProcess(etcd.url)
    try:
        net = a.connect().network.create_network(name="shared")
        a.connect().network.create_subnet(network_id=net.id, cidr="10.12.0.0/26", ip_version=4)  # 61 addresses, one the DHCP port's

        def create_many(server):
            conn, ips, refused = server.connect(), [], 0
            for _ in range(20):
                try:
                    ips.append(conn.network.create_port(network_id=net.id).fixed_ips[0]["ip_address"])
                except openstack.exceptions.ConflictException:  # the subnet is full
                    refused += 1
            return ips, refused

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(create_many, [a, b, a, b]))
        handed_out = [ip for ips, _ in results for ip in ips]
        assert len(handed_out) == len(set(handed_out)) == 60
        assert sum(refused for _, refused in results) == 80 - 60
        stored = [p.fixed_ips[0]["ip_address"] for p in b.connect().network.ports(network_id=net.id)
                  if p.device_owner != "network:dhcp"]
        assert sorted(stored) == sorted(handed_out)
    finally:
        a.close()
        b.close()


def test_token_protects_the_api(tmp_path):
    srv = ServerProcess(f"sqlite:///{tmp_path}/t.db", "--auth-token", "s3cret")
    try:
        import requests

        assert requests.get(srv.url + "/v2.0/networks", timeout=5).status_code == 401
        ok = requests.get(srv.url + "/v2.0/networks", headers={"X-Auth-Token": "s3cret"}, timeout=5)
        assert ok.status_code == 200 and ok.json() == {"networks": []}
    finally:
        srv.close()


def test_tags_quotas_and_subnet_pools_through_openstacksdk(server):
    c = server.connect()
    net = c.network.create_network(name="tagged")
    c.network.set_tags(net, ["red", "blue"])
    net.add_tag(c.network, "green")
    assert set(c.network.get_network(net.id).tags) == {"red", "blue", "green"}
    assert net.check_tag(c.network, "red")
    net.remove_tag(c.network, "red")
    assert [n.name for n in c.network.networks(tags="blue,green")] == ["tagged"]
    assert [n.name for n in c.network.networks(any_tags="red")] == []
    assert [n.name for n in c.network.networks(not_tags="blue")] == []

    c.network.update_quota("p1", networks=1)
    assert c.network.get_quota("p1").networks == 1
    details = c.network.get_quota("p1", details=True)
    assert details.networks == {"limit": 1, "used": 0, "reserved": 0}
    c.network.create_network(name="one", project_id="p1")
    with pytest.raises(openstack.exceptions.ConflictException, match="Quota exceeded for resources"):
        c.network.create_network(name="two", project_id="p1")
    c.network.delete_quota("p1")
    assert c.network.get_quota("p1").networks == 100

    pool = c.network.create_subnet_pool(name="pool", prefixes=["10.140.0.0/16"], default_prefixlen=24)
    assert pool.minimum_prefix_length == 8 and pool.ip_version == 4
    subnet = c.network.create_subnet(network_id=net.id, subnet_pool_id=pool.id, prefixlen=25, ip_version=4)
    assert subnet.cidr == "10.140.0.0/25" and subnet.subnet_pool_id == pool.id
    ports = c.network.ports(fixed_ips=["ip_address_substr=10.140.0."])
    assert [p.device_owner for p in ports] == ["network:dhcp"]
    c.network.delete_subnet(subnet)
    c.network.delete_subnet_pool(pool)
