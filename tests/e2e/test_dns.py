"""Neutron's internal DNS answered in XDP, seen by `dig` in VMs on two chassis:
A, PTR, NXDOMAIN, mixed case, a name changed through the API answering its new
address within seconds, and outside names relayed to the subnet's
dns_nameservers (a dnsmasq on the fabric's services address). The DNS server
address is the network's DHCP port's, as in Neutron."""
import subprocess
import time

import pytest

from dfxdp.datapath.libbpf import Map, lib
from dfxdp.testing.cluster import SERVICES_IP, Cluster
from dfxdp.testing.netns import Topology, run

OUTSIDE_NAME, OUTSIDE_ADDRESS = "outside.example.", "203.0.113.7"


def start_upstream(cl) -> None:
    """dnsmasq on the fabric's services address, knowing one outside name."""
    cl.topo.popen(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                   "--user=root", "--pid-file=", f"--listen-address={SERVICES_IP}", "--bind-interfaces",
                   f"--address=/{OUTSIDE_NAME.rstrip('.')}/{OUTSIDE_ADDRESS}",
                   f"--txt-record={OUTSIDE_NAME.rstrip('.')},relayed"],
                  ns=cl.fabric, stdout=open(cl.logdir / "dnsmasq.log", "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while OUTSIDE_ADDRESS not in run(["dig", f"@{SERVICES_IP}", "+short", "+tries=1", "+time=1", OUTSIDE_NAME],
                                     ns=cl.fabric, check=False).stdout:
        assert time.monotonic() < deadline, "dnsmasq never answered"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster():
    with Topology("dns") as topo:
        cl = Cluster(topo, chassis=2)
        try:
            conn = cl.connect()
            cl.net = conn.network.create_network(name="dnsnet")
            start_upstream(cl)
            conn.network.create_subnet(network_id=cl.net.id, cidr="10.60.0.0/24", ip_version=4,
                                       dns_nameservers=[SERVICES_IP])
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


def test_outside_names_and_other_types_are_relayed_to_the_subnets_resolver(cluster):
    before = dns_stat(cluster, 1, lib.DNS_PASS_UNKNOWN)
    out = dig_until(cluster, cluster.vm1, (OUTSIDE_NAME, "+short"), OUTSIDE_ADDRESS)
    assert out.split() == [OUTSIDE_ADDRESS]
    assert dns_stat(cluster, 1, lib.DNS_PASS_UNKNOWN) > before  # XDP punted it: not its name
    out = dig_until(cluster, cluster.vm2, (OUTSIDE_NAME, "TXT", "+short"), "relayed")
    assert out.split() == ['"relayed"']
