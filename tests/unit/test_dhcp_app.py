"""The DHCP app's answers (controller/apps/dhcp.py) to client frames as scapy builds
them, read back with scapy: what Neutron's DHCP agent would tell the port."""
import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dfxdp.controller.apps import LocalView
from dfxdp.controller.apps.dhcp import DhcpApp

VM_MAC, SERVER_MAC = "fa:16:3e:00:00:01", "fa:16:3e:00:00:fa"
IFINDEX = 17


def view(enable_dhcp=True, **subnet_fields) -> LocalView:
    subnet = {"id": "s1", "network_id": "n1", "cidr": "10.0.0.0/24", "ip_version": 4, "gateway_ip": "10.0.0.1",
              "enable_dhcp": enable_dhcp, "dns_nameservers": [], "host_routes": [], **subnet_fields}
    vm = {"id": "p-vm", "key": 5, "network_id": "n1", "mac_address": VM_MAC, "device_owner": "compute:nova",
          "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}], "dns_assignment": []}
    server = {"id": "p-dhcp", "key": 6, "network_id": "n1", "mac_address": SERVER_MAC, "device_owner": "network:dhcp",
              "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.2"}]}
    return LocalView(chassis="ch1", tunnel_ip="198.18.0.1", networks={"n1": {"id": "n1", "key": 100, "mtu": 1450}},
                     subnets={"s1": subnet}, ports={"p-vm": vm, "p-dhcp": server}, local_ports={"p-vm": IFINDEX})


def client(kind, mac=VM_MAC, src="0.0.0.0", dst="255.255.255.255", ciaddr="0.0.0.0", flags=0, op=1, **options):
    opts = [("message-type", kind)] + list(options.items())
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src=src, dst=dst) / UDP(sport=68, dport=67)
                 / BOOTP(op=op, chaddr=bytes.fromhex(mac.replace(":", "")), xid=99, ciaddr=ciaddr, flags=flags)
                 / DHCP(options=opts + ["end"]))


def options(reply: bytes) -> dict:
    return {o[0]: o[1:] if len(o) > 2 else o[1] for o in Ether(reply)[DHCP].options if isinstance(o, tuple)}


def answer(frame, v=None):
    return DhcpApp().answer(frame, IFINDEX, v or view())


def test_discover_gets_an_offer_with_what_neutron_tells():
    outcome, reply = answer(client("discover"))
    assert outcome == "offer"
    frame = Ether(reply)
    assert (frame[Ether].src, frame[Ether].dst) == (SERVER_MAC, VM_MAC)
    assert (frame[IP].src, frame[IP].dst, frame[UDP].sport, frame[UDP].dport) == ("10.0.0.2", "10.0.0.5", 67, 68)
    assert frame[BOOTP].yiaddr == "10.0.0.5" and frame[BOOTP].xid == 99 and frame[BOOTP].op == 2
    opts = options(reply)
    assert opts["message-type"] == 2 and opts["server_id"] == "10.0.0.2"
    assert opts["subnet_mask"] == "255.255.255.0" and opts["router"] == "10.0.0.1"
    assert opts["name_server"] == "10.0.0.2"  # no dns_nameservers: the DHCP port's address
    assert opts["interface-mtu"] == 1450 and opts["lease_time"] == 86400
    assert opts["renewal_time"] == 43200 and opts["rebinding_time"] == 75600
    assert opts["hostname"] == b"host-10-0-0-5" and opts["domain"] == b"openstacklocal"
    assert opts["broadcast_address"] == "10.0.0.255"
    assert "classless_static_routes" not in opts and 121 not in opts


def test_the_broadcast_flag_makes_the_reply_broadcast():
    _, reply = answer(client("discover", flags=0x8000))
    assert Ether(reply)[IP].dst == "255.255.255.255" and Ether(reply)[Ether].dst == VM_MAC


def test_request_for_the_ports_address_is_acked():
    outcome, reply = answer(client("request", requested_addr="10.0.0.5", server_id="10.0.0.2"))
    assert outcome == "ack" and options(reply)["message-type"] == 5 and Ether(reply)[BOOTP].yiaddr == "10.0.0.5"


def test_request_for_another_address_is_naked_by_broadcast():
    outcome, reply = answer(client("request", requested_addr="10.0.0.9"))
    assert outcome == "nak" and options(reply)["message-type"] == 6
    assert Ether(reply)[IP].dst == "255.255.255.255" and Ether(reply)[BOOTP].yiaddr == "0.0.0.0"


