// SPDX-License-Identifier: GPL-2.0
/* The L4 load balancer, at the client's chassis: VIPs answer ping (ARP is the
 * L2 stage's: the VIP port is in arp_table); a new flow to VIP:port gets a
 * member from its pool's ring, is pinned to it in `lb_flows` and DNATed; the
 * member's replies are matched in `lb_reverse` and leave as the VIP's. Members
 * may live on any chassis: after DNAT the frame goes on to L3/L2 as any other,
 * and replies from another chassis come back here through the underlay entry.
 * A floating IP on the VIP's port is balanced at the chassis hosting it (see
 * maps/lb.h): its members' answers are sent out there, as the floating IP. */
#include "lib/hop.h"
#include "lib/icmp.h"
#include "lib/l2_maps.h"
#include "lib/l3_maps.h"
#include "lib/mac.h"
#include "lib/maglev.h"
#include "lib/nat.h"
#include "lib/pipeline.h"

/* Rewrite the source (reverse NAT) or destination (DNAT) address and port. */
static __always_inline int lb_nat(struct xdp_md *ctx, struct iphdr *ip, int dst, const struct lb_nat *to)
{
	int err = nat_rewrite_port(ctx, ip, dst, to->port);

	if (err)
		return err;
	return nat_rewrite(ctx, ip, dst ? &ip->daddr : &ip->saddr, to->addr);
}

/* A TCP SYN starts a connection: it picks its member anew even when its 5-tuple is
 * still remembered from an earlier connection (a client reusing a source port
 * must not be pinned to a member that has since failed or left). */
static __always_inline int opens_connection(struct xdp_md *ctx, struct iphdr *ip)
{
	struct tcphdr *tcp;

	if (ip->protocol != IPPROTO_TCP)
		return 0;
	tcp = frame_at(ctx, sizeof(struct ethhdr) + ip->ihl * 4, sizeof(*tcp));
	return tcp && tcp->syn && !tcp->ack;
}

#define NS_PER_SEC 1000000000ULL

/* The member an established flow keeps, or NULL when the frame starts a new flow:
 * none remembered, a TCP SYN, or a UDP flow idle for LB_UDP_IDLE_SEC. */
static __always_inline struct lb_flow *lb_established(struct xdp_md *ctx, struct iphdr *ip, struct lb_flow_key *key)
{
	struct lb_flow *flow;
	__u64 now;

	if (opens_connection(ctx, ip))
		return NULL;
	flow = bpf_map_lookup_elem(&lb_flows, key);
	if (!flow)
		return NULL;
	now = bpf_ktime_get_ns();
	if (ip->protocol == IPPROTO_UDP && now - flow->last_seen_ns > LB_UDP_IDLE_SEC * NS_PER_SEC)
		return NULL;
	if (now - flow->last_seen_ns > NS_PER_SEC) /* a write a second at most, not one a packet */
		flow->last_seen_ns = now;
	return flow;
}

/* A new flow: its member from the ring, remembered both ways. */
static __always_inline int lb_new_flow(struct lb_flow_key *flow, const struct lb_vip *vip, struct lb_nat *out)
{
	struct lb_flow_key back = {};
	struct lb_nat answer_as = {};
	struct lb_flow pinned = {};
	struct lb_nat *backend;
	__u32 member;

	member = lb_ring_member(vip->ring_key, lb_slot(flow, vip->flags));
	if (!member)
		return DROP_LB_NO_MEMBER;
	backend = bpf_map_lookup_elem(&lb_backends, &member);
	if (!backend)
		return DROP_LB_NO_MEMBER;
	*out = *backend;
	back.saddr = backend->addr;
	back.daddr = flow->saddr;
	back.sport = backend->port;
	back.dport = flow->sport;
	back.proto = flow->proto;
	answer_as.addr = flow->daddr;
	answer_as.port = flow->dport;
	if (vip->flags & LB_F_FLOATING) /* member -> VIP -> floating IP, composed into one rewrite */
		answer_as.flags = LB_NAT_F_FLOATING;
	/* the reverse entry first: the member's first answer must find it */
	bpf_map_update_elem(&lb_reverse, &back, &answer_as, BPF_ANY);
	pinned.member = *backend;
	pinned.last_seen_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&lb_flows, flow, &pinned, BPF_ANY);
	return 0;
}

/* The DNATed frame's next hop: the member itself when it shares the VIP's
 * network (the frame was sent to the VIP's MAC), else the VIP subnet's router.
 * Frames routed to the VIP keep the router's MAC: L3 routes them on. */
