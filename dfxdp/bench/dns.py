"""The DNS responder against dnsmasq (Neutron's per-network resolver) and unbound, serving
the same names, in one run on one machine.

- CPU per answered query. XDP: nanoseconds per query (A, PTR, NXDOMAIN) through the whole
  pipeline (entry, port security, stage_dns, ingress, output), timed by the kernel with
  BPF_PROG_TEST_RUN and `repeat`: the answer is written in place, so each repetition runs
  behind bpf/trafficgen_replay.c, which puts the query back, and that replay's own cost
  (measured in front of the empty program with the same frame) is subtracted, as the
  datapath bench does. One run per sample is kept beside it (it carries the system call's
  timing overhead). Resolvers: CPU seconds the process spent (utime + stime from /proc)
  under dnsperf, over the queries it answered.
- Queries per second and latency: dnsperf in a VM namespace. XDP: the pipeline attached
  (native) to the VM's tap, dnsperf asking the network's DNS server address; the
  resolvers: in a namespace of their own behind a second veth of the VM. dnsperf's own
  ceiling: the same run against bpf/dns_reflect.c on the tap, which sends each query back
  as its own answer (nothing looked up).

CPU per answered query is the comparison that holds on a shared machine: both sides are
work done per query, not rates bounded by the generator (dnsperf and the responder share
the machine's cores)."""
from __future__ import annotations

import os
import pathlib
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dfxdp.controller.apps import LocalView
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.datapath import libbpf
from dfxdp.datapath.pipeline import Pipeline, default_bpffs, object_path
from dfxdp.datapath.pktrun import run_packet
from dfxdp.nb.dns import DEFAULT_DOMAIN, assignment
from dfxdp.testing.netns import Topology, ifindex, inside, run, unique_suffix

from .datapath import REPEAT, Replay, _samples

NAMES = 1000                     # ports with a name in the bench network
VM_MAC, SERVER_MAC = "fa:16:3e:d0:00:01", "fa:16:3e:d0:00:02"
VM_IP, SERVER_IP = "10.99.0.5", "10.99.0.2"
RESOLVER_NET = "10.98.0"         # the VM's second veth, to the resolvers' namespace
IN_FLIGHT = 50                   # dnsperf's outstanding queries
DOMAIN = DEFAULT_DOMAIN.rstrip(".")
STEPS = 8                        # progress steps of measure()


@dataclass
class LoadRun:
    """One responder under dnsperf from the VM namespace."""
    name: str                    # "xdp", "dnsmasq", "unbound", "dnsperf_ceiling"
    queries: int                 # completed
    lost: int
    qps: float
    latency_ms: float            # mean
    cpu_ns_per_query: float | None  # the resolver process's CPU; None where the kernel does the work


@dataclass
class DnsResult:
    names: int
    floor_ns: float              # the empty program, repeat
    replay_ns: float             # the replay's own cost with a query frame, subtracted below
    xdp_a_ns: float              # repeat behind the replay, replay cost subtracted
    xdp_ptr_ns: float
    xdp_nxdomain_ns: float
    floor_single_run_ns: float   # one run per sample: the system call's timing overhead included
    xdp_a_single_run_ns: float
    runs: list[LoadRun] = field(default_factory=list)
    ratio_dnsmasq: float = 0.0   # resolver CPU per query / XDP ns per A query
    ratio_unbound: float = 0.0


def host_address(i: int) -> str:
    return f"10.99.{1 + i // 250}.{1 + i % 250}"


def _port(pid: str, key: int, mac: str, ip: str, **extra) -> dict:
    port = {"id": pid, "key": key, "network_id": "n", "mac_address": mac, "binding:host_id": "ch1",
            "fixed_ips": [{"subnet_id": "s", "ip_address": ip}], "port_security_enabled": False,
            "security_groups": [], "allowed_address_pairs": [], "device_owner": "", "device_id": "", **extra}
    port["dns_assignment"] = assignment(port, DEFAULT_DOMAIN)
    return port


def world(vm_ifindex: int) -> LocalView:
    ports = [_port("vm", 1, VM_MAC, VM_IP, dns_name="vm"),
             _port("dhcp", 2, SERVER_MAC, SERVER_IP, device_owner="network:dhcp", **{"binding:host_id": ""})]
    ports += [_port(f"h{i}", 10 + i, "fa:16:3e:d1:%02x:%02x" % (i >> 8, i & 0xff), host_address(i),
                    dns_name=f"host{i}") for i in range(NAMES)]
    return LocalView(chassis="ch1", tunnel_ip="198.18.0.11", networks={"n": {"id": "n", "key": 99}},
                     subnets={"s": {"id": "s", "network_id": "n", "cidr": "10.99.0.0/16"}},
                     ports={p["id"]: p for p in ports}, local_ports={"vm": vm_ifindex})


