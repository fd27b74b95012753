"""stage_dns through BPF_PROG_TEST_RUN: answers built in place (A, AAAA, PTR,
NODATA, NXDOMAIN, EDNS), names without regard to case, what goes up, and the
reply's way back through the VM's ingress security groups."""
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRROPT, EDNS0TLV
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dfxdp.datapath.pktrun import run_packet

from .dns_fixtures import DnsWorld, query


@pytest.fixture
def world(pipeline, test_iface):
    _, vm_if = test_iface()
    return DnsWorld(pipeline, vm_if)


def ask(world, payload, **kw):
    res = run_packet(world.pipeline, world.frame(payload, **kw), ingress_ifindex=world.vm_ifindex)
    return res


def dns_stats(res) -> dict:
    return res.counters


def answered(world, payload, **kw):
    """Run a query that must be answered; returns (run, parsed dnspython reply)."""
    res = ask(world, payload, **kw)
    assert res.verdict == "XDP_REDIRECT", (res.verdict, res.drop_reason, res.stages)
    assert res.meta["out_ifindex"] == world.vm_ifindex
    pkt = res.packet
    assert (pkt[Ether].src, pkt[Ether].dst) == (world.dhcp["mac_address"], world.vm["mac_address"])
    assert (pkt[IP].src, pkt[IP].dst, pkt[UDP].sport, pkt[UDP].dport) == \
        (world.server_ip, world.v4(world.vm)[0], 53, kw.get("sport", 33333))
    assert pkt[IP].len == len(res.data) - 14 and pkt[UDP].len == pkt[IP].len - 20
    again = IP(bytes(pkt[IP]))
    del again.chksum
    assert IP(bytes(again)).chksum == pkt[IP].chksum
    return res, dns.message.from_wire(bytes(pkt[UDP].payload))


def passed_up(world, payload, **kw):
    """Punted to the agent's relay, untouched."""
    res = ask(world, payload, **kw)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_PUNTED")
    assert res.data == bytes(world.frame(payload, **kw))
    return res


def rrset_texts(reply):
    return sorted(str(r) for rrset in reply.answer for r in rrset)


def test_a_of_a_name_in_the_domain(world):
    res, reply = answered(world, query("web.openstacklocal."))
    assert reply.id == 0x1234 and reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.AA and reply.flags & dns.flags.RD
    assert reply.flags & dns.flags.RA and not reply.flags & dns.flags.TC
    assert str(reply.question[0].name) == "web.openstacklocal."
    assert rrset_texts(reply) == sorted(world.v4(world.web))
    assert reply.answer[0].ttl == 60
    assert res.stages[-2:] == ["STAGE_SG_INGRESS", "STAGE_OUTPUT"]
    raw = bytes(res.packet[UDP].payload)
    question_end = 12 + len(b"\x03web\x0eopenstacklocal\x00") + 4
    assert raw[question_end:question_end + 2] == b"\xc0\x0c"  # the answer points at the question


def test_bare_hostname_and_mixed_case_echoed(world):
    _, reply = answered(world, query("WeB."))
    assert rrset_texts(reply) == sorted(world.v4(world.web))
    res, reply = answered(world, query("vM1.OpenStackLocal."))
    assert str(reply.question[0].name) == "vM1.OpenStackLocal."
    assert str(reply.answer[0].name) == "vM1.OpenStackLocal."
    assert rrset_texts(reply) == world.v4(world.vm)


def test_unnamed_port_answers_as_host_dashes(world):
    address = world.v4(world.anon)[0]
    _, reply = answered(world, query(f"host-{address.replace('.', '-')}.openstacklocal."))
    assert rrset_texts(reply) == [address]


def test_aaaa_answers_ipv6_and_nodata_without(world):
    _, reply = answered(world, query("web.openstacklocal.", "AAAA"))
    v6 = [f["ip_address"] for f in world.web["fixed_ips"] if ":" in f["ip_address"]]
    assert rrset_texts(reply) == v6
    _, reply = answered(world, query("vm1.openstacklocal.", "AAAA"))
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer == []


def test_ptr_of_an_address_of_the_network(world):
    address = world.v4(world.web)[1]
    reverse = ".".join(reversed(address.split("."))) + ".in-addr.arpa."
    _, reply = answered(world, query(reverse, "PTR"))
    assert rrset_texts(reply) == ["web.openstacklocal."]


def test_unknown_name_in_the_domain_is_nxdomain(world):
    res, reply = answered(world, query("nosuch.openstacklocal."))
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.answer == []
    # the domain's own name, and a name in the other network only, are not ours to deny or give
    passed_up(world, query("openstacklocal."))


def test_networks_do_not_share_names(world):
    _, reply = answered(world, query("web.openstacklocal."))
    other = [f["ip_address"] for f in world.other_web["fixed_ips"]]
    assert not set(rrset_texts(reply)) & set(other)


def test_edns_is_echoed_with_our_size_without_options(world):
    payload = query("web.openstacklocal.", edns=4096)
    payload.ar = DNSRROPT(rclass=4096, z=0, rdata=[EDNS0TLV(optcode=10, optdata=b"\x01" * 8)])  # a client cookie
    _, reply = answered(world, payload)
    assert reply.edns == 0 and reply.payload == 1232 and not reply.options and not reply.ednsflags
    assert rrset_texts(reply) == sorted(world.v4(world.web))


