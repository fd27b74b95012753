/* The L2 maps (structs in maps/l2.h), pinned by name and shared by every object. */
#ifndef DFXDP_LIB_L2_MAPS_H
#define DFXDP_LIB_L2_MAPS_H

#include "common.h"
#include "maps/l2.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, struct fdb_key);
	__type(value, struct fdb_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fdb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, struct arp_key);
	__type(value, struct arp_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} arp_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 131072);
	__type(key, struct portsec_key);
	__type(value, struct portsec_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} portsec SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, __be32);
	__type(value, struct tunnel_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tunnel_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct net_mtu_key);
	__type(value, struct net_mtu);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} net_mtu SEC(".maps");

#endif
