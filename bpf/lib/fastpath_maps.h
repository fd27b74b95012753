/* The fast path's maps (structs in maps/fastpath.h), pinned by name: the port entry
 * reads them, stage_output records into them, the agent writes the generation. */
#ifndef DFXDP_LIB_FASTPATH_MAPS_H
#define DFXDP_LIB_FASTPATH_MAPS_H

#include "common.h"
#include "maps/fastpath.h"
#include "maps/pipeline.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fast_key);
	__type(value, struct fast_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fast_flows SEC(".maps");

/* The generation of everything the cached decisions depend on; 0: fast path off. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fast_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fast_pending);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fast_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FAST_STAT_MAX);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fast_stats SEC(".maps");

#endif
