/* One routing hop in the frame itself (L3, and the load balancer's floating IPs). */
#ifndef DFXDP_LIB_HOP_H
#define DFXDP_LIB_HOP_H

#include "csum.h"
#include "parse.h"

/* New MACs, TTL - 1 with the checksum updated incrementally. */
static __always_inline int forward_hop(struct xdp_md *ctx, struct iphdr *ip, const __u8 *smac, const __u8 *dmac)
{
	struct ethhdr *eth = frame_at(ctx, 0, sizeof(*eth));

	if (!eth)
		return DROP_TRUNCATED;
	__builtin_memcpy(eth->h_source, smac, 6);
	__builtin_memcpy(eth->h_dest, dmac, 6);
	ip->check = csum_replace2(ip->check, bpf_htons(ip->ttl << 8), bpf_htons((ip->ttl - 1) << 8));
	ip->ttl--;
	return 0;
}

#endif
