"""End-to-end throughput bench as a smoke test: every router forwards iperf3's
streams, TCP crosses dfxdp unfiltered and through security groups, and the
numbers are consistent. Never asserts on speeds or ratios.
Also the private OVS helper on its own: a netdev bridge with flows joins two namespaces."""
import glob
import os

import pytest

from dfxdp.bench import throughput
from dfxdp.testing.netns import run
from dfxdp.testing.ovs import OvsServer

pytestmark = pytest.mark.ovs


def test_measure_reports_every_router_forwarding():
    results = throughput.measure(1)
    assert [r.name for r in results] == ["dfxdp_xdp", "kernel_iptables", "ovs_userspace"]
    for r in results:
        assert r.pps > 0 and r.sent_pps > 0 and r.delivered_pps > 0, r
        assert r.pps <= r.delivered_pps * 1.05, r  # the application reads at most what arrived
        assert r.pps <= r.sent_pps * 1.05, r  # the two rates are timed by different ends
        assert 0 <= r.loss_percent < 100, r
        assert (r.streams, r.packet_bytes) == (4, 64), r


def test_measure_tcp_runs_unfiltered_and_through_security_groups():
    results = throughput.measure_tcp(1)
    assert [r.name for r in results] == ["dfxdp_unfiltered", "dfxdp_security_groups"]
    for r in results:
        assert r.gbits_per_second > 0 and r.retransmits >= 0 and r.streams == throughput.TCP_STREAMS, r


def test_ovs_server_netdev_bridge_passes_ping_and_cleans_up(topo):
    a, b, switch = topo.netns("a"), topo.netns("b"), topo.netns("sw")
    topo.veth("pa", switch, "eth0", a)
    topo.veth("pb", switch, "eth0", b)
    topo.ip(a, "addr add 10.9.0.1/24 dev eth0")
    topo.ip(b, "addr add 10.9.0.2/24 dev eth0")
    with OvsServer(ns=switch) as ovs:
        ovs.add_bridge("br0")
        pa, pb = ovs.add_port("br0", "pa"), ovs.add_port("br0", "pb")
        ping = ["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.9.0.2"]
        assert run(ping, ns=a, check=False).returncode != 0  # fail_mode=secure: nothing without flows
        topo.ip(a, "neigh flush dev eth0")  # forget the failed resolution
        ovs.add_flows("br0", [f"in_port={pa},actions=output:{pb}", f"in_port={pb},actions=output:{pa}"])
        out = run(ping, ns=a).stdout
        assert "2 received" in out, out
        daemons, directory = list(ovs.daemons), ovs.dir
    assert all(proc.poll() is not None for proc in daemons)
    assert not os.path.exists(directory)


def test_ovs_server_cleans_up_after_a_failed_start(monkeypatch):
    monkeypatch.setattr("dfxdp.testing.ovs.SCHEMA", "/nonexistent.ovsschema")
    before = set(glob.glob("/tmp/dfxdp-ovs-*"))
    server = OvsServer()
    with pytest.raises(RuntimeError):
        server.start()
    assert set(glob.glob("/tmp/dfxdp-ovs-*")) <= before
    assert server.dir is None and not server.daemons
