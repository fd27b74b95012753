// SPDX-License-Identifier: GPL-2.0
/* The last stage: hand the frame to its local port, or tunnel it to the
 * chassis hosting the destination. */
#include "lib/pipeline.h"
#include "lib/vxlan.h"

SEC("xdp")
int stage_output(struct xdp_md *ctx)
{
	struct pkt_meta *m = pkt_meta_get();
	struct tunnel_endpoint *ep;
	int err;

	if (!m)
		return XDP_ABORTED;
	stage_enter(ctx, m, STAGE_OUTPUT);
	if (m->flags & PKT_F_DST_LOCAL)
		return verdict(ctx, m, bpf_redirect(m->out_ifindex, 0), DROP_REDIRECT_FAILED);
	if (m->flags & PKT_F_DST_REMOTE) {
		ep = bpf_map_lookup_elem(&tunnel_endpoints, &m->tunnel_dst);
		if (!ep)
			return verdict(ctx, m, XDP_DROP, DROP_NO_TUNNEL);
		err = vxlan_encap(ctx, ep, m->tunnel_dst, m->net_key);
		if (err)
			return verdict(ctx, m, XDP_DROP, err);
		m->out_ifindex = ep->ifindex;
		return verdict(ctx, m, bpf_redirect(ep->ifindex, 0), DROP_REDIRECT_FAILED);
	}
	return verdict(ctx, m, XDP_PASS, DROP_NONE);
}

char _license[] SEC("license") = "GPL";
