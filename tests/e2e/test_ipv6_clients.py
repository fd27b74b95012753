"""IPv6 address modes seen by real clients (issue 17), on ports without port security:

- SLAAC from a router advertisement: a VM on a slaac subnet attached to a router configures
  itself as a real kernel does (accept_ra=2, autoconf=1): the EUI-64 address the API shows for
  its port, a default route through the router interface's link-local address, and the
  network's MTU. Its own Router Solicitation is answered, unicast to it, by its chassis' agent
  (controller/apps/ra.py).
- DHCPv6 (controller/apps/dhcp6.py): `dhclient -6` gets its port's address and the DNS servers
  on a dhcpv6-stateful subnet, `dhclient -6 -S` the DNS servers on a dhcpv6-stateless one."""
import json
import subprocess
import sys
import time

import pytest
from oslo_utils import netutils  # Neutron's EUI-64: the reference, not dfxdp's own

from dfxdp.testing.cluster import Cluster
from dfxdp.testing.dhcp import DHCLIENT_SCRIPT, Client
from dfxdp.testing.netns import Topology, run

pytestmark = [pytest.mark.ovs, pytest.mark.etcd]

CIDR = "2001:db8:77::/64"
# Sends one Router Solicitation from eth0 and prints the first advertisement addressed to the
# sender (decoded by scapy), or exits 1 after a few seconds without one.
SOLICIT = r"""
import json, select, socket, sys, time
from scapy.layers.l2 import Ether
from scapy.layers.inet6 import (IPv6, ICMPv6ND_RS, ICMPv6ND_RA, ICMPv6NDOptSrcLLAddr, ICMPv6NDOptPrefixInfo,
                                ICMPv6NDOptMTU)
mac, me = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd))
s.bind(("eth0", 0))
s.send(bytes(Ether(src=mac, dst="33:33:00:00:00:02") / IPv6(src=me, dst="ff02::2", hlim=255) / ICMPv6ND_RS() /
             ICMPv6NDOptSrcLLAddr(lladdr=mac)))
deadline = time.monotonic() + 3
while select.select([s], [], [], max(0, deadline - time.monotonic()))[0]:
    p = Ether(s.recv(4096))
    if ICMPv6ND_RA in p and p[IPv6].dst == me:
        print(json.dumps({"eth_src": p.src, "eth_dst": p.dst, "src": p[IPv6].src, "M": p[ICMPv6ND_RA].M,
                          "O": p[ICMPv6ND_RA].O, "lifetime": p[ICMPv6ND_RA].routerlifetime,
                          "prefix": [p[ICMPv6NDOptPrefixInfo].prefix, p[ICMPv6NDOptPrefixInfo].prefixlen,
                                     p[ICMPv6NDOptPrefixInfo].A], "mtu": p[ICMPv6NDOptMTU].mtu}))
        sys.exit(0)
sys.exit(1)
"""


