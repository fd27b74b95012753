"""The load balancer against its peers on this machine, in one run: requests and
packets per second through one VIP (10.1.0.100) over three members.

    dfxdp_xdp           the dfxdp pipeline on the taps: the LB stage picks a member from
                        the pool's Maglev ring at the client's chassis and DNATs (L4)
    iptables_statistic  Linux forwarding with kube-proxy's iptables rules: a nat chain
                        per service whose `-m statistic --mode random` rules pick a
                        member and DNAT it; conntrack reverse-NATs the answers
    haproxy             haproxy in TCP mode (roundrobin) on the router, listening on the
                        VIP: a proxy, two TCP connections per client connection

Client, router and server namespaces are the throughput bench's (dfxdp/bench/throughput.py);
the three members are three addresses of the server namespace, one nginx answering on
all of them. Requests per second: wrk, one thread, "Connection: close", so every request
is a new TCP connection, i.e. a new flow through the balancer; the frames the client's
link carried meanwhile give the request run's packets per second. Packets per second
of one established UDP flow through the VIP: the throughput bench's generator and sink
(frames per CPU second, and ns per packet over the generator alone); haproxy does not
balance UDP (a TCP/HTTP proxy), so it has no such figure.
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402

from dfxdp.controller.apps import LocalView  # noqa: E402
from dfxdp.datapath.libbpf import lib  # noqa: E402
from dfxdp.testing.netns import Topology, run, wait_listening  # noqa: E402

from . import throughput  # noqa: E402
from .datapath import A, RIF1, _port  # noqa: E402
from .trafficgen import generator, sink  # noqa: E402

VIP, VIP_MAC = "10.1.0.100", "fa:16:3e:b0:01:64"
MEMBERS = ("10.1.0.4", "10.1.0.5", "10.1.0.6")  # the server namespace's addresses (10.1.0.4: its own)
HTTP_PORT, MEMBER_HTTP_PORT = 80, 8080
UDP_PORT = lib.TG_PORT  # the generator's flow: VIP:TG_PORT → member:TG_PORT, what the sink counts
WRK_CONNECTIONS = 16
READY_TIMEOUT = 30


@dataclass
class LbPeer:
    name: str                           # "dfxdp_xdp", "iptables_statistic", "haproxy"
    requests_per_second: float          # wrk, a new TCP connection per request
    request_packets_per_second: float   # frames on the client's link (both ways) during the request run
    requests: int
    failed_requests: int                # socket errors and non-2xx answers
    udp_pps_per_cpu: float | None       # one established UDP flow through the VIP (None: haproxy)
    udp_ns_per_packet: float | None     # its cost per frame over the generator's own


def _with_vip(world: LocalView) -> None:
    """The throughput world plus a VIP on the server's network: an HTTP listener and a UDP
    one over the server port's three addresses (SOURCE_IP_PORT: Maglev)."""
    world.ports["c"]["fixed_ips"] = [{"subnet_id": "s-n2", "ip_address": address} for address in MEMBERS]
    world.ports["vip"] = _port("vip", 8, "n2", VIP_MAC, VIP, host="", owner="Octavia", device="lb")
    world.loadbalancers = {"lb": {"id": "lb", "key": 1, "vip_port_id": "vip", "vip_address": VIP,
                                  "vip_subnet_id": "s-n2", "admin_state_up": True}}
    world.listeners, world.pools, world.members = {}, {}, {}
    for key, (protocol, number, member_port) in enumerate((("TCP", HTTP_PORT, MEMBER_HTTP_PORT),
                                                          ("UDP", UDP_PORT, UDP_PORT)), start=1):
        pool = f"p{key}"
        world.listeners[f"l{key}"] = {"id": f"l{key}", "loadbalancer_id": "lb", "protocol": protocol,
                                      "protocol_port": number, "default_pool_id": pool, "admin_state_up": True}
        world.pools[pool] = {"id": pool, "key": key, "lb_algorithm": "SOURCE_IP_PORT", "protocol": protocol,
                             "admin_state_up": True}
        world.members.update({f"{pool}-m{i}": {"id": f"{pool}-m{i}", "key": 10 * key + i, "pool_id": pool,
                                               "address": address, "protocol_port": member_port, "weight": 1,
                                               "admin_state_up": True, "operating_status": "NO_MONITOR"}
                              for i, address in enumerate(MEMBERS)})


def _dfxdp(topo: Topology) -> ContextManager[throughput.Hosts]:
    return throughput.dfxdp_xdp(topo, filtered=(), extend=_with_vip)


