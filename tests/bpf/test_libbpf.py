"""The libbpf binding against the real kernel: load, verifier errors, pins,
map operations, PROG_ARRAY slots, XDP attachment."""
import pathlib
import subprocess

import pytest

from dfxdp import build
from dfxdp.datapath import libbpf
from dfxdp.datapath.libbpf import BpfError, BpfObject, Map, Program, VerifierError
from dfxdp.datapath.pipeline import HOOK_SLOTS, OBJECT_DIR, Pipeline
from dfxdp.testing.netns import inside, run

OBJECTS = sorted(OBJECT_DIR.glob("*.o"))


def test_objects_were_built():
    assert {p.stem for p in OBJECTS} >= {"pipeline", "xdp_pass"}


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda p: p.stem)
def test_every_object_passes_the_verifier(obj, bpffs_dir):
    with BpfObject(obj, pin_root=bpffs_dir).load() as loaded:
        assert loaded.programs, f"{obj.name} has no programs"
        for prog in loaded.programs.values():
            assert prog.fd > 0


def test_verifier_rejection_raises_with_the_log(tmp_path, bpffs_dir):
    src = tmp_path / "oob.c"
    src.write_text(
        '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
        'SEC("xdp") int oob(struct xdp_md *ctx) {\n'
        '  unsigned char *p = (unsigned char *)(long)ctx->data;\n'
        '  return p[100];  /* no bounds check: the verifier must refuse */\n}\n'
        'char _license[] SEC("license") = "GPL";\n')
    obj = tmp_path / "oob.o"
    build.compile_one(src, obj)
    with pytest.raises(VerifierError) as err:
        BpfObject(obj, pin_root=bpffs_dir).load()
    assert err.value.errno == 13  # EACCES: the verifier said no
    assert "invalid access to packet" in err.value.log
    assert "oob" in str(err.value)


def test_missing_object_is_a_clear_error():
    with pytest.raises(BpfError) as err:
        BpfObject("/nonexistent/x.o")
    assert err.value.errno == 2 and "make bpf" in str(err.value)


def test_pinned_maps_are_reused_by_a_second_load(bpffs_dir):
    first = Pipeline(bpffs_dir / "c").load()
    first.maps["if_config"].update(9, {"net_key": 5, "port_key": 6, "flags": 1})
    first.close()  # like an agent exiting: pins keep the maps alive
    second = Pipeline(bpffs_dir / "c").load()
    try:
        assert libbpf.to_dict(second.maps["if_config"].lookup(9))["net_key"] == 5
        pinned = Map.pinned(bpffs_dir / "c" / "maps" / "if_config")
        assert pinned.key_type == "__u32" and pinned.value_type == "struct port_record"
        assert libbpf.to_dict(pinned.lookup(9))["port_key"] == 6
        pinned.close()
        prog = Program.pinned(bpffs_dir / "c" / "progs" / "xdp_port")
        assert prog.test_run(b"\x00" * 14).action in ("XDP_PASS", "XDP_DROP")
        prog.close()
    finally:
        second.destroy()
    assert not (bpffs_dir / "c").exists()


def test_map_operations(pipeline):
    m = pipeline.maps["if_config"]
    assert m.lookup(1) is None and m.delete(1) is False
    m.update(1, {"net_key": 1, "mac": list(b"\xfa\x16\x3e\x00\x00\x01")})
    assert libbpf.to_dict(m.lookup(1))["mac"] == [0xFA, 0x16, 0x3E, 0, 0, 1]
    with pytest.raises(BpfError) as err:
        m.update(1, {"net_key": 2}, flags=libbpf.lib.BPF_NOEXIST)
    assert err.value.errno == 17 and "update of map if_config" in str(err.value)
    m.update_batch([(k, {"net_key": k * 10}) for k in range(100, 150)])
    batch = dict((k, libbpf.to_dict(v)["net_key"]) for k, v in m.lookup_batch(chunk=7))
    assert len(batch) == 51 and batch[149] == 1490
    assert sorted(m.keys()) == sorted(batch) and len(m) == 51
    assert dict((k, libbpf.to_dict(v)["net_key"]) for k, v in m.items()) == batch
    assert m.delete(100) is True and len(m) == 50


def test_raw_items_batched_and_key_by_key_agree(pipeline):
    fdb, routes = pipeline.maps["fdb"], pipeline.maps["routes"]  # a hash (batched) and an LPM trie
    fdb.update_batch([({"net_key": 7, "mac": list(i.to_bytes(6, "big"))}, {"ifindex": i, "port_key": i})
                      for i in range(1, 2500)])  # more than one batch
    for i in range(1, 40):
        routes.update({"prefixlen": libbpf.lib.ROUTE_PREFIX_BASE + 24, "router_key": 1, "dst": i}, {"out_net_key": i})
    for m, count in ((fdb, 2499), (routes, 39)):
        by_key = {}
        for key in m.keys():
            by_key[m.encode_key(key)] = m.encode_value(m.lookup(key))
        assert len(by_key) == count and m.raw_items() == by_key, m.name


