/* The skeleton's maps, pinned by name so every object of a chassis (the
 * entries, each stage) and a restarted agent share one instance. */
#ifndef DFXDP_LIB_PIPELINE_MAPS_H
#define DFXDP_LIB_PIPELINE_MAPS_H

#include "common.h"
#include "maps/pipeline.h"
#include "maps/port.h"

/* ifindex -> what this interface is (port, underlay, external NIC). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, __u32);
	__type(value, struct port_record);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} if_config SEC(".maps");

/* Stage programs by slot (enum dfxdp_stage). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, STAGE_MAX);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stages SEC(".maps");

/* Metadata carried across tail calls. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pkt_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pkt_scratch SEC(".maps");

/* Frames that entered each stage (enum dfxdp_stage / dfxdp_stage_entry). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAGE_STATS_MAX);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stage_stats SEC(".maps");

/* Final verdicts by XDP action (XDP_ABORTED … XDP_REDIRECT). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} verdict_stats SEC(".maps");

/* Drops by reason (enum dfxdp_drop_reason). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_REASON_MAX);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} drop_stats SEC(".maps");

#endif
