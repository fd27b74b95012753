/* ARP for IPv4 over Ethernet, and the responder answering from `arp_table`. */
#ifndef DFXDP_LIB_ARP_H
#define DFXDP_LIB_ARP_H

#include "parse.h"
#include "l2_maps.h"

#define ARPOP_REQUEST_BE bpf_htons(1)
#define ARPOP_REPLY_BE bpf_htons(2)

/* Addresses as byte arrays: the IPv4 fields are not 4-byte aligned. */
struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
};

static __always_inline struct arp_ipv4 *arp_header(struct xdp_md *ctx)
{
	struct arp_ipv4 *arp = frame_at(ctx, sizeof(struct ethhdr), sizeof(*arp));

	if (!arp || arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != 6 || arp->plen != 4)
		return NULL;
	return arp;
}

/* Turn an ARP request for a known IP of the network into its reply, in place.
 * Returns 1 when the frame is now a reply to send back to the asker. */
static __always_inline int arp_respond(struct xdp_md *ctx, __u32 net_key)
{
	struct ethhdr *eth = frame_at(ctx, 0, sizeof(*eth));
	struct arp_ipv4 *arp = arp_header(ctx);
	struct arp_key key = { .net_key = net_key };
	struct arp_entry *answer;
	__u8 asked[4];

	if (!eth || !arp || arp->oper != ARPOP_REQUEST_BE)
		return 0;
	__builtin_memcpy(&key.ip, arp->tpa, 4);
	answer = bpf_map_lookup_elem(&arp_table, &key);
	if (!answer)
		return 0;
	__builtin_memcpy(asked, arp->tpa, 4);
	arp->oper = ARPOP_REPLY_BE;
	__builtin_memcpy(arp->tha, arp->sha, 6);
	__builtin_memcpy(arp->tpa, arp->spa, 4);
	__builtin_memcpy(arp->sha, answer->mac, 6);
	__builtin_memcpy(arp->spa, asked, 4);
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, answer->mac, 6);
	return 1;
}

#endif
