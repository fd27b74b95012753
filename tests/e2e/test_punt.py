"""The punt round trip through a real veth: a VM's DHCP request goes up to the
agent's punt service with its port, an app answers, the VM receives the answer;
a flood from the VM is cut by the datapath's per-port limit, not queued; a
running `dfxdp agent` reads what its pipeline punts."""
import socket
import time

from dfxdp.controller.apps.base import App
from dfxdp.datapath.libbpf import lib
from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, inside, run
from dfxdp.testing.prom import sample
from dfxdp.testing.punt import SERVER_MAC, VM_MAC, PuntRig, dhcp_discover


def wait_for(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        time.sleep(0.05)


def test_a_punted_frame_goes_up_with_its_port_and_the_reply_reaches_the_vm():
    with PuntRig("puntrt") as rig:
        request = dhcp_discover(xid=0xC0FFEE)
        rig.send(request)
        reply = rig.receive(timeout=20)
        assert reply is not None, f"no reply; punt service stats {dict(rig.service.stats)}"
        assert reply[:6] == bytes.fromhex(VM_MAC.replace(":", ""))  # addressed back to the VM
        assert reply[6:12] == bytes.fromhex(SERVER_MAC.replace(":", ""))
        assert reply[12:] == request[12:]  # the echo app's answer: the request's payload
        drops = rig.pipeline.counters()["drops"]
        assert drops["DROP_PUNTED"]["packets"] == 1 and drops["DROP_PUNT_RATE"]["packets"] == 0
        # counted once the app's on_punt returned, which may be just after the VM got the reply
        wait_for(lambda: rig.service.stats["dispatched"] == 1, "the dispatch counted")


def test_a_flood_beyond_the_port_limit_is_dropped_in_the_datapath():
    with PuntRig("puntfl") as rig:
        rig.set_limit(10, 3_600_000)  # one window for the whole test: the count is exact
        for xid in range(60):
            rig.send(dhcp_discover(xid))

        def drops():
            return rig.pipeline.counters()["drops"]

        wait_for(lambda: drops()["DROP_PUNTED"]["packets"] + drops()["DROP_PUNT_RATE"]["packets"] == 60,
                 "every frame of the flood met the limit")
        assert drops()["DROP_PUNTED"]["packets"] == 10
        assert drops()["DROP_PUNT_RATE"]["packets"] == 50
        wait_for(lambda: rig.apps[0].received == 10, "the 10 admitted frames reached the app")
        replies = [rig.receive(timeout=20) for _ in range(10)]
        assert all(replies), f"{replies.count(None)} of the 10 replies never reached the VM"


class OversizedReply(App):
    """Answers with a frame the port cannot carry (its MTU is 1500)."""

    name = "oversized"
    punt_reasons = (lib.PUNT_DHCP,)

    def on_punt(self, packet):
        packet.reply(packet.frame[6:12] + bytes.fromhex(SERVER_MAC.replace(":", "")) + b"\x08\x00" + b"\x00" * 1600)


def test_a_reply_the_port_cannot_carry_is_refused_and_counted():
    with PuntRig("puntbig", apps=[OversizedReply()]) as rig:
        rig.send(dhcp_discover(xid=1))
        wait_for(lambda: rig.service.stats["failed"] == 1, "the oversized reply counted as the app's failure")
        assert rig.service.stats["dispatched"] == 0  # the kernel refused the send (EMSGSIZE): nothing left


def test_a_running_agent_reads_what_its_pipeline_punts():
    with Topology("puntag") as topo:
        cluster = Cluster(topo, chassis=1, db="sqlite")
        try:
            ch = cluster.chassis[0]
            c = cluster.connect()
            net = c.network.create_network(name="p")
            c.network.create_subnet(network_id=net.id, cidr="10.0.0.0/24", ip_version=4)
            # without port security: a bound port's DHCP requests are punted all the same
            port = c.network.create_port(network_id=net.id, binding_host_id=ch.name, port_security_enabled=False)
            vm = cluster.plug(port, ch)
            cluster.wait_active(port.id)
            with inside(vm):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            with sock:
                sock.bind(("eth0", 0))
                sock.send(dhcp_discover(7, mac=port.mac_address))

            def metrics():
                return run(["curl", "-sf", f"http://{ch.tunnel_ip}:9870/metrics"], ns=ch.ns).stdout

            # read, and handed to the DHCP app, which answered it (docs/dhcp.md)
            wait_for(lambda: sample(metrics(), "dfxdp_dhcp_messages_total", outcome="offer") == 1,
                     "the agent read the punted frame and its DHCP app answered")
            text = metrics()
            assert sample(text, "dfxdp_punt_records_total", outcome="received") == 1
            assert sample(text, "dfxdp_punt_records_total", outcome="dispatched") == 1
            assert sample(text, "dfxdp_drop_packets_total", reason="DROP_PUNTED") == 1
        finally:
            cluster.close()
