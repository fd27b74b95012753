"""The reconciler against real maps: batched writes land what per-entry writes
would, one batch syscall per map, key by key where the kernel has no batch, a
failing entry reported with the rest applied, ARRAY slots zeroed, and what the
datapath wrote itself surviving every audit."""
import errno
import os
from collections import Counter

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from dfxdp import build
from dfxdp.bench import datapath as world
from dfxdp.controller.apps import APPS, Entry
from dfxdp.controller.reconciler import Reconciler
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.datapath import libbpf
from dfxdp.datapath.pipeline import Pipeline
from dfxdp.datapath.pktrun import run_packet


class CountingLib:
    """libbpf with its map calls counted; `refuse` names batch calls answered as a
    kernel without that batch would (ENOTSUPP)."""

    def __init__(self, real, refuse=()):
        self.real, self.calls, self.refuse = real, Counter(), set(refuse)

    def __getattr__(self, name):
        fn = getattr(self.real, name)
        if not name.startswith("bpf_map_"):
            return fn

        def counted(*args):
            self.calls[name] += 1
            return -libbpf.ENOTSUPP if name in self.refuse else fn(*args)
        return counted


@pytest.fixture
def counting(monkeypatch):
    def install(refuse=()):
        counter = CountingLib(libbpf.lib, refuse)
        monkeypatch.setattr(libbpf, "lib", counter)
        monkeypatch.setattr(libbpf, "_NO_BATCH", set())  # what this test's "kernel" refuses stays here
        return counter
    return install


def bench_world(rules=200):
    """The bench's world (L2, a router, a floating IP, a security group of `rules`
    rules, port security) on made-up interface numbers: only maps are written here."""
    return world.view({"a": 1001, "b": 1002, "c": 1003, "und": 1004, "ext": 1005}, rules=rules)


def owned_maps():
    return [name for cls in APPS for name in cls.maps]


def test_batched_apply_writes_what_per_entry_writes_did(pipeline, bpffs_dir, counting):
    view = bench_world()
    control = build_datapath_control(pipeline.maps)
    by_hand = Pipeline(bpffs_dir / "by-hand").load()
    try:
        entries = list(control.desired(view))
        for entry in entries:  # the reference: typed, one update each
            by_hand.maps[entry.map].update(entry.key, entry.value)
        lib = counting()
        result = control.reconciler.apply(entries)
        assert not result.errors and result.written == len({(e.map, str(e.key)) for e in entries})
        for name in owned_maps():
            assert pipeline.maps[name].raw_items() == by_hand.maps[name].raw_items(), name
    finally:
        by_hand.destroy()
    written = {e.map for e in entries}
    assert len(written) >= 10  # every app had something to write
    assert lib.calls["bpf_map_update_batch"] == len(written)
    # one element write: the fast path's generation, once the pass is in
    assert lib.calls["bpf_map_update_elem"] == 1 and lib.calls["bpf_map_delete_batch"] == 0


def test_where_the_kernel_has_no_batch_entries_go_one_by_one(pipeline, counting):
    control = build_datapath_control(pipeline.maps)
    entries = list(control.desired(bench_world(rules=20)))
    lib = counting(refuse={"bpf_map_update_batch", "bpf_map_delete_batch"})
    assert not control.reconciler.apply(entries).errors
    types = {pipeline.maps[e.map].info.type for e in entries}
    # asked once per map type (HASH, LPM_TRIE), then remembered
    assert lib.calls["bpf_map_update_batch"] == len(types) == 2
    # one by one, then the fast path's generation
    assert lib.calls["bpf_map_update_elem"] == len({(e.map, str(e.key)) for e in entries}) + 1
    fewer = [e for e in entries if e.map != "fdb"]
    assert control.reconciler.apply(fewer).removed == sum(e.map == "fdb" for e in entries)
    assert lib.calls["bpf_map_delete_batch"] == 1 and pipeline.maps["fdb"].raw_items() == {}


def test_an_entry_the_kernel_refuses_is_reported_and_the_rest_written(pipeline):
    rec = Reconciler(pipeline.maps, ["routes"])
    base = libbpf.lib.ROUTE_PREFIX_BASE

    def route(prefixlen, dst):
        return Entry("routes", {"prefixlen": prefixlen, "router_key": 7, "dst": dst}, {"out_net_key": dst})

    bad = route(base + 33, 3)  # longer than the key: the kernel says EINVAL
    result = rec.apply([route(base + 24, 1), route(base + 24, 2), bad, route(base + 24, 4)])
    bad_key = pipeline.maps["routes"].encode_key(bad.key).hex()
    assert result.errors == [f"write in routes, key {bad_key}: {os.strerror(errno.EINVAL)}"]
    assert result.written == 3
    assert sorted(k.dst for k in pipeline.maps["routes"].keys()) == [1, 2, 4]


