"""End to end: packets per second through three routers on this machine, from a
traffic generator that is not the bottleneck (dfxdp/bench/trafficgen.py: BPF_PROG_RUN
in live-frames mode into the client's veth, an XDP sink counting and dropping on the
server's), and TCP bits per second through dfxdp with iperf3.

    dfxdp_xdp        the dfxdp pipeline in native XDP on the taps, programmed by the
                     agent's apps and reconciler (router; with security groups, a
                     stateful group on the server port)
    dfxdp_xdp_stages the same with the established-flow fast path off: every frame
                     through the stage chain
    kernel_iptables  Linux forwarding; with security groups, an iptables conntrack
                     FORWARD chain (what Neutron's L3 agent and iptables firewall driver do)
    ovs_userspace    Open vSwitch's userspace datapath, OpenFlow routing; with security
                     groups, through ct() (what the OVS firewall driver does)

Every router routes 10.0.0.0/24 (client 10.0.0.1) and 10.1.0.0/24 (server
10.1.0.4); with security groups it lets new flows reach the server only on the
bench's ports from 10.0.0.0/8, lets the server open any flow, and passes
established ones. Each router is measured with and without security groups, with
UDP and with TCP frames: the TCP frames are data segments of a flow whose
three-way handshake was sent through the router first (a stateful group drops a
segment of a flow it never saw open), from raw sockets on both hosts' links.
Each run also measures the generator straight into a sink (a veth pair beside the
router): a router's cost is 1/pps − 1/pps(generator → sink) of the same run.

Then TCP bits per second through the dfxdp router twice: with port security off
on both ports, and with both ports in a stateful security group. Their ratio is
what conntrack costs a TCP flow; a conntrack that loses established flows shows
as a collapse of it.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import pathlib
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterator

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dfxdp.controller.apps import LocalView
from dfxdp.datapath import fastpath, libbpf
from dfxdp.datapath.pipeline import Pipeline, default_bpffs
from dfxdp.testing.netns import Topology, ifindex, inside, run
from dfxdp.testing.ovs import OvsServer

from .datapath import A, C, RIF1, RIF2, program, sg_rule, view
from .trafficgen import Rate, generator, sink

CLIENT, CLIENT_GW, CLIENT_NET = "10.0.0.1", "10.0.0.254", "10.0.0.0/24"
SERVER, SERVER_GW, SERVER_NET = "10.1.0.4", "10.1.0.254", "10.1.0.0/24"
ALLOWED_SOURCES = "10.0.0.0/8"
SERVER_PORT = libbpf.lib.TG_PORT       # the generator's flows, iperf3's TCP runs
ALLOWED_PROTOCOLS = ("udp", "tcp")
CLIENT_PORT = 40000                    # the generator's flow: one flow, one thread
FRAME_BYTES = 64                       # Ethernet frame without FCS, both protocols
CPU = 0                                # generator, router and sink share this core
TCP_STREAMS = 2
READY_TIMEOUT = 30
ATTEMPTS = 3              # runs of one router before the bench gives up on it
CLIENT_ISN, SERVER_ISN = 1000, 5000    # the handshake's sequence numbers

# dfxdp's security group on the server port; the other routers' rules say the same.
SERVER_POLICY = {proto: sg_rule(proto, "ingress", proto, (SERVER_PORT, SERVER_PORT), ALLOWED_SOURCES)
                 for proto in ALLOWED_PROTOCOLS} | {"out": sg_rule("out", "egress")}
# The TCP runs' group, Neutron's default: anything from the group's members in, anything out.
DEFAULT_GROUP = {"members": {**sg_rule("members", "ingress"), "remote_group_id": "bench"},
                 "out": sg_rule("out", "egress")}


@dataclass
class Throughput:
    name: str                # "dfxdp_xdp", "kernel_iptables", "ovs_userspace"
    protocol: str            # "udp", "tcp"
    security_groups: bool
    pps_per_cpu: float       # median of the runs: frames delivered per CPU second
    pps: float               # median of the runs: frames delivered per wall second on the shared core
    ns_per_packet: float     # median of the runs: 1/pps_per_cpu − 1/(generator → sink) of the same run
    generator_pps_per_cpu: float  # median of the runs: generator → sink, no router
    runs: list[dict] = field(default_factory=list)  # each run's router and generator rates


@dataclass
class TcpThroughput:
    name: str            # "dfxdp_unfiltered", "dfxdp_security_groups"
    gbits_per_second: float  # what the server received
    retransmits: int     # segments the senders sent again
    streams: int


@dataclass
class Hosts:
    client: str
    server: str
    helpers: tuple[int, ...] = ()  # processes doing the router's work (their CPU time counts)
    router: str | None = None      # kernel_iptables: the router's namespace (for more rules in it)


def _hosts(topo: Topology, router_ns: str, client_link: str, server_link: str) -> Hosts:
    """Client and server namespaces, each `eth0` wired to a link of the router's namespace.
    Their MACs are the ports' in the bench world and the router's links have the router
    interfaces' MACs, so every router takes the same frames. Both ends get NAPI (GRO):
    the generator redirects into the client's eth0, whose peer must take XDP frames."""
    hosts = Hosts(topo.netns("client"), topo.netns("server"))
    for ns, link, router_mac, mac, address, gateway in ((hosts.client, client_link, RIF1, A, CLIENT, CLIENT_GW),
                                                        (hosts.server, server_link, RIF2, C, SERVER, SERVER_GW)):
        topo.veth(link, router_ns, "eth0", ns, mac=router_mac, peer_mac=mac, vm_end="both")
        topo.ip(ns, f"addr add {address}/24 dev eth0")
        topo.ip(ns, f"route add default via {gateway}")
    return hosts


