"""Datapath cost: nanoseconds per packet of each path, timed by the kernel in
BPF_PROG_TEST_RUN.

Every path is timed with `repeat`: the kernel runs it REPEAT times per sample and
reports the mean, which leaves out the timing overhead of one run per sample (an
empty program: 5-6 ns a run with repeat, 40-110 ns one run per sample; that figure
is kept as floor_single_run). A path whose program leaves the frame as it was (a
drop, an L2 redirect) is repeated as it is. A path that rewrites the frame
(routing, encapsulation, NAT) would meet its own output on the next repetition,
another path: it runs behind bpf/trafficgen_replay.c, which puts the frame back
and tail-calls the pipeline, and that program's own cost, measured in front of an
empty program, is subtracted.
Each path keeps the median of its samples and its tail: the p99 where there are
at least TAIL_SAMPLES samples, else the maximum, called so."""
from __future__ import annotations

import ipaddress
import os
import statistics
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from dfxdp.controller.apps import LocalView
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.datapath import fastpath, libbpf
from dfxdp.datapath.pipeline import Pipeline, object_path
from dfxdp.datapath.pktrun import run_packet
from dfxdp.testing.netns import ifindex, run, unique_suffix

A, B, R, RIF1, RIF2, C = ("fa:16:3e:b0:00:%02x" % i for i in (1, 2, 3, 0xa1, 0xa2, 4))
FIP_MAC, OUTSIDE = "fa:16:3e:b0:00:f1", "02:00:00:00:99:01"
SG_SIZES = (10, 1000, 10000)


REPEAT = 1000          # runs per sample of a path that leaves the frame unchanged
ROUNDS = 10            # a path's fast and stage-chain samples alternate in this many rounds
TAIL_SAMPLES = 100     # fewer samples than this have no p99: their tail is the maximum


@dataclass
class PathCost:
    name: str
    ns_per_packet: float   # median, timing overhead excluded
    verdict: str
    method: str            # "repeat" or "single run − overhead"
    samples: int
    tail: str              # "p99" or "max"
    tail_ns: float


def _cost(name: str, verdict: str, method: str, values: list[float]) -> PathCost:
    ordered = sorted(values)
    tail = "p99" if len(ordered) >= TAIL_SAMPLES else "max"
    tail_ns = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if tail == "p99" else ordered[-1]
    return PathCost(name, statistics.median(ordered), verdict, method, len(ordered), tail, tail_ns)


def _port(pid, key, net, mac, ip, host="ch1", owner="", device=""):
    return {"id": pid, "key": key, "network_id": net, "mac_address": mac, "binding:host_id": host,
            "fixed_ips": [{"subnet_id": f"s-{net}", "ip_address": ip}], "port_security_enabled": False,
            "security_groups": [], "allowed_address_pairs": [], "device_owner": owner, "device_id": device}


def sg_rule(rid: str, direction: str, protocol: str | None = None, ports: tuple[int, int] | None = None,
            remote: str | None = None) -> dict:
    """One IPv4 rule of the bench's security group."""
    return {"id": rid, "security_group_id": "bench", "direction": direction, "ethertype": "IPv4",
            "protocol": protocol, "port_range_min": ports[0] if ports else None,
            "port_range_max": ports[1] if ports else None, "remote_ip_prefix": remote, "remote_group_id": None}


def sg_rules(n: int) -> dict[str, dict]:
    """n TCP rules, each from its own /24 to a port range: the worst case is a packet none allows."""
    rules = {}
    for i in range(n):
        net = ipaddress.ip_network((0x0B000000 + (i << 8), 24))  # 11.x.y.0/24
        lo = 1000 + (i * 7) % 50000
        rules[f"r{i}"] = sg_rule(f"r{i}", "ingress", "tcp", (lo, lo + 100), str(net))
    rules["out"] = sg_rule("out", "egress")
    return rules


# the routed hop's destination port (c): TCP to port 80 in from the client's network, anything out
ROUTED_POLICY = {"web": sg_rule("web", "ingress", "tcp", (80, 80), "10.0.0.0/24"), "out": sg_rule("out", "egress")}


