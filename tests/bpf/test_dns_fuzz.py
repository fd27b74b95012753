"""Bad and fuzzed queries through stage_dns: each is either answered exactly as
the Python reference (tests/bpf/dns_reference.py) answers it, or punted untouched
to the agent's relay; malformed ones are counted by reason. Corpora are seeded:
a failure names its seed and index and replays."""
import random
import struct

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRROPT
from scapy.layers.inet import UDP
from scapy.packet import Raw, fuzz

from dfxdp.controller.apps.dns import network_domain
from dfxdp.datapath.libbpf import lib
from dfxdp.datapath.pktrun import run_packet

from .dns_fixtures import DnsWorld, query
from .dns_reference import Zone, check_reply, expected


@pytest.fixture(scope="module")
def world():
    """One world for the module's many queries (loading the pipeline is the slow part)."""
    import os
    import subprocess
    import uuid

    from dfxdp.datapath.libbpf import ensure_bpffs
    from dfxdp.datapath.pipeline import Pipeline
    from dfxdp.testing.netns import ifindex, run, unique_suffix

    from tests.conftest import TEST_BPFFS_ROOT

    name = f"dfd{unique_suffix()}"[:15]
    path = TEST_BPFFS_ROOT / uuid.uuid4().hex[:12]
    run(["ip", "link", "add", name, "type", "veth", "peer", "name", name[:13] + "pr"])
    try:
        ensure_bpffs(path)
        pipe = Pipeline(path / "chassis").load()
        try:
            yield DnsWorld(pipe, ifindex(name))
        finally:
            pipe.destroy()
    finally:
        run(["ip", "link", "del", name])
        subprocess.run(["umount", "-l", str(path)], check=False)
        if path.exists():
            os.rmdir(path)


@pytest.fixture(scope="module")
def zone(world):
    ports = world.svc.list("port", {"network_id": [world.net["id"]]})
    return Zone(ports, network_domain(world.dhcp))


def stats(world) -> list[int]:
    m = world.pipeline.maps["dns_stats"]
    return [m.lookup_sum(i).get("packets", 0) for i in range(lib.DNS_STAT_MAX)]


def run_query(world, zone, payload: bytes, label: str):
    """Run one datagram; assert it got exactly the reference's treatment."""
    frame = world.frame(Raw(payload))
    res = run_packet(world.pipeline, frame, ingress_ifindex=world.vm_ifindex)
    want = expected(zone, payload)
    if want is None:
        assert res.data == bytes(frame), f"{label}: changed a query that should go up: {payload.hex()}"
        # punted, or refused by the punt path's own limits (nothing reads the ring here)
        assert res.drop_reason in ("DROP_PUNTED", "DROP_PUNT_RATE", "DROP_PUNT_QUEUE_FULL"), label
        return res
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == world.vm_ifindex, \
        f"{label}: not answered: {payload.hex()}"
    check_reply(payload, bytes(res.packet[UDP].payload), want, ttl=60)
    return res


def wire(name: str) -> bytes:
    return b"".join(bytes([len(x)]) + x.encode() for x in name.rstrip(".").split(".") if x) + b"\x00"


def header(qd=1, an=0, ns=0, ar=0, flags=0x0100, qid=0xBEEF) -> bytes:
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)


Q_A = struct.pack("!HH", 1, 1)
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
LONG = ".".join(["a" * 63] * 4)  # 4 * 64 + 1 = 257 bytes of wire name

MALFORMED = [
    ("compression loop", header() + b"\xc0\x0c" + Q_A, lib.DNS_BAD_LABEL),
    ("pointer after a label", header() + b"\x03web\xc0\x0c" + Q_A, lib.DNS_BAD_LABEL),
    ("extended label type", header() + b"\x43web" + Q_A, lib.DNS_BAD_LABEL),
    ("truncated label", header() + b"\x0aweb", lib.DNS_BAD_TRUNCATED),
    ("no type and class", header() + wire("web.openstacklocal."), lib.DNS_BAD_TRUNCATED),
    ("half a type", header() + wire("web.openstacklocal.") + b"\x00", lib.DNS_BAD_TRUNCATED),
    ("over-long name", header() + wire(LONG) + Q_A, lib.DNS_BAD_TOO_LONG),
    ("no question", header(qd=0), lib.DNS_BAD_QDCOUNT),
    ("two questions", header(qd=2) + wire("web.") + Q_A + wire("vm1.") + Q_A, lib.DNS_BAD_QDCOUNT),
    ("garbage after the question", header() + wire("web.") + Q_A + b"junk", lib.DNS_BAD_TRAILING),
    ("garbage after OPT", header(ar=1) + wire("web.") + Q_A + OPT + b"x", lib.DNS_BAD_TRAILING),
    ("additional record not OPT", header(ar=1) + wire("web.") + Q_A + b"\x00\x00\x01" + OPT[3:], lib.DNS_BAD_OPT),
    ("OPT cut short", header(ar=1) + wire("web.") + Q_A + OPT[:6], lib.DNS_BAD_OPT),
    ("a response", header(flags=0x8180) + wire("web.") + Q_A, lib.DNS_BAD_HEADER),
    ("answers in a query", header(an=1) + wire("web.") + Q_A, lib.DNS_BAD_HEADER),
    ("shorter than a header", b"\x12\x34\x01", lib.DNS_BAD_HEADER),
    ("truncated flag", header(flags=0x0300) + wire("web.") + Q_A, lib.DNS_PASS_FLAGS),
]


