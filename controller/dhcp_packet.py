"""DHCPv4 messages (RFC 2131, options RFC 2132, the domain search list RFC 3397) as the DHCP app reads and writes them.

parse_request(frame) takes a punted Ethernet frame apart (IPv4, UDP 68 -> 67,
BOOTP fixed fields, magic cookie, options) and raises MalformedDhcp for
anything that is not a well-formed client message; encode() and reply_frame()
build the server's answer. Plain bytes and int.to_bytes: no scapy at runtime,
and no struct formats (layouts of maps live in maps/*.h only, see the map
contract test).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .frames import ETH_HLEN, UDP_HLEN, ipv4_udp_frame

SERVER_PORT, CLIENT_PORT = 67, 68
BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHERNET, HLEN_ETHERNET = 1, 6
MAGIC_COOKIE = bytes([99, 130, 83, 99])
FIXED_LEN = 236           # op .. file: the BOOTP header before the magic cookie
FLAG_BROADCAST = 0x8000
ETH_P_IP = 0x0800

# message types (option 53)
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)

# options (RFC 2132; 119 RFC 3397; 121 RFC 3442; 249 the same, as Windows asks for it)
OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS_SERVERS, OPT_HOSTNAME, OPT_DOMAIN_NAME = 1, 3, 6, 12, 15
OPT_INTERFACE_MTU, OPT_BROADCAST_ADDRESS = 26, 28
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_OVERLOAD, OPT_MESSAGE_TYPE, OPT_SERVER_ID = 50, 51, 52, 53, 54
OPT_PARAMETER_LIST, OPT_MESSAGE, OPT_RENEWAL_TIME, OPT_REBINDING_TIME = 55, 56, 58, 59
OPT_DOMAIN_SEARCH, OPT_CLASSLESS_ROUTES, OPT_MS_CLASSLESS_ROUTES = 119, 121, 249


class MalformedDhcp(ValueError):
    """A frame that is not a well-formed DHCP client message."""


@dataclass
class DhcpMessage:
    op: int
    xid: int
    flags: int = 0
    secs: int = 0
    ciaddr: str = "0.0.0.0"
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    giaddr: str = "0.0.0.0"
    chaddr: bytes = b"\x00" * 6           # the client's hardware (MAC) address
    options: dict[int, bytes] = field(default_factory=dict)  # code -> value, in the order given

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value and len(value) == 1 else None

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & FLAG_BROADCAST)

    def address_option(self, code: int) -> str | None:
        """An option holding one IPv4 address (50, 54), None when absent or not 4 bytes."""
        value = self.options.get(code)
        return str(ipaddress.IPv4Address(value)) if value and len(value) == 4 else None


@dataclass(frozen=True)
class ClientFrame:
    """A DHCP client message with the addresses of the frame that carried it."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: str
    dst_ip: str
    message: DhcpMessage