@contextlib.contextmanager
def dfxdp_xdp(topo: Topology, filtered: tuple[str, ...] = ("c",), policy: dict = SERVER_POLICY,
              extend: Callable[[LocalView], None] = lambda world: None, fast_path: bool = True) -> Iterator[Hosts]:
    """The taps in a chassis namespace, the pipeline attached to both; the `filtered`
    ports (a: client, c: server) in the security group whose rules are `policy`, the
    others with port security off; `extend` adds to the world (e.g. a load balancer).
    Without `fast_path`, every frame goes through the stage chain (fast_gen 0)."""
    chassis = topo.netns("chassis")
    hosts = _hosts(topo, chassis, "tapc", "taps")
    taps = {"a": ifindex("tapc", chassis), "c": ifindex("taps", chassis)}  # the bench world's ports
    world = view(taps, policy=policy, filtered="c")
    for port in taps:
        world.ports[port].update(port_security_enabled=port in filtered,
                                 security_groups=["bench"] if port in filtered else [])
    extend(world)
    pipe = Pipeline(default_bpffs(f"bench-{topo.suffix}")).load()
    try:
        program(pipe, world)
        if not fast_path:
            fastpath.disable(pipe.maps)
        with inside(chassis):
            for tap in taps.values():
                pipe.attach(tap, "port", "native")
        yield hosts
    finally:
        pipe.destroy()  # the attached programs go with the taps, when the topology is removed


def _iptables_rules() -> str:
    new_to_server = [f"-A FORWARD -o rs -s {ALLOWED_SOURCES} -d {SERVER} -p {proto} "
                     f"--dport {SERVER_PORT} -m conntrack --ctstate NEW -j ACCEPT"
                     for proto in ALLOWED_PROTOCOLS]
    return "\n".join(["*filter", ":INPUT ACCEPT", ":FORWARD DROP", ":OUTPUT ACCEPT",
                      "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", *new_to_server,
                      f"-A FORWARD -i rs -s {SERVER} -m conntrack --ctstate NEW -j ACCEPT", "COMMIT", ""])


@contextlib.contextmanager
def kernel_iptables(topo: Topology, security_groups: bool = True) -> Iterator[Hosts]:
    """Linux forwarding; with security groups, the iptables conntrack chain (without, no
    rule at all, so conntrack never starts in the namespace)."""
    router = topo.netns("router")
    hosts = _hosts(topo, router, "rc", "rs")
    hosts.router = router
    topo.ip(router, f"addr add {CLIENT_GW}/24 dev rc")
    topo.ip(router, f"addr add {SERVER_GW}/24 dev rs")
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=router)
    if security_groups:
        run(["iptables-restore"], ns=router, input=_iptables_rules())
    yield hosts


