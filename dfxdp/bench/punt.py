"""The punt path on a real veth (dfxdp/testing/punt.py): a VM's DHCP request up
through XDP and the ring buffer to an app in the agent's punt service, the
app's reply back to the VM.

- round trip: one request at a time, VM send -> VM receives the reply (p50/p99);
- rate: the VM floods requests (one Python socket, as fast as it can send)
  with the per-port limit lifted; what the app received per second, and what
  the datapath dropped because the ring was full;
- limit: the same flood under the default per-port limit: what the datapath
  admitted and what it dropped (DROP_PUNT_RATE) before the agent saw it.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

from dfxdp.datapath.libbpf import lib
from dfxdp.testing.punt import PuntRig, dhcp_discover

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


def _drops(rig: PuntRig) -> dict[str, int]:
    return {name: value["packets"] for name, value in rig.pipeline.counters()["drops"].items()}


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"punt bench: {what} within {DRAIN_TIMEOUT:.0f}s")
        time.sleep(0.001)


def _flood(rig: PuntRig, frame: bytes, count: int) -> tuple[dict[str, int], float]:
    """Send `count` frames; returns how the punt drop counters grew (plus "unseen": frames the
    veth dropped before XDP ran) once the datapath is done and every punted frame reached
    the app, and the seconds from the first send to then."""
    before, received = _drops(rig), rig.apps[0].received
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
    _wait(lambda: rig.apps[0].received - received == seen["DROP_PUNTED"], "the app got every punted frame")
    return {**seen, "unseen": count - sum(seen.values())}, time.monotonic() - started


def measure(samples: int, flood: int, progress: Callable[[str], None] = lambda _: None) -> PuntResult:
    frame = dhcp_discover(xid=1)
    with PuntRig("bpunt") as rig:
        rig.set_limit(1_000_000, 1000)  # lifted: measure the path, not the limit
        progress("round trips")
        times, lost = [], 0
        for _ in range(samples):
            started = time.perf_counter()
            rig.send(frame)
            if rig.receive(REPLY_TIMEOUT) is None:
                lost += 1
            else:
                times.append(time.perf_counter() - started)
        _wait(lambda: rig.apps[0].received == samples, "late replies settled")
        while rig.receive(0):  # replies of requests counted as lost
            pass
        progress("flood, limit lifted")
        fast, seconds = _flood(rig, frame, flood)
        progress("flood, default limit")
        rig.set_limit(0, 0)  # back to the datapath's defaults,
        rig.pipeline.maps["punt_buckets"].delete(rig.port)  # for a port that has not punted yet
        limited, _ = _flood(rig, frame, flood)
    p99 = statistics.quantiles(times, n=100)[98] if len(times) >= 2 else (times[0] if times else 0.0)
    return PuntResult(
        round_trips=len(times), lost=lost,
        round_trip_us_p50=statistics.median(times) * 1e6 if times else 0.0, round_trip_us_p99=p99 * 1e6,
        flood_sent=flood, flood_delivered=fast["DROP_PUNTED"], flood_queue_full=fast["DROP_PUNT_QUEUE_FULL"],
        flood_unseen=fast["unseen"],
        delivered_pps=fast["DROP_PUNTED"] / seconds,
        limit_packets_per_second=lib.PUNT_DEFAULT_PACKETS * 1000 // lib.PUNT_DEFAULT_INTERVAL_MS,
        limited_sent=flood, limited_admitted=limited["DROP_PUNTED"], limited_dropped=limited["DROP_PUNT_RATE"])
