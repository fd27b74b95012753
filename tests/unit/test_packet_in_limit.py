"""Packet-ins are limited per input port before any app reads them: a VM flooding IGMP
reports makes the agent parse at most the port's budget, another port keeps its own."""
import struct
import socket

import pytest
from prometheus_client import CollectorRegistry

from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.apps.igmp import IgmpApp, _checksum
from dfxdp.controller.binding import tap_name
from dfxdp.controller.ovs.bridge import INTEGRATION_BRIDGE
from dfxdp.controller.ovs.fallback import Fallback
from dfxdp.controller.ovs.flows import DIGEST_BITS
from dfxdp.controller.ovs.packet_in import PacketInLimiter
from dfxdp.metrics.fallback import FallbackMetrics


class Clock:
    def __init__(self):
        self.now = 50.0

    def __call__(self):
        return self.now


def test_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    limit = PacketInLimiter(rate=10, burst=5, clock=clock)
    assert [limit.allow(1) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limit.allow(2)  # another port has its own bucket
    clock.now += 0.25  # 2.5 tokens back
    assert [limit.allow(1) for _ in range(3)] == [True, True, False]
    clock.now += 100  # refills up to the burst, never beyond
    assert sum(limit.allow(1) for _ in range(20)) == 5


def test_forgotten_ports_start_full_again():
    clock = Clock()
    limit = PacketInLimiter(rate=1, burst=2, clock=clock)
    limit.allow(3), limit.allow(3)
    assert not limit.allow(3)
    limit.forget({4})
    assert limit.allow(3)


@pytest.mark.parametrize("rate,burst", [(0, 5), (5, 0.5), (-1, 3)])
def test_bad_limits_are_refused(rate, burst):
    with pytest.raises(ValueError):
        PacketInLimiter(rate=rate, burst=burst)


def igmp_report(group: str) -> bytes:
    igmp = struct.pack("!BBH4s", 0x16, 0, 0, socket.inet_aton(group))
    igmp = igmp[:2] + _checksum(igmp).to_bytes(2, "big") + igmp[4:]
    ip = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 1, 2, 0, 0]) + socket.inet_aton("10.0.0.5") + socket.inet_aton(group)
    return bytes.fromhex("01005e010101" "fa163e000005" "0800") + ip + igmp


def test_fallback_drops_a_ports_excess_before_the_igmp_app_parses_it():
    clock = Clock()
    app = IgmpApp(clock)
    parsed = []
    real = app.on_packet_in
    app.on_packet_in = lambda view, port_id, frame: parsed.append(port_id) or real(view, port_id, frame)
    registry = CollectorRegistry()
    fb = Fallback("unix:/nonexistent", "ch1", "198.18.0.11", "und0", "02:00:00:00:00:01", [app],
                  "127.0.0.1:6653", lambda: None, FallbackMetrics(registry))
    fb.packet_in_limit = PacketInLimiter(rate=10, burst=10, clock=clock)
    fb._dpids[INTEGRATION_BRIDGE] = 7
    fb._view = LocalView(chassis="ch1", tunnel_ip="198.18.0.11",
                         networks={"blue": {"id": "blue", "key": 5}},
                         ports={p: {"id": p, "network_id": "blue", "binding:host_id": "ch1"} for p in ("p1", "p2")},
                         local_ports={"p1": 11, "p2": 12}, ofports={tap_name("p1"): 1, tap_name("p2"): 2})
    cookie = app.flow_cookie << DIGEST_BITS
    for i in range(1000):  # a flood of reports from p1, each for another group
        fb._packet_in(7, cookie, 1, igmp_report(f"239.1.{i // 250}.{i % 250 + 1}"))
    fb._packet_in(7, cookie, 2, igmp_report("239.9.9.9"))
    assert parsed.count("p1") == 10 and parsed.count("p2") == 1
    assert registry.get_sample_value("dfxdp_fallback_packet_ins_total", {"outcome": "rate_limited"}) == 990
    assert registry.get_sample_value("dfxdp_fallback_packet_ins_total", {"outcome": "handled"}) == 11
    assert len(app.membership.members()) == 11  # what was parsed was learned
