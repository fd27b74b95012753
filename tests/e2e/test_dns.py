"""Neutron's internal DNS answered in XDP, seen by `dig` in VMs on two chassis:
A, PTR, NXDOMAIN, mixed case, a name changed through the API answering its new
address within seconds; outside names relayed to the subnet's dns_nameservers, a
dnsmasq on the outside host (reached from the chassis through the fabric, as a
resolver beyond the cloud is); DNS over TCP, for the network's names and outside
ones; an answer too big for UDP truncated, then asked again over TCP; and a bare
hostname resolved with the search list a VM's dhclient got from DHCP. The DNS
server address is the network's DHCP port's, as in Neutron."""
import os
import shutil
import subprocess
import time

import pytest

from dfxdp.datapath.libbpf import Map, lib
from dfxdp.testing.cluster import OUTSIDE_IP, SERVICES_IP, Cluster
from dfxdp.testing.dhcp import DHCLIENT_CONF, DHCLIENT_SCRIPT, Client
from dfxdp.testing.netns import Topology, run

OUTSIDE_NAME, OUTSIDE_ADDRESS = "outside.example.", "203.0.113.7"
BIG_NAME, BIG_STRINGS = "big.example.", [f"{i}" * 200 for i in range(8)]  # 1,600 bytes of TXT: over UDP's 1232
EXTERNAL_ROUTER = "198.19.0.1"


def route_chassis_to_the_outside(cl) -> None:
    """The fabric routes between the underlay and the external network, so the agents' relay
    (in the chassis namespaces) reaches the outside host as a chassis reaches the world."""
    cl.topo.ip(cl.fabric, f"addr add {EXTERNAL_ROUTER}/24 dev br-x")
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=cl.fabric)
    for ch in cl.chassis:
        cl.topo.ip(ch.ns, f"route add {OUTSIDE_IP}/32 via {SERVICES_IP}")
    cl.topo.ip(cl.outside, f"route add {SERVICES_IP.rsplit('.', 1)[0]}.0/24 via {EXTERNAL_ROUTER}")


def start_upstream(cl) -> None:
    """dnsmasq on the outside host, knowing a few outside names, over UDP and TCP."""
    cl.topo.popen(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                   "--user=root", "--pid-file=", f"--listen-address={OUTSIDE_IP}", "--bind-interfaces",
                   f"--address=/{OUTSIDE_NAME.rstrip('.')}/{OUTSIDE_ADDRESS}",
                   f"--txt-record={OUTSIDE_NAME.rstrip('.')},relayed",
                   f"--txt-record={BIG_NAME.rstrip('.')},{','.join(BIG_STRINGS)}"],
                  ns=cl.outside, stdout=open(cl.logdir / "dnsmasq.log", "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while OUTSIDE_ADDRESS not in run(["dig", f"@{OUTSIDE_IP}", "+short", "+tries=1", "+time=1", OUTSIDE_NAME],
                                     ns=cl.chassis[0].ns, check=False).stdout:
        assert time.monotonic() < deadline, "dnsmasq on the outside host never answered a chassis"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster():
    with Topology("dns") as topo:
        cl = Cluster(topo, chassis=2)
        try:
            conn = cl.connect()
            cl.net = conn.network.create_network(name="dnsnet")
            route_chassis_to_the_outside(cl)
            start_upstream(cl)
            conn.network.create_subnet(network_id=cl.net.id, cidr="10.60.0.0/24", ip_version=4,
                                       dns_nameservers=[OUTSIDE_IP])
            cl.server = next(conn.network.ports(network_id=cl.net.id, device_owner="network:dhcp"))
            cl.alpha = conn.network.create_port(network_id=cl.net.id, binding_host_id="ch1", dns_name="alpha")
            cl.beta = conn.network.create_port(network_id=cl.net.id, binding_host_id="ch2", dns_name="beta")
            cl.vm1 = cl.plug(cl.alpha, cl.chassis[0])
            cl.vm2 = cl.plug(cl.beta, cl.chassis[1])
            cl.wait_active(cl.alpha.id)
            cl.wait_active(cl.beta.id)
            yield cl
        finally:
            cl.close()


