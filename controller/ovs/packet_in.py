"""A per-port limit on what flows send to the controller (packet-ins).

The XDP punt path drops a port's excess in the datapath (`punt_limit`); a flow's
`to_controller()` has no such guard in OVS's userspace datapath, so a VM sending IGMP
(or any frame a flow hands up) as fast as it can would make the agent parse it about as
fast as OVS delivers it. A token bucket per input port, checked before any app reads
the frame, bounds that work: each port gets `rate` packet-ins a second with bursts of
`burst`; the excess is dropped here and counted.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

DEFAULT_RATE = 100.0  # packet-ins per second per port: the XDP punt path's default limit
DEFAULT_BURST = 100.0


class PacketInLimiter:
    def __init__(self, rate: float = DEFAULT_RATE, burst: float = DEFAULT_BURST,
                 clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError(f"packet-in limit needs rate > 0 and burst >= 1, not {rate}/{burst}")
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[int, tuple[float, float]] = {}  # in_port -> (tokens, when last filled)
        self._lock = threading.Lock()

    def allow(self, port: int) -> bool:
        """Take one token from `port`'s bucket; False when it is empty (drop the packet-in)."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(port, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            allowed = tokens >= 1
            self._buckets[port] = (tokens - 1 if allowed else tokens, now)
            return allowed

    def forget(self, keep: set[int]) -> None:
        """Drop the buckets of ports that are gone (their numbers may be reused)."""
        with self._lock:
            self._buckets = {p: b for p, b in self._buckets.items() if p in keep}