def _query_frame(name: str, qtype: str = "A") -> bytes:
    return bytes(Ether(src=VM_MAC, dst=SERVER_MAC) / IP(src=VM_IP, dst=SERVER_IP) / UDP(sport=40000, dport=53) /
                 DNS(id=1, rd=1, qd=DNSQR(qname=name, qtype=qtype)))


def _program(pipe: Pipeline, vm_ifindex: int) -> None:
    result = build_datapath_control(pipe.maps).apply(world(vm_ifindex))
    if result.errors:
        raise RuntimeError(f"programming the DNS bench failed: {result.errors[0]}")


def _xdp_costs(samples: int, progress: Callable[[str], None]) -> dict[str, float]:
    """ns per query through the pipeline, by BPF_PROG_TEST_RUN (see the module's doc)."""
    name = f"dbd{unique_suffix()}"[:15]
    bpffs = f"/run/dfxdp/bench-{uuid.uuid4().hex[:8]}"
    libbpf.ensure_bpffs(bpffs)
    pipe = replay = None
    repeat_samples = max(100, samples // REPEAT * 10)
    try:
        run(["ip", "link", "add", name, "type", "veth", "peer", "name", name[:13] + "pr"])
        vm_if = ifindex(name)
        pipe = Pipeline(f"{bpffs}/chassis").load()
        _program(pipe, vm_if)
        replay = Replay()
        entry = pipe.entry("port")
        reverse = ".".join(reversed(host_address(7).split("."))) + ".in-addr.arpa."
        queries = {"A": _query_frame(f"host{NAMES // 2}.{DEFAULT_DOMAIN}"), "PTR": _query_frame(reverse, "PTR"),
                   "NXDOMAIN": _query_frame(f"nosuch.{DEFAULT_DOMAIN}")}
        with libbpf.BpfObject(object_path("xdp_pass")).load() as floor:
            progress("xdp floor")
            empty = floor.programs["xdp_pass"]
            costs = {"floor": statistics.median(_samples(empty, queries["A"], 0, repeat_samples, REPEAT)),
                     "floor_single_run": statistics.median(_samples(empty, queries["A"], 0, samples, 1))}
            replayed = _samples(replay.behind(empty, queries["A"], at_tail=True), queries["A"], 0, repeat_samples,
                                REPEAT)
            costs["replay"] = statistics.median(replayed) - costs["floor"]
        for label, frame in queries.items():
            progress(f"xdp {label}")
            first = run_packet(pipe, frame, ingress_ifindex=vm_if)
            again = replay.behind(entry, frame, at_tail=True).test_run(frame, ingress_ifindex=vm_if, repeat=3)
            if first.verdict != "XDP_REDIRECT" or again.action != "XDP_REDIRECT":
                raise RuntimeError(f"DNS bench: the {label} query was not answered ({first.verdict}, "
                                   f"replayed {again.action})")
            costs[label] = statistics.median(_samples(replay.prog, frame, vm_if, repeat_samples, REPEAT)) \
                - costs["replay"]
        costs["A_single_run"] = statistics.median(entry.test_run(queries["A"], ingress_ifindex=vm_if).duration_ns
                                                  for _ in range(samples))
        return costs
    finally:
        if replay is not None:
            replay.close()
        if pipe is not None:
            pipe.destroy()
        run(["ip", "link", "del", name], check=False)
        subprocess.run(["umount", "-l", bpffs], check=False)
        os.rmdir(bpffs)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _dnsperf(vm: str, server: str, data: str, seconds: float, name: str, pid: int | None = None) -> LoadRun:
    """dnsperf from `vm` against `server` for `seconds`; the CPU of process `pid` per query."""
    before = _cpu_seconds(pid) if pid else 0.0
    out = run(["dnsperf", "-s", server, "-d", data, "-l", str(seconds), "-q", str(IN_FLIGHT), "-t", "2"], ns=vm,
              timeout=seconds + 60).stdout
    cpu = _cpu_seconds(pid) - before if pid else None
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    latency = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1)) * 1000
    if completed == 0:
        raise RuntimeError(f"DNS bench: dnsperf got no answer from {name}:\n{out}")
    return LoadRun(name, completed, lost, qps, latency, cpu * 1e9 / completed if cpu is not None else None)


