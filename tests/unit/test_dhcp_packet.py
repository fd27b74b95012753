"""The DHCP codec (controller/dhcp_packet.py): client frames parsed as scapy builds
them, malformed ones refused with a reason, replies that scapy reads back, and
RFC 3442's classless routes encoding."""
import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from dfxdp.controller import dhcp_packet as dhcp

MAC = "fa:16:3e:00:00:01"
CHADDR = bytes.fromhex("fa163e000001")


def client_frame(options=(("message-type", "discover"),), sport=68, flags=0, **bootp):
    return bytes(Ether(src=MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
                 / UDP(sport=sport, dport=67) / BOOTP(chaddr=CHADDR, xid=0xabcdef, flags=flags, **bootp)
                 / DHCP(options=[*options, "end"]))


def test_a_discover_is_parsed():
    client = dhcp.parse_request(client_frame([("message-type", "discover"), ("requested_addr", "10.0.0.5"),
                                              ("param_req_list", [1, 3, 121])], flags=0x8000))
    m = client.message
    assert (m.op, m.xid, m.message_type, m.broadcast, m.chaddr) == (1, 0xabcdef, dhcp.DISCOVER, True, CHADDR)
    assert m.address_option(dhcp.OPT_REQUESTED_IP) == "10.0.0.5"
    assert m.options[dhcp.OPT_PARAMETER_LIST] == bytes([1, 3, 121])
    assert (client.src_mac, client.src_ip, client.dst_ip) == (CHADDR, "0.0.0.0", "255.255.255.255")


def test_a_repeated_option_is_concatenated_and_pads_are_skipped():
    payload = bytes(BOOTP(chaddr=CHADDR))[:236] + dhcp.MAGIC_COOKIE + bytes([0, 0, 53, 1, 3, 12, 2]) + b"ab" + \
        bytes([12, 1]) + b"c" + b"\xff"
    assert dhcp.parse_message(payload).options == {53: b"\x03", 12: b"abc"}


def replace(frame: bytes, offset: int, data: bytes) -> bytes:
    return frame[:offset] + data + frame[offset + len(data):]


BOOTP_AT = 14 + 20 + 8
GOOD = client_frame()


@pytest.mark.parametrize("frame, why", [
    (GOOD[:40], "cannot hold"),
    (replace(GOOD, 12, b"\x86\xdd"), "not IPv4"),
    (replace(GOOD, 14, b"\x65"), "bad IPv4 header"),
    (replace(GOOD, 14 + 6, b"\x20\x00"), "fragment"),
    (replace(GOOD, 14 + 9, b"\x06"), "not UDP"),
    (client_frame(sport=1000), "not 68 -> 67"),
    (replace(GOOD, 14 + 20 + 4, b"\xff\xff"), "UDP length"),
    (bytes(Ether() / IP(src="0.0.0.0") / UDP(sport=68, dport=67) / Raw(b"\x01" * 200)), "shorter than"),
    (replace(GOOD, BOOTP_AT, b"\x07"), "op 7"),
    (replace(GOOD, BOOTP_AT + 1, b"\x06"), "not Ethernet"),
    (replace(GOOD, BOOTP_AT + 2, b"\x10"), "not Ethernet"),
    (replace(GOOD, BOOTP_AT + 236, b"\x00\x00\x00\x00"), "magic cookie"),
], ids=["short", "ipv6", "ip-version", "fragment", "tcp", "ports", "udp-length", "bootp-short", "op",
        "htype", "hlen", "cookie"])
def test_malformed_frames_are_refused_with_why(frame, why):
    with pytest.raises(dhcp.MalformedDhcp, match=why):
        dhcp.parse_request(frame)


@pytest.mark.parametrize("options", [bytes([53, 5, 1]), bytes([53]), bytes([12, 200]) + b"x" * 10])
def test_options_overrunning_the_message_are_refused(options):
    payload = bytes(BOOTP(chaddr=CHADDR))[:236] + dhcp.MAGIC_COOKIE + options
    with pytest.raises(dhcp.MalformedDhcp, match="overrun|no length"):
        dhcp.parse_message(payload)


@pytest.mark.parametrize("routes, encoded", [
    ([("0.0.0.0/0", "10.0.0.1")], "00 0a000001"),
    ([("10.0.0.0/8", "10.0.0.1")], "08 0a 0a000001"),
    ([("192.168.1.0/24", "10.0.0.1"), ("172.16.0.0/12", "10.0.0.2")], "18 c0a801 0a000001 0c ac10 0a000002"),
    ([("10.1.2.3/32", "0.0.0.0")], "20 0a010203 00000000"),
    ([("10.128.0.0/9", "10.0.0.1")], "09 0a80 0a000001"),
])
def test_classless_routes_as_rfc_3442_writes_them(routes, encoded):
    assert dhcp.classless_routes(routes) == bytes.fromhex(encoded.replace(" ", ""))


def test_a_reply_reads_back_in_scapy():
    message = dhcp.DhcpMessage(op=dhcp.BOOTREPLY, xid=42, flags=0x8000, yiaddr="10.0.0.5", chaddr=CHADDR)
    long_value = b"r" * 300  # over 255 bytes: split into two options of the same code (RFC 3396)
    payload = dhcp.encode(message, [(dhcp.OPT_MESSAGE_TYPE, bytes([dhcp.OFFER])),
                                    (dhcp.OPT_SERVER_ID, dhcp.addresses(["10.0.0.2"])), (224, long_value)])
    frame = Ether(dhcp.reply_frame(bytes.fromhex("fa163e0000fa"), "10.0.0.2", CHADDR, "255.255.255.255", payload))
    assert frame[Ether].dst == MAC and frame[Ether].src == "fa:16:3e:00:00:fa"
    assert (frame[IP].src, frame[IP].dst, frame[UDP].sport, frame[UDP].dport) == ("10.0.0.2", "255.255.255.255", 67, 68)
    rebuilt = IP(bytes(frame[IP]))
    del rebuilt.chksum
    assert IP(bytes(rebuilt)).chksum == frame[IP].chksum  # the header checksum is right
    assert frame[BOOTP].yiaddr == "10.0.0.5" and frame[BOOTP].xid == 42 and frame[BOOTP].op == 2
    opts = dict(o for o in frame[DHCP].options if isinstance(o, tuple))
    assert opts["message-type"] == 2 and opts["server_id"] == "10.0.0.2"
    parsed = dhcp.parse_message(bytes(frame[BOOTP]))
    assert parsed.options[224] == long_value


@pytest.mark.parametrize("name, value, expected", [
    ("router", "10.0.0.1,10.0.0.2", (3, bytes([10, 0, 0, 1, 10, 0, 0, 2]))),
    ("tag:ipxe,option:bootfile-name", "ipxe.efi", (67, b"ipxe.efi")),
    ("mtu", "1400", (26, (1400).to_bytes(2, "big"))),
    ("26", "1400", (26, (1400).to_bytes(2, "big"))),   # a number takes the named option's kind
    ("160", "192.0.2.1", (160, bytes([192, 0, 2, 1]))),
    ("161", "text", (161, b"text")),
    ("server-ip-address", "10.0.0.9", (dhcp.SIADDR, "10.0.0.9")),
])
def test_extra_dhcp_opts_as_dnsmasq_reads_them(name, value, expected):
    assert dhcp.extra_option(name, value) == expected


@pytest.mark.parametrize("name, value, why", [
    ("no-such-name", "x", "unknown"), ("0", "x", "unknown"), ("255", "x", "unknown"),
    ("53", "1", "protocol's own"), ("server-identifier", "1.2.3.4", "unknown"), ("mtu", "70000", "does not fit"),
    ("mtu", "-1", "does not fit"), ("mtu", "big", "invalid literal"), ("router", "10.0.0", "octets"),
])
def test_extra_dhcp_opts_that_cannot_be_encoded_are_refused(name, value, why):
    with pytest.raises(ValueError, match=why):
        dhcp.extra_option(name, value)


def test_the_domain_search_list_is_rfc_3397s_encoding_with_compression():
    # RFC 3397 section 2's example, byte for byte
    assert dhcp.domain_search(["eng.apple.com.", "marketing.apple.com."]) == \
        b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04"
    assert dhcp.domain_search(["openstacklocal"]) == b"\x0eopenstacklocal\x00"
    with pytest.raises(ValueError):
        dhcp.domain_search(["a" * 64 + ".example."])
    assert dhcp.extra_option("domain-search", "corp.test,test") == (119, b"\x04corp\x04test\x00\xc0\x05")
