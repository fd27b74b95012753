"""User hooks through BPF_PROG_TEST_RUN: a hook built against dfxdp/hook.h sees and drops
a chosen flow and lets the rest continue; hooks run in priority order; detaching restores
forwarding; a restarted agent keeps them; objects that break the pipeline's contract are
refused with one line and change nothing."""
import json
from socket import IPPROTO_UDP

import pytest
from click.testing import CliRunner
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dfxdp.cli.main import main
from dfxdp.datapath.hooks import HookError, HookSlots, choose_slot
from dfxdp.datapath.pipeline import HOOK_SLOTS, STAGE_NAMES, STAGES, Pipeline
from dfxdp.datapath.pktrun import run_packet
from dfxdp.testing.hooks import DROP_FLOW, build_drop_flow, build_hook
from dfxdp.trace import trace
from tests.bpf import l2_fixtures as fx
from tests.bpf.test_l2 import world  # noqa: F401 - a fixture: two local ports and a remote one


@pytest.fixture
def hook_obj(tmp_path):
    """A hook dropping UDP to port `dport`, or a variant of its source."""
    def build(name="drop_udp", dport=7777, license="GPL", source=DROP_FLOW):
        return build_drop_flow(tmp_path, name, IPPROTO_UDP, dport=dport, license=license, source=source)
    return build


def udp(dport):
    return Ether(src=fx.LOCAL_MAC, dst=fx.LOCAL2_MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=dport)


def attach(pipe, obj, **kw):
    with HookSlots(pipe.dir) as slots:
        return slots.attach(obj, **kw)


def detach(pipe, **kw):
    with HookSlots(pipe.dir) as slots:
        return slots.detach(**kw)


def hooks(pipe):
    with HookSlots(pipe.dir) as slots:
        return slots.list()


def test_a_hook_drops_its_flow_and_passes_the_rest_on(world, hook_obj):
    pipe, local, local2, _ = world
    h = attach(pipe, hook_obj())
    stage = STAGE_NAMES[HOOK_SLOTS[h.index]]
    dropped = run_packet(pipe, udp(7777), ingress_ifindex=local)
    assert dropped.verdict == "XDP_DROP" and dropped.drop_reason == "DROP_HOOK"
    assert dropped.stages[-1] == stage and dropped.counters["stages"][stage]["packets"] == 1
    other = run_packet(pipe, udp(53), ingress_ifindex=local)
    assert other.verdict == "XDP_REDIRECT" and other.meta["out_ifindex"] == local2
    assert other.stages == ["STAGE_ENTRY_PORT", "STAGE_PORTSEC", "STAGE_SG_EGRESS", stage, "STAGE_LB", "STAGE_DNS",
                            "STAGE_L3", "STAGE_L2", "STAGE_SG_INGRESS", "STAGE_OUTPUT"]
    (listed,) = hooks(pipe)
    assert (listed.name, listed.priority, listed.packets) == ("drop_udp", 50, 2) and listed.prog_id == h.prog_id
    story = trace(pipe.dir, local, bytes(udp(7777))).story()
    assert f"user hook {h.index}: drop_udp (priority 50)" in story and "XDP_DROP (DROP_HOOK)" in story

    assert detach(pipe, name="drop_udp").index == h.index
    again = run_packet(pipe, udp(7777), ingress_ifindex=local)
    assert again.verdict == "XDP_REDIRECT" and stage not in again.stages
    assert hooks(pipe) == [] and not any(pipe.hooks_dir.iterdir())


def test_hooks_run_in_priority_order_whatever_the_attach_order(world, hook_obj):
    pipe, local, _, _ = world
    late = attach(pipe, hook_obj("late"), priority=20)
    early = attach(pipe, hook_obj("early"), priority=10)
    last = attach(pipe, hook_obj("last", dport=9), priority=90)
    assert early.index < late.index < last.index
    assert [h.name for h in hooks(pipe)] == ["early", "late", "last"]
    res = run_packet(pipe, udp(7777), ingress_ifindex=local)  # both early and late drop it: early sees it first
    assert STAGE_NAMES[HOOK_SLOTS[early.index]] in res.stages
    assert STAGE_NAMES[HOOK_SLOTS[late.index]] not in res.stages
    detach(pipe, slot=early.index)
    res = run_packet(pipe, udp(7777), ingress_ifindex=local)
    assert res.drop_reason == "DROP_HOOK" and res.stages[-1] == STAGE_NAMES[HOOK_SLOTS[late.index]]