def _ip(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def parse_options(data: bytes) -> dict[int, bytes]:
    """The options field after the magic cookie. An option repeated is concatenated
    (RFC 3396); a length that runs past the end is malformed; END (or the end of
    the data: some clients leave END out) stops."""
    options: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= len(data):
            raise MalformedDhcp(f"option {code} at offset {i} has no length")
        length = data[i + 1]
        if i + 2 + length > len(data):
            raise MalformedDhcp(f"option {code} at offset {i}: {length} bytes overrun the message")
        options[code] = options.get(code, b"") + data[i + 2:i + 2 + length]
        i += 2 + length
    return options


def parse_message(payload: bytes) -> DhcpMessage:
    """A BOOTP/DHCP message (UDP payload); MalformedDhcp unless Ethernet, cookie and options are right."""
    if len(payload) < FIXED_LEN + len(MAGIC_COOKIE):
        raise MalformedDhcp(f"{len(payload)} bytes, shorter than the {FIXED_LEN + 4}-byte header and cookie")
    op, htype, hlen = payload[0], payload[1], payload[2]
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedDhcp(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if (htype, hlen) != (HTYPE_ETHERNET, HLEN_ETHERNET):
        raise MalformedDhcp(f"hardware type {htype}/length {hlen}, not Ethernet (1/6)")
    if payload[FIXED_LEN:FIXED_LEN + 4] != MAGIC_COOKIE:
        raise MalformedDhcp("no DHCP magic cookie (plain BOOTP is not answered)")
    return DhcpMessage(op=op, xid=int.from_bytes(payload[4:8], "big"), secs=int.from_bytes(payload[8:10], "big"),
                       flags=int.from_bytes(payload[10:12], "big"), ciaddr=_ip(payload[12:16]),
                       yiaddr=_ip(payload[16:20]), siaddr=_ip(payload[20:24]), giaddr=_ip(payload[24:28]),
                       chaddr=payload[28:28 + hlen], options=parse_options(payload[FIXED_LEN + 4:]))


def parse_request(frame: bytes) -> ClientFrame:
    """A punted frame: Ethernet, IPv4 (unfragmented), UDP 68 -> 67, a DHCP message."""
    if len(frame) < ETH_HLEN + 20 + UDP_HLEN:
        raise MalformedDhcp(f"a {len(frame)}-byte frame cannot hold Ethernet, IPv4 and UDP headers")
    if int.from_bytes(frame[12:14], "big") != ETH_P_IP:
        raise MalformedDhcp(f"ethertype {frame[12:14].hex()} is not IPv4")
    version, ihl = frame[ETH_HLEN] >> 4, (frame[ETH_HLEN] & 0x0F) * 4
    total = int.from_bytes(frame[ETH_HLEN + 2:ETH_HLEN + 4], "big")
    if version != 4 or ihl < 20 or not ihl + UDP_HLEN <= total <= len(frame) - ETH_HLEN:
        raise MalformedDhcp(f"bad IPv4 header (version {version}, header {ihl}, total length {total})")
    if int.from_bytes(frame[ETH_HLEN + 6:ETH_HLEN + 8], "big") & 0x3FFF:
        raise MalformedDhcp("a fragment")
    if frame[ETH_HLEN + 9] != 17:
        raise MalformedDhcp(f"IP protocol {frame[ETH_HLEN + 9]} is not UDP")
    udp = ETH_HLEN + ihl
    sport, dport = int.from_bytes(frame[udp:udp + 2], "big"), int.from_bytes(frame[udp + 2:udp + 4], "big")
    udp_len = int.from_bytes(frame[udp + 4:udp + 6], "big")
    if (sport, dport) != (CLIENT_PORT, SERVER_PORT):
        raise MalformedDhcp(f"UDP {sport} -> {dport}, not {CLIENT_PORT} -> {SERVER_PORT}")
    if not UDP_HLEN <= udp_len <= total - ihl:
        raise MalformedDhcp(f"UDP length {udp_len} outside {UDP_HLEN}..{total - ihl}")
    return ClientFrame(src_mac=frame[6:12], dst_mac=frame[0:6], src_ip=_ip(frame[ETH_HLEN + 12:ETH_HLEN + 16]),
                       dst_ip=_ip(frame[ETH_HLEN + 16:ETH_HLEN + 20]),
                       message=parse_message(frame[udp + UDP_HLEN:udp + udp_len]))


def encode_options(options: list[tuple[int, bytes]]) -> bytes:
    """(code, value) pairs as TLVs; a value over 255 bytes is split into several
    options of the same code (RFC 3396), then END."""
    out = bytearray()
    for code, value in options:
        chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [b""]
        for chunk in chunks:
            out += bytes([code, len(chunk)]) + chunk
    return bytes(out) + bytes([OPT_END])


def encode(message: DhcpMessage, options: list[tuple[int, bytes]]) -> bytes:
    """A DHCP message with `options` (message.options is not used: a reply's options are ordered)."""
    chaddr = message.chaddr.ljust(16, b"\x00")
    header = (bytes([message.op, HTYPE_ETHERNET, HLEN_ETHERNET, 0]) + message.xid.to_bytes(4, "big")
              + message.secs.to_bytes(2, "big") + message.flags.to_bytes(2, "big")
              + b"".join(ipaddress.IPv4Address(a).packed for a in
                         (message.ciaddr, message.yiaddr, message.siaddr, message.giaddr))
              + chaddr + b"\x00" * 64 + b"\x00" * 128)  # sname, file: unused
    return header + MAGIC_COOKIE + encode_options(options)


def addresses(values: list[str]) -> bytes:
    return b"".join(ipaddress.IPv4Address(v).packed for v in values)


def classless_routes(routes: list[tuple[str, str]]) -> bytes:
    """RFC 3442 option 121 (and 249): each (destination CIDR, next hop) as the prefix
    length, the significant octets of the destination, then the router."""
    out = bytearray()
    for destination, nexthop in routes:
        net = ipaddress.IPv4Network(destination)
        significant = (net.prefixlen + 7) // 8
        out += bytes([net.prefixlen]) + net.network_address.packed[:significant]
        out += ipaddress.IPv4Address(nexthop).packed
    return bytes(out)


def domain_search(domains: list[str]) -> bytes:
    """RFC 3397 option 119: the domains in DNS wire format, one after the other, a suffix an
    earlier domain already holds written as a compression pointer to it (RFC 1035 4.1.4).
    ValueError for a name DNS cannot carry."""
    out, seen = bytearray(), {}
    for domain in domains:
        labels = [label for label in domain.rstrip(".").split(".") if label]
        for i, label in enumerate(labels):
            suffix = tuple(x.lower() for x in labels[i:])
            if suffix in seen:
                out += (0xC000 | seen[suffix]).to_bytes(2, "big")
                break
            if not 0 < len(label.encode()) < 64:
                raise ValueError(f"label {label!r} of {domain!r} is not 1-63 bytes")
            if len(out) < 0x4000:  # a pointer reaches 14 bits
                seen[suffix] = len(out)
            out += bytes([len(label.encode())]) + label.encode()
        else:
            out += b"\x00"
    return bytes(out)


# Neutron's extra_dhcp_opts name options as dnsmasq does; the ones a port is likely to set.
# Value kinds: "ips" (comma-separated IPv4 addresses), "str", "u16", "u32", "domains" (comma-separated).
NAMED_OPTIONS: dict[str, tuple[int, str]] = {
    "netmask": (1, "ips"), "router": (3, "ips"), "dns-server": (6, "ips"), "log-server": (7, "ips"),
    "hostname": (12, "str"), "domain-name": (15, "str"), "mtu": (26, "u16"), "broadcast": (28, "ips"),
    "ntp-server": (42, "ips"), "domain-search": (OPT_DOMAIN_SEARCH, "domains"),
    "lease-time": (51, "u32"), "T1": (58, "u32"), "T2": (59, "u32"),
    "tftp-server": (66, "str"), "bootfile-name": (67, "str"), "tftp-server-address": (150, "ips"),
}
KINDS_BY_CODE = {code: kind for code, kind in NAMED_OPTIONS.values()}
SIADDR = "server-ip-address"  # not an option: the BOOTP siaddr field (the next server, for PXE)
RESERVED = {OPT_PAD, OPT_END, OPT_MESSAGE_TYPE, OPT_SERVER_ID, OPT_OVERLOAD}  # the protocol's own


def extra_option(name: str, value: str) -> tuple[int, bytes] | tuple[str, str]:
    """One extra_dhcp_opt as (code, encoded value), or (SIADDR, address). `name` as Neutron passes
    it to dnsmasq: a name or a number, optionally after "option:" and "tag:…," prefixes.
    ValueError for a name it does not know or a value that does not fit the option."""
    name = name.split(",")[-1].removeprefix("option:")
    if name == SIADDR:
        return SIADDR, str(ipaddress.IPv4Address(value.strip()))
    if name in NAMED_OPTIONS:
        code, kind = NAMED_OPTIONS[name]
    elif name.isdigit() and 0 < int(name) < 255:
        code = int(name)
        looks_like_ips = all(_is_ipv4(v) for v in value.split(","))
        kind = KINDS_BY_CODE.get(code, "ips" if looks_like_ips else "str")
    else:
        raise ValueError(f"unknown DHCP option name {name!r}")
    if code in RESERVED:
        raise ValueError(f"option {code} is the DHCP protocol's own, not settable")
    if kind == "ips":
        return code, addresses([v.strip() for v in value.split(",")])
    if kind == "domains":
        return code, domain_search([v.strip() for v in value.split(",")])
    if kind in ("u16", "u32"):
        number, width = int(value), 2 if kind == "u16" else 4
        if not 0 <= number < 1 << (8 * width):
            raise ValueError(f"{number} does not fit option {code} ({8 * width} bits)")
        return code, number.to_bytes(width, "big")
    return code, value.encode()


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text.strip())
    except ValueError:
        return False
    return True


def reply_frame(server_mac: bytes, server_ip: str, client_mac: bytes, dst_ip: str, payload: bytes) -> bytes:
    """The server's reply, UDP 67 -> 68, L2 unicast to the client's MAC (it goes out of
    the client's own port) and IP to `dst_ip` (its address, or broadcast: RFC 2131 4.1)."""
    return ipv4_udp_frame(server_mac, client_mac, server_ip, dst_ip, SERVER_PORT, CLIENT_PORT, payload)
