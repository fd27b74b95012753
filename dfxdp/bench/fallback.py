"""The OVS fallback's own costs, on a private userspace Open vSwitch (the datapath br-int
runs on here): what ovs-vswitchd spends, in CPU time, per frame.

- BUM replication: one broadcast into br-int, copied to N local taps and, by head-end
  replication through the flow-based VXLAN port (the flood app's action list), to R
  other chassis. CPU µs per broadcast and per copy, for several (N, R): what flooding
  costs the sending chassis.
- Default SNAT: br-int's SNAT flows (controller/apps/snat.py: `ct(commit, zone,
  nat(src=<gateway>))`, then out of the external NIC). New sessions (every frame
  another UDP source port) against established ones (one flow): CPU µs per frame, and
  the sessions per CPU second that makes; the sessions conntrack holds after the run.

The generator is a Python AF_PACKET socket, paced so that little is lost on the way in
(each batch waits for its copies at the sinks): the figures are ovs-vswitchd's CPU time,
less what it spends idle over the same wall time (its main loop and revalidators), over
the copies it delivered — not a rate the generator could limit.
"""
from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from pyroute2 import IPRoute

from dfxdp.bench.trafficgen import cpu_ns
from dfxdp.controller.frames import ipv4_udp_frame
from dfxdp.controller.ovs.tunnels import FALLBACK_VXLAN_PORT
from dfxdp.testing.netns import Topology, inside, run
from dfxdp.testing.ovs import OvsServer

BATCH = 64              # frames sent before waiting for their copies (AF_PACKET on OVS's side drops bursts)
SETTLE_TIMEOUT = 10.0
IDLE_SECONDS = 1.0      # how long ovs-vswitchd's idle CPU use is measured, to subtract it
REPLICATION = ((1, 0), (4, 0), (16, 0), (1, 1), (1, 4), (1, 16), (4, 4))  # (local taps, other chassis)
TUNNEL_IP, REMOTE_NET = "198.18.255.1", "198.18.255"
GATEWAY_IP, OUTSIDE = "198.19.0.10", "198.19.0.100"
VM_MAC, OUT_MAC = bytes.fromhex("fa163e000001"), bytes.fromhex("020000000064")


@dataclass
class ReplicationCost:
    local_taps: int
    remote_chassis: int
    broadcasts: int
    copies: int                 # delivered: local copies + encapsulated ones
    cpu_us_per_broadcast: float
    cpu_us_per_copy: float


@dataclass
class SnatCost:
    kind: str                   # "new" (a session per frame) or "established" (one flow)
    frames: int                 # translated and delivered out of the external NIC
    cpu_us_per_frame: float
    per_cpu_second: float       # frames (new: sessions) per second of ovs-vswitchd CPU
    tracked_sessions: int       # entries in the SNAT zone after the run


