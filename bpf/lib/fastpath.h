/* The established-flow fast path (structs in maps/fastpath.h).
 *
 * A frame of a flow the stages already forwarded is forwarded again by one lookup
 * in `fast_flows`, keyed by the frame as it arrives (interface, MACs, addresses,
 * ports, protocol): the entry holds what the stage chain did to it (NAT, the
 * routed hop's MACs and TTL) and where it went (a local port, a VLAN tag, a
 * tunnel), so port security, the security groups' policy and conntrack, the
 * route, the neighbour and the port records are not looked up again.
 *
 * The stages fill the entry as they decide (fast_note at the entry, fast_record
 * in stage_output). A decision is only cached when it holds for the flow's next
 * frames too: a TCP segment without SYN, FIN or RST of an established connection,
 * or UDP; not through a user hook; not a reply the datapath built itself.
 *
 * It fails closed: an entry is used only while
 * - `fast_gen` still holds the generation read before the stages decided: every
 *   writer of a map a decision depends on (the agent's reconciler, the conntrack
 *   upkeep that ends flows, hooks, a new pipeline) writes a new generation after
 *   its change (dfxdp/datapath/fastpath.py), and generation 0 turns the fast path off;
 * - it is younger than FAST_REVALIDATE_NS: then the stages decide again, stamp the
 *   flow's conntrack entries and record anew;
 * - what the datapath learns itself still agrees: the external neighbour a frame's
 *   MAC came from, the source MAC of a frame from the external NIC;
 * and the frame is one whose own fields do not change the decision (TTL > 1, fits
 * the tunnel). Anything else goes through the stages, which record again. */
#ifndef DFXDP_LIB_FASTPATH_H
#define DFXDP_LIB_FASTPATH_H

#include "fastpath_maps.h"
#include "hop.h"
#include "l3_maps.h"
#include "mac.h"
#include "nat.h"
#include "pipeline.h"
#include "sg.h"
#include "vxlan.h"

#define FAST_TCP_CONTROL (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST)

#define FAST_KEY_CONTROL 1

/* The key of a frame the fast path may take: IPv4 TCP or UDP, a first fragment, a
 * TTL the hop may decrement. Returns 0 when it may; FAST_KEY_CONTROL for a TCP SYN,
 * FIN or RST (key filled: they move conntrack's state, and a SYN may start a new
 * connection on the same ports, which the load balancer sends to another member);
 * -1 for anything else. */
static __always_inline int fast_key_of(struct xdp_md *ctx, const struct l3_view *v, struct fast_key *k)
{
	struct iphdr *ip = v->ip;
	__u8 *tcp_flags = NULL;
	__be16 *ports;

	if (!ip || !v->l4_off || ip->ttl <= 1)
		return -1;
	if (ip->protocol == IPPROTO_TCP) {
		tcp_flags = frame_at(ctx, v->l4_off + 13, 1);
		if (!tcp_flags)
			return -1;
	} else if (ip->protocol != IPPROTO_UDP) {
		return -1;
	}
	ports = frame_at(ctx, v->l4_off, 4); /* checked by parse_frame; again for the verifier */
	if (!ports)
		return -1;
	__builtin_memset(k, 0, sizeof(*k));
	k->ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(k->smac, v->eth->h_source, 6);
	__builtin_memcpy(k->dmac, v->eth->h_dest, 6);
	k->saddr = ip->saddr;
	k->daddr = ip->daddr;
	k->sport = ports[0];
	k->dport = ports[1];
	k->proto = ip->protocol;
	return tcp_flags && (*tcp_flags & FAST_TCP_CONTROL) ? FAST_KEY_CONTROL : 0;
}

static __always_inline __u64 fast_generation(void)
{
	__u32 zero = 0;
	__u64 *gen = bpf_map_lookup_elem(&fast_gen, &zero);

	return gen ? *gen : 0;
}

/* Does the learned neighbour `ip` still have this MAC? */
static __always_inline int fast_neigh_is(__be32 ip, const __u8 *mac)
{
	struct arp_entry *n = bpf_map_lookup_elem(&ext_neigh, &ip);

	return n && mac_eq(n->mac, mac);
}

/* The cached decision applied to the frame, in the stages' order: the load
 * balancer's port, the NATed address, the hop (MACs, TTL). The same helpers as the
 * stages, in the same order: the same bytes. Returns 0 or a DROP_* reason. */
static __always_inline int fast_rewrite(struct xdp_md *ctx, const struct fast_entry *e)
{
	struct ethhdr *eth = frame_at(ctx, 0, sizeof(*eth) + sizeof(struct iphdr));
	struct iphdr *ip;
	int err;

	if (!eth)
		return DROP_TRUNCATED;
	ip = (void *)(eth + 1);
	if (e->flags & FAST_F_NAT_PORT) {
		err = nat_rewrite_port(ctx, ip, !!(e->flags & FAST_F_NAT_DST), e->nat_port);
		if (err)
			return err;
	}
	if (e->flags & (FAST_F_NAT_SRC | FAST_F_NAT_DST)) {
		err = nat_rewrite(ctx, ip, (e->flags & FAST_F_NAT_SRC) ? &ip->saddr : &ip->daddr, e->nat_addr);
		if (err)
			return err;
	}
	if (e->flags & FAST_F_TTL)
		return forward_hop(ctx, ip, e->smac, e->dmac);
	__builtin_memcpy(eth->h_source, e->smac, 6);
	__builtin_memcpy(eth->h_dest, e->dmac, 6);
	return 0;
}

