"""Changing a live pipeline under real traffic (VMs on one chassis, an agent, taps in
native XDP): removing the security-group program fails closed, a user hook attached with
`dfxdp hook attach` drops a chosen flow while other flows go on, and detaching it
restores forwarding with no loss."""
import ipaddress
import re
import signal
import subprocess
import sys
import threading
import time
from socket import IPPROTO_ICMP

import pytest

from dfxdp.datapath import libbpf
from dfxdp.datapath.libbpf import Map, Program
from dfxdp.datapath.pipeline import STAGES, pinned_counters
from dfxdp.testing.cluster import Cluster
from dfxdp.testing.hooks import build_drop_flow
from dfxdp.testing.netns import Topology, run


@pytest.fixture(scope="module")
def live():
    with Topology("live") as topo:
        cl = Cluster(topo, chassis=1, db="sqlite")
        try:
            c = cl.connect()
            net = c.network.create_network(name="n")
            c.network.create_subnet(network_id=net.id, cidr="10.0.0.0/24", ip_version=4)
            pingable = c.network.create_security_group(name="pingable")
            c.network.create_security_group_rule(security_group_id=pingable.id, direction="ingress",
                                                 protocol="icmp")
            cl.ports = {name: c.network.create_port(network_id=net.id, binding_host_id="ch1",
                                                    security_group_ids=[pingable.id]) for name in "abc"}
            cl.vm = {name: cl.plug(port, cl.chassis[0], name=f"vm{name}") for name, port in cl.ports.items()}
            for port in cl.ports.values():
                cl.wait_active(port.id)
            assert cl.ping(cl.vm["a"], ip(cl, "b"), wait=30) and cl.ping(cl.vm["a"], ip(cl, "c"), wait=30)
            yield cl
        finally:
            cl.close()


def ip(cl, name):
    return cl.ports[name].fixed_ips[0]["ip_address"]


def drops(cl, reason):
    return pinned_counters(cl.chassis[0].bpffs)["drops"][reason]["packets"]


def ping_count(vm, dst, count, interval="0.05"):
    """(transmitted, received) of a bounded ping."""
    out = run(["ping", "-c", str(count), "-i", interval, "-W", "1", dst], ns=vm, check=False).stdout
    sent, got = re.search(r"(\d+) packets transmitted, (\d+) received", out).groups()
    return int(sent), int(got)


def dfxdp(*args):
    return subprocess.run([sys.executable, "-m", "dfxdp.cli.main", *args], capture_output=True, text=True,
                          timeout=60)


def test_without_its_security_group_program_a_filtered_port_is_dropped_not_passed(live):
    bpffs = live.chassis[0].bpffs
    stages = Map.pinned(bpffs / "maps" / "stages")
    try:
        for name in ("STAGE_SG_EGRESS", "STAGE_SG_INGRESS"):
            libbpf.prog_array_clear(stages, STAGES[name])
        before = drops(live, "DROP_STAGE_MISSING")
        assert ping_count(live.vm["a"], ip(live, "b"), 10) == (10, 0)
        assert drops(live, "DROP_STAGE_MISSING") - before >= 10  # dropped in XDP with its reason
    finally:
        for name in ("stage_sg_egress", "stage_sg_ingress"):
            prog = Program.pinned(bpffs / "progs" / name)
            libbpf.prog_array_set(stages, STAGES["STAGE_" + name[len("stage_"):].upper()], prog)
            prog.close()
        stages.close()
    assert ping_count(live.vm["a"], ip(live, "b"), 10) == (10, 10)


