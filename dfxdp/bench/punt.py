"""The punt path on a real veth (dfxdp/testing/punt.py): a VM's DHCP request up
through XDP and the ring buffer to an app in the agent's punt service, the
app's reply back to the VM.

- round trip: one request at a time, VM send -> VM receives the reply (p50/p99);
- rate: the VM floods requests (one Python socket, as fast as it can send)
  with the per-port limit lifted; what the app received per second, and what
  the datapath dropped because the ring was full;
- limit: the same flood under the default per-port limit: what the datapath
  admitted and what it dropped (DROP_PUNT_RATE) before the agent saw it.

measure_dhcp() does the first two with the real DHCP app (controller/apps/dhcp.py)
answering from a one-port view: DISCOVER -> OFFER latency, and OFFERs per second.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

from dfxdp.controller.apps import LocalView
from dfxdp.controller.apps.dhcp import DhcpApp
from dfxdp.datapath.libbpf import lib
from dfxdp.testing.punt import SERVER_MAC, VM_MAC, PuntRig, dhcp_discover

REPLY_TIMEOUT = 5.0
DRAIN_TIMEOUT = 60.0
SETTLE = 0.5  # no counter moved for this long: the flood is over


@dataclass
class PuntResult:
    round_trips: int
    lost: int                   # requests whose reply never came within REPLY_TIMEOUT
    round_trip_us_p50: float
    round_trip_us_p99: float
    flood_sent: int
    flood_delivered: int        # frames the app received
    flood_queue_full: int       # dropped in the datapath: the ring was full
    flood_unseen: int           # dropped by the veth before XDP ran (its queue overflowed)
    delivered_pps: float        # flood_delivered over the time from the first send to the last delivery
    limit_packets_per_second: int
    limited_sent: int
    limited_admitted: int       # punted under the default limit
    limited_dropped: int        # DROP_PUNT_RATE


@dataclass
class DhcpResult:
    discovers: int
    lost: int                   # DISCOVERs whose OFFER never came within REPLY_TIMEOUT
    offer_us_p50: float         # VM sends DISCOVER -> VM receives the OFFER
    offer_us_p99: float
    flood_sent: int
    flood_answered: int         # OFFERs the app sent
    answers_per_second: float   # flood_answered over the time from the first send to the last answer


def _drops(rig: PuntRig) -> dict[str, int]:
    return {name: value["packets"] for name, value in rig.pipeline.counters()["drops"].items()}


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"punt bench: {what} within {DRAIN_TIMEOUT:.0f}s")
        time.sleep(0.001)


def _flood(rig: PuntRig, frame: bytes, count: int, handled: Callable[[], int]) -> tuple[dict[str, int], float]:
    """Send `count` frames; returns how the punt drop counters grew (plus "unseen": frames the
    veth dropped before XDP ran) once the datapath is done and every punted frame reached
    the app (`handled()` counts them), and the seconds from the first send to then."""
    before, received = _drops(rig), handled()
    started = time.monotonic()
    for _ in range(count):
        rig.send(frame)
    reasons = ("DROP_PUNTED", "DROP_PUNT_RATE", "DROP_PUNT_QUEUE_FULL")

    def grew() -> dict[str, int]:
        now = _drops(rig)
        return {r: now[r] - before[r] for r in reasons}

    # done when every frame met the datapath, or none did for a while (the veth dropped the rest)
    last, still_since, deadline = None, time.monotonic(), time.monotonic() + DRAIN_TIMEOUT
    while (seen := grew()) != last or time.monotonic() - still_since < SETTLE:
        if sum(seen.values()) == count:
            break
        if seen != last:
            last, still_since = seen, time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"punt bench: the datapath never settled within {DRAIN_TIMEOUT:.0f}s")
        time.sleep(0.001)
    _wait(lambda: handled() - received == seen["DROP_PUNTED"], "the app got every punted frame")
    return {**seen, "unseen": count - sum(seen.values())}, time.monotonic() - started


def _round_trips(rig: PuntRig, frame: bytes, samples: int, handled: Callable[[], int]) -> tuple[list[float], int]:
    """`samples` requests one at a time: the seconds each reply took, and how many never came."""
    times, lost = [], 0
    for _ in range(samples):
        started = time.perf_counter()
        rig.send(frame)
        if rig.receive(REPLY_TIMEOUT) is None:
            lost += 1
        else:
            times.append(time.perf_counter() - started)
    _wait(lambda: handled() == samples, "late replies settled")
    while rig.receive(0):  # replies of requests counted as lost
        pass
    return times, lost


def _p50_p99_us(times: list[float]) -> tuple[float, float]:
    p99 = statistics.quantiles(times, n=100)[98] if len(times) >= 2 else (times[0] if times else 0.0)
    return (statistics.median(times) * 1e6 if times else 0.0), p99 * 1e6


def measure(samples: int, flood: int, progress: Callable[[str], None] = lambda _: None) -> PuntResult:
    frame = dhcp_discover(xid=1)
    with PuntRig("bpunt") as rig:
        def received() -> int:
            return rig.apps[0].received

        rig.set_limit(1_000_000, 1000)  # lifted: measure the path, not the limit
        progress("round trips")
        times, lost = _round_trips(rig, frame, samples, received)
        progress("flood, limit lifted")
        fast, seconds = _flood(rig, frame, flood, received)
        progress("flood, default limit")
        rig.set_limit(0, 0)  # back to the datapath's defaults,
        rig.pipeline.maps["punt_buckets"].delete(rig.port)  # for a port that has not punted yet
        limited, _ = _flood(rig, frame, flood, received)
    p50, p99 = _p50_p99_us(times)
    return PuntResult(
        round_trips=len(times), lost=lost, round_trip_us_p50=p50, round_trip_us_p99=p99,
        flood_sent=flood, flood_delivered=fast["DROP_PUNTED"], flood_queue_full=fast["DROP_PUNT_QUEUE_FULL"],
        flood_unseen=fast["unseen"],
        delivered_pps=fast["DROP_PUNTED"] / seconds,
        limit_packets_per_second=lib.PUNT_DEFAULT_PACKETS * 1000 // lib.PUNT_DEFAULT_INTERVAL_MS,
        limited_sent=flood, limited_admitted=limited["DROP_PUNTED"], limited_dropped=limited["DROP_PUNT_RATE"])


def _one_port_view(ifindex: int) -> LocalView:
    """The rig's port (VM_MAC) on a subnet with DHCP, and the subnet's DHCP port (SERVER_MAC)."""
    subnet = {"id": "s", "network_id": "n", "cidr": "10.0.0.0/24", "ip_version": 4, "gateway_ip": "10.0.0.1",
              "enable_dhcp": True, "dns_nameservers": [], "host_routes": []}
    ports = [{"id": "vm", "key": 7, "network_id": "n", "mac_address": VM_MAC, "device_owner": "compute:nova",
              "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}]},
             {"id": "dhcp", "key": 8, "network_id": "n", "mac_address": SERVER_MAC, "device_owner": "network:dhcp",
              "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.2"}]}]
    return LocalView(chassis="bench", tunnel_ip="198.18.0.1", networks={"n": {"id": "n", "key": 42, "mtu": 1450}},
                     subnets={"s": subnet}, ports={p["id"]: p for p in ports}, local_ports={"vm": ifindex})


def measure_dhcp(samples: int, flood: int, progress: Callable[[str], None] = lambda _: None) -> DhcpResult:
    frame = dhcp_discover(xid=1)
    app = DhcpApp()
    with PuntRig("bdhcp", apps=[app]) as rig:
        rig.service.view = _one_port_view(rig.port)
        rig.set_limit(1_000_000, 1000)

        def offers() -> int:
            return app.stats["offer"]

        progress("DISCOVER -> OFFER")
        times, lost = _round_trips(rig, frame, samples, offers)
        progress("DHCP flood")
        seen, seconds = _flood(rig, frame, flood, offers)
    p50, p99 = _p50_p99_us(times)
    return DhcpResult(discovers=len(times), lost=lost, offer_us_p50=p50, offer_us_p99=p99, flood_sent=flood,
                      flood_answered=seen["DROP_PUNTED"], answers_per_second=seen["DROP_PUNTED"] / seconds)
