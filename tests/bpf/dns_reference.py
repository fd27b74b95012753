"""What the DNS responder should do with a query, decided in plain Python from
the NB documents (not from the maps): answer (and with what) or send it up.

Written from RFC 1035/6891 and docs/dns.md independently of stage_dns.c and
controller/apps/dns.py, so that a fuzzed query the two disagree on fails."""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

A, PTR, AAAA, OPT, IN = 1, 12, 28, 41, 1
CLASSIC_UDP, OUR_UDP = 512, 1232


@dataclass
class Expected:
    rcode: int
    qtype: int
    rdatas: list[bytes] = field(default_factory=list)
    edns: bool = False


class Zone:
    """A network's names as the NB shows them: dns_assignment of its ports."""

    def __init__(self, ports: list[dict], domain: str):
        self.domain = _wire(domain)
        self.forward: dict[bytes, list[str]] = {}
        self.reverse: dict[str, bytes] = {}
        for port in ports:
            for a in port.get("dns_assignment") or []:
                fqdn = _wire(a["fqdn"])
                self.forward.setdefault(fqdn, []).append(a["ip_address"])
                if fqdn.endswith(self.domain) and fqdn[0] + 1 + len(self.domain) == len(fqdn):
                    self.forward.setdefault(fqdn[:-len(self.domain)] + b"\x00", []).append(a["ip_address"])
                if ":" not in a["ip_address"]:
                    self.reverse[a["ip_address"]] = fqdn

    def under_domain(self, wire: bytes, starts: list[int]) -> bool:
        cut = len(wire) - len(self.domain)
        return len(self.domain) > 1 and cut > 0 and cut in starts and wire[cut:] == self.domain


def _wire(name: str) -> bytes:
    labels = [lbl for lbl in name.lower().rstrip(".").split(".") if lbl]
    return b"".join(bytes([len(lbl)]) + lbl.encode() for lbl in labels) + b"\x00"


def _reverse_address(wire: bytes) -> str | None:
    labels, pos = [], 0
    while wire[pos]:
        labels.append(wire[pos + 1:pos + 1 + wire[pos]])
        pos += 1 + wire[pos]
    if len(labels) != 6 or labels[4:] != [b"in-addr", b"arpa"]:
        return None
    octets = []
    for label in labels[:4]:
        if not label.isdigit() or len(label) > 3 or (len(label) > 1 and label[:1] == b"0") or int(label) > 255:
            return None
        octets.append(label.decode())
    return ".".join(reversed(octets))


def expected(zone: Zone, payload: bytes) -> Expected | None:
    """The answer stage_dns must give to `payload` (a UDP datagram to the DNS server), None: up."""
    if len(payload) < 12:
        return None
    _, flags, qd, an, ns, ar = struct.unpack("!6H", payload[:12])
    if flags & 0x8000 or an or ns or ar > 1 or qd != 1 or flags & 0x7A00:
        return None
    pos, starts, name = 12, [], bytearray()
    while True:
        if pos >= len(payload) or len(name) >= 255:
            return None
        length = payload[pos]
        if length & 0xC0:
            return None
        starts.append(len(name))
        name.append(length)
        if length == 0:
            break
        name += payload[pos + 1:pos + 1 + length].lower()
        pos += 1 + length
        if len(name) > 255:
            return None
    wire, pos = bytes(name), pos + 1
    if pos + 4 > len(payload):
        return None
    qtype, qclass = struct.unpack("!HH", payload[pos:pos + 4])
    pos += 4
    edns, limit = False, CLASSIC_UDP
    if ar:
        opt = payload[pos:pos + 11]
        if len(opt) < 11 or opt[0] != 0 or struct.unpack("!H", opt[1:3])[0] != OPT:
            return None
        size, version, eflags, rdlen = struct.unpack("!HxBHH", opt[3:11])
        if pos + 11 + rdlen != len(payload) or version or eflags & 0x8000:
            return None
        edns, limit = True, max(size, CLASSIC_UDP)
    elif pos != len(payload):
        return None
    if qclass != IN:
        return None
    result = None
    if qtype == PTR:
        address = _reverse_address(wire)
        if address in zone.reverse:
            result = Expected(0, qtype, [zone.reverse[address]], edns)
    elif qtype in (A, AAAA):
        if wire in zone.forward:
            family = 4 if qtype == A else 6
            rdatas = [ipaddress.ip_address(a).packed for a in zone.forward[wire]
                      if ipaddress.ip_address(a).version == family][:4]
            result = Expected(0, qtype, rdatas, edns)
        elif zone.under_domain(wire, starts):
            result = Expected(3, qtype, [], edns)
    if result is not None:
        size = pos + sum(12 + len(r) for r in result.rdatas) + (11 if edns else 0)
        if size > limit:
            return None
    return result


def check_reply(query: bytes, reply: bytes, want: Expected, ttl: int) -> None:
    """Assert `reply` is exactly the answer `want` to `query`, byte by byte where it matters."""
    qid, qflags = struct.unpack("!HH", query[:4])
    rid, rflags, qd, an, ns, ar = struct.unpack("!6H", reply[:12])
    assert rid == qid
    assert rflags == 0x8000 | 0x0400 | 0x0080 | (qflags & 0x0100) | want.rcode
    assert (qd, an, ns, ar) == (1, len(want.rdatas), 0, 1 if want.edns else 0)
    qlen = _question_end(query)
    assert reply[12:qlen] == query[12:qlen]  # the question as asked, case included
    pos, got = qlen, []
    for _ in range(an):
        ptr, rtype, rclass, rttl, rdlen = struct.unpack("!HHHIH", reply[pos:pos + 12])
        assert (ptr, rtype, rclass, rttl) == (0xC00C, want.qtype, IN, ttl)
        got.append(reply[pos + 12:pos + 12 + rdlen])
        pos += 12 + rdlen
    assert sorted(got) == sorted(want.rdatas)
    if want.edns:
        assert reply[pos:pos + 11] == b"\x00\x00\x29" + struct.pack("!H", OUR_UDP) + b"\x00" * 6
        pos += 11
    assert pos == len(reply)


def _question_end(payload: bytes) -> int:
    pos = 12
    while payload[pos]:
        pos += 1 + payload[pos]
    return pos + 5