def _ovs_flows(client_port: int, server_port: int, security_groups: bool = True) -> list[str]:
    """Table 0 answers ARP for the gateways and sends IP for the router on (through
    conntrack with security groups), table 1 is the firewall, table 2 routes."""
    flows = ["table=0,priority=0,actions=drop", "table=1,priority=0,actions=drop"]
    if security_groups:
        flows += ["table=1,priority=100,ct_state=+trk+est,actions=goto_table:2",
                  "table=1,priority=100,ct_state=+trk+rel,actions=goto_table:2",
                  f"table=1,priority=50,ct_state=+trk+new,in_port={server_port},ip,nw_src={SERVER},"
                  "actions=ct(commit,zone=1),goto_table:2"]
        flows += [f"table=1,priority=50,ct_state=+trk+new,{proto},nw_src={ALLOWED_SOURCES},nw_dst={SERVER},"
                  f"tp_dst={SERVER_PORT},actions=ct(commit,zone=1),goto_table:2" for proto in ALLOWED_PROTOCOLS]
    else:
        flows.append("table=1,priority=100,ip,actions=goto_table:2")
    to_firewall = "ct(table=1,zone=1)" if security_groups else "goto_table:1"
    for port, gateway_mac, gateway, subnet, host_mac in ((client_port, RIF1, CLIENT_GW, CLIENT_NET, A),
                                                         (server_port, RIF2, SERVER_GW, SERVER_NET, C)):
        flows += [
            f"table=0,priority=100,in_port={port},arp,arp_op=1,arp_tpa={gateway},actions="
            f"move:eth_src[]->eth_dst[],set_field:{gateway_mac}->eth_src,set_field:2->arp_op,"
            f"move:arp_sha[]->arp_tha[],move:arp_spa[]->arp_tpa[],set_field:{gateway_mac}->arp_sha,"
            f"set_field:{gateway}->arp_spa,IN_PORT",
            f"table=0,priority=50,in_port={port},ip,dl_dst={gateway_mac},actions={to_firewall}",
            f"table=2,ip,nw_dst={subnet},actions=set_field:{gateway_mac}->eth_src,set_field:{host_mac}->eth_dst,"
            f"dec_ttl,output:{port}",
        ]
    return flows


@contextlib.contextmanager
def ovs_userspace(topo: Topology, security_groups: bool = True) -> Iterator[Hosts]:
    """ovs-vswitchd's threads are pinned to the generator's core and their CPU time counted."""
    router = topo.netns("router")
    hosts = _hosts(topo, router, "rc", "rs")
    with OvsServer(ns=router) as ovs:
        ovs.add_bridge("br0")
        ovs.add_flows("br0", _ovs_flows(ovs.add_port("br0", "rc"), ovs.add_port("br0", "rs"), security_groups))
        hosts.helpers = tuple(d.pid for d in ovs.daemons if _comm(d.pid) == "ovs-vswitchd")
        for pid in hosts.helpers:
            for task in _tasks(pid):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(task, {CPU})
        yield hosts


def _comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def _tasks(pid: int) -> list[int]:
    return [int(p.name) for p in pathlib.Path(f"/proc/{pid}/task").iterdir()]


def _dfxdp_router(topo: Topology, security_groups: bool = True, fast_path: bool = True) -> ContextManager[Hosts]:
    return dfxdp_xdp(topo, filtered=("c",) if security_groups else (), fast_path=fast_path)


# dfxdp_xdp_stages: the same router with its established-flow fast path off (every frame
# through the stage chain, as before the fast path), measured right after it
ROUTERS: dict[str, Callable[..., ContextManager[Hosts]]] = {
    "dfxdp_xdp": _dfxdp_router, "dfxdp_xdp_stages": functools.partial(_dfxdp_router, fast_path=False),
    "kernel_iptables": kernel_iptables, "ovs_userspace": ovs_userspace}