def _wait_answering(ns: str, server: str, proc: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + 30
    while "10.99." not in run(["dig", f"@{server}", "+short", "+tries=1", "+time=1", f"host1.{DOMAIN}"],
                              ns=ns, check=False).stdout:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"DNS bench: {name} did not start")
        time.sleep(0.2)


def _dnsmasq_command(tmp: str, address: str) -> list[str]:
    conf = os.path.join(tmp, "dnsmasq.conf")
    with open(conf, "w") as f:  # one option a line: a thousand would not fit a command line comfortably
        f.write("".join(f"host-record=host{i}.{DOMAIN},{host_address(i)}\n" for i in range(NAMES)))
    return ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--no-resolv", "--no-hosts", "--user=root",
            "--pid-file=", f"--listen-address={address}", "--bind-interfaces", "--local-ttl=60",
            "--cache-size=10000"]


def _unbound_command(tmp: str, address: str) -> list[str]:
    conf = os.path.join(tmp, "unbound.conf")
    records = "".join(f'  local-data: "host{i}.{DOMAIN}. 60 IN A {host_address(i)}"\n'
                      f'  local-data-ptr: "{host_address(i)} host{i}.{DOMAIN}."\n' for i in range(NAMES))
    with open(conf, "w") as f:  # one thread, no DNSSEC validation: the same job as dnsmasq's
        f.write(f"server:\n  interface: {address}\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n"
                f"  directory: \"{tmp}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n"
                f"  num-threads: 1\n  do-ip6: no\n  access-control: 0.0.0.0/0 allow\n"
                f"  module-config: \"iterator\"\n  local-zone: \"{DOMAIN}.\" static\n{records}"
                "remote-control:\n  control-enable: no\n")
    return ["unbound", "-d", "-c", conf]


def _load(seconds: float, progress: Callable[[str], None]) -> list[LoadRun]:
    """dnsperf from a VM namespace: the XDP responder, its ceiling, dnsmasq, unbound."""
    runs = []
    with Topology("bdns") as topo, tempfile.TemporaryDirectory() as tmp:
        chassis, vm, srv = topo.netns("ch"), topo.netns("vm"), topo.netns("srv")
        topo.veth("tapv", chassis, "eth0", vm, peer_mac=VM_MAC)
        topo.ip(vm, f"addr add {VM_IP}/16 dev eth0")
        topo.ip(vm, f"neigh replace {SERVER_IP} lladdr {SERVER_MAC} dev eth0")
        topo.veth("eth1", vm, "eth0", srv, vm_end=None)
        topo.ip(vm, f"addr add {RESOLVER_NET}.1/24 dev eth1")
        topo.ip(srv, f"addr add {RESOLVER_NET}.2/24 dev eth0")
        data = os.path.join(tmp, "queries")
        with open(data, "w") as f:
            f.write("".join(f"host{i}.{DOMAIN} A\n" for i in range(NAMES)))
        tap = ifindex("tapv", chassis)
        pipe = Pipeline(default_bpffs(f"bench-{topo.suffix}")).load()
        try:
            _program(pipe, tap)
            with inside(chassis):
                pipe.attach(tap, "port", "native")
            progress("xdp under dnsperf")
            runs.append(_dnsperf(vm, SERVER_IP, data, seconds, "xdp"))
            with libbpf.BpfObject(object_path("dns_reflect")).load() as reflect, inside(chassis):
                libbpf.xdp_attach(tap, reflect.programs["dns_reflect"], "native", replace=pipe.entry("port"))
                progress("dnsperf ceiling (reflector)")
                runs.append(_dnsperf(vm, SERVER_IP, data, seconds, "dnsperf_ceiling"))
        finally:
            pipe.destroy()  # the attached program goes with the tap, when the topology is removed
        for name, command in (("dnsmasq", _dnsmasq_command), ("unbound", _unbound_command)):
            proc = topo.popen(command(tmp, f"{RESOLVER_NET}.2"), ns=srv, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(tmp, f"{name}.log"), "ab"))
            _wait_answering(vm, f"{RESOLVER_NET}.2", proc, name)
            progress(f"{name} under dnsperf")
            runs.append(_dnsperf(vm, f"{RESOLVER_NET}.2", data, seconds, name, proc.pid))
            proc.terminate()
            proc.wait(10)
    return runs


