// SPDX-License-Identifier: GPL-2.0
/* Stateful security groups: egress rules at the source port, ingress rules at
 * the destination port, on whichever chassis each sits. A filtered port (port
 * security on) sends and receives ARP and what the rules allow of IPv4, nothing
 * else: its frames were checked by stage_portsec, but frames toward it may come
 * from a port without port security or decapsulated from another chassis. */
#include "lib/arp.h"
#include "lib/pipeline.h"
#include "lib/sg.h"

/* Returns 0 when the frame may go on, or why it may not; *state as sg_filter's. */
static __always_inline int sg_verdict(struct xdp_md *ctx, __be16 proto, __u32 port_key, const struct sg_port *port,
				      __u32 dir, __u32 deny_reason, __u32 *state)
{
	int reason;

	switch (proto) {
	case ETH_P_IP_BE:
		reason = sg_filter(ctx, port_key, port, dir, deny_reason, state);
		break;
	case ETH_P_IPV6_BE:
		reason = DROP_SG_IPV6; /* no IPv6 rules yet, so none allows it */
		break;
	case ETH_P_ARP_BE:
		/* not subject to rules (nor in Neutron), but only ARP for IPv4 over Ethernet */
		return arp_header(ctx) ? 0 : DROP_MALFORMED;
	default:
		/* VLAN tags, LLDP, MPLS …: the ethertypes port security refuses to send */
		return DROP_PORTSEC_ETHERTYPE;
	}
	sg_count(ctx, port_key, dir, reason == 0);
	return reason;
}

static __always_inline int sg_stage(struct xdp_md *ctx, struct pkt_meta *m, __u32 port_key, __u32 dir,
				    __u32 stage, __u32 deny_reason, __u32 allowed_flag)
{
	struct sg_port *port = bpf_map_lookup_elem(&sg_ports, &port_key);
	struct ethhdr *eth = frame_at(ctx, 0, sizeof(*eth));
	__u32 state = 0;
	int reason;

	if (!eth)
		return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);
	if (!port || !(port->flags & SG_PORT_FILTERED))
		return next_stage(ctx, m, stage + 1);
	reason = sg_verdict(ctx, eth->h_proto, port_key, port, dir, deny_reason, &state);
	if (reason)
		return verdict(ctx, m, XDP_DROP, reason);
	/* The fast path may repeat this verdict for the flow's next frames only while one
	 * would change nothing here: an established TCP connection (the fast path takes
	 * no SYN, FIN or RST) or a UDP flow; it counts them as allowed too. */
	if (state == CT_ESTABLISHED || state == CT_UDP)
		m->flags |= allowed_flag;
	else
		m->flags &= ~PKT_F_FAST_PENDING;
	return next_stage(ctx, m, stage + 1);
}

SEC("xdp")
int stage_sg_egress(struct xdp_md *ctx)
{
	struct pkt_meta *m = pkt_meta_get();

	if (!m)
		return XDP_ABORTED;
	stage_enter(ctx, m, STAGE_SG_EGRESS);
	if (m->flags & PKT_F_FROM_UNDERLAY || !m->src_port_key)
		return next_stage(ctx, m, STAGE_SG_EGRESS + 1);
	return sg_stage(ctx, m, m->src_port_key, SG_EGRESS, STAGE_SG_EGRESS, DROP_SG_EGRESS, PKT_F_SG_EGRESS_OK);
}

SEC("xdp")
int stage_sg_ingress(struct xdp_md *ctx)
{
	struct pkt_meta *m = pkt_meta_get();

	if (!m)
		return XDP_ABORTED;
	stage_enter(ctx, m, STAGE_SG_INGRESS);
	if (!(m->flags & PKT_F_DST_LOCAL) || !m->dst_port_key)
		return next_stage(ctx, m, STAGE_SG_INGRESS + 1);
	return sg_stage(ctx, m, m->dst_port_key, SG_INGRESS, STAGE_SG_INGRESS, DROP_SG_INGRESS, PKT_F_SG_INGRESS_OK);
}

char _license[] SEC("license") = "GPL";