/* Remember the frame as it arrived, so stage_output can cache what the stages decide. */
static __always_inline void fast_note(struct pkt_meta *m, const struct l3_view *v, const struct fast_key *k,
				      __u64 generation)
{
	__u32 zero = 0;
	struct fast_pending *p = bpf_map_lookup_elem(&fast_pending, &zero);

	if (!p || !generation)
		return;
	p->key = *k;
	p->generation = generation;
	__builtin_memcpy(p->ip_head, v->ip, sizeof(p->ip_head));
	m->flags |= PKT_F_FAST_PENDING;
}

/* The port entry's fast path: the frame forwarded from its flow's entry (an XDP
 * verdict), or -1 to go through the stages (which may record the flow). */
static __always_inline int fast_forward(struct xdp_md *ctx, struct pkt_meta *m, const struct l3_view *v)
{
	__u64 generation = fast_generation();
	struct tunnel_endpoint *ep = NULL;
	struct fast_entry *e;
	struct fast_key k;
	int err;

	if (!generation)
		return -1; /* off: nothing is used, and entries of an older generation never will be */
	err = fast_key_of(ctx, v, &k);
	if (err == FAST_KEY_CONTROL) {
		/* the stages decide it, and the flow's next frames too: what they decide
		 * for them may differ from now on (a new member, a closing connection). A
		 * lookup first: a delete takes the bucket's lock even when nothing is there */
		if (bpf_map_lookup_elem(&fast_flows, &k))
			bpf_map_delete_elem(&fast_flows, &k);
		return -1;
	}
	if (err)
		return -1;
	e = bpf_map_lookup_elem(&fast_flows, &k);
	if (!e) {
		count(&fast_stats, FAST_MISS, ctx);
		fast_note(m, v, &k, generation);
		return -1;
	}
	if (e->generation != generation ||
	    (__s64)(bpf_ktime_get_coarse_ns() - e->decided_ns) > (__s64)FAST_REVALIDATE_NS) {
		count(&fast_stats, FAST_STALE, ctx);
		fast_note(m, v, &k, generation);
		return -1;
	}
	if (e->flags & FAST_F_TUNNEL) {
		ep = bpf_map_lookup_elem(&tunnel_endpoints, &e->tunnel_dst);
		if (!ep || !vxlan_fits(ctx, ep))
			goto recheck; /* the stages drop it, or answer "fragmentation needed" */
	}
	if (((e->flags & FAST_F_LEARNED_SRC) && !fast_neigh_is(k.saddr, k.smac)) ||
	    ((e->flags & FAST_F_LEARNED_DST) && !fast_neigh_is(e->neigh_ip, e->dmac)))
		goto recheck; /* the stages learn the new MAC, or find none */

	/* every check passed: from here on the frame is written */
	m->flags |= PKT_F_FAST | ((e->flags & FAST_F_ROUTED) ? PKT_F_ROUTED : 0);
	m->net_key = e->net_key;
	m->src_port_key = e->src_port_key;
	m->dst_port_key = e->dst_port_key;
	count(&fast_stats, FAST_HIT, ctx);
	if (e->flags & FAST_F_SG_EGRESS)
		sg_count(ctx, e->src_port_key, SG_EGRESS, 1);
	if (e->flags & FAST_F_SG_INGRESS)
		sg_count(ctx, e->dst_port_key, SG_INGRESS, 1);
	err = fast_rewrite(ctx, e);
	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	if (ep) {
		m->flags |= PKT_F_DST_REMOTE;
		m->tunnel_dst = e->tunnel_dst;
		err = vxlan_encap(ctx, ep, e->tunnel_dst, e->net_key);
		if (err)
			return verdict(ctx, m, XDP_DROP, err);
		m->out_ifindex = ep->ifindex;
		return verdict(ctx, m, bpf_redirect(ep->ifindex, 0), DROP_REDIRECT_FAILED);
	}
	m->flags |= PKT_F_DST_LOCAL;
	m->out_ifindex = e->out_ifindex;
	err = (e->flags & FAST_F_VLAN) ? vlan_push(ctx, e->vlan_id) : 0;
	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	return verdict(ctx, m, bpf_redirect(e->out_ifindex, 0), DROP_REDIRECT_FAILED);

recheck:
	count(&fast_stats, FAST_RECHECK, ctx);
	fast_note(m, v, &k, generation);
	return -1;
}

