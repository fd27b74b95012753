"""DNS over TCP to a network's DNS server address, held by the agent.

The DNS server address is no interface anywhere (XDP answers for it), so no kernel
holds its TCP connections: stage_dns punts every TCP segment to port 53 and this
module plays the server's end (RFC 7766) as far as a resolver's stub needs — the
handshake, in-order data acknowledged, the client's retransmissions answered again,
ours sent again until acknowledged, the close, and RST for a segment of no
connection. Each message (a 2-byte length, then the query) goes to the
`resolve(query, deliver)` given with its segment; `deliver(answer)` (from any thread)
sends the answer back on the connection. Out-of-order data is not kept: the client sends it again.

Frames are built by hand (controller/frames.py) and go out of the VM's port through
the punt path's sender, as the UDP answers do.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .frames import ETH_HLEN, ipv4_tcp_frame

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
OPT_MSS = 2
OUR_MSS = 1220         # bytes of data a segment of ours carries at most (a 1280-byte MTU holds it)
DEFAULT_MSS = 536      # RFC 9293: a client that sent no MSS option takes this
WINDOW = 65535         # what we advertise: a DNS message is at most 65,535 bytes
RTO = 0.3              # seconds before the first retransmission, doubled each time
RETRIES = 6
IDLE = 10.0            # a connection quiet this long is forgotten (RFC 7766 lets servers close idle ones)
MAX_CONNECTIONS = 1024
TICK = 0.1


def _after(a: int, b: int) -> bool:
    """Sequence number a > b, modulo 2^32."""
    return 0 < (a - b) % 2**32 < 2**31


@dataclass(frozen=True)
class Segment:
    src_mac: bytes
    dst_mac: bytes
    src_ip: bytes
    dst_ip: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    mss: int | None
    payload: bytes


def parse_segment(frame: bytes) -> Segment | None:
    """An IPv4 TCP segment in an Ethernet frame, None when it is not one."""
    if len(frame) < ETH_HLEN + 40 or frame[12:14] != b"\x08\x00" or frame[ETH_HLEN] >> 4 != 4 \
            or frame[ETH_HLEN + 9] != 6:
        return None
    ihl = (frame[ETH_HLEN] & 0x0F) * 4
    total = int.from_bytes(frame[ETH_HLEN + 2:ETH_HLEN + 4], "big")
    tcp = ETH_HLEN + ihl
    if ihl < 20 or total > len(frame) - ETH_HLEN or tcp + 20 > ETH_HLEN + total:
        return None
    offset = (frame[tcp + 12] >> 4) * 4
    if offset < 20 or tcp + offset > ETH_HLEN + total:
        return None
    mss, pos = None, tcp + 20
    while pos < tcp + offset and frame[pos] != 0:  # options until END
        if frame[pos] == 1:  # NOP
            pos += 1
            continue
        if pos + 1 >= tcp + offset or frame[pos + 1] < 2:
            return None
        if frame[pos] == OPT_MSS and frame[pos + 1] == 4:
            mss = int.from_bytes(frame[pos + 2:pos + 4], "big")
        pos += frame[pos + 1]
    return Segment(frame[6:12], frame[0:6], frame[ETH_HLEN + 12:ETH_HLEN + 16], frame[ETH_HLEN + 16:ETH_HLEN + 20],
                   int.from_bytes(frame[tcp:tcp + 2], "big"), int.from_bytes(frame[tcp + 2:tcp + 4], "big"),
                   int.from_bytes(frame[tcp + 4:tcp + 8], "big"), int.from_bytes(frame[tcp + 8:tcp + 12], "big"),
                   frame[tcp + 13], mss, frame[tcp + offset:ETH_HLEN + total])


@dataclass
class Connection:
    first: Segment               # the client's SYN: addresses and ports of every segment back
    send: Callable[[bytes], None]
    iss: int                     # our initial sequence number
    rcv_nxt: int                 # the next byte we expect from the client
    mss: int
    una: int = 0                 # our oldest unacknowledged sequence number
    out: bytearray = field(default_factory=bytearray)  # our data from `una` on, sent or not
    sent: int = 0                # bytes of `out` sent
    inbox: bytearray = field(default_factory=bytearray)
    waiting: int = 0             # queries given to resolve() and not answered yet
    fin_received: bool = False
    fin_sent: bool = False
    fin_acked: bool = False
    heard: float = 0.0
    deadline: float | None = None  # when to send again what is unacknowledged
    retries: int = 0

    def frame(self, seq: int, flags: int, payload: bytes = b"", options: bytes = b"") -> bytes:
        c = self.first
        return ipv4_tcp_frame(c.dst_mac, c.src_mac, c.dst_ip, c.src_ip, c.dport, c.sport, seq, self.rcv_nxt,
                              flags, WINDOW, payload, options)

    @property
    def established(self) -> bool:
        return self.una != self.iss  # our SYN is acknowledged

    def snd_nxt(self) -> int:
        fin = 1 if self.fin_sent and not self.fin_acked else 0
        return (self.una + (0 if self.established else 1) + self.sent + fin) % 2**32


class TcpResponder:
    """The server end of DNS-over-TCP connections to the networks' DNS server addresses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: dict[tuple, Connection] = {}
        self._timer: threading.Thread | None = None
        self.resets = self.dropped = 0

    def segment(self, ifindex: int, frame: bytes, send: Callable[[bytes], None],
                resolve: Callable[[bytes, Callable[[bytes], None]], None]) -> None:
        """One segment from a VM, punted from interface `ifindex`; `send(frame)` sends out of it,
        `resolve(query, deliver)` answers each query the segment completes."""
        seg = parse_segment(frame)
        if seg is None:
            self.dropped += 1
            return
        key = (ifindex, seg.src_ip, seg.sport, seg.dst_ip, seg.dport)
        messages = []
        with self._lock:
            conn = self._connections.get(key)
            if seg.flags & RST:
                self._connections.pop(key, None)
                return
            if seg.flags & SYN:
                self._syn(key, conn, seg, send)
                return
            if conn is None:
                self._reset(seg, send)
                return
            conn.heard = time.monotonic()
            if seg.flags & ACK:
                self._acknowledged(conn, seg.ack)
            if seg.payload or seg.flags & FIN:
                if seg.seq == conn.rcv_nxt:  # in order: take it; otherwise acknowledge what we have
                    conn.inbox += seg.payload
                    conn.rcv_nxt = (conn.rcv_nxt + len(seg.payload)) % 2**32
                    if seg.flags & FIN and not conn.fin_received:
                        conn.fin_received = True
                        conn.rcv_nxt = (conn.rcv_nxt + 1) % 2**32
                    messages = self._messages(conn)
                conn.send(conn.frame(conn.snd_nxt(), ACK))
            self._close_if_done(key, conn)
        for message in messages:
            resolve(message, lambda answer, conn=conn, key=key: self._deliver(key, conn, answer))

    def _syn(self, key: tuple, conn: Connection | None, seg: Segment, send: Callable[[bytes], None]) -> None:
        if conn is None or conn.first.seq != seg.seq:  # a new connection (or a new one on old ports)
            if len(self._connections) >= MAX_CONNECTIONS:
                self.dropped += 1
                return
            iss = random.randrange(2**32)
            conn = Connection(seg, send, iss, (seg.seq + 1) % 2**32, min(seg.mss or DEFAULT_MSS, OUR_MSS), una=iss,
                              heard=time.monotonic())
            self._connections[key] = conn
            self._start_timer()
        # a retransmitted SYN gets the same SYN-ACK again
        conn.send(conn.frame(conn.iss, SYN | ACK, options=bytes([OPT_MSS, 4]) + OUR_MSS.to_bytes(2, "big")))
        conn.deadline = time.monotonic() + RTO

    def _reset(self, seg: Segment, send: Callable[[bytes], None]) -> None:
        """RFC 9293 3.10.7.1: a segment of no connection gets RST (with the sequence it acknowledged)."""
        self.resets += 1
        seq = seg.ack if seg.flags & ACK else 0
        ack = (seg.seq + len(seg.payload) + (1 if seg.flags & FIN else 0)) % 2**32
        send(ipv4_tcp_frame(seg.dst_mac, seg.src_mac, seg.dst_ip, seg.src_ip, seg.dport, seg.sport, seq, ack,
                            RST | (0 if seg.flags & ACK else ACK), 0))

    @staticmethod
    def _acknowledged(conn: Connection, ack: int) -> None:
        if not _after(ack, conn.una) or _after(ack, conn.snd_nxt()):
            return  # old, or acknowledging what we never sent
        done = (ack - conn.una) % 2**32
        if not conn.established:
            done -= 1  # our SYN
            conn.una = (conn.una + 1) % 2**32
        data = min(done, conn.sent)
        del conn.out[:data]
        conn.sent -= data
        conn.una = (conn.una + data) % 2**32
        conn.fin_acked = conn.fin_sent and done > data
        conn.retries = 0
        conn.deadline = None if conn.una == conn.snd_nxt() else time.monotonic() + RTO

    @staticmethod
    def _messages(conn: Connection) -> list[bytes]:
        """Whole messages (2-byte length, then the message) taken from the inbox."""
        messages = []
        while len(conn.inbox) >= 2 and len(conn.inbox) >= 2 + int.from_bytes(conn.inbox[:2], "big"):
            length = int.from_bytes(conn.inbox[:2], "big")
            messages.append(bytes(conn.inbox[2:2 + length]))
            del conn.inbox[:2 + length]
        conn.waiting += len(messages)
        return messages

    def _deliver(self, key: tuple, conn: Connection, answer: bytes) -> None:
        with self._lock:
            if self._connections.get(key) is not conn:
                return  # reset or forgotten meanwhile
            conn.waiting -= 1
            conn.out += len(answer).to_bytes(2, "big") + answer
            self._push(conn)
            self._close_if_done(key, conn)

    def _push(self, conn: Connection) -> None:
        """Send what of `out` is not sent yet, in segments of at most the client's MSS."""
        while conn.sent < len(conn.out):
            chunk = bytes(conn.out[conn.sent:conn.sent + conn.mss])
            conn.send(conn.frame(conn.snd_nxt(), PSH | ACK, chunk))
            conn.sent += len(chunk)
        if conn.deadline is None and conn.una != conn.snd_nxt():
            conn.deadline = time.monotonic() + RTO

    def _close_if_done(self, key: tuple, conn: Connection) -> None:
        """After the client's FIN and our last answer: our FIN; forgotten once it is acknowledged."""
        if conn.fin_received and not conn.waiting and conn.sent == len(conn.out) and not conn.fin_sent:
            conn.send(conn.frame(conn.snd_nxt(), FIN | ACK))
            conn.fin_sent = True
            conn.deadline = time.monotonic() + RTO
        if conn.fin_sent and conn.una == conn.snd_nxt() and not conn.out:
            self._connections.pop(key, None)

    def _start_timer(self) -> None:
        if self._timer is None:
            self._timer = threading.Thread(target=self._tick, name="dns-tcp", daemon=True)
            self._timer.start()

    def _tick(self) -> None:
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            with self._lock:
                for key, conn in list(self._connections.items()):
                    if conn.retries > RETRIES or (now - conn.heard > IDLE and conn.deadline is None):
                        del self._connections[key]
                    elif conn.deadline is not None and now >= conn.deadline:
                        self._retransmit(conn)
                        conn.retries += 1
                        conn.deadline = now + RTO * 2 ** conn.retries

    def _retransmit(self, conn: Connection) -> None:
        """Everything unacknowledged again, from `una`: the SYN-ACK, data, FIN."""
        if not conn.established:
            conn.send(conn.frame(conn.iss, SYN | ACK, options=bytes([OPT_MSS, 4]) + OUR_MSS.to_bytes(2, "big")))
            return
        seq = conn.una
        for start in range(0, conn.sent, conn.mss):
            chunk = bytes(conn.out[start:min(start + conn.mss, conn.sent)])
            conn.send(conn.frame(seq, PSH | ACK, chunk))
            seq = (seq + len(chunk)) % 2**32
        if conn.fin_sent:
            conn.send(conn.frame(seq, FIN | ACK))

    def __len__(self) -> int:
        return len(self._connections)
