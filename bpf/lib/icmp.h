/* ICMP answers the datapath gives: echo replies from a router, time exceeded for
 * traceroute, fragmentation needed for path-MTU discovery. */
#ifndef DFXDP_LIB_ICMP_H
#define DFXDP_LIB_ICMP_H

#include "csum.h"
#include "parse.h"

#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4    /* code of ICMP_DEST_UNREACH */
#define ICMP_SOURCE_QUENCH 4
#define ICMP_REDIRECT 5
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETER_PROB 12
#define ICMP_QUOTE_LEN 28  /* the offending IPv4 header (no options) + 8 bytes */
/* As much of the offending packet as a 576-byte ICMP error holds (RFC 1812 4.3.2.3,
 * as Linux sends): the whole TCP header, which the sender's security groups read to
 * match the error with its connection. */
#define ICMP_LONG_QUOTE_LEN 548
#define IP_DF 0x4000

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

/* Ones' complement sum of `len` bytes at p (a multiple of 4, a constant, at most
 * 1024), unfolded; bpf_csum_diff sums at most 512 bytes a call. */
static __always_inline __u32 csum_of(void *p, const __u32 len)
{
	__s64 sum = bpf_csum_diff(NULL, 0, p, len > 512 ? 512 : len, 0);

	if (len > 512 && sum >= 0)
		sum = bpf_csum_diff(NULL, 0, p + 512, len - 512, sum);
	return sum < 0 ? 0 : sum; /* no error with these sizes */
}

/* Replace the frame, an untagged IPv4 packet, by an ICMP error about it sent
 * back to its source: Ethernet (smac -> dmac) + IPv4 from `from` + ICMP of
 * type/code (rest1, rest2: the header's last four bytes) + the first `quote`
 * bytes of the packet, which the frame must hold. smac and dmac must not point
 * into the frame (it moves). Returns 0 or a DROP_* reason. */
static __always_inline int icmp_error(struct xdp_md *ctx, __u8 type, __u8 code, __be16 rest1, __be16 rest2,
				      __be32 from, const __u8 *smac, const __u8 *dmac, const __u32 quote)
{
	__u32 want = sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct icmp_hdr) + quote;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct icmp_hdr *icmp;
	__be32 dst;

	ip = frame_at(ctx, sizeof(*eth), sizeof(*ip));
	if (!ip)
		return DROP_TRUNCATED;
	dst = ip->saddr;
	/* room for the new IPv4 + ICMP headers in front of the quoted packet */
	if (bpf_xdp_adjust_head(ctx, -(int)(sizeof(struct iphdr) + sizeof(struct icmp_hdr))))
		return DROP_MALFORMED;
	if (ctx->data_end - ctx->data > want &&
	    bpf_xdp_adjust_tail(ctx, (int)want - (int)(ctx->data_end - ctx->data)))
		return DROP_MALFORMED;
	eth = frame_at(ctx, 0, want);
	if (!eth)
		return DROP_TRUNCATED;
	ip = (void *)(eth + 1);
	icmp = (void *)(ip + 1);

	__builtin_memcpy(eth->h_dest, dmac, 6);
	__builtin_memcpy(eth->h_source, smac, 6);
	eth->h_proto = ETH_P_IP_BE;
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0xc0; /* network control */
	ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*icmp) + quote);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_ICMP;
	ip->saddr = from;
	ip->daddr = dst;
	ip->check = ipv4_hdr_csum(ip);

	icmp->type = type;
	icmp->code = code;
	icmp->checksum = 0;
	icmp->id = rest1;
	icmp->sequence = rest2;
	icmp->checksum = csum_fold(csum_of(icmp, sizeof(*icmp) + quote));
	return 0;
}

/* "Time exceeded" from `from` back to the sender, quoting 28 bytes. */
static __always_inline int icmp_time_exceeded(struct xdp_md *ctx, __be32 from)
{
	struct ethhdr *eth, old_eth;
	struct iphdr *ip;

	eth = frame_at(ctx, 0, sizeof(*eth) + sizeof(*ip));
	if (!eth)
		return DROP_TRUNCATED;
	ip = (void *)(eth + 1);
	if (ip->ihl != 5)
		return DROP_MALFORMED; /* options: 28 bytes would not reach the L4 ports */
	__builtin_memcpy(&old_eth, eth, sizeof(old_eth));
	return icmp_error(ctx, ICMP_TIME_EXCEEDED, 0, 0, 0, from, old_eth.h_dest, old_eth.h_source, ICMP_QUOTE_LEN);
}

/* "Fragmentation needed" carrying the next hop's `mtu` (RFC 1191), from `from`
 * (MAC smac) back to dmac. */
static __always_inline int icmp_frag_needed(struct xdp_md *ctx, __be32 from, __u16 mtu, const __u8 *smac,
					    const __u8 *dmac)
{
	return icmp_error(ctx, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, bpf_htons(mtu), from, smac, dmac,
			  ICMP_LONG_QUOTE_LEN);
}

/* May this IPv4 packet get an ICMP error back? Not when it is one itself, nor a
 * later fragment (RFC 1122 3.2.2), nor when its source is no host. */
static __always_inline int icmp_error_allowed(struct xdp_md *ctx, struct iphdr *ip)
{
	struct icmp_hdr *icmp;

	if (ip->frag_off & bpf_htons(0x1fff))
		return 0;
	if (!ip->saddr || (bpf_ntohl(ip->saddr) >> 28) >= 14) /* 0.0.0.0, multicast, reserved */
		return 0;
	if (ip->protocol != IPPROTO_ICMP)
		return 1;
	icmp = frame_at(ctx, sizeof(struct ethhdr) + ip->ihl * 4, sizeof(*icmp));
	if (!icmp)
		return 0;
	switch (icmp->type) {
	case ICMP_DEST_UNREACH:
	case ICMP_SOURCE_QUENCH:
	case ICMP_REDIRECT:
	case ICMP_TIME_EXCEEDED:
	case ICMP_PARAMETER_PROB:
		return 0;
	}
	return 1;
}

/* Before a routing hop rewrites the frame, note where an ICMP error about it
 * goes back to: its sender, from the router port it entered by. */
static __always_inline void icmp_note_hop(struct pkt_meta *m, struct ethhdr *eth, __be32 router_ip)
{
	m->router_ip = router_ip;
	__builtin_memcpy(m->sender_mac, eth->h_source, 6);
	__builtin_memcpy(m->router_mac, eth->h_dest, 6);
}

#endif
