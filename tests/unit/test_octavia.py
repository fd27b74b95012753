"""What the dfxdp provider refuses of Octavia's API: a clear 400 naming what is
supported, and nothing written."""
import pytest

from dfxdp.nb.db import open_store
from dfxdp.nb.errors import BadRequest, Conflict
from dfxdp.nb.service import NBService


@pytest.fixture
def lb():
    svc = NBService(open_store("memory://"))
    net = svc.create("network", {"name": "n"})
    subnet = svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    balancer = svc.create("loadbalancer", {"vip_subnet_id": subnet["id"]})
    listener = svc.create("listener", {"loadbalancer_id": balancer["id"], "protocol": "TCP", "protocol_port": 80})
    return svc, balancer, listener


def refused(call, *words):
    with pytest.raises(BadRequest) as err:
        call()
    assert err.value.status == 400 and all(w in str(err.value) for w in words), str(err.value)


def test_listener_protocols_other_than_tcp_and_udp_are_refused(lb):
    svc, balancer, _ = lb
    refused(lambda: svc.create("listener", {"loadbalancer_id": balancer["id"], "protocol": "HTTP",
                                            "protocol_port": 8080}), "HTTP", "TCP, UDP")
    assert len(svc.list("listener")) == 1
    udp = svc.create("listener", {"loadbalancer_id": balancer["id"], "protocol": "UDP", "protocol_port": 53})
    assert udp["protocol"] == "UDP"


def test_least_connections_and_cookie_persistence_are_refused(lb):
    svc, _, listener = lb
    refused(lambda: svc.create("pool", {"listener_id": listener["id"], "protocol": "TCP",
                                        "lb_algorithm": "LEAST_CONNECTIONS"}), "LEAST_CONNECTIONS", "SOURCE_IP_PORT")
    refused(lambda: svc.create("pool", {"listener_id": listener["id"], "protocol": "TCP", "lb_algorithm": "SOURCE_IP",
                                        "session_persistence": {"type": "HTTP_COOKIE"}}), "HTTP_COOKIE", "SOURCE_IP")
    assert svc.list("pool") == []
    pool = svc.create("pool", {"listener_id": listener["id"], "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN",
                               "session_persistence": {"type": "SOURCE_IP"}})
    assert pool["session_persistence"] == {"type": "SOURCE_IP"}
    refused(lambda: svc.update("pool", pool["id"], {"lb_algorithm": "LEAST_CONNECTIONS"}), "LEAST_CONNECTIONS")
    assert svc.get("pool", pool["id"])["lb_algorithm"] == "ROUND_ROBIN"


def test_health_monitors_tcp_udp_connect_and_http_only(lb):
    svc, _, listener = lb
    pool = svc.create("pool", {"listener_id": listener["id"], "protocol": "TCP", "lb_algorithm": "SOURCE_IP_PORT"})
    base = {"pool_id": pool["id"], "delay": 2, "timeout": 1, "max_retries": 2}
    refused(lambda: svc.create("healthmonitor", {**base, "type": "PING"}), "PING", "TCP, UDP-CONNECT, HTTP")
    refused(lambda: svc.create("healthmonitor", {**base, "type": "HTTP", "expected_codes": "2xx"}), "expected_codes")
    hm = svc.create("healthmonitor", {**base, "type": "HTTP", "http_method": "HEAD", "url_path": "/health",
                                      "expected_codes": "200-204,301"})
    assert (hm["http_method"], hm["url_path"]) == ("HEAD", "/health")


def hm_ports(svc):
    return [p for p in svc.list("port") if p["device_owner"] == "network:lb-hm"]


def test_a_monitored_subnet_gets_one_probe_source_port_until_its_last_monitor_goes(lb):
    svc, balancer, listener = lb
    pool = svc.create("pool", {"listener_id": listener["id"], "protocol": "TCP", "lb_algorithm": "SOURCE_IP_PORT"})
    svc.create("member", {"pool_id": pool["id"], "address": "10.0.0.20", "protocol_port": 80})
    assert hm_ports(svc) == []
    hm = svc.create("healthmonitor", {"pool_id": pool["id"], "type": "TCP", "delay": 2, "timeout": 1,
                                      "max_retries": 2})
    (port,) = hm_ports(svc)
    assert port["device_id"] == balancer["vip_subnet_id"] and not port["port_security_enabled"]
    svc.create("member", {"pool_id": pool["id"], "address": "10.0.0.21", "protocol_port": 80})
    assert hm_ports(svc) == [port]
    svc.set_member_status(svc.list("member")[0]["id"], "ERROR")
    svc.delete("healthmonitor", hm["id"])
    assert hm_ports(svc) == [] and svc.get("pool", pool["id"])["healthmonitor_id"] is None
    assert {m["operating_status"] for m in svc.list("member")} == {"NO_MONITOR"}  # nothing probes them now
    assert svc.get("pool", pool["id"])["operating_status"] == "ONLINE"


