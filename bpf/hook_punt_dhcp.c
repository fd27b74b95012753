// SPDX-License-Identifier: GPL-2.0
/* A user hook that punts DHCP requests (IPv4 UDP to port 67) to the agent and
 * lets everything else continue down the pipeline. Attached to a hook slot by
 * the punt tests and `dfxdp bench` (dfxdp/testing/punt.py); not part of the
 * pipeline itself (pipeline.NOT_PIPELINE). It is the shape a DHCP stage takes. */
#include "include/dfxdp/hook.h" /* <dfxdp/hook.h> for users: bpf/ is on our -I path, bpf/include is not */
#include "lib/parse.h"
#include "lib/punt.h"

#define DHCP_SERVER_PORT_BE bpf_htons(67)

SEC("xdp")
int hook_punt_dhcp(struct xdp_md *ctx)
{
	struct pkt_meta *m = dfxdp_hook_enter(ctx);
	struct ethhdr *eth;
	struct udphdr *udp;
	struct iphdr *ip;

	if (!m)
		return XDP_ABORTED;
	eth = frame_at(ctx, 0, sizeof(*eth));
	if (!eth || eth->h_proto != ETH_P_IP_BE)
		return dfxdp_hook_continue(ctx, m);
	ip = frame_at(ctx, sizeof(*eth), sizeof(*ip));
	if (!ip || ip->protocol != IPPROTO_UDP)
		return dfxdp_hook_continue(ctx, m);
	udp = frame_at(ctx, sizeof(*eth) + ip->ihl * 4, sizeof(*udp));
	if (!udp || udp->dest != DHCP_SERVER_PORT_BE)
		return dfxdp_hook_continue(ctx, m);
	return punt(ctx, m, PUNT_DHCP);
}

char _license[] SEC("license") = "GPL";