@pytest.mark.parametrize("payload,why", [
    (query("example.com."), "outside the domain"),
    (query("web.openstacklocal.", "MX"), "another type"),
    (query("web.openstacklocal.", "TXT"), "another type"),
    (query("web.openstacklocal.", edns=1232, do=True), "DNSSEC OK"),
    (query("1.2.3.4.in-addr.arpa.", "PTR"), "an address of no port"),
    (DNS(id=1, qd=DNSQR(qname="web.openstacklocal.", qclass="CH")), "another class"),
    (DNS(id=1, opcode=2, qd=DNSQR(qname="web.openstacklocal.")), "not a QUERY"),
])
def test_what_goes_up(world, payload, why):
    passed_up(world, payload)


def test_tcp_to_port_53_is_punted_and_other_destinations_go_on(world):
    def tcp(dport):
        return Ether(src=world.vm["mac_address"], dst=world.dhcp["mac_address"]) / \
            IP(src=world.v4(world.vm)[0], dst=world.server_ip) / TCP(sport=40000, dport=dport, flags="S")
    res = run_packet(world.pipeline, tcp(53), ingress_ifindex=world.vm_ifindex)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_PUNTED")  # to the agent's TCP responder
    assert res.data == bytes(tcp(53))
    res = run_packet(world.pipeline, tcp(80), ingress_ifindex=world.vm_ifindex)
    assert res.data == bytes(tcp(80)) and res.drop_reason is None
    res = ask(world, query("web.openstacklocal."), dst=world.v4(world.web)[0])  # not the DNS server
    assert res.data == bytes(world.frame(query("web.openstacklocal."), dst=world.v4(world.web)[0]))
    assert res.drop_reason is None


def test_name_changes_reach_the_datapath(world):
    world.svc.update("port", world.web["id"], {"dns_name": "www"})
    world.sync()
    _, reply = answered(world, query("www.openstacklocal."))
    assert rrset_texts(reply) == sorted(world.v4(world.web))
    _, reply = answered(world, query("web.openstacklocal."))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    world.svc.update("network", world.net["id"], {"dns_domain": "corp.test."})
    world.sync()
    _, reply = answered(world, query("www.corp.test."))
    assert rrset_texts(reply) == sorted(world.v4(world.web))
    passed_up(world, query("www.openstacklocal."))  # no longer our domain
    _, reply = answered(world, query("gone.corp.test."))
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_reply_crosses_the_vms_ingress_security_groups(world):
    """The default group lets in only its members: the answer passes as the reply of the
    flow the query opened at egress, and is counted there."""
    res, _ = answered(world, query("web.openstacklocal."))
    assert "STAGE_SG_EGRESS" in res.stages and "STAGE_SG_INGRESS" in res.stages
    assert res.verdict == "XDP_REDIRECT"


def test_outcomes_are_counted_and_scraped(world):
    from prometheus_client import CollectorRegistry, generate_latest

    from dfxdp.metrics.datapath import DatapathCollector
    from dfxdp.testing.prom import promtool_check, sample

    answered(world, query("web.openstacklocal."))
    answered(world, query("nosuch.openstacklocal."))
    passed_up(world, query("example.com."))
    registry = CollectorRegistry()
    registry.register(DatapathCollector(lambda: world.pipeline.maps))
    text = generate_latest(registry).decode()
    assert promtool_check(text)[0]
    for outcome in ("DNS_ANSWERED", "DNS_NXDOMAIN", "DNS_PASS_UNKNOWN"):
        assert sample(text, "dfxdp_dns_queries_total", outcome=outcome) == 1
    assert sample(text, "dfxdp_dns_queries_total", outcome="DNS_BAD_LABEL") == 0


@pytest.mark.parametrize("differ_at", [0, 1, 7, 8, 9, 15, 16, 23, 24, 31, 32])
def test_a_hash_collision_is_never_answered(world, differ_at):
    """A name planted under the hash of the asked one, differing from it in one byte (each side
    of the compare's 8-byte words, the last byte of the name included), goes up; the
    same name planted the same way is answered, so the planting is right."""
    from dfxdp.controller.apps.dns import _padded, name_hash, wire_name
    from dfxdp.datapath.libbpf import lib

    asked = wire_name("abcdefghijklmnopq.openstacklocal.")  # 34 bytes: the compare's last word is partial
    assert differ_at < len(asked) - 1
    names, stats = world.pipeline.maps["dns_names"], world.pipeline.maps["dns_stats"]

    def plant(stored: bytes) -> None:
        names.update({"net_key": world.net["key"], "hash": name_hash(asked)},
                     {"name_len": len(stored), "ipv4_count": 1, "ipv6_count": 0, "ipv4": [0x0100000A, 0, 0, 0],
                      "ipv6": [[0] * 16] * 4, "name": _padded(stored)})

    plant(asked)
    _, reply = answered(world, query("abcdefghijklmnopq.openstacklocal."))
    assert rrset_texts(reply) == ["10.0.0.1"]
    other = bytearray(asked)
    other[differ_at] = other[differ_at] + 1 if differ_at else other[0]  # a length byte stays a length byte
    if differ_at == 0:
        other = bytearray(wire_name("abcdefghijklmnopqr.openstacklocal."))  # one byte longer
    plant(bytes(other))
    before = stats.lookup_sum(lib.DNS_HASH_COLLISION).get("packets", 0)
    passed_up(world, query("abcdefghijklmnopq.openstacklocal."))
    assert stats.lookup_sum(lib.DNS_HASH_COLLISION).get("packets", 0) == before + 1
