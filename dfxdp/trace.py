"""`dfxdp trace`: what the live pipeline of a chassis does to one packet.

The packet runs through the pinned programs with BPF_PROG_TEST_RUN: nothing is
transmitted, a redirect only says where the frame would go. It is a real run
over the live maps, so it touches what a real frame would: the per-CPU
counters (stage, verdict, drop, security group stats), a conntrack entry when a
security group allows a new flow, and the external-neighbour cache when the
frame comes in on the external NIC. Forwarding of live traffic is not disturbed. A
frame of a flow the fast path has cached is forwarded from the cache, and the story
says so; one the stages forward may be recorded there, as a real frame would.
"""
from __future__ import annotations

import ipaddress
import os
import pathlib
import socket
import sys
from dataclasses import dataclass, field

from .datapath.hooks import HookSlots
from .datapath.libbpf import Map, Program, lib
from .datapath.pipeline import ENTRIES, HOOK_SLOTS, STAGE_NAMES, counters_from
from .datapath.pktrun import PacketRun, run_packet

STAGE_STORY = {
    "STAGE_ENTRY_PORT": "entry (port): frame validated, interface record found",
    "STAGE_ENTRY_UNDERLAY": "entry (underlay): VXLAN for a port bound here, decapsulated",
    "STAGE_PORTSEC": "port security: source MAC/IP checked",
    "STAGE_SG_EGRESS": "security groups, egress of the source port",
    **{STAGE_NAMES[slot]: f"user hook {i}" for i, slot in enumerate(HOOK_SLOTS)},
    "STAGE_LB": "load balancer",
    "STAGE_DNS": "DNS responder",
    "STAGE_L3": "distributed router",
    "STAGE_L2": "L2: ARP responder and forwarding by (network, MAC)",
    "STAGE_SG_INGRESS": "security groups, ingress of the destination port",
    "STAGE_OUTPUT": "output",
}
FAST_PATH_STORY = ("fast path: a frame of an established flow, forwarded as the stages decided for its "
                   "earlier frames (fast_flows; docs/datapath.md); port security, security groups, routing "
                   "and neighbours were not looked up again")
SCAPY_NAMES = ("Ether", "IP", "TCP", "UDP", "ICMP", "ARP", "Raw", "IPv6", "Dot1Q")


class PinnedPipeline:
    """The pipeline of a running chassis, opened from its pins (what run_packet needs)."""

    def __init__(self, bpffs: str | os.PathLike):
        self.dir = pathlib.Path(bpffs)
        if not (self.dir / "progs").is_dir():
            raise FileNotFoundError(f"no pinned dfxdp pipeline under {self.dir} (is the agent running there?)")
        self.maps = {name: Map.pinned(self.dir / "maps" / name)
                     for name in ("stage_stats", "verdict_stats", "drop_stats", "pkt_scratch")}
        self._entries: dict[str, Program] = {}

    def entry(self, kind: str) -> Program:
        if kind not in self._entries:
            self._entries[kind] = Program.pinned(self.dir / "progs" / ENTRIES[kind])
        return self._entries[kind]

    def counters(self):
        return counters_from(self.maps)

    def close(self) -> None:
        for m in self.maps.values():
            m.close()
        for p in self._entries.values():
            p.close()


def parse_packet(text: str) -> bytes:
    """scapy syntax (only layer names in scope), hex, or a pcap file's first packet."""
    path = pathlib.Path(text)
    if path.is_file():
        from scapy.utils import rdpcap

        packets = rdpcap(str(path))
        if not packets:
            raise ValueError(f"{text}: the pcap file holds no packet")
        return bytes(packets[0])
    compact = text.replace(" ", "").replace(":", "")
    if compact and all(c in "0123456789abcdefABCDEF" for c in compact) and len(compact) % 2 == 0:
        return bytes.fromhex(compact)
    import scapy.all as scapy

    scope = {name: getattr(scapy, name) for name in SCAPY_NAMES}
    try:
        packet = eval(text, {"__builtins__": {}}, scope)  # noqa: S307 - no builtins, scapy layers only
    except Exception as exc:  # noqa: BLE001 - anything wrong in the expression is the user's to fix
        raise ValueError(f"cannot build the packet {text!r}: {exc}") from None
    if not isinstance(packet, scapy.Packet):
        raise ValueError(f"{text!r} is not a packet")
    return bytes(packet)


