"""The OVS fallback on a three-chassis cluster, each chassis with its own Open vSwitch:
br-int under the agent's controller, broadcast and unknown unicast flooded within a
network (both chassis, never another network, one copy each), flows that survive an
agent restart and come back after an OVS restart, and fail_mode=secure while the
agent is away.

Blue VMs on ch1 (b1, b2) and ch2 (b3), with port security, and b4 (ch2) and b5 (ch1)
without; red VMs, in the same address range, on ch1 and ch3. Each VM runs a sniffer (an AF_PACKET socket: it also sees frames for other MACs,
as unknown unicast is) that reports every frame carrying a test's token."""
import contextlib
import re
import subprocess
import sys
import time
import uuid
from typing import Iterator

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, run
from dfxdp.testing.prom import promtool_check, sample

pytestmark = [pytest.mark.ovs, pytest.mark.etcd]

SNIFFER = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    at = data.find(b"DFXDP-")
    if at >= 0:
        print(data[at:at + 38].decode(errors="replace"), flush=True)
"""
BROADCAST_SENDER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.sendto(sys.argv[1].encode(), (sys.argv[2], 5000))
"""
FRAME_SENDER = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
s.send(bytes.fromhex(sys.argv[1]))
"""


class Sniffer:
    def __init__(self, vm: str):
        self.proc = subprocess.Popen(["ip", "netns", "exec", vm, sys.executable, "-u", "-c", SNIFFER],
                                     stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        assert self.proc.stdout.readline().strip() == "ready"
        import threading

        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def count(self, token: str) -> int:
        return sum(1 for line in self.lines if line.startswith(token))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@contextlib.contextmanager
def blue_and_red(prefix: str, chassis: int, vms) -> Iterator[Cluster]:
    """A cluster with OVS and two networks in one address range, blue and red (red's ports from
    .200 up), and VMs given as (name, "blue" or "red", chassis number, port security), each running
    a Sniffer: cl.vm[name] = (namespace, port), cl.sniffer[name]."""
    with Topology(prefix) as topo:
        cl = Cluster(topo, chassis=chassis, ovs=True)
        sniffers = []
        try:
            conn = cl.connect()
            blue = conn.network.create_network(name="blue")
            conn.network.create_subnet(network_id=blue.id, cidr="10.0.0.0/24", ip_version=4)
            red = conn.network.create_network(name="red")
            conn.network.create_subnet(network_id=red.id, cidr="10.0.0.0/24", ip_version=4,
                                       allocation_pools=[{"start": "10.0.0.200", "end": "10.0.0.250"}])
            cl.blue, cl.red, cl.vm = blue, red, {}
            for name, net, ch, guarded in vms:
                extra = {} if guarded else {"port_security_enabled": False, "security_group_ids": []}
                port = conn.network.create_port(network_id={"blue": blue, "red": red}[net].id,
                                                binding_host_id=f"ch{ch}", **extra)
                vm = cl.plug(port, cl.chassis[ch - 1], name=name)
                cl.wait_active(port.id)
                cl.vm[name] = (vm, port)
            cl.sniffer = {}
            for name, (vm, _) in cl.vm.items():
                cl.sniffer[name] = Sniffer(vm)
                sniffers.append(cl.sniffer[name])
            yield cl
        finally:
            for s in sniffers:
                s.close()
            cl.close()


@pytest.fixture(scope="module")
def world():
    with blue_and_red("fb", 3, (("b1", "blue", 1, True), ("b2", "blue", 1, True), ("b3", "blue", 2, True),
                                ("b4", "blue", 2, False), ("b5", "blue", 1, False),
                                ("r1", "red", 1, True), ("r3", "red", 3, True))) as cl:
        yield cl


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.3)


def flows(ch, bridge: str = "br-int") -> list[str]:
    out = ch.ovs.ofctl("dump-flows", bridge).stdout
    return [line.strip() for line in out.splitlines() if "cookie=" in line]


def flood_flows(ch) -> list[str]:
    return [f for f in flows(ch) if "table=20" in f and "priority=50" in f]


def flow_identity(lines: list[str]) -> list[str]:
    """Flows without their counters and age: what must not change across an agent restart."""
    return sorted(re.sub(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ?", "", f) for f in lines)


def token() -> str:
    return "DFXDP-" + uuid.uuid4().hex[:16]


def send_broadcast(cl, name: str, tok: str, dst: str = "255.255.255.255") -> None:
    run([sys.executable, "-c", BROADCAST_SENDER, tok, dst], ns=cl.vm[name][0])


def send_frame(cl, name: str, dst_mac: str, tok: str, ethertype: int | None = None) -> None:
    vm, port = cl.vm[name]
    if ethertype is None:
        frame = (Ether(src=port.mac_address, dst=dst_mac) / IP(src=port.fixed_ips[0]["ip_address"], dst="10.0.0.199")
                 / UDP(sport=5000, dport=5000) / tok.encode())
    else:
        frame = Ether(src=port.mac_address, dst=dst_mac, type=ethertype) / tok.encode()
    run([sys.executable, "-c", FRAME_SENDER, bytes(frame).hex()], ns=vm)


def received(cl, tok: str, expect: set[str], timeout: float = 20) -> dict[str, int]:
    """Copies of `tok` each VM saw, once every VM in `expect` saw one and the rest had time to."""
    deadline = time.monotonic() + timeout
    while not all(cl.sniffer[n].count(tok) for n in expect) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)  # stragglers (a leak, a duplicate) would arrive with the expected copies
    return {name: s.count(tok) for name, s in cl.sniffer.items()}


BLUE_OTHERS = {"b2", "b3", "b4", "b5"}
NOBODY = {"b1": 0, "b2": 0, "b3": 0, "b4": 0, "b5": 0, "r1": 0, "r3": 0}


@pytest.fixture
def flooding(world):
    """The world once every chassis has its flood flows."""
    for ch in world.chassis:
        wait_for(lambda: flood_flows(ch), f"{ch.name}'s flood flows")
    return world


def test_br_int_on_every_chassis(world):
    for ch in world.chassis:
        o = ch.ovs
        assert o.vsctl("get", "bridge", "br-int", "datapath_type").stdout.strip() == "netdev"  # no kernel module here
        assert o.vsctl("get", "bridge", "br-int", "fail_mode").stdout.strip() == "secure"
        assert o.vsctl("get", "bridge", "br-int", "protocols").stdout.strip() == "[OpenFlow13]"
        wait_for(lambda: o.vsctl("get", "controller", "br-int", "is_connected").stdout.strip() == "true",
                 f"{ch.name}: br-int connected to its agent")
        ports = set(o.vsctl("list-ports", "br-int").stdout.split())
        taps = {f"tap{port.id[:11]}" for vm, port in world.vm.values() if port.binding_host_id == ch.name}
        assert taps and taps <= ports and "vxlan0" in ports
        assert o.vsctl("get", "interface", "vxlan0", "options:dst_port").stdout.strip() == '"4790"'
        assert "und0" in o.vsctl("list-ports", "br-ul").stdout.split()
        metrics = run(["curl", "-sf", f"http://{ch.tunnel_ip}:9870/metrics"], ns=ch.ns).stdout
        assert promtool_check(metrics)[0], promtool_check(metrics)[1]
        assert sample(metrics, "dfxdp_fallback_datapath", type="netdev") == 1
        assert sample(metrics, "dfxdp_fallback_controller_connected", bridge="br-int") == 1
        assert sample(metrics, "dfxdp_fallback_flows", bridge="br-int", table="20") > 0


@pytest.mark.parametrize("dst", ["255.255.255.255", "10.0.0.255"])
def test_broadcast_reaches_its_network_on_both_chassis_once_and_no_other(flooding, dst):
    tok = token()
    send_broadcast(flooding, "b1", tok, dst)
    got = received(flooding, tok, BLUE_OTHERS)
    assert got == {**NOBODY, "b2": 1, "b3": 1, "b4": 1, "b5": 1}


def test_unknown_unicast_is_flooded_within_its_network_only(flooding):
    tok = token()
    send_frame(flooding, "b3", "fa:16:3e:de:ad:01", tok)  # a MAC no port has, from ch2
    got = received(flooding, tok, {"b1", "b2", "b4", "b5"})
    assert got == {**NOBODY, "b1": 1, "b2": 1, "b4": 1, "b5": 1}


def test_ports_with_port_security_get_only_arp_and_ipv4_from_the_fallback(flooding):
    """An experimental ethertype broadcast from b4 (no port security): b5 gets it across the
    tunnel, the ports with port security get nothing, as XDP would give them nothing."""
    tok = token()
    send_frame(flooding, "b4", "ff:ff:ff:ff:ff:ff", tok, ethertype=0x88B5)
    assert received(flooding, tok, {"b5"}) == {**NOBODY, "b5": 1}


def test_head_end_replication_only_to_chassis_with_ports_of_the_network(flooding):
    ch1, ch2, ch3 = flooding.chassis
    blue_key = flooding.connect().network.get_network(flooding.blue.id).provider_segmentation_id
    blue_flood = [f for f in flood_flows(ch1) if f"metadata={hex(blue_key)} " in f]
    assert len(blue_flood) == 1
    assert f"{ch2.tunnel_ip}->tun_dst" in blue_flood[0] and ch3.tunnel_ip not in blue_flood[0]
    # a frame from the tunnel goes to local ports only, never back into the tunnel
    from_tunnel = [f for f in flows(ch2) if "table=20" in f and re.search(r"priority=1[01]0,", f)]
    assert from_tunnel and all("tun_dst" not in f for f in from_tunnel)


def agent_passes(ch) -> float:
    text = run(["curl", "-sf", f"http://{ch.tunnel_ip}:9870/metrics"], ns=ch.ns, check=False).stdout
    return (sample(text, "dfxdp_reconcile_runs_total") or 0) if text else 0


def restart_agent(ch) -> None:
    ch.start_agent()
    wait_for(lambda: agent_passes(ch) >= 2, f"{ch.name}'s restarted agent's passes")
    wait_for(lambda: ch.ovs.vsctl("get", "controller", "br-int", "is_connected").stdout.strip() == "true",
             f"{ch.name}: br-int reconnected")


def test_flows_survive_an_agent_restart_without_duplicates(flooding):
    ch1 = flooding.chassis[0]
    before = {bridge: flow_identity(flows(ch1, bridge)) for bridge in ("br-int", "br-ul")}
    stopped = time.monotonic()
    ch1.stop_agent()
    tok = token()
    send_broadcast(flooding, "b3", tok)  # ch1 forwards on its own meanwhile
    assert received(flooding, tok, {"b1", "b2"})["b1"] == 1
    restart_agent(ch1)
    time.sleep(1)  # a pass that would add or remove flows has had its chance (counted above)
    after = {bridge: flows(ch1, bridge) for bridge in ("br-int", "br-ul")}
    assert {bridge: flow_identity(lines) for bridge, lines in after.items()} == before
    age = time.monotonic() - stopped
    durations = [float(re.search(r"duration=([\d.]+)s", f).group(1)) for f in after["br-int"]]
    assert min(durations) >= age - 1, "flows were replaced, not kept"
    tok = token()
    send_broadcast(flooding, "b1", tok)
    assert received(flooding, tok, BLUE_OTHERS) == {**NOBODY, "b2": 1, "b3": 1, "b4": 1, "b5": 1}


def test_fail_mode_secure_while_the_agent_is_away_then_flows_come_back(flooding):
    """ch2's OVS restarts while its agent is down: no flows and no controller, so its
    secure bridge forwards nothing (standalone would flood like a learning switch)."""
    ch2 = flooding.chassis[1]
    before = flow_identity(flows(ch2))
    ch2.stop_agent(kill=True)
    ch2.ovs.restart()
    wait_for(lambda: ch2.ovs.ofctl("dump-flows", "br-int", check=False).returncode == 0, "ch2's br-int back")
    assert flows(ch2) == []
    tok = token()
    send_broadcast(flooding, "b3", tok)   # from ch2's VM: dropped by its bridge
    send_broadcast(flooding, "b1", tok)   # to ch2's VM through the tunnel: dropped there
    got = received(flooding, tok, {"b2", "b5"})
    assert got == {**NOBODY, "b2": 1, "b5": 1}
    restart_agent(ch2)
    wait_for(lambda: flow_identity(flows(ch2)) == before, "ch2's flows as they were")
    tok = token()
    send_broadcast(flooding, "b3", tok)
    assert received(flooding, tok, {"b1", "b2", "b4", "b5"}) == {**NOBODY, "b1": 1, "b2": 1, "b4": 1, "b5": 1}


def test_flows_are_restored_after_an_ovs_restart(flooding):
    ch3 = flooding.chassis[2]
    before = flow_identity(flows(ch3))
    ch3.ovs.restart()   # its agent keeps running: it sees br-int reconnect and resyncs
    wait_for(lambda: ch3.ovs.ofctl("dump-flows", "br-int", check=False).returncode == 0, "ch3's br-int back")
    wait_for(lambda: flow_identity(flows(ch3)) == before, "ch3's flows back")
    tok = token()
    send_broadcast(flooding, "r1", tok)   # across the tunnel into the restarted OVS
    assert received(flooding, tok, {"r3"}) == {**NOBODY, "r3": 1}


def test_trace_follows_a_broadcast_into_br_int(flooding):
    ch1, (vm, port) = flooding.chassis[0], flooding.vm["b1"]
    packet = (f'Ether(src="{port.mac_address}", dst="ff:ff:ff:ff:ff:ff")/'
              f'IP(src="{port.fixed_ips[0]["ip_address"]}", dst="255.255.255.255")/UDP(dport=5000)')
    out = run([sys.executable, "-m", "dfxdp.cli.main", "trace", port.id, packet, "--url",
               f"http://198.18.0.1:9696", "--bpffs", str(ch1.bpffs), "--ovsdb", ch1.ovs.db_url],
              ns=ch1.ns, env=flooding.env).stdout
    assert "verdict: XDP_PASS" in out and "the fallback path (OVS)" in out
    story = out[out.index("fallback: OVS br-int"):]
    b2_tap, b5_tap = (f"tap{flooding.vm[name][1].id[:11]}" for name in ("b2", "b5"))
    b2_ofport, b5_ofport = (ch1.ovs.vsctl("get", "interface", tap, "ofport").stdout.strip() for tap in (b2_tap, b5_tap))
    assert "goto_table:20" in story and f"output:{b5_ofport}" in story, story  # no port security: straight out
    # b2 has port security: through its ingress rules (table 25), which allow its group's members
    assert f"set_field:{int(b2_ofport):#x}->reg6" in story and "resubmit(,25)" in story, story
    assert re.search(r"25\. ip,reg7=\S+ priority 100.*\n\s+output:NXM_NX_REG6\[\]\n\s+-> output port is "
                     rf"{b2_ofport}\n", story), story
    assert re.search(r"Datapath actions: .*tnl_push", story), story  # and one copy to ch2


def tap_packets(ch, tap: str) -> int:
    """What br-int received from `tap`: the packets counted by its table-0 flow, once OVS's
    revalidators have pushed its datapath's counters into the flows."""
    ch.ovs.appctl("ovs-vswitchd", "revalidator/wait")
    ofport = ch.ovs.vsctl("get", "interface", tap, "ofport").stdout.strip()
    flow = [f for f in flows(ch) if "table=0" in f and f"in_port={ofport} " in f]
    return int(re.search(r"n_packets=(\d+)", flow[0]).group(1))


