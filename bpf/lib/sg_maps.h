/* Security group and conntrack maps (structs in maps/sg.h, maps/conntrack.h). */
#ifndef DFXDP_LIB_SG_MAPS_H
#define DFXDP_LIB_SG_MAPS_H

#include "common.h"
#include "maps/sg.h"
#include "maps/conntrack.h"

#ifndef CT_MAX_ENTRIES
#define CT_MAX_ENTRIES 262144
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, __u32);
	__type(value, struct sg_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sg_ports SEC(".maps");

/* Hashes, not tries: a lookup costs the same whatever the number of rules. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1048576);
	__type(key, struct sg_remote_key);
	__type(value, struct sg_class);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sg_remote SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1048576);
	__type(key, struct sg_l4_key);
	__type(value, struct sg_l4_set);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sg_l4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sg_stats_key);
	__type(value, struct sg_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sg_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CT_MAX_ENTRIES);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

#endif
