"""rtnetlink over a plain socket: the few questions the agent asks the kernel (its links, their
link events, the neighbour table, the route to an address).

Why not pyroute2: importing it takes 0.5–0.8 s on a loaded machine (it loads its whole
package), which a new chassis' agent paid before its first pass, and it opened two sockets a
pass. The messages are fixed C structs (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h,
linux/neighbour.h) followed by attributes; only what is read here is decoded.
"""
from __future__ import annotations

import errno
import os
import select
import socket
import struct
from dataclasses import dataclass
from typing import Iterator

NETLINK_ROUTE = 0
RTMGRP_LINK = 1
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU = 1, 3, 4
RTA_DST, RTA_GATEWAY = 1, 5
NDA_DST, NDA_LLADDR = 1, 2

NLMSGHDR = struct.Struct("=IHHII")      # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")    # family, type, index, flags, change
RTMSG = struct.Struct("=BBBBBBBBI")     # family, dst_len, src_len, tos, table, protocol, scope, type, flags
NDMSG = struct.Struct("=BxxxiHBB")      # family, ifindex, state, flags, type
RTATTR = struct.Struct("=HH")           # len, type
RECV_SIZE = 1 << 16


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mtu: int
    mac: str


def _align(n: int) -> int:
    return (n + 3) & ~3


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """A message's attributes after its fixed header, by type (nested ones left packed)."""
    out = {}
    while offset + RTATTR.size <= len(data):
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size:
            break
        out[kind & 0x3FFF] = data[offset + RTATTR.size:offset + length]
        offset += _align(length)
    return out


def messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, body) of each netlink message in one datagram."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size:
            break
        yield kind, data[offset + NLMSGHDR.size:offset + length]
        offset += _align(length)


def parse_link(body: bytes) -> Link:
    _, _, index, _, _ = IFINFOMSG.unpack_from(body)
    attrs = attributes(body, IFINFOMSG.size)
    mtu = struct.unpack("=I", attrs[IFLA_MTU])[0] if IFLA_MTU in attrs else 0
    return Link(index, attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(), mtu,
                ":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b"")))


def _socket(groups: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, groups))
    return sock


def request(kind: int, payload: bytes, flags: int = 0) -> list[tuple[int, bytes]]:
    """One request on a socket of its own; every answer message (a dump's until its end)."""
    with _socket() as sock:
        sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(payload), kind, NLM_F_REQUEST | flags, 1, 0) + payload)
        out = []
        while True:
            for answer, body in messages(sock.recv(RECV_SIZE)):
                if answer == NLMSG_DONE:
                    return out
                if answer == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return out  # an acknowledgement
                out.append((answer, body))
            if not flags & NLM_F_DUMP:
                return out


def links() -> list[Link]:
    """Every link of this network namespace."""
    return [parse_link(body) for kind, body in request(RTM_GETLINK, IFINFOMSG.pack(0, 0, 0, 0, 0), NLM_F_DUMP)
            if kind == RTM_NEWLINK]


def link(name: str) -> Link:
    """One link by name (ValueError when there is none)."""
    found = next((found for found in links() if found.name == name), None)
    if found is None:
        raise ValueError(f"interface {name!r} does not exist in this network namespace")
    return found


def neighbours() -> dict[tuple[str, int], tuple[str, int]]:
    """(IPv4 address, ifindex) -> (MAC, NUD state) of the neighbour table."""
    out = {}
    for kind, body in request(RTM_GETNEIGH, NDMSG.pack(socket.AF_INET, 0, 0, 0, 0), NLM_F_DUMP):
        _, ifindex, state, _, _ = NDMSG.unpack_from(body)
        attrs = attributes(body, NDMSG.size)
        if kind == RTM_NEWNEIGH and len(attrs.get(NDA_DST, b"")) == 4 and NDA_LLADDR in attrs:
            out[(socket.inet_ntoa(attrs[NDA_DST]), ifindex)] = (
                ":".join(f"{b:02x}" for b in attrs[NDA_LLADDR]), state)
    return out


def next_hop(dst: str) -> str:
    """The address to ARP for on the way to an IPv4 address: its route's gateway, or itself
    (OSError when there is no route)."""
    attr = RTATTR.pack(RTATTR.size + 4, RTA_DST) + socket.inet_aton(dst)
    for kind, body in request(RTM_GETROUTE, RTMSG.pack(socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, 0) + attr):
        gateway = attributes(body, RTMSG.size).get(RTA_GATEWAY) if kind == RTM_NEWROUTE else None
        if gateway:
            return socket.inet_ntoa(gateway)
    return dst


class LinkEvents:
    """A socket subscribed to link events; read() waits for the next batch (None once closed).
    Subscribed when made: a link added after that is in an event."""

    def __init__(self) -> None:
        self._sock = _socket(RTMGRP_LINK)
        self._wake_r, self._wake_w = os.pipe()

    def read(self) -> list[tuple[bool, Link]] | None:
        """(present, link) for each link event, or [] after lost events (ENOBUFS: re-read every
        link), None once closed."""
        try:
            ready, _, _ = select.select([self._sock, self._wake_r], [], [])
            if self._wake_r in ready:
                return None
            data = self._sock.recv(RECV_SIZE)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return []
            raise
        return [(kind == RTM_NEWLINK, parse_link(body)) for kind, body in messages(data)
                if kind in (RTM_NEWLINK, RTM_DELLINK)]

    def close(self) -> None:
        os.write(self._wake_w, b"x")

    def release(self) -> None:
        """Free the socket and pipe (the reader, after read() returned None)."""
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
