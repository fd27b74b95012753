"""The DNS responder against dnsmasq (Neutron's per-network resolver), same names, one run.

- XDP: nanoseconds per answered query (A, PTR, NXDOMAIN) by BPF_PROG_TEST_RUN through the
  whole pipeline (entry, port security, security groups, stage_dns, ingress, output), the
  empty XDP_PASS program as the floor. One run per sample: with repeat > 1 the kernel would
  run again on the answer it just wrote, which is another path (a response is punted).
- dnsmasq: the same names as --host-record, loaded by dnsperf over loopback in a namespace
  of its own for a few seconds; CPU seconds dnsmasq spent (utime + stime from /proc) per
  completed query, and dnsperf's queries per second and mean latency.

CPU per answered query is the comparison that holds on a shared machine: both sides are
work done per query, not rates bounded by the generator."""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dfxdp.controller.apps import LocalView
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.datapath import libbpf
from dfxdp.datapath.pipeline import Pipeline, object_path
from dfxdp.datapath.pktrun import run_packet
from dfxdp.nb.dns import DEFAULT_DOMAIN, assignment
from dfxdp.testing.netns import Topology, ifindex, run, unique_suffix

NAMES = 1000                     # ports with a name in the bench network
VM_MAC, SERVER_MAC = "fa:16:3e:d0:00:01", "fa:16:3e:d0:00:02"
VM_IP, SERVER_IP = "10.99.0.5", "10.99.0.2"


@dataclass
class DnsResult:
    names: int
    floor_ns: float
    xdp_a_ns: float
    xdp_ptr_ns: float
    xdp_nxdomain_ns: float
    dnsmasq_queries: int
    dnsmasq_qps: float
    dnsmasq_latency_ms: float
    dnsmasq_cpu_ns_per_query: float
    ratio: float                 # dnsmasq CPU per query / XDP ns per A query


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


def _xdp(samples: int, progress: Callable[[str], None]) -> tuple[float, float, float, float]:
    name = f"dbd{unique_suffix()}"[:15]
    bpffs = f"/run/dfxdp/bench-{uuid.uuid4().hex[:8]}"
    libbpf.ensure_bpffs(bpffs)
    pipe = None
    try:
        run(["ip", "link", "add", name, "type", "veth", "peer", "name", name[:13] + "pr"])
        vm_if = ifindex(name)
        pipe = Pipeline(f"{bpffs}/chassis").load()
        result = build_datapath_control(pipe.maps).apply(world(vm_if))
        if result.errors:
            raise RuntimeError(f"programming the DNS bench failed: {result.errors[0]}")
        with libbpf.BpfObject(object_path("xdp_pass")).load() as floor:
            progress("xdp floor")
            prog = floor.programs["xdp_pass"]
            floor_ns = statistics.median(prog.test_run(bytes(Ether() / IP() / TCP())).duration_ns
                                         for _ in range(samples))
        entry = pipe.entry("port")
        costs = []
        reverse = ".".join(reversed(host_address(7).split("."))) + ".in-addr.arpa."
        for label, frame in (("A", _query_frame(f"host{NAMES // 2}.{DEFAULT_DOMAIN}")),
                             ("PTR", _query_frame(reverse, "PTR")),
                             ("NXDOMAIN", _query_frame(f"nosuch.{DEFAULT_DOMAIN}"))):
            progress(f"xdp {label}")
            first = run_packet(pipe, frame, ingress_ifindex=vm_if)
            if first.verdict != "XDP_REDIRECT":
                raise RuntimeError(f"DNS bench: the {label} query was not answered ({first.verdict})")
            costs.append(statistics.median(entry.test_run(frame, ingress_ifindex=vm_if).duration_ns
                                           for _ in range(samples)))
        return floor_ns, costs[0], costs[1], costs[2]
    finally:
        if pipe is not None:
            pipe.destroy()
        run(["ip", "link", "del", name], check=False)
        subprocess.run(["umount", "-l", bpffs], check=False)
        os.rmdir(bpffs)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _dnsmasq(seconds: float, progress: Callable[[str], None]) -> tuple[int, float, float, float]:
    with Topology("bdns") as topo, tempfile.TemporaryDirectory() as tmp:
        ns = topo.netns("dns")
        records = [f"--host-record=host{i}.{DEFAULT_DOMAIN.rstrip('.')},{host_address(i)}" for i in range(NAMES)]
        hosts = os.path.join(tmp, "dnsmasq.conf")
        with open(hosts, "w") as f:  # one option a line: a thousand would not fit a command line comfortably
            f.write("\n".join(r.removeprefix("--") for r in records) + "\n")
        proc = topo.popen(["dnsmasq", "--keep-in-foreground", f"--conf-file={hosts}", "--no-resolv", "--no-hosts",
                           "--user=root", "--pid-file=", "--listen-address=127.0.0.1", "--bind-interfaces",
                           "--local-ttl=60", "--cache-size=10000"], ns=ns,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while "10.99." not in run(["dig", "@127.0.0.1", "+short", "+tries=1", "+time=1",
                                   f"host1.{DEFAULT_DOMAIN}"], ns=ns, check=False).stdout:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("DNS bench: dnsmasq did not start")
            time.sleep(0.2)
        data = os.path.join(tmp, "queries")
        with open(data, "w") as f:
            f.write("".join(f"host{i}.{DEFAULT_DOMAIN} A\n" for i in range(NAMES)))
        progress("dnsmasq under dnsperf")
        before = _cpu_seconds(proc.pid)
        out = run(["dnsperf", "-s", "127.0.0.1", "-d", data, "-l", str(seconds), "-q", "50"], ns=ns,
                  timeout=seconds + 60).stdout
        cpu = _cpu_seconds(proc.pid) - before
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    latency = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1)) * 1000
    return completed, qps, latency, cpu * 1e9 / max(completed, 1)


def measure(samples: int, seconds: float, progress: Callable[[str], None] = lambda _: None) -> DnsResult:
    floor_ns, a_ns, ptr_ns, nx_ns = _xdp(samples, progress)
    queries, qps, latency, cpu_ns = _dnsmasq(seconds, progress)
    return DnsResult(NAMES, floor_ns, a_ns, ptr_ns, nx_ns, queries, qps, latency, cpu_ns,
                     cpu_ns / a_ns if a_ns else 0.0)


if __name__ == "__main__":  # `python -m dfxdp.bench.dns`: one run at the full sizes, as JSON
    import json
    from dataclasses import asdict

    print(json.dumps(asdict(measure(20000, 10, lambda label: print(label, flush=True))), indent=1))