@pytest.mark.parametrize("payload,reason", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_queries_go_up_counted_by_reason(world, zone, payload, reason):
    before = stats(world)
    run_query(world, zone, payload, "malformed")
    after = stats(world)
    assert [a - b for a, b in zip(after, before)] == [int(i == reason) for i in range(lib.DNS_STAT_MAX)]


def test_ethernet_padding_is_not_trailing_garbage(world, zone):
    frame = bytes(world.frame(query("web.")))
    res = run_packet(world.pipeline, frame + b"\x00" * 20, ingress_ifindex=world.vm_ifindex)
    assert res.verdict == "XDP_REDIRECT"
    assert len(res.data) == len(frame) + 16 * len(world.v4(world.web))  # the padding went, the A records came


def valid_queries() -> list[bytes]:
    """Queries the responder answers, in several cases and shapes."""
    names = ["web.openstacklocal.", "WEB.OpenStackLocal.", "web.", "vm1.openstacklocal.", "nosuch.openstacklocal.",
             "x.y.openstacklocal.", "example.com.", "openstacklocal.", "10.70.0.5.in-addr.arpa."]
    out = []
    for name in names:
        for qtype in ("A", "AAAA", "PTR", "MX"):
            out.append(bytes(query(name, qtype)))
            out.append(bytes(DNS(id=7, rd=0, qd=DNSQR(qname=name, qtype=qtype), ar=DNSRROPT(rclass=1400, z=0))))
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One or two edits: benign ones (case, id) that keep an answer, and breaking ones."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 2)):
        op = rng.randrange(7)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif op == 2:
            del data[pos:pos + rng.randint(1, 6)]
        elif op == 3:
            data = data[:pos]
        elif op == 4 and data:  # a label length or a count set to an edge value
            data[min(pos, len(data) - 1)] = rng.choice([0, 1, 63, 64, 0xC0, 0xFF])
        elif op == 5:
            letters = [i for i, b in enumerate(data) if i >= 12 and chr(b).isalpha()]
            if letters:
                data[rng.choice(letters)] ^= 0x20
        else:
            data[0:2] = rng.randrange(65536).to_bytes(2, "big")
    return bytes(data)


def test_mutated_queries_match_the_reference(world, zone):
    rng = random.Random(20261125)
    corpus = valid_queries()
    outcomes = []
    for i in range(1500):
        payload = mutate(rng, rng.choice(corpus))
        outcomes.append(run_query(world, zone, payload, f"mutation {i} (seed 20261125)").verdict)
    # the corpus exercises both sides: mutations that still get answers, and ones that go up
    assert outcomes.count("XDP_REDIRECT") >= 75 and len(outcomes) - outcomes.count("XDP_REDIRECT") >= 500


def test_scapy_fuzzed_queries_match_the_reference(world, zone):
    random.seed(16)  # scapy's fuzz() draws from the random module
    templates = [DNS(qd=DNSQR(qname="web.openstacklocal.")), DNS(qd=DNSQR(qname="vm1.", qtype="AAAA")),
                 DNS(qd=DNSQR(qname="5.0.70.10.in-addr.arpa.", qtype="PTR"), ar=DNSRROPT(z=0))]
    ran = 0
    for i in range(600):
        try:
            payload = bytes(fuzz(random.choice(templates)))
        except Exception:  # scapy cannot always build what it fuzzed: not a query to send
            continue
        run_query(world, zone, payload[:1400], f"fuzz {i} (seed 16)")
        ran += 1
    assert ran >= 300


def test_the_reference_answers_what_the_corpus_should(world, zone):
    """The comparison above means something only if the reference answers and refuses both."""
    answers = [expected(zone, q) for q in valid_queries()]
    assert sum(a is not None and a.rcode == 0 and bool(a.rdatas) for a in answers) >= 10
    assert sum(a is not None and a.rcode == 3 for a in answers) >= 2
    assert sum(a is None for a in answers) >= 10
