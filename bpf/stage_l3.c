// SPDX-License-Identifier: GPL-2.0
/* Distributed routing on the source chassis: frames to a router port's MAC
 * are routed here (TTL, MAC rewrite, checksum) to any subnet of the router,
 * local or remote; the router answers ping and sends "time exceeded";
 * floating IPs are DNATed/SNATed on the chassis hosting their port. */
#include "lib/arp.h"
#include "lib/hop.h"
#include "lib/icmp.h"
#include "lib/l3_maps.h"
#include "lib/nat.h"
#include "lib/pipeline.h"

/* The next hop's MAC: known ports from arp_table, external hosts as learned (then
 * noted in the metadata: the fast path checks a learned MAC is still the one). */
static __always_inline struct arp_entry *next_hop_mac(struct pkt_meta *m, __u32 net_key, __be32 ip, int external)
{
	struct arp_key key = { .net_key = net_key, .ip = ip };
	struct arp_entry *mac = bpf_map_lookup_elem(&arp_table, &key);

	if (!mac && external) {
		mac = bpf_map_lookup_elem(&ext_neigh, &ip);
		m->learned_nexthop = ip;
	}
	return mac;
}

SEC("xdp")
int stage_l3(struct xdp_md *ctx)
{
	struct pkt_meta *m = pkt_meta_get();
	struct router_port_key pkey = {};
	struct router_ip_key ikey = {};
	struct route_key rkey = {};
	struct port_record *in_if;
	struct router_port *rp;
	struct arp_entry *dmac;
	struct fip_snat_key skey;
	struct fip_snat *snat;
	struct fip_dnat *dnat;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct route *r;
	__u32 router;
	__be32 nexthop;
	int err;

	if (!m)
		return XDP_ABORTED;
	stage_enter(ctx, m, STAGE_L3);
	eth = frame_at(ctx, 0, sizeof(*eth));
	if (!eth)
		return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);
	if (eth->h_proto != ETH_P_IP_BE)
		return next_stage(ctx, m, STAGE_L2);
	pkey.net_key = m->net_key;
	__builtin_memcpy(pkey.mac, eth->h_dest, 6);
	rp = bpf_map_lookup_elem(&router_ports, &pkey);
	if (!rp)
		return next_stage(ctx, m, STAGE_L2); /* not for a router: bridged */
	router = rp->router_key;
	ip = frame_at(ctx, sizeof(*eth), sizeof(*ip));
	if (!ip)
		return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);

	in_if = bpf_map_lookup_elem(&if_config, &m->in_ifindex);
	if (in_if && (in_if->flags & IF_F_EXTERNAL)) {
		struct arp_entry learned = {};

		__builtin_memcpy(learned.mac, eth->h_source, 6);
		bpf_map_update_elem(&ext_neigh, &ip->saddr, &learned, BPF_ANY);
		dnat = bpf_map_lookup_elem(&fip_dnat, &ip->daddr);
		if (dnat) {
			router = dnat->router_key;
			err = nat_rewrite(ctx, ip, &ip->daddr, dnat->fixed_ip);
			if (err)
				return verdict(ctx, m, XDP_DROP, err);
		} else if (!(m->flags & PKT_F_LB_DNAT)) { /* a VIP's floating IP: the LB stage DNATed it */
			return verdict(ctx, m, XDP_PASS, DROP_NONE);
		}
	} else {
		ikey.router_key = router;
		ikey.ip = ip->daddr;
		if (bpf_map_lookup_elem(&router_ips, &ikey)) {
			struct icmp_hdr *icmp = frame_at(ctx, sizeof(*eth) + ip->ihl * 4, sizeof(*icmp));

			if (ip->protocol == IPPROTO_ICMP && icmp && icmp->type == ICMP_ECHO_REQUEST) {
				err = icmp_echo_reply(ctx);
				if (err)
					return verdict(ctx, m, XDP_DROP, err);
				return reply_to_sender(ctx, m);
			}
			return verdict(ctx, m, XDP_PASS, DROP_NONE); /* other traffic to the router itself */
		}
	}

	if (ip->ttl <= 1) {
		err = icmp_time_exceeded(ctx, rp->ip);
		count(&drop_stats, DROP_TTL_EXCEEDED, ctx);
		if (err)
			return verdict(ctx, m, XDP_DROP, err);
		return reply_to_sender(ctx, m);
	}

	rkey.prefixlen = ROUTE_PREFIX_BASE + 32;
	rkey.router_key = router;
	rkey.dst = ip->daddr;
	r = bpf_map_lookup_elem(&routes, &rkey);
	if (!r)
		return verdict(ctx, m, XDP_DROP, DROP_NO_ROUTE);
	nexthop = r->nexthop ? r->nexthop : ip->daddr;

	if (r->flags & ROUTE_F_EXTERNAL) {
		skey.net_key = m->net_key;
		skey.fixed_ip = ip->saddr;
		snat = bpf_map_lookup_elem(&fip_snat, &skey);
		if (!snat) /* no floating IP: the centralized SNAT of the fallback path */
			return verdict(ctx, m, XDP_PASS, DROP_NONE);
		dmac = next_hop_mac(m, r->out_net_key, nexthop, 1);
		if (!dmac)
			return verdict(ctx, m, XDP_PASS, DROP_NONE); /* let the kernel resolve it */
		err = nat_rewrite(ctx, ip, &ip->saddr, snat->floating_ip);
		if (err)
			return verdict(ctx, m, XDP_DROP, err);
		err = forward_hop(ctx, ip, snat->mac, dmac->mac);
		if (err)
			return verdict(ctx, m, XDP_DROP, err);
		m->net_key = r->out_net_key;
		m->out_ifindex = r->out_ifindex;
		m->dst_port_key = 0;
		m->flags |= PKT_F_ROUTED | PKT_F_DST_LOCAL;
		return next_stage(ctx, m, STAGE_OUTPUT);
	}

	dmac = next_hop_mac(m, r->out_net_key, nexthop, 0);
	if (!dmac)
		return verdict(ctx, m, XDP_PASS, DROP_NONE); /* unknown host: the fallback path */
	icmp_note_hop(m, eth, rp->ip); /* a remote next hop may find it too big for the tunnel */
	err = forward_hop(ctx, ip, r->src_mac, dmac->mac);
	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	m->net_key = r->out_net_key;
	m->flags |= PKT_F_ROUTED;
	return next_stage(ctx, m, STAGE_L2);
}

char _license[] SEC("license") = "GPL";
