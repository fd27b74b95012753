/* The DNS responder's maps (structs in maps/dns.h), pinned by name. */
#ifndef DFXDP_LIB_DNS_MAPS_H
#define DFXDP_LIB_DNS_MAPS_H

#include "common.h"
#include "maps/dns.h"
#include "maps/pipeline.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, struct dns_server_key);
	__type(value, struct dns_server);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dns_servers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct dns_name_key);
	__type(value, struct dns_name_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dns_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct dns_reverse_key);
	__type(value, struct dns_reverse_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dns_reverse SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_scratch);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dns_scratch SEC(".maps");

/* Queries by outcome (enum dns_stat). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNS_STAT_MAX);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dns_stats SEC(".maps");

#endif
