/* Picking a member for a new flow: a slot of the pool's ring (built by the
 * controller: Maglev for hashing pools, weighted round robin otherwise). */
#ifndef DFXDP_LIB_MAGLEV_H
#define DFXDP_LIB_MAGLEV_H

#include "jhash.h"
#include "lb_maps.h"

/* The ring slot of a new flow: by the source address alone, by the 5-tuple,
 * or the next position of this CPU's round-robin counter. */
static __always_inline __u32 lb_slot(const struct lb_flow_key *flow, __u32 flags)
{
	__u32 zero = 0, *position;

	if (flags & LB_F_HASH_SRC_IP)
		return jhash_3words(flow->saddr, 0, 0, 0) % LB_RING_SIZE;
	if (flags & LB_F_ROUND_ROBIN) {
		position = bpf_map_lookup_elem(&lb_rr_position, &zero);
		if (!position)
			return 0;
		*position = (*position + 1) % LB_RING_SIZE;
		return *position;
	}
	return jhash_3words(flow->saddr, flow->daddr,
			    ((__u32)flow->sport << 16 | flow->dport) ^ flow->proto, 0) % LB_RING_SIZE;
}

/* The member key in slot `slot` of ring `ring_key`; 0 when none. */
static __always_inline __u32 lb_ring_member(__u32 ring_key, __u32 slot)
{
	__u32 *member;
	void *ring;

	ring = bpf_map_lookup_elem(&lb_rings, &ring_key);
	if (!ring)
		return 0;
	member = bpf_map_lookup_elem(ring, &slot);
	return member ? *member : 0;
}

#endif
