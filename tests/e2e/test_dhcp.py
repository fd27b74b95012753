"""DHCP answered by the agents from NB, seen by real clients in VMs on two chassis:
`dhclient` (isc-dhcp-client) and `udhcpc` (busybox) get their port's address,
router, MTU 1450 and DNS servers from the network's DHCP port; they keep them
across an agent restart (a RENEW is answered by the new agent); RELEASE is
counted; a port's extra_dhcp_opts reach the client; a subnet with enable_dhcp
false gets no answer.

Each client runs in the foreground inside its VM namespace with its own lease,
pid and script files in the test's temporary directory: the scripts apply the
address to eth0 and write what they were told (environment) to a file."""
import signal
import subprocess
import time

import pytest

from dfxdp.testing.cluster import Cluster
from dfxdp.testing.dhcp import DHCLIENT_CONF, DHCLIENT_SCRIPT, UDHCPC_SCRIPT, Client
from dfxdp.testing.netns import Topology, run
from dfxdp.testing.prom import sample

DNS_SERVERS = ["192.0.2.53", "192.0.2.54"]
NTP_SERVER = "192.0.2.123"
HOST_ROUTE = {"destination": "192.168.50.0/24", "nexthop": "10.61.0.254"}


@pytest.fixture(scope="module")
def cluster():
    with Topology("dhcp") as topo:
        cl = Cluster(topo, chassis=2)
        try:
            conn = cl.connect()
            cl.net = conn.network.create_network(name="dhcpnet")
            cl.subnet = conn.network.create_subnet(network_id=cl.net.id, cidr="10.61.0.0/24", ip_version=4,
                                                   dns_nameservers=DNS_SERVERS, host_routes=[HOST_ROUTE])
            cl.server = next(conn.network.ports(network_id=cl.net.id, device_owner="network:dhcp"))
            cl.off_net = conn.network.create_network(name="nodhcp")
            conn.network.create_subnet(network_id=cl.off_net.id, cidr="10.62.0.0/24", ip_version=4,
                                       enable_dhcp=False)
            yield cl
        finally:
            cl.close()


def new_port(cl, net, chassis, **fields):
    port = cl.connect().network.create_port(network_id=net.id, binding_host_id=chassis.name, **fields)
    vm = cl.plug(port, chassis, configure_ip=False)
    cl.wait_active(port.id)
    return port, vm


def addresses_of(vm: str) -> str:
    return run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], ns=vm).stdout


def assert_configured(vm: str, port, subnet) -> None:
    assert f"inet {port.fixed_ips[0]['ip_address']}/24" in addresses_of(vm)
    assert "mtu 1450" in run(["ip", "link", "show", "eth0"], ns=vm).stdout
    assert f"default via {subnet.gateway_ip}" in run(["ip", "route"], ns=vm).stdout


def metrics(ch) -> str:
    return run(["curl", "-sf", f"http://{ch.tunnel_ip}:9870/metrics"], ns=ch.ns).stdout