def test_a_restarted_agent_keeps_the_hooks(world, hook_obj):
    pipe, local, _, _ = world
    h = attach(pipe, hook_obj())
    again = Pipeline(pipe.dir).load()  # what a restarting agent does
    try:
        assert [x.prog_id for x in hooks(again)] == [h.prog_id]
        assert run_packet(again, udp(7777), ingress_ifindex=local).drop_reason == "DROP_HOOK"
    finally:
        again.close()


NOT_XDP = '#include <dfxdp/hook.h>\nSEC("tc") int NAME(void *ctx) { return 0; }\n' \
          'char _license[] SEC("license") = "GPL";\n'
FRAGS = '#include <dfxdp/hook.h>\nSEC("xdp.frags") int NAME(struct xdp_md *ctx) { return XDP_PASS; }\n' \
        'char _license[] SEC("license") = "GPL";\n'
NO_HEADER = '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n' \
            'SEC("xdp") int NAME(struct xdp_md *ctx) { return XDP_DROP; }\nchar _license[] SEC("license") = "GPL";\n'
OWN_PINNED_MAP = DROP_FLOW + """
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u32);
	 __uint(pinning, LIBBPF_PIN_BY_NAME); } my_config SEC(".maps");
"""
OLD_LAYOUT = """#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
/* what an older release's pipeline declared: 9 stage slots */
struct { __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __uint(max_entries, 9); __type(key, __u32); __type(value, __u32);
	 __uint(pinning, LIBBPF_PIN_BY_NAME); } stages SEC(".maps");
SEC("xdp") int NAME(struct xdp_md *ctx) { bpf_tail_call(ctx, &stages, 3); return XDP_PASS; }
char _license[] SEC("license") = "GPL";
"""
TWO_PROGRAMS = DROP_FLOW + 'SEC("xdp") int other(struct xdp_md *ctx) { return XDP_PASS; }\n'


@pytest.mark.parametrize("source,license,kw,error", [
    (NOT_XDP, "GPL", {}, "is not an XDP program"),
    (FRAGS, "GPL", {}, "is multi-buffer"),
    (NO_HEADER, "GPL", {}, "not built against dfxdp/hook.h (no pinned stages, pkt_scratch)"),
    (OWN_PINNED_MAP, "GPL", {}, "pins a map my_config that the pipeline does not have"),
    (OLD_LAYOUT, "GPL", {}, f"its map stages differs from the pipeline's (max_entries {len(STAGES)} -> 9)"),
    (DROP_FLOW, "Proprietary", {}, "is not GPL-compatible"),
    (TWO_PROGRAMS, "GPL", {}, "holds 2 programs (bad, other): choose one with --program"),
    (TWO_PROGRAMS, "GPL", {"program": "nope"}, "no program nope"),
    (DROP_FLOW, "GPL", {"slot": len(HOOK_SLOTS)}, f"hook slots are 0 to {len(HOOK_SLOTS) - 1}"),
], ids=["not-xdp", "frags", "no-header", "own-pinned-map", "old-layout", "proprietary", "two-programs",
        "unknown-program", "bad-slot"])
def test_objects_breaking_the_contract_are_refused_and_change_nothing(world, hook_obj, source, license, kw, error):
    pipe, local, _, _ = world
    obj = hook_obj("bad", license=license, source=source)
    maps_before = sorted(p.name for p in pipe.maps_dir.iterdir())
    with pytest.raises(HookError) as exc:
        attach(pipe, obj, **kw)
    assert error in str(exc.value) and "\n" not in str(exc.value)
    assert hooks(pipe) == [] and not any(pipe.hooks_dir.iterdir())
    assert sorted(p.name for p in pipe.maps_dir.iterdir()) == maps_before  # no stray pinned map
    assert run_packet(pipe, udp(7777), ingress_ifindex=local).verdict == "XDP_REDIRECT"


