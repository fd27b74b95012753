// SPDX-License-Identifier: GPL-2.0
/* Distributed L2: answer ARP for every IP known in the network, then send
 * unicast to the port's location: a local tap, or the chassis hosting it.
 * Lookups are keyed by network, so nothing crosses between networks here. */
#include "lib/arp.h"
#include "lib/mac.h"
#include "lib/pipeline.h"

SEC("xdp")
int stage_l2(struct xdp_md *ctx)
{
	struct pkt_meta *m = pkt_meta_get();
	struct fdb_key key = {};
	struct fdb_entry *dest;
	struct ethhdr *eth;

	if (!m)
		return XDP_ABORTED;
	stage_enter(ctx, m, STAGE_L2);
	eth = frame_at(ctx, 0, sizeof(*eth));
	if (!eth)
		return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);

	if (eth->h_proto == ETH_P_ARP_BE) {
		if (arp_respond(ctx, m->net_key))
			return reply_to_sender(ctx, m);
		return verdict(ctx, m, XDP_PASS, DROP_NONE);
	}
	if (mac_is_group(eth->h_dest))
		return verdict(ctx, m, XDP_PASS, DROP_NONE); /* broadcast/multicast: fallback */

	key.net_key = m->net_key;
	__builtin_memcpy(key.mac, eth->h_dest, 6);
	dest = bpf_map_lookup_elem(&fdb, &key);
	if (!dest)
		return verdict(ctx, m, XDP_PASS, DROP_NONE); /* unknown unicast: fallback */
	m->dst_port_key = dest->port_key;
	if (dest->flags & FDB_F_LOCAL) {
		m->out_ifindex = dest->ifindex;
		m->flags |= PKT_F_DST_LOCAL;
		return next_stage(ctx, m, STAGE_SG_INGRESS);
	}
	if (m->flags & PKT_F_FROM_UNDERLAY) /* never bounce a tunnelled frame back out */
		return verdict(ctx, m, XDP_DROP, DROP_NOT_LOCAL);
	m->tunnel_dst = dest->tunnel_ip;
	m->flags |= PKT_F_DST_REMOTE;
	return next_stage(ctx, m, STAGE_OUTPUT);
}

char _license[] SEC("license") = "GPL";
