"""Loading the pipeline: stage objects verified in parallel threads after the maps they share are
pinned (each map created by one object only), the same pins and stage slots as loaded one by one,
a refused object failing the load with nothing gone live, and an early load (PipelineLoading)
that a failed start abandons without leaving a pin behind."""
import os

import pytest

from dfxdp import build
from dfxdp.datapath import libbpf
from dfxdp.datapath.libbpf import BpfObject, Map, VerifierError
from dfxdp.datapath.pipeline import (HOOK_SLOTS, STAGE_NAMES, STAGES, Pipeline, PipelineLoading, _serial_and_parallel, pipeline_objects,
                                     stage_slot)

# Two stage-like objects declaring one map that the pipeline's entry object does not: a race to
# create its pin would fail one of the loads with EEXIST.
SHARED_MAP_OBJECT = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} agentstart_shared SEC(".maps");
SEC("xdp") int %(name)s(struct xdp_md *ctx) {
    __u32 key = 0;
    __u64 *seen = bpf_map_lookup_elem(&agentstart_shared, &key);
    if (seen)
        __sync_fetch_and_add(seen, 1);
    return XDP_PASS;
}
char _license[] SEC("license") = "GPL";
"""

# A stage the verifier refuses (no bounds check before the packet access).
REFUSED_STAGE = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int refused_stage(struct xdp_md *ctx) {
    unsigned char *p = (unsigned char *)(long)ctx->data;
    return p[100];
}
char _license[] SEC("license") = "GPL";
"""


def _compiled(tmp_path, name, source):
    src, obj = tmp_path / f"{name}.c", tmp_path / f"{name}.o"
    src.write_text(source)
    build.compile_one(src, obj)
    return obj


def _declared(objects):
    """The names of the maps and of the programs the objects declare, read before loading."""
    maps, programs = set(), set()
    for path in objects:
        with BpfObject(path) as obj:
            maps |= set(obj.pinned_maps())
            programs |= set(obj.declared_programs())
    return maps, programs


def _map_id(path):
    m = Map.pinned(path)
    try:
        return libbpf.map_info(m.fd).id
    finally:
        m.close()


def test_every_map_and_program_is_pinned_and_every_stage_in_its_slot(bpffs_dir):
    objects = pipeline_objects()
    maps, programs = _declared(objects)
    pipe = Pipeline(bpffs_dir).load(objects)
    try:
        assert pipe.live
        assert set(os.listdir(pipe.maps_dir)) == set(maps)
        assert set(os.listdir(pipe.progs_dir)) == programs == set(pipe.programs)
        # one map per name, shared: each object's fd of a map is the pinned map itself
        for obj in pipe.objects:
            for name, m in obj.maps.items():
                if name in maps:
                    assert libbpf.map_info(m.fd).id == _map_id(pipe.maps_dir / name), name
        stages = pipe.maps["stages"]
        slots = {stage_slot(name): prog for name, prog in pipe.programs.items() if stage_slot(name) is not None}
        assert set(slots) == set(STAGES.values()) - set(HOOK_SLOTS)  # every slot but the users' hooks
        for slot, prog in slots.items():
            assert stages.lookup(slot) == libbpf.prog_info(prog).id, STAGE_NAMES[slot]
    finally:
        pipe.destroy()


def test_objects_sharing_a_map_the_entry_lacks_load_one_after_the_other(bpffs_dir, tmp_path):
    extra = [_compiled(tmp_path, name, SHARED_MAP_OBJECT % {"name": name}) for name in ("ext_a", "ext_b")]
    opened = [BpfObject(path) for path in [*pipeline_objects(), *extra]]
    try:
        declared = {obj: set(obj.pinned_maps()) for obj in opened}
        first, parallel = _serial_and_parallel(opened, declared, set())
        assert [obj.path.stem for obj in first] == ["pipeline", "ext_a"]  # ext_a creates what ext_b uses
        assert [obj.path.stem for obj in parallel] == [obj.path.stem for obj in opened if obj not in first]
        # once pinned by an earlier load, the shared map needs no serial load
        first, _ = _serial_and_parallel(opened, declared, {"agentstart_shared"} | declared[opened[0]])
        assert [obj.path.stem for obj in first] == ["pipeline"]
    finally:
        for obj in opened:
            obj.close()
    pipe = Pipeline(bpffs_dir).load([*pipeline_objects(), *extra])
    try:
        shared = _map_id(pipe.maps_dir / "agentstart_shared")
        for obj in pipe.objects[-2:]:
            assert libbpf.map_info(obj.maps["agentstart_shared"].fd).id == shared
        assert {"ext_a", "ext_b"} <= set(os.listdir(pipe.progs_dir))
    finally:
        pipe.destroy()


def test_a_refused_object_fails_the_load_and_nothing_goes_live(bpffs_dir, tmp_path):
    refused = _compiled(tmp_path, "refused", REFUSED_STAGE)
    pipe = Pipeline(bpffs_dir)
    try:
        with pytest.raises(VerifierError) as err:
            pipe.load([*pipeline_objects(), refused])
        assert "refused" in str(err.value) and "invalid access to packet" in err.value.log
        assert not pipe.live
        assert not any(pipe.progs_dir.iterdir())  # no program pinned, no stage slot set
        stages = Map.pinned(pipe.maps_dir / "stages")
        try:  # the mandatory slots stay empty: frames drop with DROP_STAGE_MISSING (test_fail_closed)
            assert all(stages.lookup(slot) is None for slot in STAGES.values())
        finally:
            stages.close()
    finally:
        pipe.destroy()


def test_an_early_load_goes_live_when_taken(bpffs_dir):
    loading = PipelineLoading(bpffs_dir / "chassis")
    pipe = loading.result()
    try:
        assert pipe.live and "stages" in pipe.maps
        loading.abandon()  # after result(): the start went on, nothing is undone
        assert (pipe.maps_dir / "stages").exists() and any(pipe.progs_dir.iterdir())
    finally:
        pipe.destroy()


def test_an_abandoned_early_load_leaves_nothing_but_what_was_pinned_before(bpffs_dir, tmp_path):
    chassis = bpffs_dir / "chassis"
    PipelineLoading(chassis).abandon()
    assert not chassis.exists()
    # a chassis with pins of its own (a map of an earlier release): those stay
    before = Pipeline(chassis).load([_compiled(tmp_path, "ext_a", SHARED_MAP_OBJECT % {"name": "ext_a"})], go_live=False)
    before.close()
    PipelineLoading(chassis).abandon()
    assert os.listdir(chassis / "maps") == ["agentstart_shared"]
    Pipeline(chassis).destroy()


def test_an_early_load_refused_raises_when_taken(bpffs_dir, tmp_path):
    loading = PipelineLoading(bpffs_dir / "chassis", [*pipeline_objects(), _compiled(tmp_path, "refused", REFUSED_STAGE)])
    with pytest.raises(VerifierError):
        loading.result()
    loading.abandon()
    assert not (bpffs_dir / "chassis").exists()