def view(ifs: dict[str, int], rules: int = 0, policy: dict[str, dict] | None = None,
         filtered: str = "b") -> LocalView:
    """The bench world. Ports a, b, c (and the underlay and external NICs) are local when `ifs` names
    their interface. The `filtered` port is in the group "bench", whose rules are `policy` (else
    sg_rules(rules)); its port security is on when the group has rules."""
    if policy is None:
        policy = sg_rules(rules) if rules else {}
    nets = {"n1": {"id": "n1", "key": 1}, "n2": {"id": "n2", "key": 2},
            "ext": {"id": "ext", "key": 3, "router:external": True}}
    ports = [_port("a", 1, "n1", A, "10.0.0.1"), _port("b", 2, "n1", B, "10.0.0.2"),
             _port("r", 3, "n1", R, "10.0.0.3", host="ch2"), _port("c", 4, "n2", C, "10.1.0.4"),
             _port("rif1", 5, "n1", RIF1, "10.0.0.254", host="", owner="network:router_interface", device="rt"),
             _port("rif2", 6, "n2", RIF2, "10.1.0.254", host="", owner="network:router_interface", device="rt"),
             _port("fip-port", 7, "ext", FIP_MAC, "198.19.0.20", host="", owner="network:floatingip", device="f")]
    next(p for p in ports if p["id"] == filtered).update(security_groups=["bench"], port_security_enabled=bool(policy))
    return LocalView(
        chassis="ch1", tunnel_ip="198.18.0.11", networks=nets, ports={p["id"]: p for p in ports},
        subnets={"s-n1": {"id": "s-n1", "cidr": "10.0.0.0/24"}, "s-n2": {"id": "s-n2", "cidr": "10.1.0.0/24"},
                 "s-ext": {"id": "s-ext", "cidr": "198.19.0.0/24"}},
        routers={"rt": {"id": "rt", "key": 9, "routes": []}},
        floatingips={"f": {"id": "f", "floating_ip_address": "198.19.0.20", "floating_network_id": "ext",
                           "port_id": "c", "fixed_ip_address": "10.1.0.4", "router_id": "rt"}},
        security_group_rules=policy,
        chassis_by_name={"ch2": {"tunnel_ip": "198.18.0.12"}},
        local_ports={p: ifs[p] for p in ("a", "b", "c") if p in ifs}, underlay_ifindex=ifs.get("und", 0),
        underlay_mac="02:00:00:00:00:01", underlay_neighbors={"198.18.0.12": "02:00:00:00:00:02"},
        bridges={"provider": (ifs["ext"], "02:00:00:00:00:03")} if "ext" in ifs else {})


def program(pipe: Pipeline, v: LocalView) -> None:
    result = build_datapath_control(pipe.maps).apply(v)
    if result.errors:
        raise RuntimeError(f"programming the bench world failed: {result.errors[0]}")


def _samples(prog, frame: bytes, ingress: int, samples: int, repeat: int) -> list[float]:
    """Kernel-timed ns per run, one value per sample of `repeat` runs."""
    return [prog.test_run(frame, ingress_ifindex=ingress, repeat=repeat).duration_ns for _ in range(samples)]


class Replay:
    """bpf/trafficgen_replay.c: a frame put back before every run of the program behind it."""

    def __init__(self):
        self.obj = libbpf.BpfObject(object_path("trafficgen_replay")).load()
        self.prog = self.obj.programs["trafficgen_replay"]

    def behind(self, prog, frame: bytes, at_tail: bool = False):
        """The replay in front of `prog`, putting `frame` back; `at_tail`: prog grows the frame at its end."""
        libbpf.prog_array_set(self.obj.maps["tg_replay_next"], 0, prog)
        self.obj.maps["tg_replay_frame"].update(0, {"len": len(frame), "at_tail": int(at_tail),
                                                    "frame": list(frame.ljust(libbpf.lib.TG_REPLAY_MAX, b"\0"))})
        return self.prog

    def close(self) -> None:
        self.obj.close()


