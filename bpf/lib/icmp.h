/* ICMP answers a router gives: echo replies, and time exceeded for traceroute. */
#ifndef DFXDP_LIB_ICMP_H
#define DFXDP_LIB_ICMP_H

#include "csum.h"
#include "parse.h"

#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_QUOTE_LEN 28  /* the offending IPv4 header (no options) + 8 bytes */

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[6];

	__builtin_memcpy(tmp, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, eth->h_dest, 6);
	__builtin_memcpy(eth->h_dest, tmp, 6);
}

/* Turn an echo request to one of the router's addresses into its reply, in place. */
static __always_inline int icmp_echo_reply(struct xdp_md *ctx)
{
	struct ethhdr *eth = frame_at(ctx, 0, sizeof(*eth));
	struct iphdr *ip = frame_at(ctx, sizeof(*eth), sizeof(*ip));
	struct icmp_hdr *icmp;
	__be32 tmp;

	if (!eth || !ip)
		return DROP_TRUNCATED;
	icmp = frame_at(ctx, sizeof(*eth) + ip->ihl * 4, sizeof(*icmp));
	if (!icmp)
		return DROP_TRUNCATED;
	swap_macs(eth);
	tmp = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = tmp;
	ip->ttl = 64;
	ip->check = 0;
	ip->check = ipv4_hdr_csum(ip);
	icmp->type = ICMP_ECHO_REPLY;
	icmp->checksum = csum_replace2(icmp->checksum, bpf_htons(ICMP_ECHO_REQUEST << 8), bpf_htons(ICMP_ECHO_REPLY << 8));
	return 0;
}

/* Replace the frame by "time exceeded" from `from` back to its sender:
 * Ethernet + new IPv4 + ICMP + the first 28 bytes of the offending packet. */
static __always_inline int icmp_time_exceeded(struct xdp_md *ctx, __be32 from)
{
	struct ethhdr *eth, old_eth;
	struct iphdr *ip, *quoted;
	struct icmp_hdr *icmp;
	__u32 sum = 0, want;
	__be32 dst;

	eth = frame_at(ctx, 0, sizeof(*eth) + sizeof(*ip));
	if (!eth)
		return DROP_TRUNCATED;
	ip = (void *)(eth + 1);
	if (ip->ihl != 5)
		return DROP_MALFORMED; /* options: leave it to the kernel */
	__builtin_memcpy(&old_eth, eth, sizeof(old_eth));
	dst = ip->saddr;
	/* room for the new IPv4 + ICMP headers in front of the quoted packet */
	if (bpf_xdp_adjust_head(ctx, -(int)(sizeof(struct iphdr) + sizeof(struct icmp_hdr))))
		return DROP_MALFORMED;
	want = sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct icmp_hdr) + ICMP_QUOTE_LEN;
	if (ctx->data_end - ctx->data > want &&
	    bpf_xdp_adjust_tail(ctx, (int)want - (int)(ctx->data_end - ctx->data)))
		return DROP_MALFORMED;
	eth = frame_at(ctx, 0, want);
	if (!eth)
		return DROP_TRUNCATED;
	ip = (void *)(eth + 1);
	icmp = (void *)(ip + 1);
	quoted = (void *)(icmp + 1);

	__builtin_memcpy(eth->h_dest, old_eth.h_source, 6);
	__builtin_memcpy(eth->h_source, old_eth.h_dest, 6);
	eth->h_proto = ETH_P_IP_BE;
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0xc0; /* network control */
	ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*icmp) + ICMP_QUOTE_LEN);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_ICMP;
	ip->saddr = from;
	ip->daddr = dst;
	ip->check = ipv4_hdr_csum(ip);

	icmp->type = ICMP_TIME_EXCEEDED;
	icmp->code = 0;
	icmp->checksum = 0;
	icmp->id = 0;
	icmp->sequence = 0;
	{
		__u16 *words = (__u16 *)icmp;

#pragma unroll
		for (int i = 0; i < (int)(sizeof(*icmp) + ICMP_QUOTE_LEN) / 2; i++)
			sum += words[i];
	}
	icmp->checksum = csum_fold(sum);
	(void)quoted;
	return 0;
}

#endif
