"""The load balancer end to end on a two-chassis cluster, built by openstacksdk:
three members (one on the client's chassis, two on the other), each a real HTTP
server answering its own name; curl from a VM through the VIP reaches every
member; SOURCE_IP keeps one client on one member; a long download survives a
fourth member joining; a UDP listener balances a UDP echo service; the outside
host reaches every member through a floating IP on the VIP's port."""
import collections
import subprocess
import sys
import time

import pytest

from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, run, wait_listening

UDP_ECHO = ("import socket, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5353))\n"
            "while True:\n"
            "    _, peer = s.recvfrom(2048); s.sendto(sys.argv[1].encode(), peer)\n")
UDP_ASK = ("import socket, sys\n"
           "for _ in range(int(sys.argv[2])):\n"
           "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)\n"
           "    try:\n"
           "        s.sendto(b'who', (sys.argv[1], 5353)); print(s.recv(2048).decode())\n"
           "    except OSError:\n"
           "        print('timeout')\n"
           "    s.close()\n")
BIG = 4 * 1024 * 1024  # the long download: about 10 s at curl's --limit-rate 400k


@pytest.fixture(scope="module")
def balanced(tmp_path_factory):
    with Topology("lb") as topo:
        cl = Cluster(topo, chassis=2)
        try:
            c = cl.connect()
            net = c.network.create_network(name="blue")
            cl.subnet = c.network.create_subnet(network_id=net.id, cidr="10.0.0.0/24", ip_version=4)
            ext = c.network.create_network(name="ext", is_router_external=True)
            c.network.create_subnet(network_id=ext.id, cidr="198.19.0.0/24", ip_version=4, gateway_ip="198.19.0.1",
                                    allocation_pools=[{"start": "198.19.0.10", "end": "198.19.0.99"}])
            router = c.network.create_router(name="r", external_gateway_info={"network_id": ext.id})
            c.network.add_interface_to_router(router, subnet_id=cl.subnet.id)
            cl.vm, cl.ports, cl.roots = {}, {}, {}
            # the members' group lets in the health monitors' probes (from the subnet's probe-source port)
            default = next(c.network.security_groups(name="default"))
            for protocol, number in (("tcp", 80), ("udp", 5353)):
                c.network.create_security_group_rule(security_group_id=default.id, direction="ingress",
                                                     protocol=protocol, port_range_min=number, port_range_max=number,
                                                     remote_ip_prefix="10.0.0.0/24")
            c.network.create_security_group_rule(security_group_id=default.id, direction="ingress", protocol="tcp",
                                                 port_range_min=80, port_range_max=80,
                                                 remote_ip_prefix="198.19.0.0/24")  # the outside host
            for name, chassis in (("client", 1), ("m1", 1), ("m2", 2), ("m3", 2), ("m4", 1)):
                port = c.network.create_port(network_id=net.id, binding_host_id=f"ch{chassis}", name=name)
                cl.ports[name], cl.vm[name] = port, cl.plug(port, cl.chassis[chassis - 1], name=name)
            for port in cl.ports.values():
                cl.wait_active(port.id)
            cl.servers = {}
            for name in ("m1", "m2", "m3", "m4"):
                root = tmp_path_factory.mktemp(name)
                cl.roots[name] = root
                (root / "index.html").write_text(name)
                (root / "big").write_bytes(name.encode() * (BIG // len(name)))
                cl.servers[name] = topo.popen([sys.executable, "-m", "http.server", "80", "--directory", str(root)],
                                              ns=cl.vm[name], stderr=subprocess.DEVNULL)
                topo.popen([sys.executable, "-c", UDP_ECHO, name], ns=cl.vm[name])
            for name in ("m1", "m2", "m3", "m4"):
                wait_listening(cl.vm[name], 80)
                wait_listening(cl.vm[name], 5353, "udp")
            lb = c.load_balancer.create_load_balancer(name="web", vip_subnet_id=cl.subnet.id)
            cl.vip, cl.lb_id = lb.vip_address, lb.id
            cl.pools = {}
            for number, protocol, algorithm, member_port in ((80, "TCP", "SOURCE_IP_PORT", 80),
                                                            (81, "TCP", "SOURCE_IP", 80),
                                                            (5353, "UDP", "ROUND_ROBIN", 5353)):
                listener = c.load_balancer.create_listener(loadbalancer_id=lb.id, protocol=protocol,
                                                           protocol_port=number)
                pool = c.load_balancer.create_pool(listener_id=listener.id, protocol=protocol, lb_algorithm=algorithm)
                for name in ("m1", "m2", "m3"):
                    c.load_balancer.create_member(pool, address=address(cl, name), protocol_port=member_port,
                                                  subnet_id=cl.subnet.id)
                cl.pools[number] = pool
            cl.monitor = c.load_balancer.create_health_monitor(
                pool_id=cl.pools[80].id, type="HTTP", http_method="GET", url_path="/", expected_codes="200",
                delay=1, timeout=1, max_retries=1, max_retries_down=2)
            cl.fip = c.network.create_ip(floating_network_id=ext.id, port_id=lb.vip_port_id).floating_ip_address
            # every change left it PENDING_UPDATE: the agents report it programmed
            c.load_balancer.wait_for_load_balancer(lb.id, status="ACTIVE", failures=["ERROR"], interval=0.3, wait=60)
            yield cl
        finally:
            cl.close()


def address(cl, name):
    return cl.ports[name].fixed_ips[0]["ip_address"]


def curl(cl, url, **kw):
    return run(["curl", "-s", "--max-time", "5", url], ns=cl.vm["client"], check=False, **kw)


def wait_served(cl, port=80, timeout=30):
    """The agents converge in the background: poll until the VIP answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if curl(cl, f"http://{cl.vip}:{port}/").stdout.startswith("m"):
            return
        time.sleep(0.3)
    raise AssertionError(f"VIP {cl.vip}:{port} never answered; agent logs in {cl.logdir}")


def test_vip_answers_ping(balanced):
    assert balanced.ping(balanced.vm["client"], balanced.vip)


def test_requests_reach_every_member(balanced):
    wait_served(balanced)
    answers = collections.Counter(curl(balanced, f"http://{balanced.vip}/").stdout for _ in range(300))
    assert set(answers) == {"m1", "m2", "m3"}, answers  # no failed request either ("")
    assert all(n >= 45 for n in answers.values()), answers  # each at least 15%


def test_source_ip_sends_one_client_to_one_member(balanced):
    wait_served(balanced, 81)
    answers = {curl(balanced, f"http://{balanced.vip}:81/").stdout for _ in range(30)}
    assert len(answers) == 1 and answers <= {"m1", "m2", "m3"}, answers


def test_vip_answers_from_the_outside_host_through_a_floating_ip(balanced):
    """Balanced at the floating IP's chassis (ch1) over m1 (there) and m2, m3 (on ch2, whose
    answers are tunnelled back to ch1): each answer leaves as the floating IP, or curl fails."""
    outside = (lambda: run(["curl", "-s", "--max-time", "5", f"http://{balanced.fip}/"], ns=balanced.outside,
                           check=False).stdout)
    deadline = time.monotonic() + 30  # the agents converge in the background
    while not outside().startswith("m"):
        assert time.monotonic() < deadline, f"floating IP {balanced.fip} never answered; logs in {balanced.logdir}"
        time.sleep(0.3)
    answers = collections.Counter(outside() for _ in range(150))
    assert set(answers) == {"m1", "m2", "m3"}, answers  # every member, no failed request ("")
    assert all(n >= 20 for n in answers.values()), answers
    assert balanced.ping(balanced.outside, balanced.fip)


def test_udp_listener_balances_an_echo_service(balanced):
    deadline = time.monotonic() + 30
    while True:
        out = run([sys.executable, "-c", UDP_ASK, balanced.vip, "60"], ns=balanced.vm["client"], timeout=200).stdout
        answers = collections.Counter(out.split())
        if set(answers) == {"m1", "m2", "m3"} or time.monotonic() > deadline:
            break
    assert set(answers) == {"m1", "m2", "m3"} and min(answers.values()) >= 15, answers  # round robin


def test_long_stream_survives_a_fourth_member(balanced):
    wait_served(balanced)
    download = balanced.topo.popen(["curl", "-s", "--limit-rate", "400k", "--max-time", "120", "-o", "-",
                                    f"http://{balanced.vip}/big"], ns=balanced.vm["client"], stdout=subprocess.PIPE)
    first = download.stdout.read(1024)  # the stream is under way
    balanced.connect().load_balancer.create_member(balanced.pools[80], address=address(balanced, "m4"),
                                                   protocol_port=80, subnet_id=balanced.subnet.id)
    deadline = time.monotonic() + 30  # the new member takes new flows: its pool's ring was swapped
    while "m4" not in {curl(balanced, f"http://{balanced.vip}/").stdout for _ in range(20)}:
        assert time.monotonic() < deadline, "the fourth member never got a request"
    assert download.poll() is None, "the download ended before the member joined: nothing was proven"
    body = first + download.stdout.read()
    assert download.wait(130) == 0
    assert body in {name.encode() * (BIG // len(name)) for name in ("m1", "m2", "m3")}  # one member's, whole


def wait_status(cl, member_name, status, timeout=60):
    c = cl.connect()
    member = next(m for m in c.load_balancer.members(cl.pools[80]) if m.address == address(cl, member_name))
    deadline = time.monotonic() + timeout
    while c.load_balancer.get_member(member, cl.pools[80]).operating_status != status:
        assert time.monotonic() < deadline, f"member {member_name} never became {status}; logs in {cl.logdir}"
        time.sleep(0.3)
    return member


def test_a_stopped_member_is_marked_error_and_gets_no_more_requests(balanced):
    wait_served(balanced)
    wait_status(balanced, "m3", "ONLINE")
    server = balanced.servers["m3"]
    server.terminate()
    server.wait(10)
    wait_status(balanced, "m3", "ERROR")  # within delay × max_retries_down (+ timeout)
    pool = balanced.connect().load_balancer.get_pool(balanced.pools[80].id)
    assert pool.operating_status == "DEGRADED"
    assert balanced.connect().load_balancer.get_load_balancer(balanced.lb_id).operating_status == "DEGRADED"
    deadline = time.monotonic() + 30  # the client's chassis rebuilt the ring without it
    while True:
        answers = collections.Counter(curl(balanced, f"http://{balanced.vip}/").stdout for _ in range(20))
        if "" not in answers or time.monotonic() > deadline:
            break
    answers = collections.Counter(curl(balanced, f"http://{balanced.vip}/").stdout for _ in range(100))
    assert "" not in answers and "m3" not in answers and {"m1", "m2"} <= set(answers), answers  # none failed
    balanced.servers["m3"] = balanced.topo.popen(
        [sys.executable, "-m", "http.server", "80", "--directory", str(balanced.roots["m3"])],
        ns=balanced.vm["m3"], stderr=subprocess.DEVNULL)
    wait_status(balanced, "m3", "ONLINE")  # healthy again: back in the ring
    deadline = time.monotonic() + 30
    while "m3" not in {curl(balanced, f"http://{balanced.vip}/").stdout for _ in range(20)}:
        assert time.monotonic() < deadline, "the recovered member never got a request again"