static __always_inline int lb_next_hop(struct xdp_md *ctx, struct pkt_meta *m, const struct lb_vip *vip, __be32 member)
{
	struct arp_key key = { .net_key = m->net_key, .ip = member };
	struct ethhdr *eth = frame_at(ctx, 0, sizeof(*eth));
	const __u8 *gw = vip->gw_mac;
	struct arp_entry *mac;

	if (!eth)
		return DROP_TRUNCATED;
	if (!mac_eq(eth->h_dest, vip->mac))
		return 0;
	mac = bpf_map_lookup_elem(&arp_table, &key);
	if (mac) {
		__builtin_memcpy(eth->h_dest, mac->mac, 6);
		return 0;
	}
	if (!(gw[0] | gw[1] | gw[2] | gw[3] | gw[4] | gw[5])) /* no router on the VIP subnet */
		return DROP_NO_ROUTE;
	__builtin_memcpy(eth->h_dest, vip->gw_mac, 6);
	return 0;
}

/* A member's answer as the floating IP its client reached: routed out of the
 * external NIC here, to the client's next hop as learned from its frames (L3's
 * ext_neigh). Unknown out interface or next hop: dropped, never leaked. */
static __always_inline int lb_fip_send_out(struct xdp_md *ctx, struct pkt_meta *m, struct iphdr *ip, __be32 fip)
{
	struct lb_fip_out *out = bpf_map_lookup_elem(&lb_fip_out, &fip);
	struct arp_entry *next;
	__be32 client = ip->daddr;
	int err;

	next = bpf_map_lookup_elem(&ext_neigh, &client);
	m->learned_nexthop = client; /* learned: the fast path checks it is still the MAC */
	if (!out || !next)
		return verdict(ctx, m, XDP_DROP, DROP_NO_ROUTE);
	if (ip->ttl <= 1) /* this is a routing hop: nothing leaves with a TTL of 0 */
		return verdict(ctx, m, XDP_DROP, DROP_TTL_EXCEEDED);
	err = forward_hop(ctx, ip, out->mac, next->mac);
	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	m->net_key = out->net_key;
	m->out_ifindex = out->ifindex;
	m->dst_port_key = 0;
	m->flags = (m->flags & ~PKT_F_DST_REMOTE) | PKT_F_ROUTED | PKT_F_DST_LOCAL;
	return next_stage(ctx, m, STAGE_OUTPUT);
}

/* Is this frame routed out of the external NIC (the router's own decision, as L3 makes it)? */
static __always_inline int lb_routed_outside(struct pkt_meta *m, struct ethhdr *eth, struct iphdr *ip)
{
	struct router_port_key pkey = { .net_key = m->net_key };
	struct route_key rkey = { .prefixlen = ROUTE_PREFIX_BASE + 32 };
	struct fip_snat_key own = { .net_key = m->net_key, .fixed_ip = ip->saddr };
	struct router_port *rp;
	struct route *r;

	__builtin_memcpy(pkey.mac, eth->h_dest, 6);
	rp = bpf_map_lookup_elem(&router_ports, &pkey);
	if (!rp)
		return 0;
	rkey.router_key = rp->router_key;
	rkey.dst = ip->daddr;
	r = bpf_map_lookup_elem(&routes, &rkey);
	/* a member with a floating IP of its own answers through it, as before */
	return r && (r->flags & ROUTE_F_EXTERNAL) && !bpf_map_lookup_elem(&fip_snat, &own);
}

/* A member answering an outside client that came through the VIP's floating IP
 * on another chassis: the flow is known there only, so the answer is tunnelled
 * there, to the floating IP's MAC on the external network (maps/lb.h). */
static __always_inline int lb_fip_return_home(struct xdp_md *ctx, struct pkt_meta *m, struct ethhdr *eth,
					      struct iphdr *ip, const struct lb_flow_key *flow)
{
	struct lb_fip_return_key key = { .net_key = m->net_key, .addr = flow->saddr, .port = flow->sport,
					 .proto = flow->proto };
	struct lb_fip_return *home = bpf_map_lookup_elem(&lb_fip_return, &key);

	if (!home || !lb_routed_outside(m, eth, ip))
		return -1;
	__builtin_memcpy(eth->h_dest, home->mac, 6);
	m->net_key = home->net_key;
	m->tunnel_dst = home->tunnel_ip;
	m->dst_port_key = 0;
	m->flags = (m->flags & ~PKT_F_DST_LOCAL) | PKT_F_DST_REMOTE;
	return next_stage(ctx, m, STAGE_OUTPUT);
}

/* On to the next stage. A decapsulated frame only gets its reverse NAT here, then
 * the client's security groups; one bound for the external NIC (a floating IP's
 * MAC) must have been a balanced flow's answer, sent out before: dropped. */