ARRAY_OBJECT = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "maps/port.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct port_record);
} slots SEC(".maps");

SEC("xdp") int read_slot(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct port_record *r = bpf_map_lookup_elem(&slots, &zero);

	return r && r->flags ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
"""


def test_array_map_owned_by_an_app_stale_slot_zeroed(tmp_path):
    src, obj = tmp_path / "slots.c", tmp_path / "slots.o"
    src.write_text(ARRAY_OBJECT)
    build.compile_one(src, obj)
    with libbpf.BpfObject(obj).load() as loaded:
        slots = loaded.maps["slots"]
        assert slots.is_array
        rec = Reconciler(loaded.maps, ["slots"], audit_interval=3600)
        first = rec.apply([Entry("slots", 1, {"net_key": 5, "flags": 1}), Entry("slots", 2, {"net_key": 6})])
        assert (first.written, first.errors) == (2, [])
        second = rec.apply([Entry("slots", 1, {"net_key": 5, "flags": 1})])
        assert (second.written, second.removed, second.errors) == (0, 1, [])
        assert libbpf.to_dict(slots.lookup(2)) == libbpf.to_dict(slots.lookup(7))  # zero, like a slot never used
        assert libbpf.to_dict(slots.lookup(1))["net_key"] == 5
        # read back: eight slots, one in use, nothing to do
        assert not rec.apply([Entry("slots", 1, {"net_key": 5, "flags": 1})], audit=True).changed
        outside = rec.apply([Entry("slots", 1, {"net_key": 5, "flags": 1}), Entry("slots", 8, {"net_key": 9})])
        assert outside.errors == [f"write in slots, key 08000000: {os.strerror(errno.E2BIG)}"]


def test_what_the_datapath_wrote_survives_every_audit(pipeline, test_iface):
    ifs = {name: test_iface()[1] for name in ("a", "b", "c", "und", "ext")}
    view = world.view(ifs, rules=3)  # port b filtered: stateful security group
    control = build_datapath_control(pipeline.maps, audit_interval=0)
    assert not control.apply(view).errors
    # the datapath learns an outside host's MAC and tracks a flow of port b
    inbound = Ether(src=world.OUTSIDE, dst=world.FIP_MAC) / IP(src="198.19.0.9", dst="198.19.0.20") / TCP()
    assert run_packet(pipeline, inbound, ingress_ifindex=ifs["ext"]).verdict == "XDP_REDIRECT"
    outbound = Ether(src=world.B, dst=world.A) / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(flags="S")
    assert run_packet(pipeline, outbound, ingress_ifindex=ifs["b"]).verdict == "XDP_REDIRECT"
    datapath_written = [name for cls in APPS for name in cls.datapath_maps]
    before = {name: pipeline.maps[name].raw_items() for name in datapath_written}
    assert all(before[name] for name in ("ext_neigh", "conntrack", "sg_stats"))
    for _ in range(2):
        result = control.apply(view, audit=True)
        assert result.audited and not result.changed and not result.errors
    assert {name: pipeline.maps[name].raw_items() for name in datapath_written} == before
    # what the declaration protects: an owner of ext_neigh would have judged the learned entry stale
    assert Reconciler(pipeline.maps, ["ext_neigh"]).apply([]).removed == 1


# Maps that are no app's state: the punt path's (controller/punt.py) ring, the per-port buckets
# the datapath fills and the limit an operator sets; PROG_ARRAYs (the Pipeline's stage slots).
# the punt path's, and the fast path's cache and generation (written after every change: dfxdp/datapath/fastpath.py)
NOT_APP_STATE = {"punt_ring", "punt_buckets", "punt_limit", "fast_flows", "fast_gen", "fast_pending", "fast_stats"}


def test_every_pipeline_map_is_declared_by_one_app(pipeline):
    declared = Counter(name for cls in APPS for name in cls.maps + cls.datapath_maps)
    assert [name for name, n in declared.items() if n > 1] == []
    undeclared = [name for name, m in pipeline.maps.items() if name not in declared.keys() | NOT_APP_STATE
                  and m.info.type != libbpf.BPF_MAP_TYPE_PROG_ARRAY]
    assert undeclared == [], "list each in an app's maps (it owns them) or datapath_maps (the datapath writes them)"