def wait_for(what: str, probe, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no {what} after {timeout}s")


def addresses(vm: str, scope: str) -> list[str]:
    out = run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", scope], ns=vm).stdout
    return [line.split()[3] for line in out.splitlines() if "tentative" not in line]


@pytest.fixture(scope="module")
def cluster():
    with Topology("v6") as topo:
        cl = Cluster(topo, chassis=1, ovs=True)
        try:
            yield cl
        finally:
            cl.close()


def vm_on(cl, subnet_attrs: dict, name: str, **sysctls):
    """A network with one IPv6 subnet, a port without port security on it bound to ch1, and a VM
    namespace plugged on it with IPv6 turned on (after `sysctls`) and its link-local address usable."""
    conn = cl.connect()
    net = conn.network.create_network(name=name)
    subnet = conn.network.create_subnet(network_id=net.id, ip_version=6, **subnet_attrs)
    port = conn.network.create_port(network_id=net.id, binding_host_id="ch1", port_security_enabled=False,
                                    security_group_ids=[])
    vm = cl.plug(port, cl.chassis[0], name=name, configure_ip=False)
    for setting, value in {**sysctls, "disable_ipv6": 0}.items():  # IPv6 on last: test namespaces start off
        run(["sysctl", "-qw", f"net.ipv6.conf.eth0.{setting}={value}"], ns=vm)
    cl.wait_active(port.id)
    wait_for("usable link-local address", lambda: addresses(vm, "link"))
    return net, subnet, port, vm


def test_a_vm_configures_itself_from_its_routers_advertisement(cluster):
    cl = cluster
    conn = cl.connect()
    net, subnet, port, vm = vm_on(cl, {"cidr": CIDR, "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}, "slaac",
                                  accept_ra=2, autoconf=1)
    (fixed,) = port.fixed_ips
    assert fixed["ip_address"] == str(netutils.get_ipv6_addr_by_EUI64(CIDR, port.mac_address))
    router = conn.network.create_router(name="r6")
    interface = conn.network.get_port(conn.network.add_interface_to_router(router, subnet_id=subnet.id)["port_id"])
    router_ll = str(netutils.get_ipv6_addr_by_EUI64("fe80::/64", interface.mac_address))

    # the kernel's own solicitations (and the agent's unsolicited RAs) configure it
    wait_for("EUI-64 address", lambda: f"{fixed['ip_address']}/64" in addresses(vm, "global"))
    route = wait_for("default route", lambda: run(["ip", "-6", "route", "show", "default"], ns=vm).stdout)
    assert f"via {router_ll} dev eth0 proto ra" in route, route
    assert run(["sysctl", "-n", "net.ipv6.conf.eth0.mtu"], ns=vm).stdout.strip() == str(net.mtu)

    # a solicitation of its own is answered: unicast to it, from the router's link-local address
    (me,) = [a.split("/")[0] for a in addresses(vm, "link")]
    answered = wait_for("answer to a solicitation", lambda: run(
        [sys.executable, "-c", SOLICIT, port.mac_address, me], ns=vm, check=False).stdout)
    ra = json.loads(answered)
    assert ra == {"eth_src": interface.mac_address, "eth_dst": port.mac_address, "src": router_ll,
                  "M": 0, "O": 0, "lifetime": 300, "prefix": ["2001:db8:77::", 64, 1], "mtu": net.mtu}


@pytest.mark.parametrize("mode", ["dhcpv6-stateful", "dhcpv6-stateless"])
def test_dhclient_is_answered(cluster, tmp_path, mode):
    cl = cluster
    stateful = mode == "dhcpv6-stateful"
    _, _, port, vm = vm_on(cl, {"cidr": "2001:db8:78::/64" if stateful else "2001:db8:79::/64",
                                "ipv6_ra_mode": mode, "ipv6_address_mode": mode,
                                "dns_nameservers": ["2001:db8::53"]}, mode.split("-")[1])
    client = Client(tmp_path, "dhclient6", DHCLIENT_SCRIPT)
    files = ["-sf", str(client.script), "-lf", str(client.dir / "leases"), "-pf", str(client.dir / "pid")]
    client.proc = cl.topo.popen(["dhclient", "-d", "-v", "-6", *([] if stateful else ["-S"]), *files, "eth0"],
                                ns=vm, stdout=open(client.dir / "log", "ab"), stderr=subprocess.STDOUT)
    event = "BOUND6" if stateful else "RENEW6"  # dhclient's reason for an information-only reply (then it exits)
    client.wait_event(event)
    told = client.env(event)
    assert told["new_dhcp6_name_servers"] == "2001:db8::53"
    assert told["new_dhcp6_domain_search"] == "openstacklocal."
    if stateful:
        assert told["new_ip6_address"] == port.fixed_ips[0]["ip_address"]
        # the server is the network's DHCP port: a DUID-LL (type 3, Ethernet) of its MAC
        (server,) = cl.connect().network.ports(network_id=port.network_id, device_owner="network:dhcp")
        assert told["new_dhcp6_server_id"] == "0:3:0:1:" + ":".join(f"{int(b, 16):x}"
                                                                     for b in server.mac_address.split(":"))
    else:
        assert "new_ip6_address" not in told
