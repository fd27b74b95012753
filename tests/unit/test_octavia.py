"""What the dfxdp provider refuses of Octavia's API: a clear 400 naming what is
supported, and nothing written."""
import pytest

from dfxdp.nb.db import open_store
from dfxdp.nb.errors import BadRequest
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