/* The frame's rewrite since it arrived as `p`, as fast_rewrite would repeat it: an
 * address (and that side's port) NATed, the TTL decremented, the MACs. Returns 0
 * when the rewrite is one of those, -1 for anything else (never cached). */
static __always_inline int fast_diff(struct xdp_md *ctx, const struct fast_pending *p, struct fast_entry *e)
{
	struct ethhdr *eth = frame_at(ctx, 0, sizeof(*eth) + sizeof(struct iphdr));
	const struct fast_key *k = &p->key;
	const __be16 *was;
	struct iphdr *ip;
	__be16 *ports, *head;
	int src, dst;

	if (!eth || eth->h_proto != ETH_P_IP_BE)
		return -1;
	ip = (void *)(eth + 1);
	head = (__be16 *)ip;
	was = (const __be16 *)p->ip_head;
	/* version/IHL, TOS, length, id, fragment, protocol as they came; the TTL as it came or one less */
	if (head[0] != was[0] || head[1] != was[1] || head[2] != was[2] || head[3] != was[3] ||
	    ip->protocol != p->ip_head[9])
		return -1;
	if (ip->ttl == p->ip_head[8] - 1)
		e->flags |= FAST_F_TTL | FAST_F_ROUTED;
	else if (ip->ttl != p->ip_head[8])
		return -1;
	ports = frame_at(ctx, sizeof(*eth) + ip->ihl * 4, 4);
	if (!ports)
		return -1;
	src = ip->saddr != k->saddr;
	dst = ip->daddr != k->daddr;
	if (src && dst)
		return -1;
	if (src || dst) {
		e->flags |= src ? FAST_F_NAT_SRC : FAST_F_NAT_DST;
		e->nat_addr = src ? ip->saddr : ip->daddr;
	}
	if (ports[0] != k->sport || ports[1] != k->dport) {
		/* a port NATed only with its own side's address (the load balancer) */
		if ((ports[0] != k->sport && !src) || (ports[1] != k->dport && !dst))
			return -1;
		e->flags |= FAST_F_NAT_PORT;
		e->nat_port = src ? ports[0] : ports[1];
	}
	__builtin_memcpy(e->smac, eth->h_source, 6);
	__builtin_memcpy(e->dmac, eth->h_dest, 6);
	return 0;
}

#define FAST_HOOK_STAGES ((1u << STAGE_HOOK_0) | (1u << STAGE_HOOK_1) | (1u << STAGE_HOOK_2) | (1u << STAGE_HOOK_3))

/* stage_output, before the frame is tagged or encapsulated: cache what the stages
 * decided for this flow, when they noted it may be (PKT_F_FAST_PENDING, cleared by
 * a stage whose verdict would not hold for the flow's next frames). */
static __always_inline void fast_record(struct xdp_md *ctx, struct pkt_meta *m, __u32 vlan_id)
{
	struct fast_entry e = {};
	struct fast_pending *p;
	struct port_record *in;
	__u32 zero = 0;

	if (!(m->flags & PKT_F_FAST_PENDING) || (m->stages_seen & FAST_HOOK_STAGES))
		return; /* a user hook decides per frame: it sees every one */
	m->flags &= ~PKT_F_FAST_PENDING;
	p = bpf_map_lookup_elem(&fast_pending, &zero);
	if (!p || fast_diff(ctx, p, &e))
		return;
	e.generation = p->generation;
	e.decided_ns = bpf_ktime_get_coarse_ns();
	e.net_key = m->net_key;
	e.src_port_key = m->src_port_key;
	e.dst_port_key = m->dst_port_key;
	if (m->flags & PKT_F_ROUTED)
		e.flags |= FAST_F_ROUTED;
	if (m->flags & PKT_F_SG_EGRESS_OK)
		e.flags |= FAST_F_SG_EGRESS;
	if (m->flags & PKT_F_SG_INGRESS_OK)
		e.flags |= FAST_F_SG_INGRESS;
	if (m->learned_nexthop) {
		e.flags |= FAST_F_LEARNED_DST;
		e.neigh_ip = m->learned_nexthop;
	}
	in = bpf_map_lookup_elem(&if_config, &m->in_ifindex);
	if (!in)
		return;
	if ((in->flags & IF_F_EXTERNAL) && (m->flags & PKT_F_ROUTED))
		e.flags |= FAST_F_LEARNED_SRC; /* stage_l3 learned it: a frame from another MAC must learn again */
	if (m->flags & PKT_F_DST_REMOTE) {
		e.flags |= FAST_F_TUNNEL;
		e.tunnel_dst = m->tunnel_dst;
	} else {
		e.flags |= FAST_F_LOCAL | (vlan_id ? FAST_F_VLAN : 0);
		e.out_ifindex = m->out_ifindex;
		e.vlan_id = vlan_id;
	}
	if (bpf_map_update_elem(&fast_flows, &p->key, &e, BPF_ANY) == 0)
		count(&fast_stats, FAST_RECORDED, ctx);
}

#endif