static __always_inline int lb_pass(struct xdp_md *ctx, struct pkt_meta *m)
{
	struct port_record *out;

	if (!(m->flags & PKT_F_FROM_UNDERLAY))
		return next_stage(ctx, m, STAGE_LB + 1);
	out = bpf_map_lookup_elem(&if_config, &m->out_ifindex);
	if (out && (out->flags & IF_F_EXTERNAL))
		return verdict(ctx, m, XDP_DROP, DROP_LB_NO_FLOW);
	return next_stage(ctx, m, STAGE_SG_INGRESS);
}

/* Served from this side? A floating IP's entries to frames from the external NIC only, a VIP's to the others. */
static __always_inline int lb_vip_serves(struct pkt_meta *m, const struct lb_vip *vip)
{
	struct port_record *in = bpf_map_lookup_elem(&if_config, &m->in_ifindex);
	int external = in && (in->flags & IF_F_EXTERNAL);

	return external == !!(vip->flags & LB_F_FLOATING);
}

SEC("xdp")
int stage_lb(struct xdp_md *ctx)
{
	struct pkt_meta *m = pkt_meta_get();
	struct lb_flow_key flow = {};
	struct lb_vip_key vkey = {};
	struct lb_flow *established;
	struct lb_nat *nat, chosen;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct lb_vip *vip;
	__be16 *ports;
	int err;

	if (!m)
		return XDP_ABORTED;
	stage_enter(ctx, m, STAGE_LB);
	eth = frame_at(ctx, 0, sizeof(*eth));
	if (!eth)
		return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);
	if (eth->h_proto != ETH_P_IP_BE)
		return lb_pass(ctx, m);
	ip = frame_at(ctx, sizeof(*eth), sizeof(*ip));
	if (!ip)
		return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);
	if (ip->frag_off & bpf_htons(0x1fff))
		return lb_pass(ctx, m); /* later fragments carry no ports */

	if (ip->protocol == IPPROTO_ICMP) {
		struct icmp_hdr *icmp = frame_at(ctx, sizeof(*eth) + ip->ihl * 4, sizeof(*icmp));

		vkey.vip = ip->daddr;
		vkey.proto = IPPROTO_ICMP;
		vip = bpf_map_lookup_elem(&lb_vips, &vkey);
		if (!(m->flags & PKT_F_FROM_UNDERLAY) && icmp && icmp->type == ICMP_ECHO_REQUEST && vip &&
		    lb_vip_serves(m, vip)) {
			err = icmp_echo_reply(ctx);
			if (err)
				return verdict(ctx, m, XDP_DROP, err);
			return reply_to_sender(ctx, m);
		}
		return lb_pass(ctx, m);
	}
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return lb_pass(ctx, m);
	ports = frame_at(ctx, sizeof(*eth) + ip->ihl * 4, 4); /* source and destination port, TCP and UDP alike */
	if (!ports)
		return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);
	flow.saddr = ip->saddr;
	flow.daddr = ip->daddr;
	flow.sport = ports[0];
	flow.dport = ports[1];
	flow.proto = ip->protocol;

	/* a member answering a client: leave as the VIP */
	nat = bpf_map_lookup_elem(&lb_reverse, &flow);
	if (nat) {
		chosen = *nat;
		err = lb_nat(ctx, ip, 0, &chosen);
		if (err)
			return verdict(ctx, m, XDP_DROP, err);
		if (chosen.flags & LB_NAT_F_FLOATING)
			return lb_fip_send_out(ctx, m, ip, chosen.addr);
		return lb_pass(ctx, m);
	}
	if (m->flags & PKT_F_FROM_UNDERLAY)
		return lb_pass(ctx, m);
	err = lb_fip_return_home(ctx, m, eth, ip, &flow);
	if (err >= 0)
		return err;

	vkey.vip = flow.daddr;
	vkey.port = flow.dport;
	vkey.proto = flow.proto;
	vip = bpf_map_lookup_elem(&lb_vips, &vkey);
	if (!vip || !lb_vip_serves(m, vip))
		return lb_pass(ctx, m);
	established = lb_established(ctx, ip, &flow);
	if (established) {
		chosen = established->member; /* it keeps its member, whatever the ring says now */
	} else {
		err = lb_new_flow(&flow, vip, &chosen);
		if (err)
			return verdict(ctx, m, XDP_DROP, err);
	}
	err = lb_nat(ctx, ip, 1, &chosen);
	if (!err)
		err = lb_next_hop(ctx, m, vip, chosen.addr);
	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	if (vip->flags & LB_F_FLOATING)
		m->flags |= PKT_F_LB_DNAT; /* sent to the floating IP's MAC: L3 routes it in, as a floating IP's */
	return lb_pass(ctx, m);
}

char _license[] SEC("license") = "GPL";
