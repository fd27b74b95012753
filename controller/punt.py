"""The agent's end of the punt path: frames the datapath handed up, to the apps; their replies, out.

A stage that cannot answer a frame itself (DHCP, IGMP, a DNS name XDP does not
know) calls punt(ctx, m, reason) (bpf/lib/punt.h): the frame and its port go
into the `punt_ring` ring buffer as a `struct punt_header` (maps/punt.h) and
the frame bytes, limited per port in the datapath. Here one reader thread polls
the ring and calls on_punt(packet) of every app that lists the reason in its
`punt_reasons`; the app answers with packet.reply(frame).

Replies leave through an AF_PACKET socket of the chassis' namespace, addressed
to the port's interface. Sending on the host end of a tap is the tap's
transmit, which is what the VM reads from its tap; on a veth it is the receive
of the VM's end. So the frame reaches the VM exactly as if the pipeline had
redirected it there. It does not cross the port's XDP program, which only sees
what the VM sends: a reply is never punted again. Like Dragonflow's packet-out
it is the controller's own frame and is not filtered by security groups.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from dfxdp.datapath.libbpf import Map, RingBuffer, ffi, lib

from .apps.base import App, LocalView

log = logging.getLogger(__name__)

HEADER_SIZE = ffi.sizeof("struct punt_header")
ETH_HLEN = 14
MAX_REPLY = 65535
POLL_MS = 100  # how soon the reader notices stop()
PUNT_REASONS = {name: value for name, value in ffi.typeof("enum dfxdp_punt_reason").relements.items()
                if name != "PUNT_REASON_MAX"}


class MalformedPunt(ValueError):
    """A ring record that is not a punt_header followed by its frame."""


class ReplySender:
    """Sends Ethernet frames out of a port; the socket belongs to the namespace it is made in."""

    def __init__(self) -> None:
        # protocol 0: this socket receives nothing, it only sends
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)

    def send(self, ifindex: int, frame: bytes) -> None:
        if not ETH_HLEN <= len(frame) <= MAX_REPLY:
            raise ValueError(f"a reply frame is {ETH_HLEN} to {MAX_REPLY} bytes, not {len(frame)}")
        ret = lib.dfxdp_packet_send(self._sock.fileno(), ifindex, frame, len(frame))
        if ret < 0:  # the port is gone, or the frame is over its MTU (EMSGSIZE)
            raise OSError(-ret, f"sending a {len(frame)}-byte reply out of ifindex {ifindex}: {os.strerror(-ret)}")

    def close(self) -> None:
        self._sock.close()


@dataclass(frozen=True)
class PuntedPacket:
    """One punted frame: where it came in, why, and how to answer it."""

    ifindex: int
    port_key: int
    net_key: int
    reason: int
    frame: bytes
    view: LocalView | None = field(repr=False, compare=False)  # the agent's last pass, read-only
    sender: ReplySender = field(repr=False, compare=False)

    def reply(self, frame: bytes) -> None:
        """Send `frame` out of the port this packet came in on."""
        self.sender.send(self.ifindex, frame)


def parse_record(record: bytes) -> tuple[dict, bytes]:
    """A ring record as (header fields, frame); MalformedPunt when it is not one."""
    if len(record) < HEADER_SIZE:
        raise MalformedPunt(f"record of {len(record)} bytes, shorter than its {HEADER_SIZE}-byte header")
    header = ffi.new("struct punt_header *")
    ffi.memmove(header, record, HEADER_SIZE)
    length = header.frame_len
    if not ETH_HLEN <= length <= len(record) - HEADER_SIZE:
        raise MalformedPunt(f"frame length {length} outside {ETH_HLEN}..{len(record) - HEADER_SIZE}")
    if header.reason not in PUNT_REASONS.values():
        raise MalformedPunt(f"unknown punt reason {header.reason}")
    fields = {"ifindex": header.ifindex, "port_key": header.port_key, "net_key": header.net_key,
              "reason": header.reason}
    return fields, record[HEADER_SIZE:HEADER_SIZE + length]


class PuntService:
    """Reads the punt ring in its own thread and dispatches each frame to its apps."""

    def __init__(self, maps: Mapping[str, Map], apps: Iterable[App], sender: ReplySender | None = None,
                 on_count: Callable[[str], None] = lambda outcome: None):
        self.handlers: dict[int, list[App]] = {}
        for app in apps:
            for reason in app.punt_reasons:
                if reason not in PUNT_REASONS.values():
                    raise ValueError(f"app {app.name}: punt reason {reason} is not in enum dfxdp_punt_reason")
                self.handlers.setdefault(reason, []).append(app)
        self.sender = sender or ReplySender()
        self.view: LocalView | None = None  # set by the agent after each pass
        # received, dispatched, malformed, unclaimed (no app for the reason), failed (an app raised)
        self.stats: Counter[str] = Counter()
        self._on_count = on_count  # the same outcomes, to the agent's metrics
        self._ring = RingBuffer(maps["punt_ring"], self.handle)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "PuntService":
        self._thread = threading.Thread(target=self._run, name="punt-reader", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._ring.close()
        self.sender.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._ring.poll(POLL_MS)
            except OSError as exc:
                log.warning("punt reader: %s", exc)
                self._stop.wait(POLL_MS / 1000)

    def _count(self, outcome: str) -> None:
        self.stats[outcome] += 1
        self._on_count(outcome)

    def handle(self, record: bytes) -> None:
        """One ring record: parse, hand to every app registered for its reason."""
        self._count("received")
        try:
            fields, frame = parse_record(record)
        except MalformedPunt as exc:
            self._count("malformed")
            log.debug("punt: dropped a malformed record: %s", exc)
            return
        apps = self.handlers.get(fields["reason"], [])
        if not apps:
            self._count("unclaimed")
            return
        packet = PuntedPacket(**fields, frame=frame, view=self.view, sender=self.sender)
        for app in apps:
            try:
                app.on_punt(packet)
                self._count("dispatched")
            except Exception:  # noqa: BLE001 - one app's bug must not stop the punt path for the others
                self._count("failed")
                log.exception("app %s failed on a punted frame from ifindex %d", app.name, packet.ifindex)
