"""The punt round trip on a real veth: a VM namespace whose port runs the pipeline
with the DHCP punt hook (bpf/hook_punt_dhcp.c) in a hook slot, and the
agent's punt service with an app that answers every punted frame.

    with PuntRig("t") as rig:
        rig.send(rig.request(xid=1))
        reply = rig.receive(timeout=5)

Used by tests/e2e/test_punt.py and `dfxdp bench` (dfxdp/bench/punt.py).
Everything it builds (namespaces, bpffs, pins, sockets) goes in close().
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import select
import socket
import subprocess
import time
import uuid
from typing import Iterator

from dfxdp.controller.apps.base import App, mac_bytes
from dfxdp.controller.punt import PuntService
from dfxdp.datapath.hooks import Hook, HookSlots
from dfxdp.datapath.libbpf import RingBuffer, ensure_bpffs, lib
from dfxdp.datapath.pipeline import Pipeline, object_path

from .netns import Topology, ifindex, inside

VM_MAC = "fa:16:3e:00:00:01"
SERVER_MAC = "fa:16:3e:ff:ff:01"  # what the answering app puts as the reply's source
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def dhcp_discover(xid: int, mac: str = VM_MAC) -> bytes:
    """A DHCP DISCOVER from a VM: broadcast, UDP 68 -> 67, what the hook punts."""
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
                 / UDP(sport=68, dport=67) / BOOTP(chaddr=mac_bytes(mac), xid=xid)
                 / DHCP(options=[("message-type", "discover"), "end"]))


def drained(pipeline: Pipeline) -> list[bytes]:
    """Every record waiting in the punt ring."""
    records: list[bytes] = []
    ring = RingBuffer(pipeline.maps["punt_ring"], records.append)
    try:
        ring.poll(0)
    finally:
        ring.close()
    return records


class Echo(App):
    """Answers each punted DHCP frame with the same payload, addressed back to its sender:
    the cheapest reply, so the bench measures the path and not an app."""

    name = "punt-echo"
    punt_reasons = (lib.PUNT_DHCP,)

    def __init__(self) -> None:
        self.received = 0

    def on_punt(self, packet) -> None:
        self.received += 1
        packet.reply(packet.frame[6:12] + mac_bytes(SERVER_MAC) + packet.frame[12:])


@contextlib.contextmanager
def dhcp_punt_hook(chassis_dir: pathlib.Path) -> Iterator[Hook]:
    """bpf/hook_punt_dhcp.c attached to a hook slot of the pipeline pinned under
    `chassis_dir` while the block runs, as `dfxdp hook attach` would."""
    with HookSlots(chassis_dir) as slots:
        hook = slots.attach(object_path("hook_punt_dhcp"))
    try:
        yield hook
    finally:
        with HookSlots(chassis_dir) as slots:
            slots.detach(slot=hook.index)


@contextlib.contextmanager
def _private_bpffs(path: pathlib.Path) -> Iterator[pathlib.Path]:
    ensure_bpffs(path)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        os.rmdir(path)


class PuntRig:
    def __init__(self, prefix: str = "punt", apps: list[App] | None = None):
        self.prefix = prefix
        self.apps = apps if apps is not None else [Echo()]
        self._stack = contextlib.ExitStack()  # everything built, undone in reverse by close()

    def __enter__(self) -> "PuntRig":
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        stack = self._stack
        topo = stack.enter_context(Topology(self.prefix))
        self.vm, self.host = topo.netns("vm"), topo.netns("host")
        topo.veth("tap0", self.host, "eth0", self.vm, peer_mac=VM_MAC)
        self.port = ifindex("tap0", self.host)
        bpffs = stack.enter_context(_private_bpffs(pathlib.Path(f"/run/dfxdp/{self.prefix}-{uuid.uuid4().hex[:8]}")))
        self.pipeline = Pipeline(bpffs / "chassis").load()
        stack.callback(self.pipeline.destroy)
        self.pipeline.maps["if_config"].update(self.port, {"net_key": 42, "port_key": 7, "flags": lib.IF_F_PORT})
        stack.enter_context(dhcp_punt_hook(self.pipeline.dir))
        with inside(self.host):  # the agent's namespace: attachment and the reply socket live there
            self.pipeline.attach(self.port, "port")
            stack.callback(self._detach)
            self.service = PuntService(self.pipeline.maps, self.apps).start()
            stack.callback(self.service.stop)
        with inside(self.vm):
            self.vm_socket = stack.enter_context(
                socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)))
            self.vm_socket.bind(("eth0", ETH_P_ALL))

    def _detach(self) -> None:
        with inside(self.host):
            self.pipeline.detach(self.port)

    def set_limit(self, packets: int, interval_ms: int) -> None:
        """The datapath's per-port punt limit (maps/punt.h)."""
        self.pipeline.maps["punt_limit"].update(0, {"packets": packets, "interval_ms": interval_ms})

    def send(self, frame: bytes) -> None:
        """`frame` out of the VM's eth0: into the port, through XDP."""
        self.vm_socket.send(frame)

    def receive(self, timeout: float) -> bytes | None:
        """The next frame the VM receives from SERVER_MAC, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.vm_socket], [], [], left)[0]:
                break
            frame, address = self.vm_socket.recvfrom(65535)
            if address[2] != PACKET_OUTGOING and frame[6:12] == mac_bytes(SERVER_MAC):
                return frame
        return None

    def close(self) -> None:
        self._stack.close()
