"""Security groups end to end with real agents and real clients across chassis:
nc and an nmap scan where only allowed ports answer, ping allowed/denied,
replies of outbound connections, a remote-group change, a removed rule cutting
an established TCP connection, and a port without port security."""
import re
import subprocess
import time

import pytest

from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, run, wait_listening


@pytest.fixture(scope="module")
def sgc():
    with Topology("sg") as topo:
        cl = Cluster(topo, chassis=2)
        try:
            c = cl.connect()
            net = c.network.create_network(name="n")
            c.network.create_subnet(network_id=net.id, cidr="10.0.0.0/24", ip_version=4)
            cl.web = c.network.create_security_group(name="web")
            cl.web_rule = c.network.create_security_group_rule(security_group_id=cl.web.id, direction="ingress",
                                                               protocol="tcp", port_range_min=80, port_range_max=82)
            cl.trusted = c.network.create_security_group(name="trusted")
            c.network.create_security_group_rule(security_group_id=cl.web.id, direction="ingress", protocol="tcp",
                                                 port_range_min=7000, port_range_max=7000,
                                                 remote_group_id=cl.trusted.id)
            cl.clients = c.network.create_security_group(name="clients")
            c.network.create_security_group_rule(security_group_id=cl.clients.id, direction="ingress",
                                                 protocol="tcp", port_range_min=9000, port_range_max=9000)
            cl.server_port = c.network.create_port(network_id=net.id, binding_host_id="ch1",
                                                   security_group_ids=[cl.web.id])
            cl.client_port = c.network.create_port(network_id=net.id, binding_host_id="ch2",
                                                   security_group_ids=[cl.clients.id])
            cl.open_port = c.network.create_port(network_id=net.id, binding_host_id="ch1",
                                                 port_security_enabled=False, security_group_ids=[])
            cl.server = cl.plug(cl.server_port, cl.chassis[0], name="server")
            cl.client = cl.plug(cl.client_port, cl.chassis[1], name="client")
            cl.open = cl.plug(cl.open_port, cl.chassis[0], name="open")
            for p in (cl.server_port, cl.client_port, cl.open_port):
                cl.wait_active(p.id)
            for port in (79, 80, 81, 83, 7000):
                topo.popen(["nc", "-lk", str(port)], ns=cl.server, stdout=subprocess.DEVNULL)
            topo.popen(["iperf3", "-s", "-p", "82"], ns=cl.server, stdout=subprocess.DEVNULL)
            topo.popen(["nc", "-lk", "5555"], ns=cl.open, stdout=subprocess.DEVNULL)
            for port in (79, 80, 81, 82, 83, 7000):
                wait_listening(cl.server, port)
            wait_listening(cl.open, 5555)
            yield cl
        finally:
            cl.close()


def ip(port):
    return port.fixed_ips[0]["ip_address"]


def connects(ns, address, port, timeout=3) -> bool:
    return run(["nc", "-z", "-w", str(timeout), address, str(port)], ns=ns, check=False).returncode == 0


def eventually(check, wait=15) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def test_allowed_and_denied_ports(sgc):
    assert eventually(lambda: connects(sgc.client, ip(sgc.server_port), 80))
    assert not connects(sgc.client, ip(sgc.server_port), 83)
    assert not connects(sgc.client, ip(sgc.server_port), 79)


def test_port_scan_sees_only_allowed_ports(sgc):
    out = run(["nmap", "-Pn", "-n", "-p", "75-90", "--max-retries", "1", "--host-timeout", "60s", "-oG", "-",
               ip(sgc.server_port)], ns=sgc.client, timeout=120).stdout
    open_ports = sorted(int(p) for p in re.findall(r"(\d+)/open/", out))
    assert open_ports == [80, 81, 82], out


def test_ping_denied_then_allowed(sgc):
    assert not sgc.ping(sgc.client, ip(sgc.server_port), count=1, wait=3)
    rule = sgc.connect().network.create_security_group_rule(security_group_id=sgc.web.id, direction="ingress",
                                                           protocol="icmp")
    try:
        assert sgc.ping(sgc.client, ip(sgc.server_port))
    finally:
        sgc.connect().network.delete_security_group_rule(rule)


def test_replies_of_an_outbound_connection_pass(sgc):
    """The server's group allows no ingress on 9000's replies, yet they come back."""
    listener = sgc.topo.popen(["nc", "-l", "9000"], ns=sgc.client, stdout=subprocess.DEVNULL)
    wait_listening(sgc.client, 9000)
    assert connects(sgc.server, ip(sgc.client_port), 9000)
    listener.kill()


def test_remote_group_membership_change_takes_effect(sgc):
    assert not connects(sgc.client, ip(sgc.server_port), 7000)
    conn = sgc.connect()
    conn.network.update_port(sgc.client_port, security_group_ids=[sgc.clients.id, sgc.trusted.id])
    try:
        assert eventually(lambda: connects(sgc.client, ip(sgc.server_port), 7000))
    finally:
        conn.network.update_port(sgc.client_port, security_group_ids=[sgc.clients.id])
    assert eventually(lambda: not connects(sgc.client, ip(sgc.server_port), 7000))


def test_port_without_port_security_is_open(sgc):
    assert eventually(lambda: connects(sgc.client, ip(sgc.open_port), 5555))


def test_removed_rule_cuts_an_established_connection(sgc):
    # a cut connection leaves iperf3 waiting forever for its peer: bound it, read its per-second lines
    # paced (100 Mbit/s) so the agent is not starved of CPU on a small machine while it converges
    client = subprocess.Popen(["ip", "netns", "exec", sgc.client, "timeout", "-s", "KILL", "20", "iperf3", "-c",
                               ip(sgc.server_port), "-p", "82", "-t", "12", "-b", "100M", "-i", "1", "--forceflush"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(2.5)
    conn = sgc.connect()
    conn.network.delete_security_group_rule(sgc.web_rule)
    try:
        out, _ = client.communicate(timeout=60)
        per_second = [float(v) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[unit] for v, unit in
                      re.findall(r"sec\s+([\d.]+) ([KMG]?)Bytes", out)]
        assert per_second and per_second[0] > 0, out      # it was flowing
        cut = per_second.index(0.0) if 0.0 in per_second else len(per_second)
        assert len(per_second) - cut >= 2, out              # then it stopped, for good
        assert all(v == 0 for v in per_second[cut:]), out
    finally:
        sgc.web_rule = conn.network.create_security_group_rule(security_group_id=sgc.web.id, direction="ingress",
                                                               protocol="tcp", port_range_min=80, port_range_max=82)