def test_member_status_rolls_up_to_pool_and_load_balancer(lb):
    svc, balancer, listener = lb
    pool = svc.create("pool", {"listener_id": listener["id"], "protocol": "TCP", "lb_algorithm": "SOURCE_IP_PORT"})
    members = [svc.create("member", {"pool_id": pool["id"], "address": f"10.0.0.{20 + i}", "protocol_port": 80})
               for i in range(2)]
    svc.set_member_status(members[0]["id"], "ERROR")
    assert svc.get("pool", pool["id"])["operating_status"] == "DEGRADED"
    assert svc.get("loadbalancer", balancer["id"])["operating_status"] == "DEGRADED"
    svc.set_member_status(members[1]["id"], "ERROR")
    assert svc.get("pool", pool["id"])["operating_status"] == "ERROR"
    assert svc.get("loadbalancer", balancer["id"])["operating_status"] == "ERROR"
    for m in members:
        svc.set_member_status(m["id"], "ONLINE")
    assert svc.get("loadbalancer", balancer["id"])["operating_status"] == "ONLINE"


def test_cascade_delete_takes_everything_under_the_load_balancer(lb):
    svc, balancer, listener = lb
    pool = svc.create("pool", {"listener_id": listener["id"], "protocol": "TCP", "lb_algorithm": "SOURCE_IP_PORT"})
    svc.create("member", {"pool_id": pool["id"], "address": "10.0.0.20", "protocol_port": 80})
    svc.create("healthmonitor", {"pool_id": pool["id"], "type": "TCP", "delay": 2, "timeout": 1, "max_retries": 2})
    with pytest.raises(Conflict):
        svc.delete_loadbalancer(balancer["id"])  # not without cascade
    svc.delete_loadbalancer(balancer["id"], cascade=True)
    assert all(svc.list(kind) == [] for kind in ("loadbalancer", "listener", "pool", "member", "healthmonitor"))
    assert [p for p in svc.list("port") if p["device_owner"] in ("Octavia", "network:lb-hm")] == []


def test_the_api_cascades_and_speaks_octavias_errors():
    from fastapi.testclient import TestClient

    from dfxdp.api.app import create_app

    svc = NBService(open_store("memory://"))
    client = TestClient(create_app(svc))
    net = svc.create("network", {"name": "n"})
    subnet = svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    lb = client.post("/v2/lbaas/loadbalancers", json={"loadbalancer": {"vip_subnet_id": subnet["id"]}}).json()
    lb_id = lb["loadbalancer"]["id"]
    r = client.post("/v2/lbaas/listeners", json={"listener": {"loadbalancer_id": lb_id, "protocol": "HTTPS",
                                                               "protocol_port": 443}})
    assert r.status_code == 400 and "use one of TCP, UDP" in r.json()["faultstring"]
    assert r.json()["NeutronError"]["type"] == "NotSupported"
    client.post("/v2/lbaas/listeners", json={"listener": {"loadbalancer_id": lb_id, "protocol": "TCP",
                                                          "protocol_port": 80}})
    assert client.delete(f"/v2/lbaas/loadbalancers/{lb_id}").status_code == 409
    assert client.delete(f"/v2/lbaas/loadbalancers/{lb_id}?cascade=true").status_code == 204
    assert svc.list("listener") == [] and svc.list("loadbalancer") == []


def test_a_vip_by_subnet_by_network_or_on_a_users_port():
    svc = NBService(open_store("memory://"))
    net = svc.create("network", {"name": "n"})
    subnet = svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    by_net = svc.create("loadbalancer", {"vip_network_id": net["id"]})
    assert by_net["vip_subnet_id"] == subnet["id"] and by_net["vip_address"].startswith("10.0.0.")
    port = svc.create("port", {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.77"}]})
    on_port = svc.create("loadbalancer", {"vip_port_id": port["id"]})
    assert (on_port["vip_address"], on_port["vip_subnet_id"], on_port["vip_network_id"]) == \
        ("10.0.0.77", subnet["id"], net["id"])
    svc.delete_loadbalancer(on_port["id"])
    assert svc.get("port", port["id"])  # the user's port stays
    svc.delete_loadbalancer(by_net["id"])
    # the VIP port made for it goes (the network's DHCP port stays)
    assert [p["id"] for p in svc.list("port") if p["device_owner"] != "network:dhcp"] == [port["id"]]
    refused(lambda: svc.create("loadbalancer", {}), "vip_subnet_id, vip_network_id, vip_port_id")
    assert svc.list("loadbalancer") == []


def test_provisioning_is_pending_until_an_agent_programmed_that_revision(lb):
    svc, balancer, listener = lb
    assert balancer["provisioning_status"] == "PENDING_CREATE"
    now = svc.get("loadbalancer", balancer["id"])
    assert now["provisioning_status"] == "PENDING_UPDATE"  # the listener came after
    svc.set_loadbalancer_active(balancer["id"], balancer["revision_number"])  # an older revision: not yet
    assert svc.get("loadbalancer", balancer["id"])["provisioning_status"] == "PENDING_UPDATE"
    svc.set_loadbalancer_active(balancer["id"], now["revision_number"])
    assert svc.get("loadbalancer", balancer["id"])["provisioning_status"] == "ACTIVE"
    svc.create("pool", {"listener_id": listener["id"], "protocol": "TCP", "lb_algorithm": "SOURCE_IP_PORT"})
    assert svc.get("loadbalancer", balancer["id"])["provisioning_status"] == "PENDING_UPDATE"