def test_request_to_another_server_is_left_alone():
    assert answer(client("request", requested_addr="10.0.0.5", server_id="10.0.0.3")) == ("other_server", None)


def test_renew_is_acked_unicast_to_the_clients_address():
    outcome, reply = answer(client("request", src="10.0.0.5", dst="10.0.0.2", ciaddr="10.0.0.5"))
    assert outcome == "ack" and Ether(reply)[IP].dst == "10.0.0.5" and Ether(reply)[BOOTP].ciaddr == "10.0.0.5"


def test_inform_gets_configuration_without_a_lease():
    outcome, reply = answer(client("inform", src="10.0.0.5", dst="10.0.0.2", ciaddr="10.0.0.5"))
    opts = options(reply)
    assert outcome == "ack" and "lease_time" not in opts and opts["router"] == "10.0.0.1"
    assert Ether(reply)[BOOTP].yiaddr == "0.0.0.0"


def test_release_is_not_answered():
    assert answer(client("release", src="10.0.0.5", dst="10.0.0.2", ciaddr="10.0.0.5")) == ("release", None)


def test_subnet_without_dhcp_gets_nothing():
    assert answer(client("discover"), view(enable_dhcp=False)) == ("dhcp_disabled", None)


@pytest.mark.parametrize("frame, outcome", [
    (client("discover", mac="fa:16:3e:00:00:99"), "unknown_client"),
    (client("discover", op=2), "wrong_op"),
    (client("discover")[:100], "malformed"),
])
def test_frames_not_answered_are_refused_with_why(frame, outcome):
    assert answer(frame) == (outcome, None)


def test_an_unknown_interface_is_an_unknown_client():
    assert DhcpApp().answer(client("discover"), IFINDEX + 1, view()) == ("unknown_client", None)


def test_dns_servers_host_routes_and_classless_routes():
    v = view(dns_nameservers=["192.0.2.53", "192.0.2.54", "2001:db8::1"],
             host_routes=[{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}])
    _, reply = answer(client("discover"), v)
    opts = options(reply)
    assert opts["name_server"] == ("192.0.2.53", "192.0.2.54")
    expected = bytes.fromhex("10c0a8 0a0000fe" "00 0a000001")  # 192.168/16 via .254, default via the gateway
    raw = {o[0]: o[1] for o in Ether(reply)[DHCP].options if isinstance(o, tuple) and isinstance(o[0], int)}
    assert opts["classless_static_routes"] == ["192.168.0.0/16:10.0.0.254", "0.0.0.0/0:10.0.0.1"]
    assert raw[249] == expected


def test_hostname_and_domain_from_dns_assignment():
    v = view()
    v.ports["p-vm"]["dns_assignment"] = [{"hostname": "web", "ip_address": "10.0.0.5", "fqdn": "web.example.org."}]
    opts = options(answer(client("discover"), v)[1])
    assert opts["hostname"] == b"web" and opts["domain"] == b"example.org"
    assert opts[119] == b"\x07example\x03org\x00"  # the search list (RFC 3397): the domain


def test_extra_dhcp_opts_replace_and_add_options_and_bad_ones_are_skipped():
    v = view()
    v.ports["p-vm"]["extra_dhcp_opts"] = [
        {"opt_name": "mtu", "opt_value": "1400", "ip_version": 4},                  # replaces the network's
        {"opt_name": "tag:pxe,bootfile-name", "opt_value": "pxelinux.0", "ip_version": 4},
        {"opt_name": "server-ip-address", "opt_value": "10.0.0.9", "ip_version": 4},
        {"opt_name": "42", "opt_value": "192.0.2.1,192.0.2.2", "ip_version": 4},
        {"opt_name": "dns-server", "opt_value": "2001:db8::1", "ip_version": 6},     # IPv6: not ours
        {"opt_name": "no-such-option", "opt_value": "x", "ip_version": 4},          # skipped
        {"opt_name": "mtu", "opt_value": None, "ip_version": 4},                    # no value: nothing
    ]
    _, reply = answer(client("discover"), v)
    opts = options(reply)
    assert opts["interface-mtu"] == 1400 and opts["boot-file-name"] == b"pxelinux.0"
    assert opts["NTP_server"] == ("192.0.2.1", "192.0.2.2") and opts["name_server"] == "10.0.0.2"
    assert Ether(reply)[BOOTP].siaddr == "10.0.0.9"
    assert [o[0] for o in Ether(reply)[DHCP].options if isinstance(o, tuple)].count("interface-mtu") == 1
