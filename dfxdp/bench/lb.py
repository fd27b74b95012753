"""The load balancer's cost: nanoseconds per packet of a new flow (ring lookup,
two LRU inserts, DNAT) and of an established one (one LRU lookup, DNAT) through
the whole pipeline, beside plain bridging on the same world and the empty
XDP_PASS floor; and the time to build and swap a Maglev ring of 1,000 members."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from dfxdp.controller.maglev import RING_SIZE, Member, maglev_ring
from dfxdp.datapath.pipeline import Pipeline
from dfxdp.datapath.pktrun import run_packet

from .datapath import A, B, _port, bench_pipeline, floor_ns, program, view

VIP, VIP_MAC = "10.0.0.100", "fa:16:3e:b0:00:64"
REBUILD_MEMBERS = 1000


@dataclass
class LbCost:
    name: str
    value: float
    unit: str


def lb_view(ifs: dict[str, int]):
    """The datapath bench's world with a VIP on n1 over its local port b and remote port r."""
    v = view(ifs)
    v.ports["vip"] = _port("vip", 8, "n1", VIP_MAC, VIP, host="", owner="Octavia", device="lb")
    v.loadbalancers = {"lb": {"id": "lb", "key": 1, "vip_port_id": "vip", "vip_address": VIP,
                              "vip_subnet_id": "s-n1", "admin_state_up": True}}
    v.listeners = {"l": {"id": "l", "loadbalancer_id": "lb", "protocol": "TCP", "protocol_port": 80,
                         "default_pool_id": "p", "admin_state_up": True}}
    v.pools = {"p": {"id": "p", "key": 1, "lb_algorithm": "SOURCE_IP_PORT", "protocol": "TCP", "admin_state_up": True}}
    v.members = {m: {"id": m, "key": k, "pool_id": "p", "address": addr, "protocol_port": 8080, "weight": 1,
                     "admin_state_up": True, "operating_status": "NO_MONITOR"}
                 for m, k, addr in (("mb", 1, "10.0.0.2"), ("mr", 2, "10.0.0.3"))}
    return v


def _ns(prog, frame: bytes, ingress: int) -> int:
    return prog.test_run(frame, ingress_ifindex=ingress).duration_ns


def _check_balanced(pipe: Pipeline, frame: bytes, ingress: int) -> None:
    """The timed path is the intended one: DNATed to a member and sent on."""
    res = run_packet(pipe, frame, ingress_ifindex=ingress)
    if res.verdict != "XDP_REDIRECT" or "STAGE_LB" not in res.stages:
        raise RuntimeError(f"the bench's VIP frame took {res.verdict} via {res.stages}, not the load balancer")


def _to_vip(sport: int, syn: bool = True) -> bytes:
    return bytes(Ether(src=A, dst=VIP_MAC) / IP(src="10.0.0.1", dst=VIP) /
                 TCP(sport=sport, dport=80, flags="S" if syn else "A"))


def measure(samples: int, progress: Callable[[str], None] = lambda _: None) -> list[LbCost]:
    with bench_pipeline(("a", "b", "und")) as (pipe, ifs):
        program(pipe, lb_view(ifs))
        entry, a = pipe.entry("port"), ifs["a"]
        progress("floor")
        results = [LbCost("floor", floor_ns(samples), "ns/packet")]
        progress("bridged, not balanced")
        plain = bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP())
        results.append(LbCost("l2_local", statistics.median(_ns(entry, plain, a) for _ in range(samples)),
                              "ns/packet"))
        progress("new flows")  # a source port never seen: the ring decides, both LRU entries are written
        _check_balanced(pipe, _to_vip(9999), a)
        results.append(LbCost("lb_new_flow", statistics.median(
            _ns(entry, _to_vip(10000 + i), a) for i in range(samples)), "ns/packet"))
        progress("established flow")  # 9999: pinned by the check above; an ACK continues it
        established = _to_vip(9999, syn=False)
        results.append(LbCost("lb_established_flow", statistics.median(
            _ns(entry, established, a) for _ in range(samples)), "ns/packet"))
        progress(f"Maglev ring of {REBUILD_MEMBERS} members")
        members = [Member(i + 1, f"member-{i}", 1 + i % 4) for i in range(REBUILD_MEMBERS)]
        started = time.perf_counter()
        ring = maglev_ring(members)
        built = time.perf_counter()
        pipe.maps["lb_rings"].update(999, ring)  # a fresh inner array filled, then swapped in
        swapped = time.perf_counter()
        results.append(LbCost(f"maglev_build_{REBUILD_MEMBERS}_members", (built - started) * 1000, "ms"))
        results.append(LbCost(f"ring_swap_{RING_SIZE}_slots", (swapped - built) * 1000, "ms"))
        return results
