"""End to end: UDP packets per second from a client namespace to a server
namespace through three stateful routers on this machine, with iperf3 (several
processes, several streams each, small packets):

    dfxdp_xdp        the dfxdp pipeline in native XDP on the taps, programmed by the
                     agent's apps and reconciler (router + security group on the server port)
    kernel_iptables  Linux forwarding with an iptables conntrack FORWARD chain
                     (what Neutron's L3 agent and iptables firewall driver do)
    ovs_userspace    Open vSwitch's userspace datapath, OpenFlow routing with ct()
                     (what the OVS firewall driver does), no kernel module needed

Every router routes 10.0.0.0/24 (client 10.0.0.1) and 10.1.0.0/24 (server
10.1.0.4), lets new flows reach the server only to the iperf3 ports from
10.0.0.0/8, lets the server open any flow, and passes established ones.

Then TCP bits per second through the dfxdp router twice: with port security off
on both ports, and with both ports in a stateful security group. Their ratio is
what conntrack costs a TCP flow; a conntrack that loses established flows shows
as a collapse of it (UDP cannot show that: it re-creates a lost entry silently).
"""
from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

from dfxdp.datapath.pipeline import Pipeline, default_bpffs
from dfxdp.testing.netns import Topology, ifindex, inside, run
from dfxdp.testing.ovs import OvsServer

from .datapath import A, C, RIF1, RIF2, program, sg_rule, view

CLIENT, CLIENT_GW, CLIENT_NET = "10.0.0.1", "10.0.0.254", "10.0.0.0/24"
SERVER, SERVER_GW, SERVER_NET = "10.1.0.4", "10.1.0.254", "10.1.0.0/24"
ALLOWED_SOURCES = "10.0.0.0/8"
IPERF_PORTS = (5201, 5202)  # consecutive; one server process each, one client process each
ALLOWED_PROTOCOLS = ("udp", "tcp")  # iperf3's data and control connections
STREAMS_PER_CLIENT = 2
PAYLOAD_BYTES = 64
TCP_STREAMS = 2
READY_TIMEOUT = 15
ATTEMPTS = 3              # runs of one router before the bench gives up on it

# dfxdp's security group on the server port; the other routers' rules say the same.
SERVER_POLICY = {proto: sg_rule(proto, "ingress", proto, (IPERF_PORTS[0], IPERF_PORTS[-1]), ALLOWED_SOURCES)
                 for proto in ALLOWED_PROTOCOLS} | {"out": sg_rule("out", "egress")}
# The TCP runs' group, Neutron's default: anything from the group's members in, anything out.
DEFAULT_GROUP = {"members": {**sg_rule("members", "ingress"), "remote_group_id": "bench"},
                 "out": sg_rule("out", "egress")}


@dataclass
class Throughput:
    name: str            # "dfxdp_xdp", "kernel_iptables", "ovs_userspace"
    delivered_pps: float  # packets per second the router put on the server's interface
    pps: float           # packets per second the server application read
    sent_pps: float      # packets per second the generator sent
    loss_percent: float
    streams: int
    packet_bytes: int    # UDP payload length used


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


def _hosts(topo: Topology, router_ns: str, client_link: str, server_link: str) -> Hosts:
    """Client and server namespaces, each `eth0` wired to a link of the router's namespace.
    Their MACs are the ports' in the bench world, so every router knows them alike."""
    hosts = Hosts(topo.netns("client"), topo.netns("server"))
    for ns, link, mac, address, gateway in ((hosts.client, client_link, A, CLIENT, CLIENT_GW),
                                            (hosts.server, server_link, C, SERVER, SERVER_GW)):
        topo.veth(link, router_ns, "eth0", ns, peer_mac=mac)
        topo.ip(ns, f"addr add {address}/24 dev eth0")
        topo.ip(ns, f"route add default via {gateway}")
    return hosts


@contextlib.contextmanager
def dfxdp_xdp(topo: Topology, filtered: tuple[str, ...] = ("c",), policy: dict = SERVER_POLICY) -> Iterator[Hosts]:
    """The taps in a chassis namespace, the pipeline attached to both; the `filtered`
    ports (a: client, c: server) in the security group whose rules are `policy`, the
    others with port security off."""
    chassis = topo.netns("chassis")
    hosts = _hosts(topo, chassis, "tapc", "taps")
    taps = {"a": ifindex("tapc", chassis), "c": ifindex("taps", chassis)}  # the bench world's ports
    world = view(taps, policy=policy, filtered="c")
    for port in taps:
        world.ports[port].update(port_security_enabled=port in filtered,
                                 security_groups=["bench"] if port in filtered else [])
    pipe = Pipeline(default_bpffs(f"bench-{topo.suffix}")).load()
    try:
        program(pipe, world)
        with inside(chassis):
            for tap in taps.values():
                pipe.attach(tap, "port", "native")
        yield hosts
    finally:
        pipe.destroy()  # the attached programs go with the taps, when the topology is removed


