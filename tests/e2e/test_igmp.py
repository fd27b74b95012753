"""IGMP snooping on a two-chassis cluster with OVS: a real sender's multicast stream
(UDP to a group, from a VM on ch1) reaches the VMs on ch2 that joined the group (one
IGMPv3, with port security; one forced to IGMPv2, without), not the VMs of the network
that did not join, never a VM of another network that joined the same group, and stops
reaching a receiver once it left (its kernel sends the leave when its socket closes).

Blue: s1 (ch1, the sender), n1 (ch1) and n2 (ch2) never join, v3 and v2 (ch2) join.
Red, in the same address range: x2 (ch2) joins the same group. Every VM runs a sniffer
(AF_PACKET on eth0): a stream frame counts wherever it arrives, socket or not."""
import subprocess
import sys
import time

import pytest

from dfxdp.testing.netns import run
from dfxdp.testing.prom import sample
from tests.e2e.test_fallback import blue_and_red, restart_agent, token, wait_for

pytestmark = [pytest.mark.ovs, pytest.mark.etcd]

GROUP, UDP_PORT = "239.7.7.7", 5001
RECEIVER = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
mreqn = struct.pack("4s4si", socket.inet_aton(sys.argv[1]), bytes(4), socket.if_nametoindex("eth0"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)   # the kernel reports the join
print("joined", flush=True)
sys.stdin.read()                                                    # until the test closes stdin
s.close()                                                           # the kernel reports the leave
"""
SENDER = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
             struct.pack("4s4si", bytes(4), bytes(4), socket.if_nametoindex("eth0")))
for _ in range(int(sys.argv[4])):
    s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.05)
"""
NOBODY = {"s1": 0, "n1": 0, "n2": 0, "v3": 0, "v2": 0, "x2": 0}


class Receiver:
    """A process in a VM holding a group membership until leave()."""

    def __init__(self, vm: str, group: str = GROUP):
        self.proc = subprocess.Popen(["ip", "netns", "exec", vm, sys.executable, "-u", "-c", RECEIVER, group,
                                      str(UDP_PORT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "joined"

    def leave(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def world():
    with blue_and_red("ig", 2, (("s1", "blue", 1, True), ("n1", "blue", 1, False), ("n2", "blue", 2, True),
                                ("v3", "blue", 2, True), ("v2", "blue", 2, False), ("x2", "red", 2, True))) as cl:
        run(["sysctl", "-qw", "net.ipv4.conf.eth0.force_igmp_version=2"], ns=cl.vm["v2"][0])
        for ch in cl.chassis:
            wait_for(lambda: any("table=15" in f for f in flows(ch)), f"{ch.name}'s IGMP flows")
        yield cl


def flows(ch) -> list[str]:
    return [line for line in ch.ovs.ofctl("dump-flows", "br-int").stdout.splitlines() if "cookie=" in line]


def group_flow(ch) -> str:
    """ch's flow for GROUP from its own taps ('' when it has none)."""
    return next((f for f in flows(ch) if f"nw_dst={GROUP} " in f and "in_port" not in f), "")


def stream(cl, packets: int = 20) -> dict[str, int]:
    """A stream from s1 to GROUP; what each VM received of it once it is over and stragglers had time."""
    tok = token()
    run([sys.executable, "-c", SENDER, GROUP, str(UDP_PORT), tok, str(packets)], ns=cl.vm["s1"][0])
    time.sleep(1)
    return {name: s.count(tok) for name, s in cl.sniffer.items()}


def stream_until(cl, receivers: set[str], timeout: float = 60) -> dict[str, int]:
    """Streams until every one of `receivers` got a whole one (membership converges through NB)."""
    deadline = time.monotonic() + timeout
    while True:
        got = stream(cl)
        if all(got[r] == 20 for r in receivers) or time.monotonic() > deadline:
            return got


def groups_gauge(ch, net_id: str) -> float | None:
    text = run(["curl", "-sf", f"http://{ch.tunnel_ip}:9870/metrics"], ns=ch.ns).stdout
    return sample(text, "dfxdp_fallback_igmp_groups", network=net_id)


def test_stream_reaches_members_on_the_other_chassis_only_until_they_leave(world):
    ch1, ch2 = world.chassis
    assert stream(world) == NOBODY  # nobody joined: a group nobody joined reaches nobody
    v3, v2, x2 = Receiver(world.vm["v3"][0]), Receiver(world.vm["v2"][0]), Receiver(world.vm["x2"][0])
    try:
        got = stream_until(world, {"v3", "v2"})
        assert got == {**NOBODY, "v3": 20, "v2": 20}  # not n1, n2 (no join), not x2 (red)
        assert f"{ch2.tunnel_ip}->tun_dst" in group_flow(ch1)
        wait_for(lambda: groups_gauge(ch2, world.blue.id) == 1, "ch2's blue group gauge at 1")

        v3.leave()  # IGMPv3 state change: TO_IN {}
        wait_for(lambda: stream(world)["v3"] == 0, "v3 cut off after its leave")
        assert stream(world) == {**NOBODY, "v2": 20}

        v2.leave()  # IGMPv2 leave
        wait_for(lambda: ch2.tunnel_ip not in group_flow(ch1), "ch1 stops replicating to ch2")
        assert stream(world) == NOBODY
        wait_for(lambda: not groups_gauge(ch2, world.blue.id), "ch2's blue group gauge at 0")
    finally:
        for r in (v3, v2, x2):
            r.kill()


def test_the_agent_as_querier_relearns_members_after_a_restart(world):
    """ch2's agent restarts and forgets every membership (and its NB record starts empty).
    v3's kernel reported its join once, when it joined; it reports again only when
    queried: the stream comes back because the new agent queried the tap."""
    ch2 = world.chassis[1]
    v3 = Receiver(world.vm["v3"][0])
    try:
        assert stream_until(world, {"v3"})["v3"] == 20
        ch2.stop_agent()
        restart_agent(ch2)
        # The new process starts with no member: its gauge counts only what it learned since.
        wait_for(lambda: groups_gauge(ch2, world.blue.id) == 1, "ch2's new agent relearned v3's group")
        assert stream_until(world, {"v3"}) == {**NOBODY, "v3": 20}
    finally:
        v3.kill()
