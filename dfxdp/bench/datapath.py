"""Datapath cost: nanoseconds per packet of each path, timed by the kernel in
BPF_PROG_TEST_RUN, against an empty XDP_PASS program.

Each sample is one run (repeat=1): with a larger repeat the kernel runs the
program again on the frame the previous run rewrote (an encapsulated, a routed
frame), which would measure another path. The median of the samples is kept."""
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
from dfxdp.datapath import libbpf
from dfxdp.datapath.pipeline import Pipeline, object_path
from dfxdp.datapath.pktrun import run_packet
from dfxdp.testing.netns import ifindex, run, unique_suffix

A, B, R, RIF1, RIF2, C = ("fa:16:3e:b0:00:%02x" % i for i in (1, 2, 3, 0xa1, 0xa2, 4))
FIP_MAC, OUTSIDE = "fa:16:3e:b0:00:f1", "02:00:00:00:99:01"
SG_SIZES = (10, 1000, 10000)


@dataclass
class PathCost:
    name: str
    ns_per_packet: float
    verdict: str


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
        external_ifindex=ifs.get("ext", 0), external_mac="02:00:00:00:00:03")


def program(pipe: Pipeline, v: LocalView) -> None:
    result = build_datapath_control(pipe.maps).apply(v)
    if result.errors:
        raise RuntimeError(f"programming the bench world failed: {result.errors[0]}")


def _median_ns(prog, frame: bytes, ingress: int, samples: int) -> float:
    return statistics.median(prog.test_run(frame, ingress_ifindex=ingress).duration_ns for _ in range(samples))


def _path(pipe: Pipeline, name: str, frame, ingress: int, samples: int) -> PathCost:
    first = run_packet(pipe, frame, ingress_ifindex=ingress)  # the verdict, checked once with counters
    return PathCost(name, _median_ns(pipe.entry("port"), bytes(frame), ingress, samples), first.verdict)


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
    """The empty XDP_PASS program's cost: what every path is compared with."""
    with libbpf.BpfObject(object_path("xdp_pass")).load() as floor:
        return _median_ns(floor.programs["xdp_pass"], bytes(Ether() / IP() / TCP()), 0, samples)


def measure(samples: int, progress: Callable[[str], None] = lambda _: None) -> list[PathCost]:
    """Every path's cost on this machine, the floor first."""
    with bench_pipeline(("a", "b", "c", "und", "ext")) as (pipe, ifs):
        progress("floor (empty XDP_PASS)")
        results = [PathCost("floor", floor_ns(samples), "XDP_PASS")]
        program(pipe, view(ifs))
        paths = {
            "l2_local": (ifs["a"], Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP()),
            "l2_remote": (ifs["a"], Ether(src=A, dst=R) / IP(src="10.0.0.1", dst="10.0.0.3") / TCP()),
            "l3_routed": (ifs["a"], Ether(src=A, dst=RIF1) / IP(src="10.0.0.1", dst="10.1.0.4") / TCP()),
            "fip_dnat": (ifs["ext"], Ether(src=OUTSIDE, dst=FIP_MAC) / IP(src="198.19.0.9", dst="198.19.0.20") / TCP()),
        }
        for name, (ingress, frame) in paths.items():
            progress(name)
            results.append(_path(pipe, name, frame, ingress, samples))
        for n in SG_SIZES:
            progress(f"security groups, {n} rules")
            program(pipe, view(ifs, rules=n))
            # allowed by no rule: every repetition walks the whole policy lookup, then is denied
            frame = Ether(src=A, dst=B) / IP(src="11.0.0.9", dst="10.0.0.2") / TCP(dport=65000, flags="S")
            results.append(_path(pipe, f"sg_{n}_rules", frame, ifs["a"], samples))
        return results