def wait_agent_answers_metrics(ch, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while run(["curl", "-sf", f"http://{ch.tunnel_ip}:9870/metrics"], ns=ch.ns, check=False).returncode != 0:
        assert time.monotonic() < deadline, "the restarted agent never served its metrics"
        time.sleep(0.3)


def test_udhcpc_gets_its_port_configuration_renews_across_an_agent_restart_and_releases(cluster, tmp_path):
    cl = cluster
    ch = cl.chassis[1]
    port, vm = new_port(cl, cl.net, ch, extra_dhcp_opts=[{"opt_name": "ntp-server", "opt_value": NTP_SERVER}])
    client = Client(tmp_path, "udhcpc", UDHCPC_SCRIPT)
    client.proc = cl.topo.popen(["busybox", "udhcpc", "-f", "-i", "eth0", "-s", str(client.script), "-t", "20",
                                 "-T", "1", "-O", "mtu", "-O", "staticroutes"], ns=vm,
                                stdout=open(client.dir / "log", "ab"), stderr=subprocess.STDOUT)
    client.wait_event("bound")
    assert_configured(vm, port, cl.subnet)
    told = client.env("bound")
    assert told["ip"] == port.fixed_ips[0]["ip_address"] and told["mask"] == "24"
    assert told["router"] == cl.subnet.gateway_ip and told["mtu"] == "1450"
    assert told["dns"].split() == DNS_SERVERS
    assert told["serverid"] == cl.server.fixed_ips[0]["ip_address"]
    assert told["hostname"] == "host-" + port.fixed_ips[0]["ip_address"].replace(".", "-")
    assert told["domain"] == "openstacklocal"
    assert told["ntpsrv"] == NTP_SERVER  # the port's extra_dhcp_opts
    # RFC 3442: the host route and the default route through the gateway
    assert told["staticroutes"].split() == [HOST_ROUTE["destination"], HOST_ROUTE["nexthop"],
                                            "0.0.0.0/0", cl.subnet.gateway_ip]

    ch.stop_agent()
    ch.start_agent()
    wait_agent_answers_metrics(ch)
    seen = len(client.events())
    client.proc.send_signal(signal.SIGUSR1)  # renew now: a unicast REQUEST to the server address
    client.wait_event("renew", after=seen)
    assert_configured(vm, port, cl.subnet)
    assert sample(metrics(ch), "dfxdp_dhcp_messages_total", outcome="ack") >= 1

    client.proc.send_signal(signal.SIGUSR2)  # release
    deadline = time.monotonic() + 30
    while not sample(metrics(ch), "dfxdp_dhcp_messages_total", outcome="release"):
        assert time.monotonic() < deadline, "the agent never counted the RELEASE"
        time.sleep(0.3)


def test_dhclient_gets_its_port_configuration_and_again_after_an_agent_restart(cluster, tmp_path):
    cl = cluster
    ch = cl.chassis[0]
    port, vm = new_port(cl, cl.net, ch)
    client = Client(tmp_path, "dhclient", DHCLIENT_SCRIPT)
    (client.dir / "dhclient.conf").write_text(DHCLIENT_CONF)
    files = ["-cf", str(client.dir / "dhclient.conf"), "-sf", str(client.script),
             "-lf", str(client.dir / "leases"), "-pf", str(client.dir / "pid")]
    client.proc = cl.topo.popen(["dhclient", "-d", "-v", "-4", *files, "eth0"], ns=vm,
                                stdout=open(client.dir / "log", "ab"), stderr=subprocess.STDOUT)
    client.wait_event("BOUND")
    assert_configured(vm, port, cl.subnet)
    told = client.env("BOUND")
    assert told["new_ip_address"] == port.fixed_ips[0]["ip_address"]
    assert told["new_subnet_mask"] == "255.255.255.0" and told["new_routers"] == cl.subnet.gateway_ip
    assert told["new_interface_mtu"] == "1450"
    assert told["new_domain_name_servers"].split() == DNS_SERVERS
    assert told["new_dhcp_server_identifier"] == cl.server.fixed_ips[0]["ip_address"]
    assert told["new_rfc3442_classless_static_routes"].split() == \
        ["24", "192", "168", "50", "10", "61", "0", "254", "0", *cl.subnet.gateway_ip.split(".")]

    ch.stop_agent()
    ch.start_agent()
    wait_agent_answers_metrics(ch)
    # release (the running client ends with it), then a new client asks again from its lease file
    run(["dhclient", "-r", "-v", "-4", *files, "eth0"], ns=vm, timeout=60)
    client.proc.wait(30)
    assert "RELEASE" in client.events() and port.fixed_ips[0]["ip_address"] not in addresses_of(vm)
    seen = len(client.events())
    client.proc = cl.topo.popen(["dhclient", "-d", "-v", "-4", *files, "eth0"], ns=vm,
                                stdout=open(client.dir / "log", "ab"), stderr=subprocess.STDOUT)
    client.wait_event("BOUND", "REBOOT", after=seen)  # REBOOT: it asked for the address of its lease
    assert_configured(vm, port, cl.subnet)


def test_a_subnet_without_dhcp_gets_no_answer(cluster, tmp_path):
    cl = cluster
    ch = cl.chassis[0]
    port, vm = new_port(cl, cl.off_net, ch)
    client = Client(tmp_path, "udhcpc-off", UDHCPC_SCRIPT)
    before = sample(metrics(ch), "dfxdp_dhcp_messages_total", outcome="dhcp_disabled") or 0
    # three discovers a second apart, then udhcpc gives up (-n) and exits 1
    client.proc = cl.topo.popen(["busybox", "udhcpc", "-f", "-n", "-i", "eth0", "-s", str(client.script),
                                 "-t", "3", "-T", "1"], ns=vm,
                                stdout=open(client.dir / "log", "ab"), stderr=subprocess.STDOUT)
    assert client.proc.wait(60) == 1
    assert "bound" not in client.events() and "inet " not in addresses_of(vm)
    assert sample(metrics(ch), "dfxdp_dhcp_messages_total", outcome="dhcp_disabled") >= before + 1