def replay_frame(frame) -> bytes:
    """A bench frame padded to the replay's fixed length (Ethernet padding: IP ignores it)."""
    data = bytes(frame)
    if len(data) > libbpf.lib.TG_REPLAY_LEN:
        raise ValueError(f"a replayed frame has at most {libbpf.lib.TG_REPLAY_LEN} bytes")
    return data + bytes(libbpf.lib.TG_REPLAY_LEN - len(data))


@dataclass
class Timer:
    """Times paths; knows what one run per sample and the replay add on this machine."""
    samples: int
    replay: Replay
    replay_ns: float = 0.0     # the replay program's own cost per run

    def repeat_samples(self) -> int:
        return max(TAIL_SAMPLES, self.samples // REPEAT * 10)  # each sample is REPEAT runs

    def floor(self, prog) -> list[PathCost]:
        """The empty program with `repeat`, one run per sample, and behind the replay."""
        frame = replay_frame(Ether() / IP() / TCP())
        repeated = _cost("floor", "XDP_PASS", "repeat", _samples(prog, frame, 0, self.repeat_samples(), REPEAT))
        single = _cost("floor_single_run", "XDP_PASS", "single run",
                       _samples(prog, frame, 0, self.samples, 1))
        replayed = _samples(self.replay.behind(prog, frame), frame, 0, self.repeat_samples(), REPEAT)
        self.replay_ns = statistics.median(replayed) - repeated.ns_per_packet
        return [repeated, single, _cost("floor_replayed", "XDP_PASS", "replay", replayed)]

    def _sampler(self, pipe: Pipeline, name: str, data: bytes, ingress: int) -> tuple[str, str, Callable[[int], list[float]]]:
        """(verdict, method, samples(n)) of one path as the pipeline takes it now."""
        first = run_packet(pipe, data, ingress_ifindex=ingress)  # the verdict, checked once with counters
        prog = pipe.entry("port")
        if first.data[:len(data)] == data:  # unchanged: every repetition takes the same path
            return first.verdict, "repeat", lambda n: _samples(prog, data, ingress, n, REPEAT)
        replayed = self.replay.behind(prog, data)
        verdict = replayed.test_run(data, ingress_ifindex=ingress, repeat=2).action
        if verdict != first.verdict:
            raise RuntimeError(f"datapath bench, {name}: {first.verdict} once, {verdict} replayed")
        return first.verdict, "replay − replay cost", \
            lambda n: [ns - self.replay_ns for ns in _samples(self.replay.behind(prog, data), data, ingress, n, REPEAT)]

    def path(self, pipe: Pipeline, name: str, frame, ingress: int) -> PathCost:
        verdict, method, samples = self._sampler(pipe, name, replay_frame(frame), ingress)
        return _cost(name, verdict, method, samples(self.repeat_samples()))

    def established(self, pipe: Pipeline, name: str, frame, ingress: int) -> list[PathCost]:
        """A frame of an established flow two ways, sampled in alternation (ROUNDS rounds, so a
        change in the machine's load falls on both): `name`, as the pipeline forwards it (the
        fast path, from the flow's cached decision), and `name`_stages, through the stage chain
        (the fast path off: what every frame took before it)."""
        data = replay_frame(frame)
        modes = {name: fastpath.invalidate, f"{name}_stages": fastpath.disable}
        samplers = {}
        for mode, switch in modes.items():
            switch(pipe.maps)
            run_packet(pipe, data, ingress_ifindex=ingress)  # the fast path records the flow
            took = run_packet(pipe, data, ingress_ifindex=ingress)
            if bool(took.meta["flags"] & libbpf.lib.PKT_F_FAST) != (switch is fastpath.invalidate):
                raise RuntimeError(f"datapath bench, {mode}: the fast path was {'not ' * (switch is fastpath.invalidate)}"
                                   f"taken")
            samplers[mode] = self._sampler(pipe, mode, data, ingress)
        per_round = max(1, self.repeat_samples() // ROUNDS)
        values: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(ROUNDS):
            for mode, switch in modes.items():
                switch(pipe.maps)
                values[mode] += samplers[mode][2](per_round)
        fastpath.invalidate(pipe.maps)
        return [_cost(mode, samplers[mode][0], samplers[mode][1], values[mode]) for mode in modes]


@contextmanager
def bench_pipeline(interfaces: tuple[str, ...]) -> Iterator[tuple[Pipeline, dict[str, int]]]:
    """A pipeline loaded on a private bpffs, with a throwaway veth per name in `interfaces`
    (their ifindexes by name); everything removed afterwards."""
    suffix = unique_suffix()
    names = {k: f"db{k[:2]}{suffix}"[:15] for k in interfaces}
    bpffs = f"/run/dfxdp/bench-{uuid.uuid4().hex[:8]}"
    libbpf.ensure_bpffs(bpffs)
    pipe = None
    try:
        for name in names.values():
            run(["ip", "link", "add", name, "type", "veth", "peer", "name", name[:13] + "pr"])
        pipe = Pipeline(f"{bpffs}/chassis").load()
        yield pipe, {k: ifindex(n) for k, n in names.items()}
    finally:
        if pipe is not None:
            pipe.destroy()
        for name in names.values():
            run(["ip", "link", "del", name], check=False)
        subprocess.run(["umount", "-l", bpffs], check=False)
        os.rmdir(bpffs)


def floor_ns(samples: int) -> float:
    """The empty XDP_PASS program timed one run per sample: the floor of paths that are
    themselves timed one run per sample (those that change state on every run)."""
    with libbpf.BpfObject(object_path("xdp_pass")).load() as floor:
        return statistics.median(_samples(floor.programs["xdp_pass"], bytes(Ether() / IP() / TCP()), 0, samples, 1))


def measure(samples: int, progress: Callable[[str], None] = lambda _: None) -> list[PathCost]:
    """Every path's cost on this machine, the floor first."""
    replay = Replay()
    try:
        with bench_pipeline(("a", "b", "c", "und", "ext")) as (pipe, ifs):
            timer = Timer(samples, replay)
            with libbpf.BpfObject(object_path("xdp_pass")).load() as floor:
                progress("floor (empty XDP_PASS)")
                results = timer.floor(floor.programs["xdp_pass"])
            program(pipe, view(ifs))
            segment = TCP(sport=40000, dport=80, flags="A")  # a frame of an established flow: what nearly all are
            paths = {
                "l2_local": (ifs["a"], Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / segment),
                "l2_remote": (ifs["a"], Ether(src=A, dst=R) / IP(src="10.0.0.1", dst="10.0.0.3") / segment),
                "l3_routed": (ifs["a"], Ether(src=A, dst=RIF1) / IP(src="10.0.0.1", dst="10.1.0.4") / segment),
                "fip_dnat": (ifs["ext"], Ether(src=OUTSIDE, dst=FIP_MAC) / IP(src="198.19.0.9", dst="198.19.0.20")
                             / segment),
            }
            for name, (ingress, frame) in paths.items():
                progress(name)
                results += timer.established(pipe, name, frame, ingress)
            progress("routed hop with security groups")
            program(pipe, view(ifs, policy=ROUTED_POLICY, filtered="c"))
            routed = Ether(src=A, dst=RIF1) / IP(src="10.0.0.1", dst="10.1.0.4")
            back = Ether(src=C, dst=RIF2) / IP(src="10.1.0.4", dst="10.0.0.1")
            for ingress, opening in ((ifs["a"], routed / TCP(sport=40000, dport=80, flags="S")),
                                     (ifs["c"], back / TCP(sport=80, dport=40000, flags="SA"))):
                if run_packet(pipe, opening, ingress_ifindex=ingress).verdict != "XDP_REDIRECT":
                    raise RuntimeError("datapath bench: the routed hop's handshake did not go through")
            results += timer.established(pipe, "l3_routed_sg", routed / segment, ifs["a"])
            for n in SG_SIZES:
                progress(f"security groups, {n} rules")
                program(pipe, view(ifs, rules=n))
                # allowed by no rule: every repetition walks the whole policy lookup, then is denied
                frame = Ether(src=A, dst=B) / IP(src="11.0.0.9", dst="10.0.0.2") / TCP(dport=65000, flags="S")
                results.append(timer.path(pipe, f"sg_{n}_rules", frame, ifs["a"]))
            return results
    finally:
        replay.close()