def ip_of(port) -> str:
    return port.fixed_ips[0]["ip_address"]


def dig(cl, vm: str, *args: str) -> str:
    server = ip_of(cl.server)
    return run(["dig", f"@{server}", "+tries=1", "+time=2", *args], ns=vm, check=False).stdout


def dig_until(cl, vm: str, args: tuple, wanted: str, timeout: float = 30) -> str:
    """dig until `wanted` is in its output (agents converge after a change); the last output."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = dig(cl, vm, *args)
        if wanted in out:
            return out
        time.sleep(0.3)
    raise AssertionError(f"dig {' '.join(args)} never showed {wanted!r}; last:\n{out}")


def dns_stat(cl, chassis_index: int, stat: int = lib.DNS_ANSWERED) -> int:
    m = Map.pinned(cl.chassis[chassis_index - 1].bpffs / "maps" / "dns_stats")
    try:
        return m.lookup_sum(stat).get("packets", 0)
    finally:
        m.close()


def test_a_across_chassis_answered_at_the_source(cluster):
    before = dns_stat(cluster, 1)
    out = dig_until(cluster, cluster.vm1, ("beta.openstacklocal.", "A", "+short"), ip_of(cluster.beta))
    assert out.split() == [ip_of(cluster.beta)]
    assert dns_stat(cluster, 1) > before  # ch1's datapath answered, not a server elsewhere
    out = dig_until(cluster, cluster.vm2, ("alpha.openstacklocal.", "+short"), ip_of(cluster.alpha))
    assert out.split() == [ip_of(cluster.alpha)]


def test_bare_hostname_and_mixed_case(cluster):
    out = dig_until(cluster, cluster.vm1, ("BeTa.OpenStackLocal.", "+noall", "+answer"), ip_of(cluster.beta))
    assert out.split()[0] == "BeTa.OpenStackLocal."  # the query's case, echoed
    out = dig_until(cluster, cluster.vm2, ("alpha", "+short"), ip_of(cluster.alpha))
    assert out.split() == [ip_of(cluster.alpha)]


def test_ptr(cluster):
    out = dig_until(cluster, cluster.vm1, ("-x", ip_of(cluster.beta), "+short"), "beta.openstacklocal.")
    assert out.split() == ["beta.openstacklocal."]


def test_nxdomain(cluster):
    out = dig_until(cluster, cluster.vm2, ("nosuch.openstacklocal.",), "status: NXDOMAIN")
    assert "flags: qr aa rd ra" in out


def test_a_name_changed_through_the_api_answers_within_seconds(cluster):
    conn = cluster.connect()
    dig_until(cluster, cluster.vm1, ("beta.openstacklocal.", "+short"), ip_of(cluster.beta))
    conn.network.update_port(cluster.beta.id, dns_name="gamma")
    try:
        out = dig_until(cluster, cluster.vm1, ("gamma.openstacklocal.", "+short"), ip_of(cluster.beta))
        assert out.split() == [ip_of(cluster.beta)]
        dig_until(cluster, cluster.vm1, ("beta.openstacklocal.",), "status: NXDOMAIN")
    finally:
        conn.network.update_port(cluster.beta.id, dns_name="beta")


def test_outside_names_and_other_types_are_relayed_to_the_resolver_on_the_outside_host(cluster):
    before = dns_stat(cluster, 1, lib.DNS_PASS_UNKNOWN)
    out = dig_until(cluster, cluster.vm1, (OUTSIDE_NAME, "+short"), OUTSIDE_ADDRESS)
    assert out.split() == [OUTSIDE_ADDRESS]
    assert dns_stat(cluster, 1, lib.DNS_PASS_UNKNOWN) > before  # XDP punted it: not its name
    out = dig_until(cluster, cluster.vm2, (OUTSIDE_NAME, "TXT", "+short"), "relayed")
    assert out.split() == ['"relayed"']


def test_dns_over_tcp_answers_the_networks_names_and_outside_ones(cluster):
    before = dns_stat(cluster, 1, lib.DNS_PASS_TCP)
    out = dig_until(cluster, cluster.vm1, ("+tcp", "beta.openstacklocal.", "+short"), ip_of(cluster.beta))
    assert out.split() == [ip_of(cluster.beta)]  # answered by ch1's agent: the name is the network's
    assert dns_stat(cluster, 1, lib.DNS_PASS_TCP) > before
    out = dig_until(cluster, cluster.vm1, ("+tcp", "-x", ip_of(cluster.alpha), "+short"), "alpha.openstacklocal.")
    assert out.split() == ["alpha.openstacklocal."]
    out = dig_until(cluster, cluster.vm2, ("+tcp", OUTSIDE_NAME, "+short"), OUTSIDE_ADDRESS)
    assert out.split() == [OUTSIDE_ADDRESS]  # relayed over TCP to the outside host


def test_an_answer_too_big_for_udp_is_truncated_and_asked_again_over_tcp(cluster):
    out = dig_until(cluster, cluster.vm1, (BIG_NAME, "TXT"), BIG_STRINGS[-1])
    assert "Truncated, retrying in TCP mode" in out
    answer = run(["dig", f"@{ip_of(cluster.server)}", "+tries=1", "+time=2", "+short", BIG_NAME, "TXT"],
                 ns=cluster.vm1).stdout
    assert answer.replace('"', "").split() == BIG_STRINGS


def test_a_bare_hostname_resolves_with_the_search_list_dhclient_got(cluster, tmp_path):
    """A network with a dns_domain of its own; a VM configured by dhclient (its resolv.conf
    from DHCP's options 6 and 119) asks `dig +search delta`, the resolver completes it."""
    cl = cluster
    conn = cl.connect()
    net = conn.network.create_network(name="corpnet", dns_domain="corp.test.")
    conn.network.create_subnet(network_id=net.id, cidr="10.63.0.0/24", ip_version=4)
    server = next(conn.network.ports(network_id=net.id, device_owner="network:dhcp"))
    delta = conn.network.create_port(network_id=net.id, binding_host_id="ch2", dns_name="delta")
    cl.plug(delta, cl.chassis[1])
    port = conn.network.create_port(network_id=net.id, binding_host_id="ch1")
    vm = cl.plug(port, cl.chassis[0], configure_ip=False)
    cl.wait_active(delta.id)
    cl.wait_active(port.id)
    client = Client(tmp_path, "dhclient", DHCLIENT_SCRIPT)
    (client.dir / "dhclient.conf").write_text(DHCLIENT_CONF)
    client.proc = cl.topo.popen(["dhclient", "-d", "-v", "-4", "-cf", str(client.dir / "dhclient.conf"),
                                 "-sf", str(client.script), "-lf", str(client.dir / "leases"),
                                 "-pf", str(client.dir / "pid"), "eth0"], ns=vm,
                                stdout=open(client.dir / "log", "ab"), stderr=subprocess.STDOUT)
    client.wait_event("BOUND")
    resolv = (client.dir / "resolv.conf").read_text().split("\n")
    assert resolv[0].split()[1].rstrip(".") == "corp.test"
    assert resolv[1] == f"nameserver {server.fixed_ips[0]['ip_address']}"
    etc = f"/etc/netns/{vm}"  # `ip netns exec` puts this directory's resolv.conf over /etc's
    os.makedirs(etc)
    try:
        shutil.copy(client.dir / "resolv.conf", f"{etc}/resolv.conf")
        deadline = time.monotonic() + 30
        while (out := run(["dig", "+search", "+tries=1", "+time=2", "+short", "delta"], ns=vm,
                          check=False).stdout).split() != [delta.fixed_ips[0]["ip_address"]]:
            assert time.monotonic() < deadline, f"dig +search delta never answered; last: {out!r}"
            time.sleep(0.3)
    finally:
        shutil.rmtree(etc)
