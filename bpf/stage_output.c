// SPDX-License-Identifier: GPL-2.0
/* The last stage: hand the frame to its local port, or tunnel it to the
 * chassis hosting the destination — if it fits the underlay once
 * encapsulated; if not, path-MTU discovery gets its ICMP (see too_big). */
#include "lib/fastpath.h"
#include "lib/icmp.h"
#include "lib/pipeline.h"
#include "lib/vxlan.h"

/* A frame the tunnel cannot carry. IPv4 with DF: "fragmentation needed" with
 * the MTU that fits, from the router port it was routed by, else from the
 * network's address for the sender's subnet (net_mtu), sent back to the sender
 * like any frame to its port: its security groups judge it (a related error of
 * its own flow). Anything else is dropped: IPv4 without DF (XDP does not
 * fragment), IPv6 (no Packet Too Big until IPv6 lands), 802.1Q-tagged frames,
 * and what may get no ICMP error (RFC 1122) or has no address to get it from. */
static __always_inline int too_big(struct xdp_md *ctx, struct pkt_meta *m, struct tunnel_endpoint *ep)
{
	struct net_mtu_key key = { .prefixlen = NET_MTU_PREFIX_BASE + 32, .net_key = m->net_key };
	struct port_record *sender;
	struct ethhdr *eth;
	struct net_mtu *net;
	struct iphdr *ip;
	__u8 smac[6], dmac[6];
	__u32 mtu = vxlan_ip_mtu(ep);
	__be32 from;
	int err;

	eth = frame_at(ctx, 0, sizeof(*eth) + sizeof(*ip));
	if (!eth || eth->h_proto != ETH_P_IP_BE)
		return verdict(ctx, m, XDP_DROP, DROP_TOO_BIG);
	ip = (void *)(eth + 1);
	if (!(ip->frag_off & bpf_htons(IP_DF)) || !icmp_error_allowed(ctx, ip) ||
	    !frame_at(ctx, 0, sizeof(*eth) + ICMP_LONG_QUOTE_LEN))
		return verdict(ctx, m, XDP_DROP, DROP_TOO_BIG);
	key.addr = ip->saddr;
	net = bpf_map_lookup_elem(&net_mtu, &key);
	if (net && net->mtu && net->mtu < mtu)
		mtu = net->mtu;
	if (m->flags & PKT_F_ROUTED) {
		from = m->router_ip;
		__builtin_memcpy(smac, m->router_mac, 6);
		__builtin_memcpy(dmac, m->sender_mac, 6);
	} else {
		from = net ? net->icmp_src : 0;
		__builtin_memcpy(smac, eth->h_dest, 6);
		__builtin_memcpy(dmac, eth->h_source, 6);
	}
	if (!from)
		return verdict(ctx, m, XDP_DROP, DROP_TOO_BIG);
	m->flags &= ~PKT_F_FAST_PENDING; /* an answer of ours, not the flow's forwarding */

	count(&drop_stats, DROP_FRAG_NEEDED, ctx);
	err = icmp_frag_needed(ctx, from, mtu, smac, dmac);
	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	sender = bpf_map_lookup_elem(&if_config, &m->in_ifindex);
	if (sender)
		m->net_key = sender->net_key;
	m->dst_port_key = m->src_port_key;
	m->out_ifindex = m->in_ifindex;
	m->flags = (m->flags & ~PKT_F_DST_REMOTE) | PKT_F_DST_LOCAL;
	return next_stage(ctx, m, STAGE_SG_INGRESS);
}

SEC("xdp")
int stage_output(struct xdp_md *ctx)
{
	struct pkt_meta *m = pkt_meta_get();
	struct tunnel_endpoint *ep;
	int err;

	if (!m)
		return XDP_ABORTED;
	stage_enter(ctx, m, STAGE_OUTPUT);
	if (m->flags & PKT_F_DST_LOCAL) {
		/* routed out by an external NIC into a VLAN network: tagged (bpf/lib/vlan.h) */
		__u32 *vid = (m->flags & PKT_F_ROUTED) ? vlan_of(m->out_ifindex, m->net_key) : NULL;

		fast_record(ctx, m, vid ? *vid : 0);
		err = vid ? vlan_push(ctx, *vid) : 0;
		if (err)
			return verdict(ctx, m, XDP_DROP, err);
		return verdict(ctx, m, bpf_redirect(m->out_ifindex, 0), DROP_REDIRECT_FAILED);
	}
	if (m->flags & PKT_F_DST_REMOTE) {
		ep = bpf_map_lookup_elem(&tunnel_endpoints, &m->tunnel_dst);
		if (!ep)
			return verdict(ctx, m, XDP_DROP, DROP_NO_TUNNEL);
		if (!vxlan_fits(ctx, ep))
			return too_big(ctx, m, ep);
		fast_record(ctx, m, 0);
		err = vxlan_encap(ctx, ep, m->tunnel_dst, m->net_key);
		if (err)
			return verdict(ctx, m, XDP_DROP, err);
		m->out_ifindex = ep->ifindex;
		return verdict(ctx, m, bpf_redirect(ep->ifindex, 0), DROP_REDIRECT_FAILED);
	}
	return verdict(ctx, m, XDP_PASS, DROP_NONE);
}

char _license[] SEC("license") = "GPL";
