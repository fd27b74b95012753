// SPDX-License-Identifier: GPL-2.0
/* Entry programs: one attached to every bound port, one to the underlay NIC.
 * They validate the frame, load the interface's record into the packet
 * metadata and hand over to the stages (see maps/pipeline.h for the order). */
#include "lib/parse.h"
#include "lib/pipeline.h"

/* Reset the per-CPU metadata and count the frame in its entry. */
static __always_inline struct pkt_meta *entry_begin(struct xdp_md *ctx, __u32 entry)
{
	struct pkt_meta *m = pkt_meta_get();

	if (!m)
		return NULL;
	__builtin_memset(m, 0, sizeof(*m));
	m->in_ifindex = ctx->ingress_ifindex;
	stage_enter(ctx, m, entry);
	return m;
}

SEC("xdp")
int xdp_port(struct xdp_md *ctx)
{
	struct pkt_meta *m = entry_begin(ctx, STAGE_ENTRY_PORT);
	struct port_record *port;
	struct l3_view v;
	__u32 ifindex = ctx->ingress_ifindex;
	int err;

	if (!m)
		return XDP_ABORTED;
	err = parse_frame(ctx, &v);
	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	port = bpf_map_lookup_elem(&if_config, &ifindex);
	if (!port || !(port->flags & IF_F_PORT))
		return verdict(ctx, m, XDP_PASS, DROP_NONE);
	m->net_key = port->net_key;
	m->src_port_key = port->port_key;
	return next_stage(ctx, m, 0);
}

SEC("xdp")
int xdp_underlay(struct xdp_md *ctx)
{
	struct pkt_meta *m = entry_begin(ctx, STAGE_ENTRY_UNDERLAY);
	struct l3_view v;
	int err;

	if (!m)
		return XDP_ABORTED;
	err = parse_frame(ctx, &v);
	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	return verdict(ctx, m, XDP_PASS, DROP_NONE);
}

char _license[] SEC("license") = "GPL";
