"""The established-flow fast path's generation (bpf/lib/fastpath.h, docs/datapath.md).

A flow's cached forwarding is used only while `fast_gen` holds the generation read
before the stages decided it. Whoever changes a map such a decision depends on (the
reconciler, the conntrack upkeep ending flows, a hook plugged or removed, a new
pipeline going live) calls `invalidate` once the change is in: every cached decision
made before is stale from the next frame on, and the stages decide it again.

The new generation is the monotonic clock, not the old one + 1: writers in two
processes (the agent, `dfxdp hook`) may interleave their read and write, and a
value read from a clock after one's own change can never be one an older decision
holds, whichever write lands last. 0 turns the fast path off (nothing is used nor
recorded): a new map starts at 0, and the pipeline turns it on as it goes live.
"""
from __future__ import annotations

import os
import pathlib
import time
from typing import Mapping

from .libbpf import Map, ffi

GENERATION_MAP = "fast_gen"
STATS_MAP = "fast_stats"
OUTCOMES = {value: name for value, name in ffi.typeof("enum fast_stat").elements.items() if name != "FAST_STAT_MAX"}


def invalidate(maps: Mapping[str, Map]) -> None:
    """Every decision cached so far is stale; call after the change it must not outlive."""
    gen = maps.get(GENERATION_MAP)
    if gen is not None:
        gen.update(0, time.monotonic_ns())


def disable(maps: Mapping[str, Map]) -> None:
    """No frame takes the fast path (and none is recorded) until the next invalidate."""
    gen = maps.get(GENERATION_MAP)
    if gen is not None:
        gen.update(0, 0)


def stats(maps: Mapping[str, Map]) -> dict[str, dict[str, int]]:
    """Frames and bytes by what the fast path did (enum fast_stat), summed over CPUs."""
    m = maps.get(STATS_MAP)
    return {} if m is None else {name: m.lookup_sum(value) for value, name in sorted(OUTCOMES.items())}


def pinned_stats(bpffs_dir: str | os.PathLike) -> dict[str, dict[str, int]]:
    """`stats` of a running chassis, read from its pins."""
    m = Map.pinned(pathlib.Path(bpffs_dir) / "maps" / STATS_MAP)
    try:
        return stats({STATS_MAP: m})
    finally:
        m.close()