def test_what_xdp_forwards_never_reaches_ovs(flooding):
    ch1, (b1, p1), (_, p3) = flooding.chassis[0], flooding.vm["b1"], flooding.vm["b3"]
    tap = f"tap{p1.id[:11]}"
    assert flooding.ping(b1, p3.fixed_ips[0]["ip_address"])   # ARP answered and ICMP forwarded by XDP
    before = tap_packets(ch1, tap)
    assert flooding.ping(b1, p3.fixed_ips[0]["ip_address"], count=10)
    assert tap_packets(ch1, tap) == before
    tok = token()
    send_broadcast(flooding, "b1", tok)          # while a broadcast from the same tap does
    received(flooding, tok, BLUE_OTHERS)
    assert tap_packets(ch1, tap) == before + 1


PORT_SENDER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.sendto(sys.argv[1].encode(), ("255.255.255.255", int(sys.argv[2])))
"""


def broadcast_to_port(cl, name: str, port: int) -> str:
    tok = token()
    run([sys.executable, "-c", PORT_SENDER, tok, str(port)], ns=cl.vm[name][0])
    return tok


def test_broadcast_to_ports_with_security_groups_passes_their_ingress_rules(flooding):
    """b4 has no port security and is in no group: the default group's ingress rules (from its
    members only) refuse its broadcast to b1, b2 (ch1) and b3 (ch2), while b5 gets it; once a
    rule allows UDP 5001 from anywhere, a broadcast to 5001 reaches them all, and one to 5000
    still does not."""
    tok = broadcast_to_port(flooding, "b4", 5000)
    assert received(flooding, tok, {"b5"}) == {**NOBODY, "b5": 1}
    conn = flooding.connect()
    default = next(conn.network.security_groups(name="default"))
    rule = conn.network.create_security_group_rule(security_group_id=default.id, direction="ingress",
                                                   protocol="udp", port_range_min=5001, port_range_max=5001,
                                                   remote_ip_prefix="0.0.0.0/0")
    try:
        deadline = time.monotonic() + 60
        while True:  # the rule reaches both chassis' flows
            tok = broadcast_to_port(flooding, "b4", 5001)
            got = received(flooding, tok, {"b1", "b2", "b3", "b5"}, timeout=5)
            if all(got[n] for n in ("b1", "b2", "b3")) or time.monotonic() > deadline:
                break
        assert got == {**NOBODY, "b1": 1, "b2": 1, "b3": 1, "b5": 1}
        tok = broadcast_to_port(flooding, "b4", 5000)
        assert received(flooding, tok, {"b5"}) == {**NOBODY, "b5": 1}
    finally:
        conn.network.delete_security_group_rule(rule)