def _iptables_rules() -> str:
    new_to_server = [f"-A FORWARD -o rs -s {ALLOWED_SOURCES} -d {SERVER} -p {proto} "
                     f"--dport {IPERF_PORTS[0]}:{IPERF_PORTS[-1]} -m conntrack --ctstate NEW -j ACCEPT"
                     for proto in ALLOWED_PROTOCOLS]
    return "\n".join(["*filter", ":INPUT ACCEPT", ":FORWARD DROP", ":OUTPUT ACCEPT",
                      "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", *new_to_server,
                      f"-A FORWARD -i rs -s {SERVER} -m conntrack --ctstate NEW -j ACCEPT", "COMMIT", ""])


@contextlib.contextmanager
def kernel_iptables(topo: Topology) -> Iterator[Hosts]:
    router = topo.netns("router")
    hosts = _hosts(topo, router, "rc", "rs")
    topo.ip(router, f"addr add {CLIENT_GW}/24 dev rc")
    topo.ip(router, f"addr add {SERVER_GW}/24 dev rs")
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=router)
    run(["iptables-restore"], ns=router, input=_iptables_rules())
    yield hosts


def _ovs_flows(client_port: int, server_port: int) -> list[str]:
    """Table 0 answers ARP for the gateways and sends IP for the router through conntrack,
    table 1 is the firewall, table 2 routes."""
    flows = ["table=0,priority=0,actions=drop", "table=1,priority=0,actions=drop",
             "table=1,priority=100,ct_state=+trk+est,actions=goto_table:2",
             "table=1,priority=100,ct_state=+trk+rel,actions=goto_table:2",
             f"table=1,priority=50,ct_state=+trk+new,in_port={server_port},ip,nw_src={SERVER},"
             "actions=ct(commit,zone=1),goto_table:2"]
    flows += [f"table=1,priority=50,ct_state=+trk+new,{proto},nw_src={ALLOWED_SOURCES},nw_dst={SERVER},tp_dst={port},"
              "actions=ct(commit,zone=1),goto_table:2" for proto in ALLOWED_PROTOCOLS for port in IPERF_PORTS]
    for port, gateway_mac, gateway, subnet, host_mac in ((client_port, RIF1, CLIENT_GW, CLIENT_NET, A),
                                                         (server_port, RIF2, SERVER_GW, SERVER_NET, C)):
        flows += [
            f"table=0,priority=100,in_port={port},arp,arp_op=1,arp_tpa={gateway},actions="
            f"move:eth_src[]->eth_dst[],set_field:{gateway_mac}->eth_src,set_field:2->arp_op,"
            f"move:arp_sha[]->arp_tha[],move:arp_spa[]->arp_tpa[],set_field:{gateway_mac}->arp_sha,"
            f"set_field:{gateway}->arp_spa,IN_PORT",
            f"table=0,priority=50,in_port={port},ip,dl_dst={gateway_mac},actions=ct(table=1,zone=1)",
            f"table=2,ip,nw_dst={subnet},actions=set_field:{gateway_mac}->eth_src,set_field:{host_mac}->eth_dst,"
            f"dec_ttl,output:{port}",
        ]
    return flows


@contextlib.contextmanager
def ovs_userspace(topo: Topology) -> Iterator[Hosts]:
    router = topo.netns("router")
    hosts = _hosts(topo, router, "rc", "rs")  # the VM ends get TX checksum offload off
    with OvsServer(ns=router) as ovs:
        ovs.add_bridge("br0")
        ovs.add_flows("br0", _ovs_flows(ovs.add_port("br0", "rc"), ovs.add_port("br0", "rs")))
        yield hosts


ROUTERS: dict[str, Callable[[Topology], ContextManager[Hosts]]] = {
    "dfxdp_xdp": dfxdp_xdp, "kernel_iptables": kernel_iptables, "ovs_userspace": ovs_userspace}
# the TCP runs: dfxdp with no port filtered, and with both ends in the security group
TCP_RUNS: dict[str, Callable[[Topology], ContextManager[Hosts]]] = {
    "dfxdp_unfiltered": functools.partial(dfxdp_xdp, filtered=()),
    "dfxdp_security_groups": functools.partial(dfxdp_xdp, filtered=("a", "c"), policy=DEFAULT_GROUP)}


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {READY_TIMEOUT} s")
        time.sleep(0.1)


def _listening(ns: str, port: int) -> bool:
    return bool(run(["ss", "-Hltn", f"sport = :{port}"], ns=ns).stdout.strip())


def _rx_packets(ns: str) -> int:
    """Frames that reached the server's eth0: the router's work, before the receiving
    socket (on a small machine the iperf3 receivers overflow first and drop the rest)."""
    return int(run(["cat", "/sys/class/net/eth0/statistics/rx_packets"], ns=ns).stdout)


