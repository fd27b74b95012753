"""The punt path through BPF_PROG_TEST_RUN: a DHCP request reaches the ring with
its port, everything else goes on; the per-port limit, a full ring and an
oversized frame each drop with their own reason; the agent side refuses
malformed records and routes frames to the apps that registered their reason."""
import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from dfxdp.controller.apps.base import App
from dfxdp.controller.punt import HEADER_SIZE, MalformedPunt, PuntService, parse_record
from dfxdp.datapath.libbpf import ffi, lib
from dfxdp.datapath.pktrun import run_packet
from dfxdp.testing.punt import dhcp_punt_hook, drained

VM_MAC = "fa:16:3e:00:00:01"
DISCOVER = (Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex("fa163e000001"), xid=0x1234)
            / DHCP(options=[("message-type", "discover"), "end"]))
OTHER_UDP = Ether(src=VM_MAC, dst="fa:16:3e:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=68, dport=69)


@pytest.fixture
def punting(pipeline, test_iface):
    """The pipeline with the DHCP punt hook in the hook slot and two bound ports (no port security)."""
    ports = [test_iface()[1] for _ in range(2)]
    for n, ifindex in enumerate(ports):
        pipeline.maps["if_config"].update(ifindex, {"net_key": 42, "port_key": 7 + n, "flags": lib.IF_F_PORT})
    with dhcp_punt_hook(pipeline.dir) as hook:
        yield pipeline, ports, hook.stage


def set_limit(pipeline, packets: int, interval_ms: int = 3_600_000) -> None:
    # an hour-long window: no window restarts during a test, so counts are exact
    pipeline.maps["punt_limit"].update(0, {"packets": packets, "interval_ms": interval_ms})


def test_dhcp_request_is_punted_with_its_port(punting):
    pipe, (port, _), _ = punting
    res = run_packet(pipe, DISCOVER, ingress_ifindex=port)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_PUNTED")
    assert res.stages[-1] == "STAGE_PORTSEC"  # every bound port's DHCP requests: before any hook
    [record] = drained(pipe)
    fields, frame = parse_record(record)
    assert fields == {"ifindex": port, "port_key": 7, "net_key": 42, "reason": lib.PUNT_DHCP}
    assert frame == bytes(DISCOVER)


def test_other_frames_go_on_down_the_pipeline(punting):
    pipe, (port, _), hook_stage = punting
    res = run_packet(pipe, OTHER_UDP, ingress_ifindex=port)
    assert res.verdict == "XDP_PASS" and hook_stage in res.stages and "STAGE_L2" in res.stages
    assert drained(pipe) == []


def test_a_port_over_its_limit_is_dropped_and_counted_other_ports_unaffected(punting):
    pipe, (port, other), _ = punting
    set_limit(pipe, 5)
    res = run_packet(pipe, DISCOVER, ingress_ifindex=port, repeat=20)
    assert res.counters["drops"]["DROP_PUNTED"]["packets"] == 5
    assert res.counters["drops"]["DROP_PUNT_RATE"]["packets"] == 15
    assert len(drained(pipe)) == 5  # the excess never reached the ring
    again = run_packet(pipe, DISCOVER, ingress_ifindex=other)
    assert again.drop_reason == "DROP_PUNTED"


def test_the_default_limit_applies_without_a_setting(punting):
    pipe, (port, _), _ = punting
    sent = lib.PUNT_DEFAULT_PACKETS * 20
    res = run_packet(pipe, DISCOVER, ingress_ifindex=port, repeat=sent)
    drops = {reason: n["packets"] for reason, n in res.counters["drops"].items()}
    assert drops["DROP_PUNTED"] + drops["DROP_PUNT_RATE"] + drops.get("DROP_PUNT_QUEUE_FULL", 0) == sent
    # the first window admits its full share; only a run stretched over 20 windows
    # (20 s for a few thousand test runs) could admit everything
    assert drops["DROP_PUNTED"] >= lib.PUNT_DEFAULT_PACKETS and drops["DROP_PUNT_RATE"] > 0


def test_a_full_ring_drops_with_its_own_reason(punting):
    pipe, (port, _), _ = punting
    set_limit(pipe, 100_000)
    sent = pipe.maps["punt_ring"].info.max_entries // (HEADER_SIZE + lib.PUNT_FRAME_MAX) + 50
    res = run_packet(pipe, DISCOVER, ingress_ifindex=port, repeat=sent)
    punted = res.counters["drops"]["DROP_PUNTED"]["packets"]
    full = res.counters["drops"]["DROP_PUNT_QUEUE_FULL"]["packets"]
    assert punted + full == sent and full >= 50
    assert len(drained(pipe)) == punted
    assert run_packet(pipe, DISCOVER, ingress_ifindex=port).drop_reason == "DROP_PUNTED"  # room again


def test_a_frame_too_big_to_hand_up_is_dropped(punting):
    pipe, (port, _), _ = punting
    big = DISCOVER / Raw(b"\x00" * lib.PUNT_FRAME_MAX)
    res = run_packet(pipe, big, ingress_ifindex=port)
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_PUNT_TOO_BIG")
    assert drained(pipe) == []


def record(reason=None, frame=bytes(DISCOVER), frame_len=None) -> bytes:
    header = ffi.new("struct punt_header *", {"ifindex": 3, "port_key": 7, "net_key": 42,
                                              "reason": lib.PUNT_DHCP if reason is None else reason,
                                              "frame_len": len(frame) if frame_len is None else frame_len})
    return bytes(ffi.buffer(header)) + frame


@pytest.mark.parametrize("bad, why", [
    (record()[:HEADER_SIZE - 1], "shorter than its"),
    (record(frame_len=len(DISCOVER) + 1), "frame length"),
    (record(frame=b"\x00" * 10), "frame length"),
    (record(reason=lib.PUNT_REASON_MAX), "unknown punt reason"),
    (record(reason=0), "unknown punt reason"),
])
def test_malformed_records_are_refused(bad, why):
    with pytest.raises(MalformedPunt, match=why):
        parse_record(bad)


class Recorder(App):
    name = "recorder"
    punt_reasons = (lib.PUNT_DHCP,)

    def __init__(self, fail=False):
        self.packets, self.fail = [], fail

    def on_punt(self, packet):
        if self.fail:
            raise RuntimeError("an app bug")
        self.packets.append(packet)


def test_records_go_to_the_apps_of_their_reason_and_bad_ones_are_counted(pipeline):
    good, broken = Recorder(), Recorder(fail=True)
    counted = []
    service = PuntService(pipeline.maps, [good, broken], on_count=counted.append)
    try:
        service.handle(record())
        service.handle(record(reason=lib.PUNT_IGMP))  # nobody answers IGMP here
        service.handle(record(frame_len=5000))
    finally:
        service.stop()
    [packet] = good.packets
    assert (packet.ifindex, packet.port_key, packet.net_key, packet.frame) == (3, 7, 42, bytes(DISCOVER))
    assert service.stats == {"received": 3, "dispatched": 1, "failed": 1, "unclaimed": 1, "malformed": 1}
    assert sorted(counted) == sorted(service.stats.elements())  # the agent's metrics see the same


def test_an_app_asking_for_an_unknown_reason_is_refused(pipeline):
    class Wrong(App):
        name = "wrong"
        punt_reasons = (99,)

    with pytest.raises(ValueError, match="app wrong: punt reason 99"):
        PuntService(pipeline.maps, [Wrong()])


def test_a_reply_must_be_an_ethernet_frame(pipeline):
    service = PuntService(pipeline.maps, [])
    try:
        with pytest.raises(ValueError, match="14 to 65535 bytes, not 3"):
            service.sender.send(1, b"abc")
    finally:
        service.stop()
