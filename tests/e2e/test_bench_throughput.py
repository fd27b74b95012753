"""End-to-end throughput bench as a smoke test: the live-frames generator's frames
reach the sink through every router, UDP and TCP (after a handshake through the
router), with and without security groups; TCP crosses dfxdp unfiltered and
through security groups with iperf3. Never asserts on speeds or ratios.
Also the private OVS helper on its own: a netdev bridge with flows joins two namespaces."""
import glob
import os
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dfxdp.bench import throughput
from dfxdp.bench.trafficgen import generator, sink
from dfxdp.testing.netns import run
from dfxdp.testing.ovs import OvsServer

pytestmark = pytest.mark.ovs


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def test_generator_frames_reach_the_sink_through_every_router():
    results = throughput.measure(0.2, runs=1)
    assert [(r.name, r.security_groups, r.protocol) for r in results] == [
        (name, sg, protocol) for name in ("dfxdp_xdp", "dfxdp_xdp_stages", "kernel_iptables", "ovs_userspace")
        for sg in (True, False) for protocol in ("udp", "tcp")]
    for r in results:
        assert len(r.runs) == 1, r
        run_ = r.runs[0]
        assert run_["frames"] > 0 and run_["cpu_seconds"] > 0, r
        assert r.pps > 0 and r.pps_per_cpu > 0 and r.generator_pps_per_cpu > 0, r


def test_sink_counts_only_the_generators_flows(topo):
    """Every frame the generator sends into one end of a veth pair reaches the sink on the
    other, and a frame of another port goes past it to the kernel."""
    ns = topo.netns("g")
    topo.veth("g0", ns, "g1", ns, vm_end="both")
    flow = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.1.0.4")
    frame = bytes(flow / UDP(sport=40000, dport=throughput.SERVER_PORT) / bytes(22))
    other = bytes(flow / UDP(sport=40000, dport=9) / bytes(22))

    def rx_packets() -> int:
        return int(run(["cat", "/sys/class/net/g1/statistics/rx_packets"], ns=ns).stdout)

    with sink(ns, "g1") as counter:
        with generator(ns, "g0", frame) as gen:
            gen.send(640)
        wait_for(lambda: counter.delivered() >= 640, "the sink counted 640 frames")
        before = rx_packets()
        with generator(ns, "g0", other) as gen:
            gen.send(64)
        wait_for(lambda: rx_packets() >= before + 64, "64 frames of another port reached g1's kernel")
        assert counter.delivered() == 640


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
