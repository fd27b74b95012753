/* The load balancer's maps (structs in maps/lb.h), pinned by name. */
#ifndef DFXDP_LIB_LB_MAPS_H
#define DFXDP_LIB_LB_MAPS_H

#include "common.h"
#include "maps/lb.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, struct lb_vip_key);
	__type(value, struct lb_vip);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_vips SEC(".maps");

/* The inner map every ring is created as (the controller makes one per rebuild). */
struct lb_ring {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_RING_SIZE);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, LB_MAX_RINGS);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct lb_ring); /* last: a flexible array */
} lb_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, __u32);
	__type(value, struct lb_nat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backends SEC(".maps");

/* LRU: a full table forgets its oldest flows rather than refusing new ones
 * (a forgotten flow is steered again by the ring, mostly to the same member). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct lb_flow_key);
	__type(value, struct lb_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct lb_flow_key);
	__type(value, struct lb_nat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_reverse SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, __be32);
	__type(value, struct lb_fip_out);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_fip_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, struct lb_fip_return_key);
	__type(value, struct lb_fip_return);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_fip_return SEC(".maps");

/* A per-CPU new-flow counter: ROUND_ROBIN's position in its ring. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_rr_position SEC(".maps");

#endif