def _kube_proxy_rules() -> str:
    """kube-proxy's shape: service chain → one endpoint chain per member, chosen by
    `statistic --mode random` with probability 1/remaining."""
    lines = ["*nat", ":PREROUTING ACCEPT", ":INPUT ACCEPT", ":OUTPUT ACCEPT", ":POSTROUTING ACCEPT"]
    for proto, port, member_port in (("tcp", HTTP_PORT, MEMBER_HTTP_PORT), ("udp", UDP_PORT, UDP_PORT)):
        service = f"SVC-{proto.upper()}"
        lines += [f":{service} -", f"-A PREROUTING -d {VIP}/32 -p {proto} --dport {port} -j {service}"]
        for i, address in enumerate(MEMBERS):
            endpoint = f"SEP-{proto.upper()}-{i}"
            left = len(MEMBERS) - i
            pick = f"-m statistic --mode random --probability {1 / left:.5f} " if left > 1 else ""
            lines += [f":{endpoint} -", f"-A {service} {pick}-j {endpoint}",
                      f"-A {endpoint} -p {proto} -j DNAT --to-destination {address}:{member_port}"]
    return "\n".join([*lines, "COMMIT", ""])


@contextlib.contextmanager
def _iptables(topo: Topology) -> Iterator[throughput.Hosts]:
    with throughput.kernel_iptables(topo, security_groups=False) as hosts:
        run(["iptables-restore"], ns=hosts.router, input=_kube_proxy_rules())
        yield hosts


HAPROXY_CONFIG = f"""global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend vip
    bind {VIP}:{HTTP_PORT}
    default_backend members
backend members
    balance roundrobin
""" + "".join(f"    server m{i} {address}:{MEMBER_HTTP_PORT}\n" for i, address in enumerate(MEMBERS))


