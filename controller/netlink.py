"""rtnetlink over a plain socket: the few questions the agent asks the kernel (its links, their
link events, the neighbour table, the route to an address).

Why not pyroute2: importing it takes 0.5–0.8 s on a loaded machine (it loads its whole
package), which a new chassis' agent paid before its first pass, and it opened two sockets a
pass. The messages are the kernel's structs (declared to cffi in dfxdp/datapath/libbpf_build.py,
laid out by the compiler from linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h) followed by
attributes; only what is read here is decoded.
"""
from __future__ import annotations

import errno
import os
import select
import socket
import sys
from dataclasses import dataclass
from typing import Iterator

from dfxdp.datapath.libbpf import ffi

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
RECV_SIZE = 1 << 16
# the kernel's structs (linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h) through the cffi
# build (dfxdp/datapath/libbpf_build.py): the compiler lays them out, nothing is restated here
HEADER, RTATTR = ffi.sizeof("struct nlmsghdr"), ffi.sizeof("struct rtattr")


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mtu: int
    mac: str


def _align(n: int) -> int:
    return (n + 3) & ~3


def _struct(kind: str, **fields) -> bytes:
    """One of the kernel's structs, zeroed but for `fields`, as bytes."""
    made = ffi.new(f"struct {kind} *")
    for name, value in fields.items():
        setattr(made, name, value)
    return bytes(ffi.buffer(made))


def _read(kind: str, data: bytes, offset: int = 0):
    """A view of the struct `kind` at `offset` of `data` (the bytes must outlive it)."""
    return ffi.from_buffer(f"struct {kind} *", memoryview(data)[offset:offset + ffi.sizeof(f"struct {kind}")])


def _u32(value: bytes) -> int:
    return int.from_bytes(value[:4], sys.byteorder)  # a native __u32 attribute


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """A message's attributes after its fixed header, by type (nested ones left packed)."""
    out = {}
    while offset + RTATTR <= len(data):
        attr = _read("rtattr", data, offset)
        if attr.rta_len < RTATTR:
            break
        out[attr.rta_type & 0x3FFF] = data[offset + RTATTR:offset + attr.rta_len]
        offset += _align(attr.rta_len)
    return out


def messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, body) of each netlink message in one datagram."""
    offset = 0
    while offset + HEADER <= len(data):
        header = _read("nlmsghdr", data, offset)
        length, kind = header.nlmsg_len, header.nlmsg_type
        if length < HEADER:
            break
        yield kind, data[offset + HEADER:offset + length]
        offset += _align(length)


def parse_link(body: bytes) -> Link:
    attrs = attributes(body, ffi.sizeof("struct ifinfomsg"))
    return Link(_read("ifinfomsg", body).ifi_index, attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(),
                _u32(attrs[IFLA_MTU]) if IFLA_MTU in attrs else 0,
                ":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b"")))


def _socket(groups: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, groups))
    return sock


def request(kind: int, payload: bytes, flags: int = 0) -> list[tuple[int, bytes]]:
    """One request on a socket of its own; every answer message (a dump's until its end)."""
    with _socket() as sock:
        sock.send(_struct("nlmsghdr", nlmsg_len=HEADER + len(payload), nlmsg_type=kind,
                          nlmsg_flags=NLM_F_REQUEST | flags, nlmsg_seq=1) + payload)
        out = []
        while True:
            for answer, body in messages(sock.recv(RECV_SIZE)):
                if answer == NLMSG_DONE:
                    return out
                if answer == NLMSG_ERROR:
                    code = -_read("nlmsgerr", body).error
                    if code:
                        raise OSError(code, os.strerror(code))
                    return out  # an acknowledgement
                out.append((answer, body))
            if not flags & NLM_F_DUMP:
                return out


def links() -> list[Link]:
    """Every link of this network namespace."""
    return [parse_link(body) for kind, body in request(RTM_GETLINK, _struct("ifinfomsg"), NLM_F_DUMP)
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
    for kind, body in request(RTM_GETNEIGH, _struct("ndmsg", ndm_family=socket.AF_INET), NLM_F_DUMP):
        neighbour = _read("ndmsg", body)
        attrs = attributes(body, ffi.sizeof("struct ndmsg"))
        if kind == RTM_NEWNEIGH and len(attrs.get(NDA_DST, b"")) == 4 and NDA_LLADDR in attrs:
            out[(socket.inet_ntoa(attrs[NDA_DST]), neighbour.ndm_ifindex)] = (
                ":".join(f"{b:02x}" for b in attrs[NDA_LLADDR]), neighbour.ndm_state)
    return out


def next_hop(dst: str) -> str:
    """The address to ARP for on the way to an IPv4 address: its route's gateway, or itself
    (OSError when there is no route)."""
    attr = _struct("rtattr", rta_len=RTATTR + 4, rta_type=RTA_DST) + socket.inet_aton(dst)
    for kind, body in request(RTM_GETROUTE, _struct("rtmsg", rtm_family=socket.AF_INET, rtm_dst_len=32) + attr):
        gateway = attributes(body, ffi.sizeof("struct rtmsg")).get(RTA_GATEWAY) if kind == RTM_NEWROUTE else None
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