PROTOCOLS = ("udp", "tcp")
# the TCP runs: dfxdp with no port filtered, and with both ends in the security group
TCP_RUNS: dict[str, Callable[[Topology], ContextManager[Hosts]]] = {
    "dfxdp_unfiltered": functools.partial(dfxdp_xdp, filtered=()),
    "dfxdp_security_groups": functools.partial(dfxdp_xdp, filtered=("a", "c"), policy=DEFAULT_GROUP)}


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {READY_TIMEOUT} s")
        time.sleep(0.05)


def _ping_through(hosts: Hosts) -> None:
    """From the server side: proves both routes, ARP for both gateways and the stateful return path."""
    _wait(lambda: run(["ping", "-c", "1", "-W", "1", CLIENT], ns=hosts.server, check=False).returncode == 0,
          "no ping from the server to the client")


def _padded(frame) -> bytes:
    data = bytes(frame)
    return data + bytes(FRAME_BYTES - len(data))


def client_frame(protocol: str) -> bytes:
    """The generator's frame: the client's flow to the server port (for TCP, a data segment of
    the flow the handshake opened)."""
    ip = Ether(src=A, dst=RIF1) / IP(src=CLIENT, dst=SERVER, ttl=64)
    if protocol == "udp":
        return _padded(ip / UDP(sport=CLIENT_PORT, dport=SERVER_PORT) / bytes(FRAME_BYTES - 42))
    return _padded(ip / TCP(sport=CLIENT_PORT, dport=SERVER_PORT, flags="PA", seq=CLIENT_ISN + 1,
                            ack=SERVER_ISN + 1, window=65535) / bytes(FRAME_BYTES - 54))


def _send_raw(ns: str, frame) -> None:
    with inside(ns), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind(("eth0", 0))
        sock.send(bytes(frame))


def handshake(hosts: Hosts, client_sink, server_sink) -> None:
    """SYN, SYN-ACK, ACK of the generator's TCP flow through the router, each from a raw socket
    on its host's link, each waited for at the far end's sink (which takes it: neither host's
    kernel sees the flow, so neither answers it with a reset)."""
    tcp = functools.partial(TCP, window=65535)
    steps = ((hosts.client, server_sink, Ether(src=A, dst=RIF1) / IP(src=CLIENT, dst=SERVER) /
              tcp(sport=CLIENT_PORT, dport=SERVER_PORT, flags="S", seq=CLIENT_ISN)),
             (hosts.server, client_sink, Ether(src=C, dst=RIF2) / IP(src=SERVER, dst=CLIENT) /
              tcp(sport=SERVER_PORT, dport=CLIENT_PORT, flags="SA", seq=SERVER_ISN, ack=CLIENT_ISN + 1)),
             (hosts.client, server_sink, Ether(src=A, dst=RIF1) / IP(src=CLIENT, dst=SERVER) /
              tcp(sport=CLIENT_PORT, dport=SERVER_PORT, flags="A", seq=CLIENT_ISN + 1, ack=SERVER_ISN + 1)))
    for ns, far_sink, frame in steps:
        before = far_sink.delivered()
        _send_raw(ns, frame)
        _wait(lambda: far_sink.delivered() > before, f"no {frame[TCP].sprintf('%flags%')} through the router")


def _router_runs(topo: Topology, hosts: Hosts, protocols: tuple[str, ...], seconds: float,
                 runs: int) -> dict[str, list[tuple[Rate, Rate]]]:
    """Per protocol, `runs` pairs of (router, generator → sink) rates, each pair measured
    back to back; the direct pair (gd0 → gd1) sits in the client namespace."""
    _ping_through(hosts)
    topo.veth("gd0", hosts.client, "gd1", hosts.client, vm_end="both")
    results: dict[str, list[tuple[Rate, Rate]]] = {}
    with sink(hosts.client, "eth0") as client_sink, sink(hosts.server, "eth0") as server_sink, \
            sink(hosts.client, "gd1") as direct_sink:
        for protocol in protocols:
            if protocol == "tcp":
                handshake(hosts, client_sink, server_sink)
            frame = client_frame(protocol)
            with generator(hosts.client, "eth0", frame) as through, generator(hosts.client, "gd0", frame) as direct:
                results[protocol] = [(through.rate(server_sink, seconds, CPU, hosts.helpers),
                                      direct.rate(direct_sink, seconds, CPU)) for _ in range(runs)]
                if not all(r.frames for r, _ in results[protocol]):
                    raise RuntimeError(f"no {protocol} frame reached the server through the router")
    return results


