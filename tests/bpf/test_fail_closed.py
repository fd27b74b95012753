"""The pipeline fails closed: an empty mandatory slot (port security, security groups)
drops every frame that reaches it with DROP_STAGE_MISSING, while an empty optional slot
is skipped. Run through BPF_PROG_TEST_RUN on the real stage programs."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether

from dfxdp.datapath import libbpf
from dfxdp.datapath.pipeline import MANDATORY_STAGES, STAGES, Pipeline
from dfxdp.datapath.pktrun import run_packet
from dfxdp.trace import Trace
from tests.bpf import l2_fixtures as fx
from tests.bpf.test_l2 import vxlan_from_remote, world  # noqa: F401 - world is a fixture


def local_to_local2():
    return Ether(src=fx.LOCAL_MAC, dst=fx.LOCAL2_MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=80)


def remove_stage(pipe, name: str) -> None:
    libbpf.prog_array_clear(pipe.maps["stages"], STAGES[name])


def test_the_security_stages_and_only_they_are_mandatory():
    assert MANDATORY_STAGES == {"STAGE_PORTSEC", "STAGE_SG_EGRESS", "STAGE_SG_INGRESS"}


@pytest.mark.parametrize("missing", sorted(MANDATORY_STAGES))
def test_a_missing_security_stage_drops_with_its_own_reason(world, missing):
    pipe, local, local2, _ = world
    assert run_packet(pipe, local_to_local2(), ingress_ifindex=local).verdict == "XDP_REDIRECT"
    remove_stage(pipe, missing)
    res = run_packet(pipe, local_to_local2(), ingress_ifindex=local)
    assert res.verdict == "XDP_DROP" and res.drop_reason == "DROP_STAGE_MISSING"
    assert res.counters["drops"] == {"DROP_STAGE_MISSING": {"packets": 1, "bytes": len(local_to_local2())}}
    assert missing not in res.stages and "STAGE_OUTPUT" not in res.stages
    assert res.meta["stage"] == STAGES[missing]  # the slot found empty, for `dfxdp trace`
    story = Trace(res, "tap").story()
    assert f"DROP_STAGE_MISSING: {missing} has no program" in story


def test_a_port_without_port_security_is_dropped_too(pipeline, test_iface):
    """The stage that would decide whether a port is filtered is the one missing: drop for every port."""
    (_, local), (_, local2), (_, underlay) = test_iface(), test_iface(), test_iface()
    fx.program(pipeline, fx.build_view(local, local2, underlay, portsec=False))
    remove_stage(pipeline, "STAGE_PORTSEC")
    res = run_packet(pipeline, local_to_local2(), ingress_ifindex=local)
    assert res.verdict == "XDP_DROP" and res.drop_reason == "DROP_STAGE_MISSING"


def test_frames_from_the_underlay_meet_the_missing_ingress_stage(world):
    pipe, local, _, underlay = world
    inner = Ether(src=fx.REMOTE_MAC, dst=fx.LOCAL_MAC) / IP(src="10.0.0.3", dst="10.0.0.1") / ICMP()
    remove_stage(pipe, "STAGE_SG_INGRESS")
    res = run_packet(pipe, vxlan_from_remote(inner), ingress_ifindex=underlay, entry="underlay")
    assert res.verdict == "XDP_DROP" and res.drop_reason == "DROP_STAGE_MISSING"
    assert res.stages == ["STAGE_ENTRY_UNDERLAY", "STAGE_LB"]  # the LB's reverse NAT, then the missing stage


def test_a_missing_optional_stage_is_skipped(world):
    pipe, local, local2, _ = world
    remove_stage(pipe, "STAGE_L3")
    res = run_packet(pipe, local_to_local2(), ingress_ifindex=local)
    assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == local2
    assert "STAGE_L3" not in res.stages and "drops" not in res.counters


def test_unbound_interfaces_never_reach_the_stages(world, test_iface):
    """Frames the entry hands to the kernel itself are not affected by a missing stage."""
    pipe, *_ = world
    _, stranger = test_iface()
    remove_stage(pipe, "STAGE_PORTSEC")
    assert run_packet(pipe, local_to_local2(), ingress_ifindex=stranger).verdict == "XDP_PASS"


def test_a_restarted_agent_puts_the_missing_stage_back(world):
    pipe, local, local2, _ = world
    remove_stage(pipe, "STAGE_SG_EGRESS")
    assert run_packet(pipe, local_to_local2(), ingress_ifindex=local).verdict == "XDP_DROP"
    again = Pipeline(pipe.dir).load()  # what a restarting agent does: adopt the pins, rewire the slots
    try:
        res = run_packet(again, local_to_local2(), ingress_ifindex=local)
        assert res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == local2
    finally:
        again.close()