def _servers(topo: Topology, hosts: Hosts, ports: tuple[int, ...]) -> None:
    """One-shot iperf3 servers on `ports`, once the client is reachable from the server."""
    for port in ports:
        topo.popen(["iperf3", "-s", "-1", "-B", SERVER, "-p", str(port)], ns=hosts.server,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # From the server side: proves both routes, ARP for both gateways and the stateful return path.
    _wait(lambda: run(["ping", "-c", "1", "-W", "1", CLIENT], ns=hosts.server, check=False).returncode == 0,
          "no ping from the server to the client")
    for port in ports:
        _wait(lambda: _listening(hosts.server, port), f"iperf3 server not listening on {port}")


def _report(client: subprocess.Popen, port: int, seconds: float) -> dict:
    """The JSON report of a finished iperf3 client; a failed run raises."""
    out, err = client.communicate(timeout=seconds + 30)
    report = json.loads(out) if out.strip().startswith("{") else {}
    if client.returncode != 0 or "error" in report or "sum_received" not in report.get("end", {}):
        raise RuntimeError(f"iperf3 client to port {port} failed (exit {client.returncode}): "
                           f"{report.get('error', '')} {err.strip()}".strip())
    return report


def _client(seconds: float) -> list[str]:
    return ["iperf3", "-c", SERVER, "-t", str(max(1, round(seconds))), "-J",  # -t: whole seconds only
            "--connect-timeout", "5000"]


def _iperf3(topo: Topology, hosts: Hosts, name: str, seconds: float) -> Throughput:
    _servers(topo, hosts, IPERF_PORTS)
    generator = [*_client(seconds), "-u", "-b", "0", "-l", str(PAYLOAD_BYTES), "-P", str(STREAMS_PER_CLIENT)]
    delivered_before = _rx_packets(hosts.server)
    clients = [topo.popen([*generator, "-p", str(port)], ns=hosts.client, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) for port in IPERF_PORTS]
    sent = received = 0
    sent_pps = pps = 0.0
    for port, client in zip(IPERF_PORTS, clients):
        report = _report(client, port, seconds)
        # sum_sent counts what left the client; sum_received is the server's own count,
        # where `packets` runs to the highest sequence number seen and includes the lost ones.
        out_sum, in_sum = report["end"]["sum_sent"], report["end"]["sum_received"]
        arrived = in_sum["packets"] - in_sum["lost_packets"]
        sent, received = sent + out_sum["packets"], received + arrived
        sent_pps += out_sum["packets"] / out_sum["seconds"]
        seconds_run = out_sum["seconds"]
        pps += arrived / in_sum["seconds"]
    delivered = (_rx_packets(hosts.server) - delivered_before) / seconds_run
    return Throughput(name, delivered, pps, sent_pps, 100.0 * (sent - received) / sent if sent else 0.0,
                      len(IPERF_PORTS) * STREAMS_PER_CLIENT, PAYLOAD_BYTES)


def _tcp(topo: Topology, hosts: Hosts, name: str, seconds: float) -> TcpThroughput:
    """One iperf3 TCP client with a few streams to the first iperf3 port."""
    port = IPERF_PORTS[0]
    _servers(topo, hosts, (port,))
    client = topo.popen([*_client(seconds), "-P", str(TCP_STREAMS), "-p", str(port)], ns=hosts.client,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = _report(client, port, seconds)["end"]
    return TcpThroughput(name, end["sum_received"]["bits_per_second"] / 1e9, end["sum_sent"].get("retransmits", 0),
                         TCP_STREAMS)


def _runs(routers: dict[str, Callable[[Topology], ContextManager[Hosts]]], run_one: Callable,
          seconds: float, progress: Callable[[str], None]) -> list:
    """Each router in turn, `seconds` of traffic each, in namespaces of its own."""
    results = []
    for name, router in routers.items():
        progress(name)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with Topology("thru") as topo, router(topo) as hosts:
                    results.append(run_one(topo, hosts, name, seconds))
                break
            except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
                # a saturated router may drop iperf3's own TCP control connection, which then
                # fails the run: a fresh topology and another go, then give up
                if attempt == ATTEMPTS:
                    raise RuntimeError(f"throughput bench, {name} ({ATTEMPTS} attempts): {exc}") from exc
    return results


def measure(seconds: float, progress: Callable[[str], None] = lambda _: None) -> list[Throughput]:
    """UDP packets per second through each router."""
    return _runs(ROUTERS, _iperf3, seconds, progress)


def measure_tcp(seconds: float, progress: Callable[[str], None] = lambda _: None) -> list[TcpThroughput]:
    """TCP through dfxdp, unfiltered then through security groups on both ends."""
    return _runs(TCP_RUNS, _tcp, seconds, progress)
