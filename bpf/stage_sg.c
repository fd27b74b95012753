// SPDX-License-Identifier: GPL-2.0
/* Stateful security groups: egress rules at the source port, ingress rules at
 * the destination port, on whichever chassis each sits. IPv4 only: other
 * frames (ARP, IPv6 to the fallback) are not filtered here. */
#include "lib/pipeline.h"
#include "lib/sg.h"

static __always_inline int sg_stage(struct xdp_md *ctx, struct pkt_meta *m, __u32 port_key, __u32 dir,
				    __u32 stage, __u32 deny_reason)
{
	struct sg_port *port = bpf_map_lookup_elem(&sg_ports, &port_key);
	struct ethhdr *eth = frame_at(ctx, 0, sizeof(*eth));
	int reason;

	if (!eth)
		return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);
	if (!port || !(port->flags & SG_PORT_FILTERED) || eth->h_proto != ETH_P_IP_BE)
		return next_stage(ctx, m, stage + 1);
	reason = sg_filter(ctx, port_key, port->policy, dir, deny_reason);
	sg_count(ctx, port_key, dir, reason == 0);
	if (reason)
		return verdict(ctx, m, XDP_DROP, reason);
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
	return sg_stage(ctx, m, m->src_port_key, SG_EGRESS, STAGE_SG_EGRESS, DROP_SG_EGRESS);
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
	return sg_stage(ctx, m, m->dst_port_key, SG_INGRESS, STAGE_SG_INGRESS, DROP_SG_INGRESS);
}

char _license[] SEC("license") = "GPL";