def test_a_taken_slot_and_full_slots_are_refused(world, hook_obj):
    pipe, *_ = world
    attach(pipe, hook_obj("first"), slot=0)
    with pytest.raises(HookError, match="hook slot 0 is taken"):
        attach(pipe, hook_obj("second"), slot=0)
    for i in range(1, len(HOOK_SLOTS)):
        attach(pipe, hook_obj(f"h{i}"), slot=i)
    with pytest.raises(HookError, match=f"all {len(HOOK_SLOTS)} hook slots are taken"):
        attach(pipe, hook_obj("one_more"))
    with pytest.raises(HookError, match="no hook nope attached"):
        detach(pipe, name="nope")


def test_cli_attach_list_detach_and_one_line_errors(world, hook_obj, tmp_path):
    pipe, local, _, _ = world
    cli = CliRunner()
    out = cli.invoke(main, ["hook", "attach", "--bpffs", str(pipe.dir), "--priority", "7", str(hook_obj())])
    assert out.exit_code == 0 and "attached drop_udp in hook slot" in out.output, out.output
    run_packet(pipe, udp(7777), ingress_ifindex=local)
    listed = json.loads(cli.invoke(main, ["hook", "list", "--bpffs", str(pipe.dir), "-f", "json"]).output)
    assert [(h["name"], h["priority"], h["packets"]) for h in listed] == [("drop_udp", 7, 1)]
    text = cli.invoke(main, ["hook", "list", "--bpffs", str(pipe.dir)]).output
    assert "drop_udp" in text and "PACKETS" in text
    bad = cli.invoke(main, ["hook", "attach", "--bpffs", str(pipe.dir), str(tmp_path / "missing.o")])
    assert bad.exit_code == 1 and bad.output.strip().splitlines() == [f"Error: {tmp_path / 'missing.o'}: no such "
                                                                      "object file"]
    nowhere = cli.invoke(main, ["hook", "list", "--bpffs", str(tmp_path)])
    assert nowhere.exit_code == 1 and "no pinned dfxdp pipeline" in nowhere.output
    out = cli.invoke(main, ["hook", "detach", "--bpffs", str(pipe.dir), "drop_udp"])
    assert out.exit_code == 0 and "detached drop_udp" in out.output
    assert run_packet(pipe, udp(7777), ingress_ifindex=local).verdict == "XDP_REDIRECT"


@pytest.mark.parametrize("occupied,priority,slot", [
    ({}, 50, 1),                    # the middle of the free slots: room on both sides
    ({1: 50}, 10, 0),
    ({1: 50}, 50, 2),               # equal priority runs after the hook already there
    ({1: 50}, 90, 2),
    ({0: 10, 1: 50}, 60, 2),
    ({0: 10, 2: 50}, 20, 1),
    ({1: None}, 40, 0),             # a hook of unknown priority counts as the default
])
def test_choose_slot_keeps_priority_order_without_moving_a_hook(occupied, priority, slot):
    assert len(HOOK_SLOTS) == 4  # the cases above are written for four hook slots
    assert choose_slot(occupied, priority) == slot


def test_choose_slot_refuses_when_no_slot_lies_between_the_neighbours():
    with pytest.raises(HookError, match="no free hook slot between"):
        choose_slot({0: 10, 1: 50}, 20)


def test_the_example_in_docs_hooks_md_builds_attaches_and_drops_telnet(world, tmp_path):
    import pathlib

    doc = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "hooks.md").read_text()
    source = doc.split("```c\n", 1)[1].split("```", 1)[0]
    pipe, local, local2, _ = world
    h = attach(pipe, build_hook(source, tmp_path, "drop_telnet"))
    telnet = Ether(src=fx.LOCAL_MAC, dst=fx.LOCAL2_MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=23)
    assert run_packet(pipe, telnet, ingress_ifindex=local).drop_reason == "DROP_HOOK"
    assert run_packet(pipe, udp(23), ingress_ifindex=local).verdict == "XDP_REDIRECT"
    assert h.name == "drop_telnet"
