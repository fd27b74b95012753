"""The punt round trip on a real veth: a VM namespace whose port runs the pipeline
with the DHCP punt hook (bpf/hook_punt_dhcp.c) in the hook slot, and the
agent's punt service with an app that answers every punted frame.

    with PuntRig("t") as rig:
        rig.send(rig.request(xid=1))
        reply = rig.receive(timeout=5)

Used by tests/e2e/test_punt.py and `dfxdp bench` (dfxdp/bench/punt.py).
Everything it builds (namespaces, bpffs, pins, sockets) goes in close().
"""
from __future__ import annotations

import os
import pathlib
import select
import socket
import subprocess
import time
import uuid

from dfxdp.controller.apps.base import App, mac_bytes
from dfxdp.controller.punt import PuntService
from dfxdp.datapath.libbpf import BpfObject, ensure_bpffs, lib
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


class PuntRig:
    def __init__(self, prefix: str = "punt", apps: list[App] | None = None):
        self.apps = apps if apps is not None else [Echo()]
        self.topo = Topology(prefix)
        self.bpffs = pathlib.Path(f"/run/dfxdp/{prefix}-{uuid.uuid4().hex[:8]}")
        self.pipeline: Pipeline | None = None
        self.hook: BpfObject | None = None
        self.service: PuntService | None = None
        self.vm_socket: socket.socket | None = None
        self.attached = False

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
        self.vm, self.host = self.topo.netns("vm"), self.topo.netns("host")
        self.topo.veth("tap0", self.host, "eth0", self.vm, peer_mac=VM_MAC)
        self.port = ifindex("tap0", self.host)
        ensure_bpffs(self.bpffs)
        self.pipeline = Pipeline(self.bpffs / "chassis").load()
        self.pipeline.maps["if_config"].update(self.port, {"net_key": 42, "port_key": 7, "flags": lib.IF_F_PORT})
        self.hook = BpfObject(object_path("hook_punt_dhcp"), pin_root=self.pipeline.maps_dir).load()
        self.pipeline.set_hook(self.hook.programs["hook_punt_dhcp"])
        with inside(self.host):  # the agent's namespace: attachment and the reply socket live there
            self.pipeline.attach(self.port, "port")
            self.attached = True
            self.service = PuntService(self.pipeline.maps, self.apps).start()
        with inside(self.vm):
            self.vm_socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.vm_socket.bind(("eth0", ETH_P_ALL))

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
        if self.vm_socket is not None:
            self.vm_socket.close()
        if self.service is not None:
            self.service.stop()
        if self.attached:
            with inside(self.host):
                self.pipeline.detach(self.port)
        if self.hook is not None:
            self.pipeline.set_hook(None)
            self.hook.close()
        if self.pipeline is not None:
            self.pipeline.destroy()
        self.topo.close()
        if self.bpffs.is_dir():
            subprocess.run(["umount", "-l", str(self.bpffs)], check=False)
            os.rmdir(self.bpffs)