class Flood:
    """A ping from vm to dst every 20 ms, its replies' sequence numbers collected as they come."""

    def __init__(self, vm, dst):
        self.seqs: list[int] = []
        self.proc = subprocess.Popen(["ip", "netns", "exec", vm, "stdbuf", "-oL", "ping", "-i", "0.02", "-W", "1",
                                      dst], stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            found = re.search(r"icmp_seq=(\d+) ", line)
            if found:
                self.seqs.append(int(found.group(1)))

    def wait_for_replies(self, more, timeout=60):
        target = len(self.seqs) + more
        deadline = time.monotonic() + timeout
        while len(self.seqs) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.seqs) >= target, f"only {len(self.seqs)} replies"

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        self._reader.join(10)

    def lost(self) -> list[int]:
        """Requests with no reply, among those before the last reply (the one in flight
        when ping was stopped is not lost)."""
        return sorted(set(range(1, max(self.seqs) + 1)) - set(self.seqs))


def test_a_hook_drops_a_chosen_flow_and_detaching_it_restores_forwarding_with_no_loss(live, tmp_path):
    bpffs = str(live.chassis[0].bpffs)
    obj = build_drop_flow(tmp_path, "drop_ping_to", IPPROTO_ICMP, dst=int(ipaddress.ip_address(ip(live, "b"))))
    flood = Flood(live.vm["a"], ip(live, "c"))  # another flow, on through attach and detach
    try:
        flood.wait_for_replies(20)
        attached = dfxdp("hook", "attach", "--bpffs", bpffs, str(obj))
        assert attached.returncode == 0, attached.stderr
        before = drops(live, "DROP_HOOK")
        assert ping_count(live.vm["a"], ip(live, "b"), 10) == (10, 0)
        assert drops(live, "DROP_HOOK") - before >= 10
        flood.wait_for_replies(20)  # the flood crosses the hook too
        listed = dfxdp("hook", "list", "--bpffs", bpffs)
        packets = int(re.search(r"drop_ping_to\s+\d+\s+(\d+)", listed.stdout).group(1))
        assert packets >= 10 + 20, listed.stdout  # it saw the dropped flow and the flood

        detached = dfxdp("hook", "detach", "--bpffs", bpffs, "drop_ping_to")
        assert detached.returncode == 0, detached.stderr
        assert ping_count(live.vm["a"], ip(live, "b"), 50, interval="0.02") == (50, 50)
        flood.wait_for_replies(20)
    finally:
        flood.stop()
        dfxdp("hook", "detach", "--bpffs", bpffs, "drop_ping_to")  # after a failure: leave no hook behind
    assert flood.lost() == []
    assert "drop_ping_to" not in dfxdp("hook", "list", "--bpffs", bpffs).stdout


def pinned_prog_id(path):
    """The id of the program pinned at path; None in the instant an agent re-pins it."""
    try:
        prog = Program.pinned(path)
    except libbpf.BpfError:
        return None
    try:
        return libbpf.prog_info(prog).id
    finally:
        prog.close()


def test_a_restarted_agent_keeps_the_hook(live, tmp_path):
    ch = live.chassis[0]
    obj = build_drop_flow(tmp_path, "drop_ping_to", IPPROTO_ICMP, dst=int(ipaddress.ip_address(ip(live, "b"))))
    assert dfxdp("hook", "attach", "--bpffs", str(ch.bpffs), str(obj)).returncode == 0
    try:
        stage_pin = ch.bpffs / "progs" / "stage_portsec"
        old_stage = pinned_prog_id(stage_pin)
        ch.stop_agent()
        ch.start_agent()
        deadline = time.monotonic() + 60  # the new agent is live once it pinned its own programs
        while time.monotonic() < deadline and pinned_prog_id(stage_pin) in (old_stage, None):
            time.sleep(0.2)
        assert pinned_prog_id(stage_pin) not in (old_stage, None), "the new agent did not go live"
        assert "drop_ping_to" in dfxdp("hook", "list", "--bpffs", str(ch.bpffs)).stdout
        assert ping_count(live.vm["a"], ip(live, "b"), 5) == (5, 0)
        assert ping_count(live.vm["a"], ip(live, "c"), 5) == (5, 5)
    finally:
        dfxdp("hook", "detach", "--bpffs", str(ch.bpffs), "drop_ping_to")
    assert ping_count(live.vm["a"], ip(live, "b"), 5) == (5, 5)