class Rig:
    """ovs-vswitchd in a namespace: `in0` from the generator, sinks `o<i>` (taps) and
    `und0` (the underlay, for encapsulated copies) whose far ends are only counted."""

    def __init__(self, topo: Topology, sinks: int):
        self.topo = topo
        self.switch_ns, self.gen_ns, self.sink_ns = topo.netns("sw"), topo.netns("gen"), topo.netns("sink")
        topo.veth("in0", self.switch_ns, "gen0", self.gen_ns, vm_end="peer")
        self.sinks = [f"s{i}" for i in range(sinks)]
        for i, name in enumerate(self.sinks):
            topo.veth(f"o{i}", self.switch_ns, name, self.sink_ns, vm_end=None)
        topo.veth("und0", self.switch_ns, "fab0", self.sink_ns, vm_end=None)
        for link in ("in0", "und0", *(f"o{i}" for i in range(sinks))):
            run(["ethtool", "-K", link, "tx", "off"], ns=self.switch_ns)
        self.ovs = OvsServer(ns=self.switch_ns).start()
        self.pid = next(d.pid for d in self.ovs.daemons if "vswitchd" in str(d.args))
        self.ovs.add_bridge("br-int")
        self.ofport = {name: self.ovs.add_port("br-int", name) for name in ("in0", *(f"o{i}" for i in range(sinks)))}
        self._tunnel()
        with inside(self.gen_ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.bind(("gen0", 0))
        with inside(self.sink_ns):
            self.ipr = IPRoute()
        self.counted = {*self.sinks, "fab0"}

    def _tunnel(self) -> None:
        """br-int's flow-based VXLAN port and br-ul, as controller/ovs/tunnels.py builds them."""
        ovs = self.ovs
        ovs.vsctl("add-port", "br-int", "vxlan0", "--", "set", "interface", "vxlan0", "type=vxlan",
                  "options:remote_ip=flow", "options:key=flow", f"options:dst_port={FALLBACK_VXLAN_PORT}",
                  f"options:local_ip={TUNNEL_IP}")
        self.ofport["vxlan0"] = int(ovs.vsctl("get", "interface", "vxlan0", "ofport").stdout)
        ovs.add_bridge("br-ul")
        nic = ovs.add_port("br-ul", "und0")
        ovs.add_flows("br-ul", [f"in_port=LOCAL,actions=output:{nic}", "priority=0,actions=drop"])
        run(["ip", "addr", "add", f"{TUNNEL_IP}/24", "dev", "br-ul"], ns=self.switch_ns)
        ovs.appctl("ovs-vswitchd", "ovs/route/add", f"{REMOTE_NET}.0/24", "br-ul")
        for host in range(2, 2 + max(r for _, r in REPLICATION)):
            ovs.appctl("ovs-vswitchd", "tnl/neigh/set", "br-ul", f"{REMOTE_NET}.{host}", f"02:00:00:00:01:{host:02x}")

    def flows(self, flows: list[str]) -> None:
        self.ovs.ofctl("del-flows", "br-int")
        self.ovs.add_flows("br-int", flows)

    def delivered(self) -> int:
        """Frames the sinks and the underlay's far end received so far (netlink link stats)."""
        with inside(self.sink_ns):
            links = self.ipr.get_links()
        return sum(link.get_attr("IFLA_STATS64")["rx_packets"] for link in links
                   if link.get_attr("IFLA_IFNAME") in self.counted)

    def idle_cpu_rate(self) -> float:
        """ovs-vswitchd's CPU seconds per second while nothing is sent."""
        before, start = cpu_ns((self.pid,)), time.perf_counter()
        time.sleep(IDLE_SECONDS)
        return (cpu_ns((self.pid,)) - before) / 1e9 / (time.perf_counter() - start)

    def drive(self, frames: Callable[[int], bytes], count: int, copies_each: int) -> tuple[int, float]:
        """Send `count` frames (frames(i) is the i-th), each batch waiting for its copies;
        (copies delivered, ovs-vswitchd CPU seconds spent on them: less its idle rate)."""
        idle = self.idle_cpu_rate()
        start_copies, start_cpu, start = self.delivered(), cpu_ns((self.pid,)), time.perf_counter()
        sent = 0
        while sent < count:
            batch = min(BATCH, count - sent)
            for i in range(sent, sent + batch):
                self.sock.send(frames(i))
            sent += batch
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while self.delivered() - start_copies < sent * copies_each and time.monotonic() < deadline:
                time.sleep(0.0002)
        busy = (cpu_ns((self.pid,)) - start_cpu) / 1e9 - idle * (time.perf_counter() - start)
        return self.delivered() - start_copies, max(busy, 0.0)

    def close(self) -> None:
        self.sock.close()
        self.ipr.close()
        self.ovs.close()


@contextlib.contextmanager
def rig(sinks: int) -> Iterator[Rig]:
    with Topology("bfb") as topo:
        r = Rig(topo, sinks)
        try:
            yield r
        finally:
            r.close()


def replication_flows(r: Rig, local: int, remote: int) -> list[str]:
    """The flood app's table-20 action list for a broadcast: each local tap, then one copy
    per other chassis (tunnel destination and VNI, out of vxlan0)."""
    actions = [f"output:{r.ofport[f'o{i}']}" for i in range(local)]
    actions += [f"set_field:{REMOTE_NET}.{2 + i}->tun_dst,set_field:0x5->tun_id,output:{r.ofport['vxlan0']}"
                for i in range(remote)]
    return [f"table=0,priority=100,in_port={r.ofport['in0']},actions=goto_table:20",
            f"table=20,priority=60,ip,actions={','.join(actions)}", "table=0,priority=0,actions=drop"]


def measure_replication(broadcasts: int, step: Callable[[str], None] = lambda _: None) -> list[ReplicationCost]:
    frame = ipv4_udp_frame(VM_MAC, b"\xff" * 6, "10.0.0.5", "255.255.255.255", 5000, 5000, bytes(64))
    out = []
    with rig(max(local for local, _ in REPLICATION)) as r:
        for local, remote in REPLICATION:
            r.flows(replication_flows(r, local, remote))
            r.drive(lambda _: frame, BATCH, local + remote)  # warm: the datapath's flow cache
            copies, cpu = r.drive(lambda _: frame, broadcasts, local + remote)
            done = copies / (local + remote)
            out.append(ReplicationCost(local, remote, broadcasts, copies, cpu * 1e6 / max(done, 1),
                                       cpu * 1e6 / max(copies, 1)))
            step(f"BUM to {local} taps, {remote} chassis")
    return out


def snat_flows(r: Rig) -> list[str]:
    """What the snat app installs on the SNAT chassis for one router (table numbers as there)."""
    return [f"table=0,priority=100,in_port={r.ofport['in0']},ip,actions=goto_table:30",
            "table=30,priority=100,ip,nw_src=10.0.0.0/24,actions=set_field:fa:16:3e:00:00:aa->eth_src,dec_ttl,"
            f"ct(commit,zone=4,nat(src={GATEWAY_IP}),table=31)",
            f"table=31,priority=100,ct_zone=4,ip,nw_dst={OUTSIDE},actions=set_field:02:00:00:00:00:64->eth_dst,"
            f"output:{r.ofport['o0']}", "table=0,priority=0,actions=drop"]


def measure_snat(sessions: int, step: Callable[[str], None] = lambda _: None) -> list[SnatCost]:
    def new(i: int) -> bytes:  # another source port (and address, past 60,000) each frame
        return ipv4_udp_frame(VM_MAC, OUT_MAC, f"10.0.0.{2 + i // 60000}", OUTSIDE, 1024 + i % 60000, 80, bytes(32))

    established = ipv4_udp_frame(VM_MAC, OUT_MAC, "10.0.0.250", OUTSIDE, 999, 80, bytes(32))
    out = []
    with rig(1) as r:
        r.flows(snat_flows(r))
        for kind, frames in (("new", new), ("established", lambda _: established)):
            copies, cpu = r.drive(frames, sessions, 1)
            tracked = len([line for line in r.ovs.appctl("ovs-vswitchd", "dpctl/dump-conntrack", "zone=4")
                           .stdout.splitlines() if line.strip()])
            out.append(SnatCost(kind, copies, cpu * 1e6 / max(copies, 1), copies / cpu if cpu else 0.0, tracked))
            step(f"SNAT {kind}")
    return out


if __name__ == "__main__":  # python -m dfxdp.bench.fallback: both, small
    for row in measure_replication(2000) + measure_snat(5000):
        print(row)