@contextlib.contextmanager
def _haproxy(topo: Topology) -> Iterator[throughput.Hosts]:
    with throughput.kernel_iptables(topo, security_groups=False) as hosts, \
            tempfile.TemporaryDirectory(prefix="dfxdp-haproxy-") as tmp:
        router = hosts.router
        topo.ip(router, f"addr add {VIP}/32 dev lo")
        config = pathlib.Path(tmp) / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG)
        topo.popen(["haproxy", "-f", str(config), "-db"], ns=router, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
        wait_listening(router, HTTP_PORT)
        yield hosts


PEERS: dict[str, Callable[[Topology], ContextManager[throughput.Hosts]]] = {
    "dfxdp_xdp": _dfxdp, "iptables_statistic": _iptables, "haproxy": _haproxy}
UDP_PEERS = ("dfxdp_xdp", "iptables_statistic")  # the L4 balancers: frames, not connections


NGINX_CONFIG = """worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log stderr crit;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    server {{ listen {port} reuseport; location / {{ return 200 "member\\n"; }} }}
}}
"""


def _members(topo: Topology, hosts: throughput.Hosts, tmp: str) -> None:
    """The three member addresses on the server, one nginx answering on all of them."""
    for address in MEMBERS[1:]:
        topo.ip(hosts.server, f"addr add {address}/24 dev eth0")
    config = pathlib.Path(tmp) / "nginx.conf"
    config.write_text(NGINX_CONFIG.format(tmp=tmp, port=MEMBER_HTTP_PORT))
    topo.popen(["nginx", "-e", "stderr", "-p", tmp, "-c", str(config)], ns=hosts.server,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(hosts.server, MEMBER_HTTP_PORT)


def _wait_served(hosts: throughput.Hosts) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while run(["curl", "-s", "--max-time", "2", f"http://{VIP}:{HTTP_PORT}/"], ns=hosts.client,
              check=False).stdout != "member\n":
        if time.monotonic() > deadline:
            raise RuntimeError(f"the VIP never answered within {READY_TIMEOUT} s")
        time.sleep(0.1)


def _link_packets(ns: str) -> int:
    stats = json.loads(run(["ip", "-s", "-j", "link", "show", "dev", "eth0"], ns=ns).stdout)[0]["stats64"]
    return stats["rx"]["packets"] + stats["tx"]["packets"]


def parse_wrk(out: str) -> tuple[float, int, int]:
    """wrk's report → (requests per second, requests, failed requests)."""
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rate or not total:
        raise RuntimeError(f"wrk printed no result: {out.strip()[-300:]}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = (sum(int(n) for n in errors.groups()) if errors else 0) + (int(non_2xx.group(1)) if non_2xx else 0)
    return float(rate.group(1)), int(total.group(1)), failed


def _requests(hosts: throughput.Hosts, seconds: int) -> tuple[float, float, int, int]:
    before, start = _link_packets(hosts.client), time.perf_counter()
    out = run(["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "-H", "Connection: close",
               f"http://{VIP}:{HTTP_PORT}/"], ns=hosts.client, timeout=seconds + 60).stdout
    packets, wall = _link_packets(hosts.client) - before, time.perf_counter() - start
    rate, total, failed = parse_wrk(out)
    return rate, packets / wall, total, failed


def _udp_flow(topo: Topology, hosts: throughput.Hosts, seconds: float, runs: int) -> throughput.Throughput:
    """One UDP flow to VIP:TG_PORT from the generator, counted at the server's sink, beside
    the generator straight into a sink (gd0 → gd1), as the throughput bench does. Without a
    UDP checksum: the generator rewrites only the Ethernet and IPv4 headers of its recycled
    pages, so a checksum the balancer's NAT updated would be wrong for the next frame, and
    the kernel's conntrack would take it as invalid (never NATed)."""
    topo.veth("gd0", hosts.client, "gd1", hosts.client, vm_end="both")
    frame = Ether(src=A, dst=RIF1) / IP(src=throughput.CLIENT, dst=VIP) / \
        UDP(sport=throughput.CLIENT_PORT, dport=UDP_PORT, chksum=0)
    frame = bytes(frame / bytes(throughput.FRAME_BYTES - len(frame)))
    with sink(hosts.server, "eth0") as server_sink, sink(hosts.client, "gd1") as direct_sink, \
            generator(hosts.client, "eth0", frame) as through, generator(hosts.client, "gd0", frame) as direct:
        pairs = [(through.rate(server_sink, seconds, throughput.CPU, hosts.helpers),
                  direct.rate(direct_sink, seconds, throughput.CPU)) for _ in range(runs)]
    if not all(r.frames for r, _ in pairs):
        raise RuntimeError("no UDP frame reached a member through the VIP")
    return throughput._summary("udp_flow", "udp", False, pairs)


def measure(seconds: float, runs: int, progress: Callable[[str], None] = lambda _: None) -> list[LbPeer]:
    """Each peer in a fresh topology: requests per second for `seconds` (whole, at least 1),
    then, for the L4 balancers, `runs` runs of the UDP flow."""
    results = []
    for name, peer in PEERS.items():
        progress(f"through the VIP: {name}")

        def one() -> LbPeer:
            with Topology("lbvs") as topo, peer(topo) as hosts, \
                    tempfile.TemporaryDirectory(prefix="dfxdp-members-") as tmp:
                _members(topo, hosts, tmp)
                _wait_served(hosts)
                rate, pps, total, failed = _requests(hosts, max(1, round(seconds)))
                udp = _udp_flow(topo, hosts, seconds, runs) if name in UDP_PEERS else None
                return LbPeer(name, rate, pps, total, failed, udp.pps_per_cpu if udp else None,
                              udp.ns_per_packet if udp else None)
        results.append(throughput._attempts(name, one))
    return results


def chart(out: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    fig, (requests, frames) = plt.subplots(1, 2, figsize=(10, 4))
    names = [r["name"] for r in rows]
    bars = requests.bar(names, [r["requests_per_second"] for r in rows], color="#2a7ab0")
    requests.bar_label(bars, fmt="%.0f", fontsize=8)
    requests.set_ylabel("requests per second (a new TCP connection each)")
    requests.set_title("HTTP through the VIP (wrk → nginx)")
    udp = [r for r in rows if r["udp_pps_per_cpu"]]
    bars = frames.bar([r["name"] for r in udp], [r["udp_pps_per_cpu"] / 1e6 for r in udp], color="#5aa05a")
    frames.bar_label(bars, fmt="%.2f", fontsize=8)
    frames.set_ylabel("million frames per CPU second")
    frames.set_title("One UDP flow through the VIP (64-byte frames)")
    for ax in (requests, frames):
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    path = out / "lb_compare.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def section(rows: list[dict]) -> list[str]:
    lines = ["## Load balancer against haproxy and iptables `statistic` (same VIP, same members)", "",
             "| balancer | requests/s | packets/s in the request run | failed | UDP flow, frames per CPU s "
             "| UDP flow, ns/packet |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        udp = (f"{r['udp_pps_per_cpu']:,.0f} | {r['udp_ns_per_packet']:.0f}" if r["udp_pps_per_cpu"]
               else "— (no UDP: a TCP proxy) | —")
        lines.append(f"| {r['name']} | {r['requests_per_second']:,.0f} | {r['request_packets_per_second']:,.0f} | "
                     f"{r['failed_requests']} | {udp} |")
    return lines + ["", "wrk (one thread, 16 connections, `Connection: close`: a new flow per request) against "
                        "one nginx worker on the members; client, balancer and members share the machine's "
                        "cores, so a request rate is the whole path's. The UDP flow: the throughput bench's "
                        "generator and sink on one core.", "", "![lb_compare](lb_compare.png)", ""]