def test_raw_batches_stop_at_the_failing_entry_and_say_how_many_were_done(pipeline):
    fdb = pipeline.maps["fdb"]
    keys = [fdb.encode_key({"net_key": 1, "mac": [2, 0, 0, 0, 0, i]}) for i in range(5)]
    values = [fdb.encode_value({"ifindex": i}) for i in range(5)]
    fdb.update_batch_raw(b"".join(keys[:4]), b"".join(values[:4]))
    assert fdb.raw_items() == dict(zip(keys[:4], values[:4]))
    with pytest.raises(libbpf.BatchError) as err:
        fdb.delete_batch_raw(b"".join([keys[0], keys[1], keys[4], keys[2]]))  # keys[4] was never written
    assert (err.value.errno, err.value.done) == (2, 2) and "stopped at entry 2 of 4" in str(err.value)
    assert fdb.raw_items() == dict(zip(keys[2:4], values[2:4]))
    with pytest.raises(ValueError, match="no whole number"):
        fdb.delete_batch_raw(keys[2][:-1])
    with pytest.raises(ValueError, match="bytes of values for 1"):
        fdb.update_batch_raw(keys[2], values[2] + b"\0")
    assert fdb.raw_items() == dict(zip(keys[2:4], values[2:4]))  # bad input changed nothing


def test_percpu_values_all_cpus_and_summed(pipeline):
    stats = pipeline.maps["verdict_stats"]
    assert stats.percpu
    per_cpu = [{"packets": cpu + 1, "bytes": 100 * (cpu + 1)} for cpu in range(libbpf.NUM_CPUS)]
    stats.update(3, per_cpu)
    values = stats.lookup(3)
    assert [v.packets for v in values] == [c["packets"] for c in per_cpu]
    n = libbpf.NUM_CPUS
    assert stats.lookup_sum(3) == {"packets": n * (n + 1) // 2, "bytes": 100 * n * (n + 1) // 2}


def test_prog_array_slots_route_frames_to_a_stage(pipeline, test_iface, bpffs_dir):
    """A program plugged into a slot runs for bound ports; unplugged, the chain skips it."""
    _, idx = test_iface()
    pipeline.maps["if_config"].update(idx, {"net_key": 1, "flags": 1})
    frame = bytes.fromhex("ffffffffffff" "fa163e000001" "88b5") + b"\x00" * 46
    entry = pipeline.entry("port")
    assert entry.test_run(frame, ingress_ifindex=idx).action == "XDP_PASS"
    with BpfObject(OBJECT_DIR / "xdp_pass.o", pin_root=bpffs_dir).load() as plug:
        drop_src = plug.programs["xdp_pass"]  # returns XDP_PASS without counting a verdict
        libbpf.prog_array_set(pipeline.maps["stages"], HOOK_SLOTS[0], drop_src)
        before = pipeline.counters()["verdicts"]["XDP_PASS"]["packets"]
        assert entry.test_run(frame, ingress_ifindex=idx).action == "XDP_PASS"
        # the hook answered, so the skeleton's own PASS verdict was not counted
        assert pipeline.counters()["verdicts"]["XDP_PASS"]["packets"] == before
        assert pipeline.maps["stages"].lookup(HOOK_SLOTS[0]) > 0  # prog id
        libbpf.prog_array_clear(pipeline.maps["stages"], HOOK_SLOTS[0])
    assert pipeline.maps["stages"].lookup(HOOK_SLOTS[0]) is None


def test_xdp_attach_replace_detach(pipeline, topo):
    ns = topo.netns("x")
    topo.veth("xa", ns, "xb", ns)
    idx = int(run(["cat", "/sys/class/net/xa/ifindex"], ns=ns).stdout)
    with inside(ns):
        assert libbpf.xdp_query(idx) == (0, "none")
        pipeline.attach(idx, "port")
        prog_id, mode = libbpf.xdp_query(idx)
        assert prog_id > 0 and mode == "native"
        pipeline.attach(idx, "underlay")  # atomic replace
        assert libbpf.xdp_query(idx)[0] not in (0, prog_id)
        pipeline.detach(idx)
        assert libbpf.xdp_query(idx) == (0, "none")
        pipeline.attach(idx, "port", mode="generic")
        assert libbpf.xdp_query(idx)[1] == "generic"
        pipeline.detach(idx, mode="generic")
        with pytest.raises(BpfError) as err:
            pipeline.attach(999999, "port")
        assert "attaching xdp_port to ifindex 999999" in str(err.value)
    with pytest.raises(ValueError):
        libbpf.xdp_attach(idx, pipeline.entry("port"), mode="turbo")
