// SPDX-License-Identifier: GPL-2.0
/* Port security: a port may only send ARP, IPv4 or IPv6, from its own MAC and
 * IPs (or its allowed address pairs). Applies to ports with IF_F_PORTSEC.
 * A port's DHCP requests, once they passed those checks, go to the agent. */
#include "lib/arp.h"
#include "lib/mac.h"
#include "lib/pipeline.h"
#include "lib/punt.h"

#define DHCP_SERVER_PORT_BE bpf_htons(67)
#define DHCP_CLIENT_PORT_BE bpf_htons(68)

/* DHCP client frames (UDP 68 -> 67, RFC 2131) of a bound port are answered by the
 * agent's DHCP app from NB (controller/apps/dhcp.py), whatever their destination:
 * DISCOVER/REQUEST are broadcast, RENEW/RELEASE unicast to the DHCP port. The
 * per-port punt limit keeps a VM from flooding the agent. Everything else goes on. */
static __always_inline int dhcp_punt_or_next(struct xdp_md *ctx, struct pkt_meta *m, __u32 port_flags)
{
	struct udphdr *udp;
	struct ethhdr *eth;
	struct iphdr *ip;

	if (!(port_flags & IF_F_PORT))
		return next_stage(ctx, m, STAGE_PORTSEC + 1);
	eth = frame_at(ctx, 0, sizeof(*eth));
	if (!eth || eth->h_proto != ETH_P_IP_BE)
		return next_stage(ctx, m, STAGE_PORTSEC + 1);
	ip = frame_at(ctx, sizeof(*eth), sizeof(*ip));
	if (!ip || ip->protocol != IPPROTO_UDP)
		return next_stage(ctx, m, STAGE_PORTSEC + 1);
	udp = frame_at(ctx, sizeof(struct ethhdr) + ip->ihl * 4, sizeof(*udp));
	if (!udp || udp->dest != DHCP_SERVER_PORT_BE || udp->source != DHCP_CLIENT_PORT_BE)
		return next_stage(ctx, m, STAGE_PORTSEC + 1);
	return punt(ctx, m, PUNT_DHCP);
}

/* The allowed-source entry for (ifindex, ip), longest prefix first. */
static __always_inline struct portsec_entry *allowed_source(__u32 ifindex, __be32 ip)
{
	struct portsec_key key = { .prefixlen = PORTSEC_PREFIX_BASE + 32, .ifindex = ifindex, .addr = ip };

	return bpf_map_lookup_elem(&portsec, &key);
}

SEC("xdp")
int stage_portsec(struct xdp_md *ctx)
{
	struct pkt_meta *m = pkt_meta_get();
	struct portsec_entry *allowed;
	struct port_record *port;
	struct arp_ipv4 *arp;
	struct ethhdr *eth;
	struct iphdr *ip;
	__be32 src;

	if (!m)
		return XDP_ABORTED;
	stage_enter(ctx, m, STAGE_PORTSEC);
	port = bpf_map_lookup_elem(&if_config, &m->in_ifindex);
	if (!port)
		return next_stage(ctx, m, STAGE_PORTSEC + 1);
	if (!(port->flags & IF_F_PORTSEC))
		return dhcp_punt_or_next(ctx, m, port->flags);
	eth = frame_at(ctx, 0, sizeof(*eth));
	if (!eth)
		return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);

	if (eth->h_proto == ETH_P_ARP_BE) {
		arp = arp_header(ctx);
		if (!arp)
			return verdict(ctx, m, XDP_DROP, DROP_MALFORMED);
		if (!mac_eq(arp->sha, eth->h_source))
			return verdict(ctx, m, XDP_DROP, DROP_PORTSEC_MAC);
		__builtin_memcpy(&src, arp->spa, 4);
		if (src == 0) { /* ARP probe (duplicate address detection) */
			if (!mac_eq(eth->h_source, port->mac))
				return verdict(ctx, m, XDP_DROP, DROP_PORTSEC_MAC);
			return next_stage(ctx, m, STAGE_PORTSEC + 1);
		}
	} else if (eth->h_proto == ETH_P_IP_BE) {
		ip = frame_at(ctx, sizeof(*eth), sizeof(*ip));
		if (!ip)
			return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);
		src = ip->saddr;
		if (src == 0 && ip->protocol == IPPROTO_UDP) {
			/* DHCP discover/request before the port has its address, from its own MAC */
			struct udphdr *udp = frame_at(ctx, sizeof(*eth) + ip->ihl * 4, sizeof(*udp));

			if (udp && udp->dest == DHCP_SERVER_PORT_BE && mac_eq(eth->h_source, port->mac))
				return dhcp_punt_or_next(ctx, m, port->flags);
		}
	} else if (eth->h_proto == ETH_P_IPV6_BE) {
		/* Only the MAC is checked: `portsec` holds no IPv6 sources yet, and the
		 * security groups stage drops IPv6 of ports with port security (DROP_SG_IPV6). */
		if (!mac_eq(eth->h_source, port->mac))
			return verdict(ctx, m, XDP_DROP, DROP_PORTSEC_MAC);
		return next_stage(ctx, m, STAGE_PORTSEC + 1);
	} else {
		/* An allow-list, as Neutron's OVS firewall: VLAN tags (802.1Q/802.1ad),
		 * LLDP, MPLS, 802.3 length frames … would cross every check above unseen. */
		return verdict(ctx, m, XDP_DROP, DROP_PORTSEC_ETHERTYPE);
	}

	allowed = allowed_source(m->in_ifindex, src);
	if (!allowed) {
		if (!mac_eq(eth->h_source, port->mac))
			return verdict(ctx, m, XDP_DROP, DROP_PORTSEC_MAC);
		return verdict(ctx, m, XDP_DROP, DROP_PORTSEC_IP);
	}
	if (!mac_eq(eth->h_source, allowed->mac))
		return verdict(ctx, m, XDP_DROP, DROP_PORTSEC_MAC);
	return dhcp_punt_or_next(ctx, m, port->flags);
}

char _license[] SEC("license") = "GPL";
