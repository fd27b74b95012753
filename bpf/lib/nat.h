/* Rewriting IPv4 addresses and L4 ports (floating IP and load balancer NAT) with checksum updates. */
#ifndef DFXDP_LIB_NAT_H
#define DFXDP_LIB_NAT_H

#include "csum.h"
#include "parse.h"

/* Replace *addr (ip->saddr or ip->daddr) by new, fixing the IP and TCP/UDP checksums. */
static __always_inline int nat_rewrite(struct xdp_md *ctx, struct iphdr *ip, __be32 *addr, __be32 new)
{
	__u32 l4 = sizeof(struct ethhdr) + ip->ihl * 4;
	__be32 old = *addr;

	if (ip->frag_off & bpf_htons(0x1fff))
		goto header; /* later fragments carry no L4 header */
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = frame_at(ctx, l4, sizeof(*tcp));

		if (!tcp)
			return DROP_TRUNCATED;
		tcp->check = csum_replace4(tcp->check, old, new);
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = frame_at(ctx, l4, sizeof(*udp));

		if (!udp)
			return DROP_TRUNCATED;
		if (udp->check) /* 0 means "no checksum" over IPv4 */
			udp->check = csum_replace4(udp->check, old, new) ?: 0xffff;
	}
header:
	ip->check = csum_replace4(ip->check, old, new);
	*addr = new;
	return 0;
}

/* Replace a TCP/UDP port (`dst`: the destination port, else the source port),
 * fixing the L4 checksum. The caller checked the frame is a first fragment. */
static __always_inline int nat_rewrite_port(struct xdp_md *ctx, struct iphdr *ip, int dst, __be16 new)
{
	__u32 l4 = sizeof(struct ethhdr) + ip->ihl * 4;
	__be16 old;

	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = frame_at(ctx, l4, sizeof(*tcp));

		if (!tcp)
			return DROP_TRUNCATED;
		old = dst ? tcp->dest : tcp->source;
		tcp->check = csum_replace2(tcp->check, old, new);
		if (dst)
			tcp->dest = new;
		else
			tcp->source = new;
		return 0;
	}
	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = frame_at(ctx, l4, sizeof(*udp));

		if (!udp)
			return DROP_TRUNCATED;
		old = dst ? udp->dest : udp->source;
		if (udp->check)
			udp->check = csum_replace2(udp->check, old, new) ?: 0xffff;
		if (dst)
			udp->dest = new;
		else
			udp->source = new;
		return 0;
	}
	return DROP_MALFORMED;
}

#endif
