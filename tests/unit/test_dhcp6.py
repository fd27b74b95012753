"""DHCPv6 answered from NB: client messages built by scapy, answers read back by scapy —
the port's address on a stateful subnet (SOLICIT → ADVERTISE, REQUEST/RENEW/REBIND → REPLY,
rapid commit), information only on a stateless one, CONFIRM, RELEASE, nothing for slaac, a
port with port security, another server's client or a malformed frame; the flows."""
import pytest
from scapy.layers.dhcp6 import (DHCP6_Advertise, DHCP6_Confirm, DHCP6_InfoRequest, DHCP6_Rebind, DHCP6_Release,
                                DHCP6_Renew, DHCP6_Reply, DHCP6_Request, DHCP6_Solicit, DHCP6OptClientId,
                                DHCP6OptDNSDomains, DHCP6OptDNSServers, DHCP6OptIA_NA, DHCP6OptIAAddress,
                                DHCP6OptRapidCommit, DHCP6OptServerId, DHCP6OptStatusCode, DUID_LL)
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.apps.dhcp6 import TABLE_DHCP6, Dhcp6App
from dfxdp.controller.apps.flood import TABLE_FLOOD
from dfxdp.controller.binding import tap_name
from tests.unit.test_router_advert import Recorder

VM_MAC, SERVER_MAC = "fa:16:3e:00:00:42", "fa:16:3e:00:00:d1"
VM_LL, SERVER_LL = "fe80::f816:3eff:fe00:42", "fe80::f816:3eff:fe00:d1"
ADDRESS = "2001:db8:1::10"
CLIENT_DUID = DUID_LL(lladdr=VM_MAC)


def world(mode="dhcpv6-stateful", port_security=False, dhcp_port=True, local=True):
    subnet = {"id": "s6", "network_id": "n1", "ip_version": 6, "cidr": "2001:db8:1::/64", "enable_dhcp": True,
              "ipv6_ra_mode": mode, "ipv6_address_mode": mode, "dns_nameservers": ["2001:db8::53", "192.0.2.1"]}
    vm = {"id": "vm1", "network_id": "n1", "mac_address": VM_MAC, "port_security_enabled": port_security,
          "fixed_ips": [{"subnet_id": "s6", "ip_address": ADDRESS}],
          "dns_assignment": [{"hostname": "vm1", "ip_address": ADDRESS, "fqdn": "vm1.example.org."}]}
    ports = {"vm1": vm}
    if dhcp_port:
        ports["d1"] = {"id": "d1", "network_id": "n1", "device_owner": "network:dhcp", "mac_address": SERVER_MAC,
                       "fixed_ips": [{"subnet_id": "s6", "ip_address": "2001:db8:1::2"}]}
    return LocalView(chassis="ch1", tunnel_ip="198.18.0.11", networks={"n1": {"id": "n1", "key": 7}},
                     subnets={"s6": subnet}, ports=ports, local_ports={"vm1": 31} if local else {},
                     ofports={tap_name("vm1"): 5})


def frame(message, src_mac=VM_MAC) -> bytes:
    return bytes(Ether(src=src_mac, dst="33:33:00:01:00:02") / IPv6(src=VM_LL, dst="ff02::1:2") /
                 UDP(sport=546, dport=547) / message)


def ask(message, view=None, **kw):
    outcome, reply = Dhcp6App().answer(view or world(), (view or world()).ports["vm1"], frame(message, **kw))
    return outcome, (Ether(reply) if reply else None)


def ia(iaid=7, *addresses):
    return DHCP6OptIA_NA(iaid=iaid, ianaopts=[DHCP6OptIAAddress(addr=a) for a in addresses])


SERVER = DHCP6OptServerId(duid=DUID_LL(lladdr=SERVER_MAC))


@pytest.mark.parametrize("message,answer", [
    (DHCP6_Solicit(trid=0x123456) / DHCP6OptClientId(duid=CLIENT_DUID) / ia(), DHCP6_Advertise),
    (DHCP6_Request(trid=0x123456) / DHCP6OptClientId(duid=CLIENT_DUID) / SERVER / ia(), DHCP6_Reply),
    (DHCP6_Renew(trid=0x123456) / DHCP6OptClientId(duid=CLIENT_DUID) / SERVER / ia(7, ADDRESS), DHCP6_Reply),
    (DHCP6_Rebind(trid=0x123456) / DHCP6OptClientId(duid=CLIENT_DUID) / ia(7, ADDRESS), DHCP6_Reply),
    (DHCP6_Solicit(trid=0x123456) / DHCP6OptClientId(duid=CLIENT_DUID) / DHCP6OptRapidCommit() / ia(), DHCP6_Reply),
], ids=["solicit", "request", "renew", "rebind", "rapid-commit"])
def test_a_stateful_subnet_gives_the_ports_address(message, answer):
    outcome, reply = ask(message)
    assert outcome == ("advertise" if answer is DHCP6_Advertise else "reply")
    assert (reply.src, reply.dst, reply[IPv6].src, reply[IPv6].dst) == (SERVER_MAC, VM_MAC, SERVER_LL, VM_LL)
    assert (reply[UDP].sport, reply[UDP].dport) == (547, 546)
    again = Ether(bytes(reply))
    del again[UDP].chksum
    assert Ether(bytes(again))[UDP].chksum == reply[UDP].chksum  # scapy agrees with the checksum
    assert answer in reply and reply[answer].trid == 0x123456
    assert reply[DHCP6OptClientId].duid.lladdr == VM_MAC and reply[DHCP6OptServerId].duid.lladdr == SERVER_MAC
    assert (reply[DHCP6OptIA_NA].iaid, reply[DHCP6OptIA_NA].T1, reply[DHCP6OptIA_NA].T2) == (7, 43200, 69120)
    address = reply[DHCP6OptIAAddress]
    assert (address.addr, address.preflft, address.validlft) == (ADDRESS, 86400, 86400)
    assert reply[DHCP6OptDNSServers].dnsservers == ["2001:db8::53"]  # IPv6 servers only
    assert reply[DHCP6OptDNSDomains].dnsdomains == ["example.org."]


