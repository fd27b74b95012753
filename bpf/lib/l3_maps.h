/* The routing maps (structs in maps/l3.h), pinned by name. */
#ifndef DFXDP_LIB_L3_MAPS_H
#define DFXDP_LIB_L3_MAPS_H

#include "common.h"
#include "maps/l2.h"
#include "maps/l3.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, struct router_port_key);
	__type(value, struct router_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} router_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, struct router_ip_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} router_ips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct route_key);
	__type(value, struct route);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, __be32);
	__type(value, struct fip_dnat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fip_dnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, struct fip_snat_key);
	__type(value, struct fip_snat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fip_snat SEC(".maps");

/* External hosts' MACs, learned from what arrives on the external NIC. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __be32);
	__type(value, struct arp_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ext_neigh SEC(".maps");

#endif