def _ifname(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"ifindex {ifindex}"


def _addr(be32: int) -> str:
    return str(ipaddress.ip_address(be32.to_bytes(4, sys.byteorder)))


@dataclass
class Trace:
    run: PacketRun
    ingress: str
    hooks: dict[str, str] = field(default_factory=dict)  # hook stage -> its program, for the story
    fallback: str | None = None  # for a frame XDP passes: what OVS's br-int does with it (ofproto/trace)

    @property
    def destination(self) -> str:
        v, m = self.run.verdict, self.run.meta
        if v == "XDP_REDIRECT":
            out = _ifname(m["out_ifindex"])
            if m["flags"] & lib.PKT_F_DST_REMOTE:
                return f"VXLAN (VNI {m['net_key']}) to chassis {_addr(m['tunnel_dst'])} via {out}"
            if m["out_ifindex"] == m["in_ifindex"]:
                return f"answered: sent back out of {out}"
            return f"redirected to {out}"
        if v == "XDP_PASS":
            return "to the kernel: the fallback path (OVS) handles it"
        if v == "XDP_TX":
            return f"sent back out of {self.ingress}"
        return "dropped"

    @property
    def fast_path(self) -> bool:
        return bool(self.run.meta.get("flags", 0) & lib.PKT_F_FAST)

    def as_dict(self) -> dict:
        from scapy.layers.l2 import Ether

        return {"verdict": self.run.verdict, "reason": self.run.drop_reason, "stages": self.run.stages,
                "fast_path": self.fast_path,
                "destination": self.destination, "out_ifindex": self.run.meta.get("out_ifindex", 0),
                "output": {"hex": self.run.data.hex(), "summary": Ether(self.run.data).summary()},
                "fallback": self.fallback}

    def story(self) -> str:
        from scapy.layers.l2 import Ether

        lines = [f"ingress: {self.ingress}"]
        for i, stage in enumerate(self.run.stages, 1):
            hook = f": {self.hooks[stage]}" if stage in self.hooks else ""
            lines.append(f"  {i}. {STAGE_STORY.get(stage, stage)}{hook}")
        if self.fast_path:
            lines.append(f"  {len(self.run.stages) + 1}. {FAST_PATH_STORY}")
        reason = f" ({self.run.drop_reason})" if self.run.drop_reason else ""
        if self.run.drop_reason == "DROP_STAGE_MISSING":  # the slot next_stage found empty
            missing = STAGE_NAMES[self.run.meta["stage"]]
            reason = f" ({self.run.drop_reason}: {missing} has no program, the pipeline fails closed)"
        lines.append(f"verdict: {self.run.verdict}{reason}")
        lines.append(f"where: {self.destination}")
        if self.run.verdict != "XDP_DROP":
            lines.append(f"output: {Ether(self.run.data).summary()}")
        if self.fallback is not None:
            lines.append("fallback: OVS br-int (ofproto/trace):")
            lines += ["  " + line for line in self.fallback.rstrip().splitlines()]
        return "\n".join(lines)


def ovs_trace(ovsdb_url: str, in_port: str, frame: bytes) -> str:
    """What br-int does with a frame that entered it from `in_port`, in OVS's words: the
    tables and flows it went through and the datapath actions (ovs-appctl ofproto/trace).
    Raises OvsError when ovs-vswitchd cannot be asked."""
    from dfxdp.controller.ovs.bridge import INTEGRATION_BRIDGE, Ovsdb

    out = Ovsdb(ovsdb_url).appctl("ofproto/trace", INTEGRATION_BRIDGE, f"in_port={in_port}", frame.hex())
    start = out.find("bridge(")  # from the first table on; the flow OVS parsed is the output above
    return out[start:] if start >= 0 else out


def trace(bpffs: str | os.PathLike, ifindex: int, frame: bytes, entry: str = "port") -> Trace:
    pipe = PinnedPipeline(bpffs)
    try:
        return Trace(run_packet(pipe, frame, ingress_ifindex=ifindex, entry=entry), _ifname(ifindex),
                     _hook_names(bpffs))
    finally:
        pipe.close()


def _hook_names(bpffs: str | os.PathLike) -> dict[str, str]:
    """{hook stage: "program (priority P)"} of the hooks in the chassis' pipeline."""
    slots = HookSlots(bpffs)
    try:
        return {h.stage: h.name if h.priority is None else f"{h.name} (priority {h.priority})"
                for h in slots.list()}
    finally:
        slots.close()
