/* Header access with the bounds check right before each use. */
#ifndef DFXDP_LIB_PARSE_H
#define DFXDP_LIB_PARSE_H

#include "common.h"
#include "maps/pipeline.h"

#define ETH_P_ARP_BE bpf_htons(ETH_P_ARP)
#define ETH_P_IP_BE bpf_htons(ETH_P_IP)
#define ETH_P_IPV6_BE bpf_htons(ETH_P_IPV6)

/* Pointer to `len` bytes at `off`, or NULL when they run past the frame. */
static __always_inline void *frame_at(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (off > 0xffff || data + off + len > data_end)
		return NULL;
	return data + off;
}

/* Offsets found by the entry's validation, valid until a stage rewrites headers. */
struct l3_view {
	struct ethhdr *eth;
	struct iphdr *ip;       /* NULL unless IPv4 */
	__u32 l4_off;           /* 0 unless IPv4 first fragment */
};

/* Validate the frame: returns 0, DROP_TRUNCATED or DROP_MALFORMED.
 * Frames that are not IPv4 are valid once their Ethernet header fits. */
static __always_inline int parse_frame(struct xdp_md *ctx, struct l3_view *v)
{
	struct ethhdr *eth = frame_at(ctx, 0, sizeof(*eth));
	struct iphdr *ip;
	__u32 ihl_len, tot_len, frame_len, l4_need;

	v->eth = eth;
	v->ip = NULL;
	v->l4_off = 0;
	if (!eth)
		return DROP_TRUNCATED;
	if (eth->h_proto == ETH_P_ARP_BE)
		return frame_at(ctx, sizeof(*eth), 28) ? 0 : DROP_TRUNCATED;
	if (eth->h_proto != ETH_P_IP_BE)
		return 0;

	ip = frame_at(ctx, sizeof(*eth), sizeof(*ip));
	if (!ip)
		return DROP_TRUNCATED;
	if (ip->version != 4 || ip->ihl < 5)
		return DROP_MALFORMED;
	ihl_len = ip->ihl * 4;
	tot_len = bpf_ntohs(ip->tot_len);
	frame_len = ctx->data_end - ctx->data;
	if (tot_len < ihl_len)
		return DROP_MALFORMED;
	if (sizeof(*eth) + tot_len > frame_len)
		return DROP_TRUNCATED;
	v->ip = ip;
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0; /* later fragments carry no L4 header */

	switch (ip->protocol) {
	case IPPROTO_TCP:
		l4_need = sizeof(struct tcphdr);
		break;
	case IPPROTO_UDP:
		l4_need = sizeof(struct udphdr);
		break;
	case IPPROTO_ICMP:
		l4_need = 8;
		break;
	default:
		l4_need = 0;
	}
	if (ihl_len + l4_need > tot_len)
		return DROP_TRUNCATED;
	v->l4_off = sizeof(*eth) + ihl_len;
	if (!frame_at(ctx, v->l4_off, l4_need))
		return DROP_TRUNCATED;
	return 0;
}

#endif
