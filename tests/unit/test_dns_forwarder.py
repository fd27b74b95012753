"""The DNS fallback relay: answer frames, REFUSED, ids matched to their query and resolver,
and the resolver each subnet's queries go to."""
import queue
import socket
import threading

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.apps.dns import DnsApp
from dfxdp.controller.dns_forwarder import Forwarder, parse_upstream, refused, reply_frame

QUERY = Ether(src="fa:16:3e:00:00:01", dst="fa:16:3e:00:00:02") / IP(src="10.0.0.5", dst="10.0.0.2") / \
    UDP(sport=40000, dport=53) / DNS(id=0x4242, rd=1, qd=DNSQR(qname="example.com."))


def test_reply_frame_turns_the_query_around_with_valid_headers():
    answer = bytes(DNS(id=0x4242, qr=1, qd=DNSQR(qname="example.com."), an=DNSRR(rrname="example.com.",
                                                                                  rdata="192.0.2.1")))
    out = Ether(reply_frame(bytes(QUERY), answer))
    assert (out.src, out.dst, out[IP].src, out[IP].dst) == (QUERY.dst, QUERY.src, "10.0.0.2", "10.0.0.5")
    assert (out[UDP].sport, out[UDP].dport, out[UDP].len) == (53, 40000, 8 + len(answer))
    again = out[IP].copy()
    del again.chksum
    assert IP(bytes(again)).chksum == out[IP].chksum
    assert out[DNS].an.rdata == "192.0.2.1"


def test_refused_keeps_the_id_and_rd():
    reply = DNS(refused(bytes(QUERY[DNS])))
    assert (reply.id, reply.qr, reply.rd, reply.ra, reply.rcode) == (0x4242, 1, 1, 1, 5)


@pytest.mark.parametrize("value", ["dns.example", "10.0.0.1:x", "10.0.0.1:70000", "10.0.0"])
def test_bad_upstreams_are_refused(value):
    with pytest.raises((OSError, ValueError)):
        parse_upstream(value)


def test_relay_restores_the_id_and_ignores_strangers():
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.bind(("127.0.0.1", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    answers: queue.Queue = queue.Queue()

    def serve():
        data, peer = upstream.recvfrom(512)
        stranger.sendto(data[:2] + b"\x81\x80" + data[4:], peer)  # right id, wrong source: ignored
        upstream.sendto(data[:2] + b"\x81\x80" + data[4:], peer)

    threading.Thread(target=serve, daemon=True).start()
    fwd = Forwarder()
    query = bytes(QUERY[DNS])
    assert fwd.forward(query, upstream.getsockname(), answers.put)
    got = answers.get(timeout=10)
    assert got[:2] == query[:2] and got[2:4] == b"\x81\x80" and got[4:] == query[4:]
    assert answers.empty() and fwd.answered == 1
    assert not fwd.forward(b"\x00" * 5, upstream.getsockname(), answers.put)  # not even a header
    upstream.close()
    stranger.close()


def test_the_subnets_nameservers_come_first_then_the_agents_upstream():
    view = LocalView(chassis="ch1", tunnel_ip="198.18.0.1", networks={"n": {"id": "n", "key": 7}},
                     subnets={"a": {"id": "a", "network_id": "n", "cidr": "10.0.0.0/24",
                                    "dns_nameservers": ["fd00::53", "192.0.2.53"]},
                              "b": {"id": "b", "network_id": "n", "cidr": "10.0.1.0/24", "dns_nameservers": []}})
    app = DnsApp(upstream=("198.51.100.53", 53))
    assert app._upstream_for(view, view.networks["n"], "10.0.0.2") == ("192.0.2.53", 53)
    assert app._upstream_for(view, view.networks["n"], "10.0.1.2") == ("198.51.100.53", 53)
    assert DnsApp()._upstream_for(view, view.networks["n"], "10.0.1.2") is None


class FakePunt:
    """What the punt service hands on_punt: the frame, its network, and a reply that records."""

    def __init__(self, frame: bytes, view, net_key: int = 7):
        self.frame, self.view, self.net_key, self.sent = frame, view, net_key, []

    def reply(self, frame: bytes) -> None:
        self.sent.append(frame)


def test_a_punted_query_without_a_resolver_is_refused_to_the_vm():
    view = LocalView(chassis="ch1", tunnel_ip="198.18.0.1", networks={"n": {"id": "n", "key": 7}},
                     subnets={"a": {"id": "a", "network_id": "n", "cidr": "10.0.0.0/24", "dns_nameservers": []}})
    packet = FakePunt(bytes(QUERY), view)
    DnsApp().on_punt(packet)
    [frame] = packet.sent
    out = Ether(frame)
    assert (out[IP].src, out[IP].dst, out[UDP].sport) == ("10.0.0.2", "10.0.0.5", 53)
    assert (out[DNS].id, out[DNS].rcode) == (0x4242, 5)
    DnsApp().on_punt(FakePunt(bytes(QUERY)[:30], view))  # cut short: nothing to answer, nothing raised
