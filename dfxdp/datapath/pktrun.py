"""Run one packet through a loaded pipeline with BPF_PROG_TEST_RUN.

Used by the tests (every datapath branch), by `dfxdp trace` and by the bench.
A test run executes the program on the calling CPU and never transmits: a
redirect only reports where the frame would go. It does touch the pipeline's
state the way a real frame would: counters, and per-CPU scratch metadata.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .libbpf import to_dict
from .pipeline import DROP_REASONS, STAGE_STATS, Pipeline


@dataclass
class PacketRun:
    verdict: str                 # XDP_PASS, XDP_DROP, XDP_TX, XDP_REDIRECT, XDP_ABORTED
    data: bytes                  # the frame as the program left it
    meta: dict                   # struct pkt_meta as the last stage left it
    counters: dict = field(default_factory=dict)  # what this run added to the counters
    duration_ns: int = 0

    @property
    def packet(self):
        """The output frame parsed by scapy (Ether)."""
        from scapy.layers.l2 import Ether

        return Ether(self.data)

    @property
    def stages(self) -> list[str]:
        """Stages the frame entered, entries first, in pipeline order."""
        seen = self.meta.get("stages_seen", 0)
        return [name for name, bit in STAGE_STATS.items() if seen & (1 << bit)]

    @property
    def drop_reason(self) -> str | None:
        if self.verdict not in ("XDP_DROP", "XDP_ABORTED"):
            return None
        by_value = {v: k for k, v in DROP_REASONS.items()}
        return by_value.get(self.meta.get("drop_reason", 0), "unknown")


def _delta(before: dict, after: dict) -> dict:
    out: dict = {}
    for table, rows in after.items():
        for name, values in rows.items():
            diff = {k: v - before[table][name].get(k, 0) for k, v in values.items()}
            if any(diff.values()):
                out.setdefault(table, {})[name] = diff
    return out


def run_packet(pipeline: Pipeline, frame, ingress_ifindex: int = 0, entry: str = "port",
               repeat: int = 1) -> PacketRun:
    """Send `frame` (scapy packet or bytes) into the `entry` program of `pipeline`."""
    data = bytes(frame)
    prog = pipeline.entry(entry)
    # Pin to one CPU so the per-CPU metadata slot we read afterwards is the one the run used.
    saved = os.sched_getaffinity(0)
    cpu = min(saved)
    os.sched_setaffinity(0, {cpu})
    try:
        before = pipeline.counters()
        result = prog.test_run(data, ingress_ifindex=ingress_ifindex, repeat=repeat)
        after = pipeline.counters()
        meta = pipeline.maps["pkt_scratch"].lookup(0)[cpu]
    finally:
        os.sched_setaffinity(0, saved)
    return PacketRun(result.action, result.data_out, to_dict(meta), _delta(before, after), result.duration_ns)