def measure(samples: int, seconds: float, progress: Callable[[str], None] = lambda _: None) -> DnsResult:
    costs = _xdp_costs(samples, progress)
    runs = _load(seconds, progress)
    cpu = {r.name: r.cpu_ns_per_query for r in runs if r.cpu_ns_per_query is not None}
    return DnsResult(NAMES, costs["floor"], costs["replay"], costs["A"], costs["PTR"], costs["NXDOMAIN"],
                     costs["floor_single_run"], costs["A_single_run"], runs,
                     cpu["dnsmasq"] / costs["A"], cpu["unbound"] / costs["A"])


def summary(d: dict) -> list[str]:
    """The DNS part of summary.md, from its results.json entry."""
    runs = {r["name"]: r for r in d["runs"]}
    lines = ["## DNS: the XDP responder against dnsmasq and unbound (same names)", "",
             "| responder | CPU ns per answered query | how | queries/s (dnsperf) | mean latency | lost |",
             "|---|---:|---|---:|---:|---:|"]
    xdp = runs["xdp"]
    lines += [f"| XDP, A | {d['xdp_a_ns']:.0f} | BPF_PROG_TEST_RUN, whole pipeline | {xdp['qps']:,.0f} | "
              f"{xdp['latency_ms']:.3f} ms | {xdp['lost']:,} |",
              f"| XDP, PTR | {d['xdp_ptr_ns']:.0f} | same | | | |",
              f"| XDP, NXDOMAIN | {d['xdp_nxdomain_ns']:.0f} | same | | | |"]
    for name in ("dnsmasq", "unbound"):
        r = runs[name]
        lines.append(f"| {name} | {r['cpu_ns_per_query']:.0f} | its CPU time under dnsperf / answers | "
                     f"{r['qps']:,.0f} | {r['latency_ms']:.3f} ms | {r['lost']:,} |")
    ceiling = runs["dnsperf_ceiling"]
    lines.append(f"| dnsperf's ceiling (a reflector in XDP) | | | {ceiling['qps']:,.0f} | "
                 f"{ceiling['latency_ms']:.3f} ms | {ceiling['lost']:,} |")
    return lines + ["", f"{d['names']:,} names. XDP timed with repeat behind the replay (its {d['replay_ns']:.0f} ns "
                        f"subtracted; the empty program {d['floor_ns']:.0f} ns); one run per sample the A query "
                        f"costs {d['xdp_a_single_run_ns']:.0f} ns (the empty program {d['floor_single_run_ns']:.0f}). "
                        f"Per answered query dnsmasq spends {d['ratio_dnsmasq']:.1f}× the CPU of the XDP answer, "
                        f"unbound {d['ratio_unbound']:.1f}×. dnsperf runs in a VM namespace with {IN_FLIGHT} "
                        "queries in flight; the resolvers sit behind a second veth.", "", "![dns](dns.png)", ""]


def chart(out: pathlib.Path, d: dict) -> pathlib.Path:
    """dns.png: CPU per answered query, and dnsperf's rate and latency per responder."""
    from .report import _save, plt

    runs = {r["name"]: r for r in d["runs"]}
    fig, (cost, rate) = plt.subplots(1, 2, figsize=(10, 4))
    names = ["XDP A", "XDP PTR", "XDP NXDOMAIN", "dnsmasq", "unbound"]
    values = [d["xdp_a_ns"], d["xdp_ptr_ns"], d["xdp_nxdomain_ns"], runs["dnsmasq"]["cpu_ns_per_query"],
              runs["unbound"]["cpu_ns_per_query"]]
    cost.barh(names, values, color=["#2a7ab0"] * 3 + ["#999999"] * 2)
    for y, v in enumerate(values):
        cost.text(v, y, f" {v:.0f}", va="center", fontsize=8)
    cost.set_xlim(right=max(values) * 1.2)
    cost.set_xlabel("CPU ns per answered query")
    cost.set_title("cost per query")
    order = ["xdp", "dnsmasq", "unbound", "dnsperf_ceiling"]
    rate.bar(order, [runs[n]["qps"] for n in order], color=["#2a7ab0", "#999999", "#999999", "#dddddd"])
    for x, n in enumerate(order):
        rate.text(x, runs[n]["qps"], f"{runs[n]['latency_ms']:.3f} ms", ha="center", va="bottom", fontsize=8)
    rate.set_ylabel("queries per second (dnsperf); mean latency on top")
    rate.set_title("dnsperf from a VM namespace")
    return _save(fig, out / "dns.png")


if __name__ == "__main__":  # `python -m dfxdp.bench.dns`: one run at the full sizes, as JSON
    import json

    print(json.dumps(asdict(measure(20000, 10, lambda label: print(label, flush=True))), indent=1))
