"""Router advertisements for subnets with ipv6_ra_mode: the RA's encoding read back by scapy
(flags per mode, prefixes, MTU, source link-layer address, DNS servers, link-local source,
checksum), Router Solicitations checked as RFC 4861 6.1.1 says, what each port is told
(nothing with port security, nothing without a mode or a router), the app's flows,
solicited answers and unsolicited RAs on their schedule."""
import pytest
from scapy.layers.inet6 import (ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptMTU, ICMPv6NDOptPrefixInfo, ICMPv6NDOptRDNSS,
                                ICMPv6NDOptSrcLLAddr, IPv6)
from scapy.layers.l2 import Ether

from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.apps.dhcp6 import TABLE_DHCP6
from dfxdp.controller.apps.ra import TABLE_ROUTER_SOLICIT, RouterAdvertApp, adverts
from dfxdp.controller.binding import tap_name
from dfxdp.controller.router_advert import (ADVERT_INTERVAL, ROUTER_LIFETIME, Advert, MalformedNdp, Prefix,
                                            parse_router_solicit)

ROUTER_MAC, VM_MAC = "fa:16:3e:00:00:01", "fa:16:3e:00:00:42"
ROUTER_LL = "fe80::f816:3eff:fe00:1"
VM_LL = "fe80::f816:3eff:fe00:42"


def decoded(frame: bytes):
    packet = Ether(frame)
    again = Ether(bytes(Ether(frame)[Ether]))  # scapy recomputes the checksum when told to forget it
    del again[ICMPv6ND_RA].cksum
    assert Ether(bytes(again))[ICMPv6ND_RA].cksum == packet[ICMPv6ND_RA].cksum
    return packet


@pytest.mark.parametrize("managed,other", [(False, False), (True, False), (False, True), (True, True)])
def test_an_advert_as_scapy_reads_it(managed, other):
    advert = Advert(ROUTER_MAC, (Prefix("2001:db8:1::/64", True), Prefix("2001:db8:2::/64", False)),
                    managed=managed, other=other, mtu=1450, dns_servers=("2001:db8::53", "2001:db8::54"))
    packet = decoded(advert.frame())
    assert (packet.src, packet.dst) == (ROUTER_MAC, "33:33:00:00:00:01")
    assert (packet[IPv6].src, packet[IPv6].dst, packet[IPv6].hlim) == (ROUTER_LL, "ff02::1", 255)
    ra = packet[ICMPv6ND_RA]
    assert (ra.M, ra.O, ra.routerlifetime, ra.chlim) == (managed, other, ROUTER_LIFETIME, 64)
    assert packet[ICMPv6NDOptSrcLLAddr].lladdr == ROUTER_MAC
    assert packet[ICMPv6NDOptMTU].mtu == 1450
    prefixes = [(p.prefix, p.prefixlen, p.L, p.A, p.validlifetime, p.preferredlifetime)
                for p in packet[ICMPv6ND_RA].iterpayloads() if isinstance(p, ICMPv6NDOptPrefixInfo)]
    assert prefixes == [("2001:db8:1::", 64, 1, 1, 86400, 14400), ("2001:db8:2::", 64, 1, 0, 86400, 14400)]
    assert packet[ICMPv6NDOptRDNSS].dns == ["2001:db8::53", "2001:db8::54"]


def test_no_mtu_below_ipv6s_minimum_and_no_dns_option_without_servers():
    packet = decoded(Advert(ROUTER_MAC, (Prefix("2001:db8:1::/64", True),), mtu=1000).frame(VM_MAC, VM_LL))
    assert ICMPv6NDOptMTU not in packet and ICMPv6NDOptRDNSS not in packet
    assert (packet.dst, packet[IPv6].dst) == (VM_MAC, VM_LL)


def rs(src: str = VM_LL, hlim: int = 255, **options) -> bytes:
    packet = Ether(src=VM_MAC, dst="33:33:00:00:00:02") / IPv6(src=src, dst="ff02::2", hlim=hlim) / ICMPv6ND_RS()
    if options.get("lladdr"):
        packet /= ICMPv6NDOptSrcLLAddr(lladdr=VM_MAC)
    return bytes(packet)


def test_a_solicitation_names_its_sender():
    assert parse_router_solicit(rs(lladdr=True)).src_ip == VM_LL
    assert parse_router_solicit(rs()).src_mac == VM_MAC
    assert parse_router_solicit(rs("::")).src_ip == "::"


@pytest.mark.parametrize("bad", [
    rs(hlim=64),                                    # came through a router
    rs("::", lladdr=True),                          # a link-layer address from no address
    rs()[:-4],                                      # cut short
    rs()[:-6] + b"\x00\x00" + rs()[-4:],               # checksum wrong
    bytes(Ether(src=VM_MAC) / IPv6(src=VM_LL, dst="ff02::2", hlim=255) / ICMPv6ND_RA()),  # not a solicitation
    bytes(Ether(src=VM_MAC) / IPv6(src=VM_LL, dst="ff02::2", hlim=255, nh=17) / (b"\x85\x00" + bytes(6))),
    rs(lladdr=True)[:-8] + b"\x01\x00" + bytes(6),  # an option of length 0
    b"\x33\x33\x00\x00\x00\x02" + bytes(8),         # no IPv6 at all
], ids=["hop-limit", "lladdr-from-unspecified", "short", "checksum", "advert", "udp", "zero-option", "tiny"])
def test_a_malformed_solicitation_is_refused(bad):
    with pytest.raises(MalformedNdp):
        parse_router_solicit(bad)


# ------------------------------------------------------------------ what a port is told

