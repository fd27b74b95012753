"""Which pipeline hash maps preallocate their elements: those XDP updates on the packet path
must (an allocation there is slow and can fail under memory pressure); those only the agent
writes must not (preallocating every element is most of a new chassis' pipeline load)."""
import re

from dfxdp.build import BPF_SRC
from dfxdp.datapath import libbpf

BPF_F_NO_PREALLOC = 1  # include/uapi/linux/bpf.h
HASH_TYPES = {1, 5}  # HASH, PERCPU_HASH (LRU hashes always preallocate; the kernel refuses the flag)
AGENT_WRITTEN = {"fdb", "arp_table", "tunnel_endpoints", "router_ports", "router_ips", "fip_dnat", "fip_snat",
                 "lb_vips", "lb_backends", "lb_fip_out", "lb_fip_return", "if_config", "sg_ports", "dns_servers",
                 "ext_vlan_in", "ext_vlan_out", "dns_names", "dns_reverse", "sg_remote"}


def _updated_by_xdp() -> set[str]:
    """The maps a program in bpf/ updates or deletes from."""
    text = "\n".join(p.read_text() for p in sorted(BPF_SRC.rglob("*.[ch]")))
    return set(re.findall(r"bpf_map_(?:update|delete)_elem\(\s*&(\w+)", text))


def _flags(pipeline) -> dict[str, tuple[int, int]]:
    return {name: (m.info.type, m.info.map_flags) for name, m in pipeline.maps.items()}


def test_maps_xdp_updates_are_preallocated(pipeline):
    flags = _flags(pipeline)
    updated = _updated_by_xdp() & set(flags)
    assert {"conntrack", "sg_stats", "lb_flows", "fast_flows"} <= updated  # the scan finds the writers
    assert {name for name in updated if flags[name][1] & BPF_F_NO_PREALLOC} == set()
    assert not updated & AGENT_WRITTEN


def test_maps_only_the_agent_writes_are_not_preallocated(pipeline):
    flags = _flags(pipeline)
    assert AGENT_WRITTEN <= set(flags)
    assert {name for name in AGENT_WRITTEN if not flags[name][1] & BPF_F_NO_PREALLOC} == set()
    # every other hash map is one XDP updates (a new agent-only map joins AGENT_WRITTEN)
    preallocated = {name for name, (kind, fl) in flags.items() if kind in HASH_TYPES and not fl & BPF_F_NO_PREALLOC}
    assert preallocated <= _updated_by_xdp()


def test_a_pin_of_the_preallocated_fdb_is_recreated(bpffs_dir):
    """An agent of the previous release pinned fdb preallocated: the new pipeline replaces the
    pin (to be refilled) instead of refusing to start or keeping the old flags."""
    import subprocess

    from dfxdp.datapath.libbpf import ffi
    from dfxdp.datapath.pipeline import Pipeline

    chassis = bpffs_dir / "upgraded"
    (chassis / "maps").mkdir(parents=True)
    key, value = ffi.sizeof("struct fdb_key"), ffi.sizeof("struct fdb_entry")
    subprocess.run(["bpftool", "map", "create", str(chassis / "maps" / "fdb"), "type", "hash", "key", str(key),
                    "value", str(value), "entries", "262144", "name", "fdb"], check=True)
    pipe = Pipeline(chassis).load()
    try:
        assert pipe.replaced_maps == {"fdb": f"map_flags 0 -> {BPF_F_NO_PREALLOC}"} and not pipe.live
        pinned = libbpf.Map.pinned(chassis / "maps" / "fdb")
        try:
            assert pinned.info.map_flags & BPF_F_NO_PREALLOC
        finally:
            pinned.close()
    finally:
        pipe.destroy()