def test_a_stateless_subnet_gives_information_only():
    view = world("dhcpv6-stateless")
    assert ask(DHCP6_Solicit() / DHCP6OptClientId(duid=CLIENT_DUID) / ia(), view)[0] == "no_address"
    outcome, reply = ask(DHCP6_InfoRequest(trid=5) / DHCP6OptClientId(duid=CLIENT_DUID), view)
    assert outcome == "reply" and DHCP6OptIA_NA not in reply
    assert reply[DHCP6_Reply].trid == 5 and reply[DHCP6OptDNSServers].dnsservers == ["2001:db8::53"]


def test_a_subnet_without_a_mode_is_served_as_dnsmasq_does():
    assert ask(DHCP6_Solicit() / DHCP6OptClientId(duid=CLIENT_DUID) / ia(), world(None))[0] == "advertise"


@pytest.mark.parametrize("addresses,status", [((ADDRESS,), 0), (("2001:db8:9::1",), 4)])
def test_confirm(addresses, status):
    _, reply = ask(DHCP6_Confirm() / DHCP6OptClientId(duid=CLIENT_DUID) / ia(7, *addresses))
    assert reply[DHCP6OptStatusCode].statuscode == status


def test_release_is_acknowledged():
    outcome, reply = ask(DHCP6_Release() / DHCP6OptClientId(duid=CLIENT_DUID) / SERVER / ia(7, ADDRESS))
    assert outcome == "reply" and reply[DHCP6OptStatusCode].statuscode == 0


@pytest.mark.parametrize("why,view,message,kw", [
    ("dhcp_disabled", world("slaac"), DHCP6_Solicit() / DHCP6OptClientId(duid=CLIENT_DUID) / ia(), {}),
    ("dhcp_disabled", world(port_security=True), DHCP6_Solicit() / DHCP6OptClientId(duid=CLIENT_DUID) / ia(), {}),
    ("dhcp_disabled", world(dhcp_port=False), DHCP6_Solicit() / DHCP6OptClientId(duid=CLIENT_DUID) / ia(), {}),
    ("other_server", world(), DHCP6_Request() / DHCP6OptClientId(duid=CLIENT_DUID) /
     DHCP6OptServerId(duid=DUID_LL(lladdr="fa:16:3e:99:99:99")) / ia(), {}),
    ("unknown_client", world(), DHCP6_Solicit() / DHCP6OptClientId(duid=CLIENT_DUID) / ia(),
     {"src_mac": "fa:16:3e:66:66:66"}),
    ("malformed", world(), DHCP6_Solicit() / ia(), {}),  # no client id
], ids=["slaac", "port-security", "no-dhcp-port", "other-server", "spoofed-mac", "no-client-id"])
def test_what_is_not_answered(why, view, message, kw):
    assert ask(message, view, **kw) == (why, None)


def test_malformed_frames():
    good = frame(DHCP6_Solicit() / DHCP6OptClientId(duid=CLIENT_DUID))
    app, view = Dhcp6App(), world()
    for bad in (good[:-3], good[:-12] + b"\x00\x01\xff\xff" + good[-8:], good[:60] + b"\x00\x00" + good[62:]):
        assert app.answer(view, view.ports["vm1"], bad) == ("malformed", None)


def test_flows_and_the_answer_into_the_tap():
    sender = Recorder()
    app = Dhcp6App(sender=sender)
    flows = list(app.flows(world()))
    assert [(f.table, f.priority, dict(f.match), f.actions) for f in flows] == [
        (TABLE_DHCP6, 100, {"in_port": 5, "eth_type": 0x86DD, "ip_proto": 17, "udp_dst": 547}, (("controller",),)),
        (TABLE_DHCP6, 0, {}, (("goto", TABLE_FLOOD),))]
    assert [f.priority for f in app.flows(world("slaac"))] == [0]
    assert app.on_packet_in(world(), "vm1", frame(DHCP6_Solicit() / DHCP6OptClientId(duid=CLIENT_DUID) / ia())) is False
    assert [i for i, _ in sender.sent] == [31] and DHCP6_Advertise in Ether(sender.sent[0][1])
