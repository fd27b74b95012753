"""The bench's traffic generator and sink: frames sent by BPF_PROG_RUN in
live-frames mode (bpf/trafficgen.c) into a veth, counted where they arrive by
an XDP program that drops them (bpf/trafficsink.c).

The generator runs on one pinned CPU; the frames it redirects are taken by the
veth peer's NAPI on that same CPU, in the softirq that follows each batch, so
the router on the way and the sink run there too: generator, router and sink
share one core, and what arrives per second is what that core can carry
through the router. Sent frames a full veth ring refuses are not delivered:
rates are read at the sink only."""
from __future__ import annotations

import contextlib
import os
import pathlib
import time
from dataclasses import dataclass
from typing import Iterator

from dfxdp.datapath import libbpf
from dfxdp.datapath.pipeline import object_path
from dfxdp.testing.netns import ifindex, inside

FRAMES_PER_RUN = 1 << 16  # one BPF_PROG_RUN call; the Python loop costs nothing beside it
BATCH = 64                # frames per batch (the kernel's default): one veth flush each


@dataclass
class Rate:
    """What one generator run delivered. On a shared machine the wall-clock rate is
    the share of the core the run got times what the core can do; the rate per CPU
    second is what the core can do (the kernel charges the softirq work a system call
    triggers to the calling thread: this kernel has no IRQ time accounting)."""
    frames: int             # counted at the sink
    wall_seconds: float
    cpu_seconds: float      # generator thread (with the softirqs it ran) + ksoftirqd + helpers

    @property
    def pps(self) -> float:
        return self.frames / self.wall_seconds

    @property
    def pps_per_cpu(self) -> float:
        return self.frames / self.cpu_seconds if self.cpu_seconds else 0.0


def softirq_thread(cpu: int) -> int:
    """The pid of ksoftirqd/`cpu`: softirq work the kernel defers runs there."""
    for comm in pathlib.Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == f"ksoftirqd/{cpu}":
                return int(comm.parent.name)
    raise RuntimeError(f"no ksoftirqd/{cpu} thread")


def cpu_ns(pids: tuple[int, ...]) -> int:
    """CPU time of every thread of `pids` so far (scheduler ns, /proc/PID/task/TID/schedstat)."""
    total = 0
    for pid in pids:
        for stat in pathlib.Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError):  # a thread that just ended
                total += int(stat.read_text().split()[0])
    return total


class Sink:
    """The XDP-drop sink on `link` in `ns`, counting the generator's flows."""

    def __init__(self, ns: str | None, link: str):
        self.obj = libbpf.BpfObject(object_path("trafficsink")).load()
        with inside(ns):
            libbpf.xdp_attach(ifindex(link, ns), self.obj.programs["trafficsink"], "native")
        # detached with the link, when its namespace goes

    def delivered(self) -> int:
        return self.obj.maps["tg_delivered"].lookup_sum(0).get("packets", 0)

    def close(self) -> None:
        self.obj.close()


@contextlib.contextmanager
def sink(ns: str | None, link: str) -> Iterator[Sink]:
    counter = Sink(ns, link)
    try:
        yield counter
    finally:
        counter.close()


class Generator:
    """Sends `frame` (its Ethernet + IPv4 headers rewritten into every frame) into
    `link` of `ns`, whose peer receives it."""

    def __init__(self, ns: str | None, link: str, frame: bytes):
        if len(frame) < libbpf.lib.TG_HEADER_LEN:
            raise ValueError(f"a generator frame needs at least {libbpf.lib.TG_HEADER_LEN} bytes")
        self.ns, self.frame = ns, bytes(frame)
        self.obj = libbpf.BpfObject(object_path("trafficgen")).load()
        self.obj.maps["tg_config"].update(0, {"ifindex": ifindex(link, ns),
                                              "header": list(self.frame[:libbpf.lib.TG_HEADER_LEN])})

    def _run(self, frames: int) -> None:
        """One BPF_PROG_RUN of `frames` frames (call it inside self.ns: the redirect's ifindex is
        resolved in the caller's namespace)."""
        self.obj.programs["trafficgen"].test_run(self.frame, repeat=frames, live_frames=True, batch_size=BATCH)

    def send(self, count: int) -> None:
        """`count` frames, on this thread's CPU."""
        with inside(self.ns):
            for sent in range(0, count, FRAMES_PER_RUN):
                self._run(min(FRAMES_PER_RUN, count - sent))

    def rate(self, sink: Sink, seconds: float, cpu: int, helpers: tuple[int, ...] = ()) -> Rate:
        """Frames that reached `sink` while this thread, pinned to `cpu`, sent for
        `seconds`; with the CPU time this thread, the CPU's ksoftirqd and the `helpers`
        processes (a userspace router) spent meanwhile."""
        tasks = (*helpers, softirq_thread(cpu))
        saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            with inside(self.ns):
                self._run(BATCH)  # warm: ARP, caches
                before, others = sink.delivered(), cpu_ns(tasks)
                start, own = time.perf_counter(), time.thread_time_ns()
                while time.perf_counter() - start < seconds:
                    self._run(FRAMES_PER_RUN)
                wall, own = time.perf_counter() - start, time.thread_time_ns() - own
                others = cpu_ns(tasks) - others
                return Rate(sink.delivered() - before, wall, (own + others) / 1e9)
        finally:
            os.sched_setaffinity(0, saved)

    def close(self) -> None:
        self.obj.close()


@contextlib.contextmanager
def generator(ns: str | None, link: str, frame: bytes) -> Iterator[Generator]:
    gen = Generator(ns, link, frame)
    try:
        yield gen
    finally:
        gen.close()
