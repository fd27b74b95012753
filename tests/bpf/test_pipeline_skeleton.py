"""The skeleton with no services: passes every valid frame unchanged, drops
and counts malformed or truncated ones, and counts every stage and verdict."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from dfxdp.datapath.pktrun import run_packet

ETH = Ether(src="fa:16:3e:00:00:01", dst="fa:16:3e:00:00:02")
VALID = {
    "udp": ETH / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=1000, dport=53) / Raw(b"x" * 20),
    "tcp": ETH / IP(src="198.18.0.1", dst="198.18.0.2") / TCP(sport=1000, dport=80, flags="S"),
    "icmp": ETH / IP(src="198.18.0.1", dst="198.18.0.2") / ICMP(),
    "arp": Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="198.18.0.2"),
    "ipv6": ETH / IPv6(dst="2001:db8::1") / UDP(),
    "other_ethertype": Ether(type=0x88B5) / Raw(b"\x00" * 46),
    "ip_fragment_tail": ETH / IP(frag=10, proto=6) / Raw(b"\x00" * 8),
}


@pytest.mark.parametrize("name", sorted(VALID))
@pytest.mark.parametrize("entry", ["port", "underlay"])
def test_valid_frames_pass_unchanged(pipeline, name, entry):
    frame = bytes(VALID[name])
    res = run_packet(pipeline, frame, entry=entry)
    assert res.verdict == "XDP_PASS"
    assert res.data == frame
    entry_stage = "STAGE_ENTRY_PORT" if entry == "port" else "STAGE_ENTRY_UNDERLAY"
    assert res.counters["stages"] == {entry_stage: {"packets": 1, "bytes": len(frame)}}
    assert res.counters["verdicts"] == {"XDP_PASS": {"packets": 1, "bytes": len(frame)}}
    assert "drops" not in res.counters


def _ip(**kw):
    return ETH / IP(src="198.18.0.1", dst="198.18.0.2", **kw)


BAD = {
    "ipv4_ethertype_without_header": (bytes(Ether(type=0x0800)), "DROP_TRUNCATED"),
    "truncated_ip_header": (bytes(_ip() / UDP())[:14 + 12], "DROP_TRUNCATED"),
    "truncated_arp": (bytes(Ether() / ARP())[:14 + 20], "DROP_TRUNCATED"),
    "ip_version_6_in_ipv4_frame": (bytes(_ip(version=6) / UDP()), "DROP_MALFORMED"),
    "ihl_below_5": (bytes(_ip(ihl=4) / UDP()), "DROP_MALFORMED"),
    "tot_len_below_header": (bytes(_ip(len=12) / UDP()), "DROP_MALFORMED"),
    "tot_len_past_frame": (bytes(_ip(len=200) / UDP()), "DROP_TRUNCATED"),
    "ihl_past_frame": (bytes(_ip(ihl=15, len=60))[:14 + 24], "DROP_TRUNCATED"),
    "truncated_tcp": (bytes(_ip(proto=6, len=20 + 10) / Raw(b"\x00" * 10)), "DROP_TRUNCATED"),
    "truncated_udp": (bytes(_ip(proto=17, len=20 + 4) / Raw(b"\x00" * 4)), "DROP_TRUNCATED"),
    "truncated_icmp": (bytes(_ip(proto=1, len=20 + 4) / Raw(b"\x00" * 4)), "DROP_TRUNCATED"),
}


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("entry", ["port", "underlay"])
def test_malformed_frames_dropped_and_counted(pipeline, name, entry):
    frame, reason = BAD[name]
    res = run_packet(pipeline, frame, entry=entry)
    assert res.verdict == "XDP_DROP"
    assert res.drop_reason == reason
    assert res.counters["drops"] == {reason: {"packets": 1, "bytes": len(frame)}}
    assert res.counters["verdicts"] == {"XDP_DROP": {"packets": 1, "bytes": len(frame)}}


def test_bound_port_with_empty_tables_runs_the_chain_and_passes(pipeline, test_iface):
    """A configured port runs the loaded stages; with nothing configured in them the frame passes untouched."""
    name, idx = test_iface()
    pipeline.maps["if_config"].update(idx, {"net_key": 42, "port_key": 7, "flags": 1})
    frame = bytes(VALID["tcp"])
    res = run_packet(pipeline, frame, ingress_ifindex=idx)
    assert res.verdict == "XDP_PASS" and res.data == frame
    assert res.meta["net_key"] == 42 and res.meta["src_port_key"] == 7
    assert res.meta["in_ifindex"] == idx
    assert res.stages == ["STAGE_ENTRY_PORT", "STAGE_PORTSEC", "STAGE_SG_EGRESS", "STAGE_LB", "STAGE_DNS", "STAGE_L3",
                          "STAGE_L2"]


def test_counters_accumulate_across_runs(pipeline):
    frame = bytes(VALID["udp"])
    res = run_packet(pipeline, frame, repeat=50)
    assert res.counters["verdicts"]["XDP_PASS"]["packets"] == 50
    assert pipeline.counters()["verdicts"]["XDP_PASS"]["packets"] == 50


def test_test_run_refuses_runt_input_with_a_clear_error(pipeline):
    """The kernel will not run XDP on less than an Ethernet header; the binding says so."""
    from dfxdp.datapath.libbpf import BpfError

    with pytest.raises(BpfError) as err:
        run_packet(pipeline, b"\x00" * 10)
    assert err.value.errno == 22 and "test run of program xdp_port" in str(err.value)


def test_a_pinned_map_with_an_old_layout_is_recreated_and_goes_live_when_asked(bpffs_dir):
    import subprocess

    from dfxdp.datapath.libbpf import ffi
    from dfxdp.datapath.pipeline import Pipeline

    chassis = bpffs_dir / "upgraded"
    (chassis / "maps").mkdir(parents=True)
    # what an older release pinned: sg_ports with a 4-byte value (no policy id yet), preallocated
    subprocess.run(["bpftool", "map", "create", str(chassis / "maps" / "sg_ports"), "type", "hash",
                    "key", "4", "value", "4", "entries", "65536", "name", "sg_ports"], check=True)
    pipe = Pipeline(chassis).load()
    try:
        size = ffi.sizeof("struct sg_port")
        assert pipe.replaced_maps == {"sg_ports": f"value_size 4 -> {size}, map_flags 0 -> 1"} and not pipe.live
        assert pipe.maps["sg_ports"].info.value_size == size
        assert not (chassis / "progs" / "xdp_port").exists()  # not live before the maps are filled
        pipe.go_live()
        assert pipe.live and (chassis / "progs" / "xdp_port").exists()
        pipe.maps["if_config"].update(1, {"net_key": 9})
    finally:
        pipe.close()
    again = Pipeline(chassis).load()  # a restart of the same release reuses every pin
    try:
        assert again.live and not again.replaced_maps
        assert again.maps["if_config"].lookup(1).net_key == 9
    finally:
        again.destroy()


def test_the_stage_table_of_maps_pipeline_h_drives_python_and_trace():
    from dfxdp.datapath.pipeline import ENTRY_STAGES, HOOK_SLOTS, MANDATORY_STAGES, STAGE_STATS, STAGES, stage_slot
    from dfxdp.trace import STAGE_STORY

    assert list(STAGES.values()) == list(range(len(STAGES)))  # slots in pipeline order, no gaps
    assert list(STAGE_STATS) == [*ENTRY_STAGES, *STAGES]      # what pktrun and trace list, in run order
    assert set(STAGE_STORY) == set(STAGE_STATS)               # trace tells every stage
    assert STAGES["STAGE_SG_EGRESS"] < min(HOOK_SLOTS) and max(HOOK_SLOTS) < STAGES["STAGE_LB"]
    assert HOOK_SLOTS == list(range(min(HOOK_SLOTS), max(HOOK_SLOTS) + 1))
    assert not MANDATORY_STAGES & {n for n, s in STAGES.items() if s in HOOK_SLOTS}
    assert stage_slot("stage_sg_ingress") == STAGES["STAGE_SG_INGRESS"]
    assert stage_slot("stage_hook_0") is None  # hook slots are the users', never the pipeline's own


def test_every_stage_program_is_wired_into_its_slot(pipeline):
    from dfxdp.datapath.pipeline import HOOK_SLOTS, STAGES, stage_slot

    wired = {slot for slot in STAGES.values() if pipeline.maps["stages"].lookup(slot) is not None}
    assert wired == {stage_slot(name) for name in pipeline.programs if stage_slot(name) is not None}
    assert not wired & set(HOOK_SLOTS)


def test_an_upgrade_that_adds_stage_slots_keeps_the_old_stages_until_the_pipeline_closes(bpffs_dir):
    """A release with more stages recreates `stages`; the old PROG_ARRAY keeps its programs
    (the old entries still tail-call through it) until the new pipeline is closed, and the
    users' hooks go into the new one."""
    import json
    import subprocess

    from dfxdp.datapath.libbpf import BpfObject
    from dfxdp.datapath.pipeline import HOOK_SLOTS, STAGES, Pipeline, object_path

    def bpftool(*args):
        return subprocess.run(["bpftool", "-j", *args], check=True, capture_output=True, text=True).stdout

    chassis = bpffs_dir / "upgrading"
    (chassis / "maps").mkdir(parents=True)
    old = chassis / "maps" / "stages"
    bpftool("map", "create", str(old), "type", "prog_array", "key", "4", "value", "4", "entries", "9",
            "name", "stages")
    bpftool("prog", "load", str(object_path("xdp_pass")), str(chassis / "old_stage"), "type", "xdp")
    bpftool("map", "update", "pinned", str(old), "key", "0", "0", "0", "0", "value", "pinned",
            str(chassis / "old_stage"))
    (chassis / "old_stage").unlink()  # the old slot alone keeps the old program
    old_id = json.loads(bpftool("map", "show", "pinned", str(old)))["id"]
    (chassis / "hooks").mkdir()
    with BpfObject(object_path("xdp_pass")).load() as hook:  # a user's hook, pinned by `dfxdp hook attach`
        hook.programs["xdp_pass"].pin(chassis / "hooks" / "1_50_xdp_pass")
    pipe = Pipeline(chassis).load()
    try:
        assert pipe.replaced_maps["stages"] == f"max_entries 9 -> {len(STAGES)}" and not pipe.live
        assert len(json.loads(bpftool("map", "dump", "id", str(old_id)))) == 1
        pipe.go_live()
        assert pipe.maps["stages"].lookup(HOOK_SLOTS[1]) is not None  # the hook carried into the new table
    finally:
        pipe.destroy()