def _summary(name: str, protocol: str, security_groups: bool, pairs: list[tuple[Rate, Rate]]) -> Throughput:
    ns = [1e9 / r.pps_per_cpu - 1e9 / g.pps_per_cpu for r, g in pairs]
    return Throughput(name, protocol, security_groups,
                      statistics.median(r.pps_per_cpu for r, _ in pairs), statistics.median(r.pps for r, _ in pairs),
                      statistics.median(ns), statistics.median(g.pps_per_cpu for _, g in pairs),
                      [{"pps_per_cpu": r.pps_per_cpu, "pps": r.pps, "frames": r.frames, "cpu_seconds": r.cpu_seconds,
                        "generator_pps_per_cpu": g.pps_per_cpu, "generator_pps": g.pps, "ns_per_packet": n}
                       for (r, g), n in zip(pairs, ns)])


def _attempts(name: str, run_one: Callable[[], object]):
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return run_one()
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            # a saturated router may drop a handshake or iperf3's own TCP control connection:
            # a fresh topology and another go, then give up
            if attempt == ATTEMPTS:
                raise RuntimeError(f"throughput bench, {name} ({ATTEMPTS} attempts): {exc}") from exc


def measure(seconds: float, runs: int = 3, progress: Callable[[str], None] = lambda _: None,
            protocols: tuple[str, ...] = PROTOCOLS) -> list[Throughput]:
    """Every router, with and without security groups, each protocol: `runs` runs of `seconds`."""
    results = []
    for name, router in ROUTERS.items():
        for security_groups in (True, False):
            label = f"{name}, {'with' if security_groups else 'without'} security groups"
            progress(label)

            def one() -> dict:
                with Topology("thru") as topo, router(topo, security_groups=security_groups) as hosts:
                    return _router_runs(topo, hosts, protocols, seconds, runs)
            for protocol, pairs in _attempts(label, one).items():
                results.append(_summary(name, protocol, security_groups, pairs))
    return results


def _listening(ns: str, port: int) -> bool:
    return bool(run(["ss", "-Hltn", f"sport = :{port}"], ns=ns).stdout.strip())


def _report(client: subprocess.Popen, port: int, seconds: float) -> dict:
    """The JSON report of a finished iperf3 client; a failed run raises."""
    out, err = client.communicate(timeout=seconds + 30)
    report = json.loads(out) if out.strip().startswith("{") else {}
    if client.returncode != 0 or "error" in report or "sum_received" not in report.get("end", {}):
        raise RuntimeError(f"iperf3 client to port {port} failed (exit {client.returncode}): "
                           f"{report.get('error', '')} {err.strip()}".strip())
    return report


def _tcp(topo: Topology, hosts: Hosts, name: str, seconds: float) -> TcpThroughput:
    """One iperf3 TCP client with a few streams to the server port."""
    port = SERVER_PORT
    topo.popen(["iperf3", "-s", "-1", "-B", SERVER, "-p", str(port)], ns=hosts.server,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _ping_through(hosts)
    _wait(lambda: _listening(hosts.server, port), f"iperf3 server not listening on {port}")
    client = topo.popen(["iperf3", "-c", SERVER, "-t", str(max(1, round(seconds))), "-J",  # -t: whole seconds
                         "--connect-timeout", "5000", "-P", str(TCP_STREAMS), "-p", str(port)], ns=hosts.client,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = _report(client, port, seconds)["end"]
    return TcpThroughput(name, end["sum_received"]["bits_per_second"] / 1e9, end["sum_sent"].get("retransmits", 0),
                         TCP_STREAMS)


def measure_tcp(seconds: float, progress: Callable[[str], None] = lambda _: None) -> list[TcpThroughput]:
    """TCP through dfxdp, unfiltered then through security groups on both ends (iperf3)."""
    results = []
    for name, router in TCP_RUNS.items():
        progress(name)

        def one() -> TcpThroughput:
            with Topology("thru") as topo, router(topo) as hosts:
                return _tcp(topo, hosts, name, seconds)
        results.append(_attempts(name, one))
    return results
