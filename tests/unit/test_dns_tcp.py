"""DNS over TCP held by the agent (controller/dns_tcp.py) and the names it answers itself
(controller/dns_zone.py): a scapy client talks to the DNS app's on_punt as stage_dns
would hand it the segments; answers for the network's names come from the agent,
others are relayed to an upstream over TCP; truncation for UDP; a client that stops
acknowledging gets the answer again; a segment of no connection gets RST."""
import queue
import socket
import threading
import time

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.apps.dns import DnsApp
from dfxdp.controller.dns_zone import truncated
from dfxdp.nb.dns import DEFAULT_DOMAIN, assignment

VM_MAC, SERVER_MAC, VM_IP, SERVER_IP = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "10.0.0.5", "10.0.0.2"


def port(pid: str, ip: str, **extra) -> dict:
    p = {"id": pid, "key": hash(pid) & 0xFFFF, "network_id": "n", "mac_address": VM_MAC, "device_owner": "",
         "fixed_ips": [{"subnet_id": "a", "ip_address": ip}], **extra}
    p["dns_assignment"] = assignment(p, DEFAULT_DOMAIN)
    return p


def world(nameservers: list[str]) -> LocalView:
    ports = [port("dhcp", SERVER_IP, device_owner="network:dhcp"), port("web", "10.0.0.7", dns_name="web"),
             port("vm", VM_IP, dns_name="vm")]
    return LocalView(chassis="ch1", tunnel_ip="198.18.0.1", networks={"n": {"id": "n", "key": 7, "mtu": 1450}},
                     subnets={"a": {"id": "a", "network_id": "n", "cidr": "10.0.0.0/24",
                                    "dns_nameservers": nameservers}},
                     ports={p["id"]: p for p in ports})


class Punt:
    """What the punt service hands on_punt, its replies parsed into a queue."""

    def __init__(self, frame, view, sent: queue.Queue):
        self.frame, self.view, self.net_key, self.ifindex, self.sent = bytes(frame), view, 7, 3, sent

    def reply(self, frame: bytes) -> None:
        self.sent.put(Ether(frame))


class Client:
    """A TCP client's side, driven by hand: each segment goes through DnsApp.on_punt."""

    def __init__(self, app: DnsApp, view: LocalView, sport: int = 40000):
        self.app, self.view, self.sport, self.got = app, view, sport, queue.Queue()
        self.seq = 1000

    def send(self, flags: str, payload: bytes = b"", seq: int | None = None, ack: int = 0, **opts) -> None:
        seg = Ether(src=VM_MAC, dst=SERVER_MAC) / IP(src=VM_IP, dst=SERVER_IP) / \
            TCP(sport=self.sport, dport=53, seq=self.seq if seq is None else seq, ack=ack, flags=flags, **opts)
        self.app.on_punt(Punt(seg / payload if payload else seg, self.view, self.got))

    def next(self, timeout: float = 10) -> Ether:
        out = self.got.get(timeout=timeout)
        tcp = out[TCP].copy()
        del tcp.chksum  # the checksum the VM's kernel checks: recompute and compare
        assert TCP(bytes(IP(src=out[IP].src, dst=out[IP].dst) / tcp)[20:]).chksum == out[TCP].chksum
        assert (out.src, out.dst, out[IP].src, out[IP].dst) == (SERVER_MAC, VM_MAC, SERVER_IP, VM_IP)
        assert (out[TCP].sport, out[TCP].dport) == (53, self.sport)
        return out

    def connect(self) -> int:
        self.send("S", options=[("MSS", 1400)])
        synack = self.next()  # sent again by the timer if this test is slow: the same segment
        assert synack[TCP].flags == "SA" and synack[TCP].ack == self.seq + 1
        assert ("MSS", 1220) in synack[TCP].options
        self.seq += 1
        self.server = synack[TCP].seq + 1
        self.send("A", ack=self.server)
        return synack[TCP].seq

    def ask(self, query: DNS, pieces: int = 1) -> None:
        data = len(bytes(query)).to_bytes(2, "big") + bytes(query)
        cut = len(data) // pieces
        for i in range(pieces):
            chunk = data[i * cut:] if i == pieces - 1 else data[i * cut:(i + 1) * cut]
            self.send("PA", chunk, ack=self.server)
            self.seq += len(chunk)

    def answer(self) -> tuple[DNS, int]:
        """The next answer on the connection (ACKs skipped), acknowledged; and its segment count."""
        data, segments = b"", 0
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
            seg = self.next()
            payload = bytes(seg[TCP].payload)
            if not payload or "S" in seg[TCP].flags or seg[TCP].seq != self.server:
                continue  # an ACK, or what a slow test let the retransmission timer send again
            data += payload
            self.server += len(payload)
            segments += 1
        self.send("A", ack=self.server)
        return DNS(data[2:]), segments


@pytest.fixture
def app():
    return DnsApp()


def test_names_of_the_network_are_answered_over_tcp_by_the_agent(app):
    client = Client(app, world([]))
    client.connect()
    client.ask(DNS(id=7, rd=1, qd=DNSQR(qname="WEB.openstacklocal.")), pieces=3)  # split over segments
    reply, _ = client.answer()
    assert (reply.id, reply.qr, reply.aa, reply.rd, reply.rcode) == (7, 1, 1, 1, 0)
    assert reply.qd[0].qname == b"WEB.openstacklocal." and reply.an[0].rdata == "10.0.0.7" and reply.an[0].ttl == 60
    client.ask(DNS(id=8, qd=DNSQR(qname="7.0.0.10.in-addr.arpa.", qtype="PTR")))  # a second query, same connection
    reply, _ = client.answer()
    assert reply.an[0].rdata == b"web.openstacklocal."
    client.ask(DNS(id=9, qd=DNSQR(qname="nosuch.openstacklocal.")))
    reply, _ = client.answer()
    assert reply.rcode == 3 and reply.aa == 1
    client.send("FA", ack=client.server)
    fin = client.next()
    while "F" not in fin[TCP].flags:
        fin = client.next()
    assert fin[TCP].ack == client.seq + 1
    client.send("A", seq=client.seq + 1, ack=fin[TCP].seq + 1)
    assert len(app.tcp) == 0  # closed and forgotten