def world(ra_mode="slaac", port_security=False, router_up=True, extra_subnets=(), local=True):
    net = {"id": "n1", "key": 7, "mtu": 1450}
    subnets = {"s6": {"id": "s6", "network_id": "n1", "ip_version": 6, "cidr": "2001:db8:1::/64",
                      "ipv6_ra_mode": ra_mode, "ipv6_address_mode": ra_mode, "dns_nameservers": ["2001:db8::53"]}}
    for sub in extra_subnets:
        subnets[sub["id"]] = {"network_id": "n1", "dns_nameservers": [], **sub}
    interface = {"id": "rp1", "network_id": "n1", "device_owner": "network:router_interface", "device_id": "r1",
                 "mac_address": ROUTER_MAC, "fixed_ips": [{"subnet_id": s, "ip_address": "x"} for s in subnets]}
    vm = {"id": "vm1", "network_id": "n1", "device_owner": "compute:nova", "device_id": "i1", "mac_address": VM_MAC,
          "port_security_enabled": port_security, "fixed_ips": []}
    return LocalView(chassis="ch1", tunnel_ip="198.18.0.11", networks={"n1": net}, subnets=subnets,
                     ports={"rp1": interface, "vm1": vm}, routers={"r1": {"id": "r1", "admin_state_up": router_up}},
                     local_ports={"vm1": 31} if local else {}, ofports={tap_name("vm1"): 5})


@pytest.mark.parametrize("mode,autonomous,managed,other", [("slaac", True, False, False),
                                                          ("dhcpv6-stateless", True, False, True),
                                                          ("dhcpv6-stateful", False, True, False)])
def test_each_ra_mode_as_neutrons_radvd_says(mode, autonomous, managed, other):
    view = world(mode)
    (advert,) = adverts(view, view.ports["vm1"])
    assert advert.prefixes == (Prefix("2001:db8:1::/64", autonomous),)
    assert (advert.managed, advert.other, advert.mtu, advert.router_mac) == (managed, other, 1450, ROUTER_MAC)
    assert advert.dns_servers == (("2001:db8::53",) if mode == "slaac" else ())


def test_only_subnets_with_an_ra_mode_are_advertised():
    view = world(extra_subnets=({"id": "none", "ip_version": 6, "cidr": "2001:db8:2::/64", "ipv6_ra_mode": None},
                                {"id": "v4", "ip_version": 4, "cidr": "10.0.0.0/24"}))
    (advert,) = adverts(view, view.ports["vm1"])
    assert advert.prefixes == (Prefix("2001:db8:1::/64", True),)
    assert adverts(world(None), world(None).ports["vm1"]) == ()


@pytest.mark.parametrize("why", ["port_security", "router_down"])
def test_nothing_is_advertised(why):
    view = world(port_security=why == "port_security", router_up=why != "router_down")
    assert adverts(view, view.ports["vm1"]) == ()


# ------------------------------------------------------------------ the app

class Recorder:
    def __init__(self):
        self.sent = []

    def send(self, ifindex, frame):
        self.sent.append((ifindex, frame))


def test_flows_catch_solicitations_from_local_ports_only():
    app = RouterAdvertApp(sender=Recorder())
    flows = list(app.flows(world()))
    caught = [f for f in flows if f.priority == 100]
    assert len(caught) == 1 and dict(caught[0].match) == {"in_port": 5, "eth_type": 0x86DD, "ip_proto": 58,
                                                          "icmpv6_type": 133}
    assert caught[0].actions == (("controller",), ("goto", TABLE_DHCP6))  # on to be flooded
    assert all(f.table == TABLE_ROUTER_SOLICIT for f in flows)
    assert [f.priority for f in app.flows(world(port_security=True))] == [0]  # the rest is flooded
    assert [f.priority for f in app.flows(world(local=False))] == [0]


def test_a_solicitation_is_answered_into_its_tap():
    sender = Recorder()
    app = RouterAdvertApp(sender=sender)
    assert app.on_packet_in(world(), "vm1", rs(lladdr=True)) is False  # nothing for a pass to do
    ((ifindex, frame),) = sender.sent
    packet = decoded(frame)
    assert ifindex == 31 and (packet.dst, packet[IPv6].dst) == (VM_MAC, VM_LL)  # unicast, RFC 4861 6.2.6
    assert packet[ICMPv6NDOptPrefixInfo].prefix == "2001:db8:1::"
    app.on_packet_in(world(), "vm1", rs("::"))
    assert decoded(sender.sent[-1][1])[IPv6].dst == "ff02::1"


@pytest.mark.parametrize("port_id,frame", [(None, rs()), ("vm1", rs(hlim=1))], ids=["from-the-tunnel", "malformed"])
def test_what_is_not_answered(port_id, frame):
    sender = Recorder()
    RouterAdvertApp(sender=sender).on_packet_in(world(), port_id, frame)
    assert sender.sent == []


def test_unsolicited_adverts_on_their_schedule():
    now = [1000.0]
    sender = Recorder()
    app = RouterAdvertApp(clock=lambda: now[0], sender=sender)
    app.fallback_upkeep(world())
    assert [i for i, _ in sender.sent] == [31]  # a new tap is told at once
    now[0] += ADVERT_INTERVAL - 1
    app.fallback_upkeep(world())
    assert len(sender.sent) == 1
    now[0] += 1
    app.fallback_upkeep(world())
    assert len(sender.sent) == 2 and decoded(sender.sent[-1][1])[IPv6].dst == "ff02::1"
    app.fallback_upkeep(world("dhcpv6-stateful"))  # what it should be told changed: at once
    assert len(sender.sent) == 3 and decoded(sender.sent[-1][1])[ICMPv6ND_RA].M == 1
    app.fallback_upkeep(world(port_security=True))
    assert len(sender.sent) == 3
