"""A network's names answered by the agent, as stage_dns answers them, for the queries
XDP hands up but that are still the network's own: DNS over TCP (controller/dns_tcp.py),
and punted UDP queries for its names (DNSSEC OK, an answer too big, a hash collision),
which an upstream resolver does not know. Anything else is not ours: None, relay it.

Replies are RFC 1035 messages shaped like stage_dns's: the question echoed as asked,
answers pointing to it (0xc00c), flags QR, AA, RA and the query's RD, an OPT with our
UDP size when the query had one. `truncated()` cuts an answer to its question with TC
set, for a UDP client that cannot take it whole: it asks again over TCP.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

A, PTR, AAAA, OPT, IN = 1, 12, 28, 41, 1
RCODE_NXDOMAIN = 3
CLASSIC_UDP, OUR_UDP = 512, 1232  # RFC 1035's limit without EDNS; ours, as stage_dns advertises
F_QR, F_AA, F_TC, F_RD, F_RA, F_OPCODE = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x7800
HEADER_LEN = 12


@dataclass
class Zone:
    """One network's names: lowercase wire names to packed addresses, IPv4 back to its fqdn."""

    domain: bytes                       # lowercase wire; b"" when the network has none
    ttl: int
    names: dict[bytes, list[bytes]] = field(default_factory=dict)    # name -> packed IPv4 and IPv6
    reverse: dict[bytes, bytes] = field(default_factory=dict)        # packed IPv4 -> fqdn

    def add(self, wire: bytes, address: str) -> None:
        self.names.setdefault(wire, []).append(ipaddress.ip_address(address).packed)

    def under_domain(self, wire: bytes) -> bool:
        """Is `wire` at least one label under the domain?"""
        if len(self.domain) < 2:
            return False
        pos = 0
        while wire[pos]:
            pos += 1 + wire[pos]
            if wire[pos:] == self.domain:
                return True
        return False


@dataclass(frozen=True)
class Question:
    name: bytes      # lowercase wire
    qtype: int
    qclass: int
    end: int         # offset just after the question
    udp_size: int    # what the client takes over UDP: 512 without EDNS
    edns: bool


def question(message: bytes) -> Question | None:
    """The one question of a query (no compression in it), with the OPT record right after it if
    any; None for anything else."""
    if len(message) < HEADER_LEN or message[2] & 0x80 or int.from_bytes(message[4:6], "big") != 1:
        return None
    pos, name = HEADER_LEN, bytearray()
    while pos < len(message) and not message[pos] & 0xC0 and len(name) < 255:
        length = message[pos]
        name += bytes([length]) + message[pos + 1:pos + 1 + length].lower()
        pos += 1 + length
        if length == 0:
            break
    if not name or name[-1] != 0 or len(name) > 255 or pos + 4 > len(message):
        return None
    qtype, qclass = int.from_bytes(message[pos:pos + 2], "big"), int.from_bytes(message[pos + 2:pos + 4], "big")
    opt = message[pos + 4:pos + 15]
    edns = int.from_bytes(message[10:12], "big") > 0 and len(opt) == 11 and opt[0] == 0 and \
        int.from_bytes(opt[1:3], "big") == OPT
    udp_size = max(int.from_bytes(opt[3:5], "big"), CLASSIC_UDP) if edns else CLASSIC_UDP
    return Question(bytes(name), qtype, qclass, pos + 4, udp_size, edns)


def _reverse_ipv4(wire: bytes) -> bytes | None:
    """"d.c.b.a.in-addr.arpa." -> a.b.c.d packed; None for any other name."""
    labels, pos = [], 0
    while wire[pos]:
        labels.append(wire[pos + 1:pos + 1 + wire[pos]].decode("ascii", "replace"))
        pos += 1 + wire[pos]
    if len(labels) != 6 or labels[4:] != ["in-addr", "arpa"]:
        return None
    try:
        return ipaddress.IPv4Address(".".join(reversed(labels[:4]))).packed
    except ValueError:  # not four decimal octets (leading zeros included)
        return None


def answer(zone: Zone, query: bytes) -> bytes | None:
    """The authoritative answer to `query` when it asks the zone's names (A, AAAA, PTR for
    its addresses, NXDOMAIN under its domain), else None."""
    q = question(query)
    if q is None or q.qclass != IN or int.from_bytes(query[2:4], "big") & F_OPCODE:
        return None
    rcode, records = 0, []
    if q.qtype == PTR:
        address = _reverse_ipv4(q.name)
        if address not in zone.reverse:
            return None
        records = [zone.reverse[address]]
    elif q.qtype in (A, AAAA):
        if q.name in zone.names:
            size = 4 if q.qtype == A else 16
            records = [a for a in zone.names[q.name] if len(a) == size]
        elif zone.under_domain(q.name):
            rcode = RCODE_NXDOMAIN
        else:
            return None
    else:
        return None
    flags = F_QR | F_AA | F_RA | (int.from_bytes(query[2:4], "big") & F_RD) | rcode
    out = bytearray(query[:2] + flags.to_bytes(2, "big") + _counts(1, len(records), 0, int(q.edns)))
    out += query[HEADER_LEN:q.end]  # the question as asked: its case echoed
    for rdata in records:
        out += (0xC000 | HEADER_LEN).to_bytes(2, "big") + q.qtype.to_bytes(2, "big") + IN.to_bytes(2, "big")
        out += zone.ttl.to_bytes(4, "big") + len(rdata).to_bytes(2, "big") + rdata
    if q.edns:
        out += b"\x00" + OPT.to_bytes(2, "big") + OUR_UDP.to_bytes(2, "big") + bytes(6)
    return bytes(out)


def truncated(reply: bytes) -> bytes:
    """`reply` cut to its header and question, TC set (RFC 2181 9): the client asks again over TCP."""
    q = question(reply[:2] + bytes([reply[2] & 0x7F]) + reply[3:])  # read as a query would be
    end = q.end if q is not None else HEADER_LEN
    return reply[:2] + bytes([reply[2] | F_TC >> 8, reply[3]]) + \
        _counts(1 if q is not None else 0, 0, 0, 0) + reply[HEADER_LEN:end]


def _counts(qd: int, an: int, ns: int, ar: int) -> bytes:
    return b"".join(n.to_bytes(2, "big") for n in (qd, an, ns, ar))