def test_outside_names_are_relayed_to_the_upstream_over_tcp(app):
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen()
    big = DNSRR(rrname="big.example.", type="TXT", rdata=["x" * 200] * 10)  # over one segment

    def serve():
        conn, _ = upstream.accept()
        with conn:
            length = int.from_bytes(conn.recv(2), "big")
            q = DNS(conn.recv(length))
            answer = bytes(DNS(id=q.id, qr=1, rd=q.rd, ra=1, qd=q.qd, an=big))
            conn.sendall(len(answer).to_bytes(2, "big") + answer)

    threading.Thread(target=serve, daemon=True).start()
    app.upstream = upstream.getsockname()
    client = Client(app, world([]))
    client.connect()
    client.ask(DNS(id=0x4242, rd=1, qd=DNSQR(qname="big.example.", qtype="TXT")))
    reply, segments = client.answer()
    assert reply.id == 0x4242 and len(reply.an[0].rdata) == 10 and segments == 2  # in segments of 1220 bytes
    upstream.close()


def test_an_unreachable_upstream_gives_servfail(app):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: the connection is refused
    app.upstream = closed.getsockname()
    client = Client(app, world([]))
    client.connect()
    client.ask(DNS(id=5, qd=DNSQR(qname="example.com.")))
    reply, _ = client.answer()
    assert (reply.id, reply.rcode) == (5, 2)
    closed.close()


def test_a_retransmitted_syn_gets_the_same_synack_and_unacknowledged_answers_come_again(app):
    client = Client(app, world([]))
    client.send("S")
    first = client.next()
    client.send("S")
    assert client.next()[TCP].seq == first[TCP].seq
    client.seq += 1
    client.server = first[TCP].seq + 1
    client.send("A", ack=client.server)
    client.ask(DNS(id=3, qd=DNSQR(qname="vm.openstacklocal.")))
    answer = client.next()
    while not bytes(answer[TCP].payload):
        answer = client.next()
    again = client.next()  # never acknowledged: sent again after the retransmission timeout
    while not bytes(again[TCP].payload):
        again = client.next()
    assert (again[TCP].seq, bytes(again[TCP].payload)) == (answer[TCP].seq, bytes(answer[TCP].payload))
    client.send("R", ack=0)
    deadline = time.monotonic() + 10
    while len(app.tcp):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_segment_of_no_connection_is_reset(app):
    client = Client(app, world([]))
    client.send("A", ack=12345)
    rst = client.next()
    assert rst[TCP].flags == "R" and rst[TCP].seq == 12345
    assert app.tcp.resets == 1


def test_names_of_the_network_punted_over_udp_are_answered_by_the_agent_too(app):
    """DNSSEC OK goes up from XDP; the upstream does not know the network's names: the agent answers."""
    sent = queue.Queue()
    query = Ether(src=VM_MAC, dst=SERVER_MAC) / IP(src=VM_IP, dst=SERVER_IP) / UDP(sport=40001, dport=53) / \
        DNS(id=9, rd=1, qd=DNSQR(qname="web.openstacklocal."), ar=[])
    app.on_punt(Punt(query, world(["192.0.2.53"]), sent))
    reply = sent.get(timeout=5)[DNS]
    assert (reply.id, reply.aa, reply.an[0].rdata) == (9, 1, "10.0.0.7")


def test_an_answer_too_big_for_the_client_is_truncated():
    answer = bytes(DNS(id=1, qr=1, qd=DNSQR(qname="Big.Example.", qtype="TXT"),
                       an=DNSRR(rrname="big.example.", type="TXT", rdata=["x" * 200] * 5)))
    cut = DNS(truncated(answer))
    assert (cut.id, cut.qr, cut.tc, cut.ancount, cut.qd[0].qname) == (1, 1, 1, 0, b"Big.Example.")
    assert len(truncated(answer)) == 12 + len("Big.Example.") + 1 + 4


def test_a_relayed_udp_answer_over_the_clients_size_goes_out_truncated(app):
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.bind(("127.0.0.1", 0))

    def serve():
        data, peer = upstream.recvfrom(512)
        q = DNS(data)
        upstream.sendto(bytes(DNS(id=q.id, qr=1, qd=q.qd, an=DNSRR(rrname="big.example.", type="TXT",
                                                                    rdata=["x" * 200] * 4))), peer)

    threading.Thread(target=serve, daemon=True).start()
    app.upstream = upstream.getsockname()
    sent = queue.Queue()
    query = Ether(src=VM_MAC, dst=SERVER_MAC) / IP(src=VM_IP, dst=SERVER_IP) / UDP(sport=40002, dport=53) / \
        DNS(id=4, qd=DNSQR(qname="big.example.", qtype="TXT"))  # no EDNS: 512 bytes at most
    app.on_punt(Punt(query, world([]), sent))
    reply = sent.get(timeout=10)[DNS]
    assert (reply.id, reply.tc, reply.ancount) == (4, 1, 0)
    upstream.close()
