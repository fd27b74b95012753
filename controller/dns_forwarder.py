"""The DNS fallback: queries stage_dns punts (names it does not know, other types,
DNSSEC OK, anything unusual) are relayed to an upstream resolver and its answer
goes back out of the VM's port as if the network's DNS server had sent it.

Over UDP one socket serves every query: each relayed query gets an id of our own
(the client's id is restored on the answer), so answers are matched to the
query and port they belong to, and unsolicited or late datagrams are ignored.
A query that came over TCP goes on over TCP (the client asked so, or retries an
answer truncated for UDP): one connection per query, in a few worker threads.
"""
from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from .frames import ETH_HLEN, UDP_HLEN, ipv4_udp_frame

log = logging.getLogger(__name__)

DNS_PORT = 53
TIMEOUT = 5.0           # an unanswered query is forgotten after this (the client retries)
MAX_PENDING = 4096      # relayed queries waiting at once; more are refused
RCODE_SERVFAIL, RCODE_REFUSED = 2, 5
TCP_WORKERS = 4         # TCP relays at once; more wait their turn


@dataclass
class Pending:
    client_id: bytes
    upstream: tuple[str, int]
    deadline: float
    answer: Callable[[bytes], None]


def parse_upstream(value: str) -> tuple[str, int]:
    """IP[:PORT] -> (ip, port); ValueError when it is not that."""
    host, _, port = value.partition(":")
    ipaddress.IPv4Address(host)
    number = int(port) if port else DNS_PORT
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is not 1-65535")
    return host, number


def error_reply(query: bytes, rcode: int) -> bytes:
    """An answer with `rcode` and no sections (its id, RD echoed)."""
    rd = query[2] & 0x01
    return query[:2] + bytes([0x80 | rd, 0x80 | rcode]) + b"\x00" * 8


def refused(query: bytes) -> bytes:
    """REFUSED for a query with no resolver to relay it to."""
    return error_reply(query, RCODE_REFUSED)


def _receive_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"the resolver closed the connection after {len(data)} of {count} bytes")
        data += chunk
    return data


def reply_frame(query_frame: bytes, dns_payload: bytes) -> bytes:
    """The query's Ethernet/IPv4/UDP turned around around a new DNS payload."""
    ihl = (query_frame[ETH_HLEN] & 0x0F) * 4
    ip = query_frame[ETH_HLEN:ETH_HLEN + ihl]
    udp = query_frame[ETH_HLEN + ihl:ETH_HLEN + ihl + UDP_HLEN]
    return ipv4_udp_frame(query_frame[0:6], query_frame[6:12], ip[16:20], ip[12:16],
                          int.from_bytes(udp[2:4], "big"), int.from_bytes(udp[0:2], "big"), dns_payload)


class Forwarder:
    """Relays DNS queries to upstream resolvers over one UDP socket; started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        self._sock: socket.socket | None = None
        self._tcp: ThreadPoolExecutor | None = None
        self.relayed = self.answered = self.dropped = 0

    def _start(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.bind(("0.0.0.0", 0))
            threading.Thread(target=self._receive, name="dns-forwarder", daemon=True).start()
        return self._sock

    def forward(self, query: bytes, upstream: tuple[str, int], answer: Callable[[bytes], None]) -> bool:
        """Send `query` to `upstream`; `answer(reply)` runs with the upstream's reply (client id
        restored). False when it was not sent (too short, too many pending)."""
        if len(query) < 12:
            self.dropped += 1
            return False
        now = time.monotonic()
        with self._lock:
            sock = self._start()
            for qid in [q for q, p in self._pending.items() if p.deadline < now]:
                del self._pending[qid]
            if len(self._pending) >= MAX_PENDING:
                self.dropped += 1
                return False
            qid = random.randrange(65536)
            while qid in self._pending:
                qid = random.randrange(65536)
            self._pending[qid] = Pending(query[:2], upstream, now + TIMEOUT, answer)
        sock.sendto(qid.to_bytes(2, "big") + query[2:], upstream)
        self.relayed += 1
        return True

    def forward_tcp(self, query: bytes, upstream: tuple[str, int], answer: Callable[[bytes], None]) -> None:
        """Ask `upstream` over TCP in a worker thread; `answer(reply)` runs with its reply, or with
        SERVFAIL when it cannot be reached or does not answer in time."""
        with self._lock:
            if self._tcp is None:
                self._tcp = ThreadPoolExecutor(TCP_WORKERS, thread_name_prefix="dns-tcp-relay")
        self.relayed += 1
        self._tcp.submit(self._tcp_exchange, query, upstream, answer)

    def _tcp_exchange(self, query: bytes, upstream: tuple[str, int], answer: Callable[[bytes], None]) -> None:
        try:
            with socket.create_connection(upstream, timeout=TIMEOUT) as sock:
                sock.sendall(len(query).to_bytes(2, "big") + query)
                reply = _receive_exactly(sock, int.from_bytes(_receive_exactly(sock, 2), "big"))
            self.answered += 1
        except OSError as exc:
            log.warning("DNS over TCP to %s:%d failed: %s", *upstream, exc)
            reply = error_reply(query, RCODE_SERVFAIL)
        try:
            answer(reply)
        except OSError as exc:
            log.warning("DNS answer not delivered: %s", exc)
            self.dropped += 1

    def _receive(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, source = self._sock.recvfrom(65535)
            except OSError:
                return
            if len(data) < 12:
                continue
            with self._lock:
                qid = int.from_bytes(data[:2], "big")
                pending = self._pending.get(qid)
                if pending is None or pending.upstream != source:
                    continue  # late, or not from where the query went
                del self._pending[qid]
            try:
                pending.answer(pending.client_id + data[2:])
                self.answered += 1
            except OSError as exc:  # the port went, or the answer is over its MTU
                log.warning("DNS answer not delivered: %s", exc)
                self.dropped += 1
