// SPDX-License-Identifier: GPL-2.0
/* Entry programs: one attached to every bound port, one to the underlay NIC.
 * They validate the frame, load the interface's record into the packet
 * metadata and hand over to the stages (see maps/pipeline.h for the order). */
#include "lib/fastpath.h"
#include "lib/parse.h"
#include "lib/pipeline.h"
#include "lib/punt.h" /* the punt maps exist (pinned) whatever stage punts */
#include "lib/vxlan.h"

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
	err = fast_forward(ctx, m, &v); /* a frame of a flow the stages already decided */
	if (err >= 0)
		return err;
	port = bpf_map_lookup_elem(&if_config, &ifindex);
	if (!port || !(port->flags & (IF_F_PORT | IF_F_EXTERNAL)))
		return verdict(ctx, m, XDP_PASS, DROP_NONE);
	m->net_key = port->net_key;
	m->src_port_key = port->port_key;
	if (port->flags & IF_F_EXTERNAL) {
		err = vlan_pop(ctx, m);
		if (err)
			return verdict(ctx, m, XDP_DROP, err);
		if (!m->net_key) /* untagged on a NIC without a flat network: the kernel's */
			return verdict(ctx, m, XDP_PASS, DROP_NONE);
		if ((m->flags & PKT_F_VLAN) && (err = parse_frame(ctx, &v))) /* what the tag carried */
			return verdict(ctx, m, XDP_DROP, err);
	}
	return next_stage(ctx, m, 0);
}

SEC("xdp")
int xdp_underlay(struct xdp_md *ctx)
{
	struct pkt_meta *m = entry_begin(ctx, STAGE_ENTRY_UNDERLAY);
	__u32 ifindex = ctx->ingress_ifindex;
	struct port_record *underlay;
	struct fdb_key key = {};
	struct fdb_entry *dest;
	struct ethhdr *inner;
	__u32 vni = 0, off = 0;
	struct l3_view v;
	int err;

	if (!m)
		return XDP_ABORTED;
	err = parse_frame(ctx, &v);
	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	underlay = bpf_map_lookup_elem(&if_config, &ifindex);
	if (!underlay || !(underlay->flags & IF_F_UNDERLAY))
		return verdict(ctx, m, XDP_PASS, DROP_NONE);
	err = vxlan_parse(ctx, &v, underlay->ipv4, &vni, &off);
	if (err < 0)
		return verdict(ctx, m, XDP_DROP, -err);
	if (err == 0)
		return verdict(ctx, m, XDP_PASS, DROP_NONE); /* the underlay's own traffic */

	/* Deliver only to ports bound here; anything else stays encapsulated for the kernel. */
	inner = frame_at(ctx, off, sizeof(*inner));
	if (!inner)
		return verdict(ctx, m, XDP_DROP, DROP_TRUNCATED);
	key.net_key = vni;
	__builtin_memcpy(key.mac, inner->h_dest, 6);
	dest = bpf_map_lookup_elem(&fdb, &key);
	if (!dest || !(dest->flags & FDB_F_LOCAL))
		return verdict(ctx, m, XDP_PASS, DROP_NONE);
	m->net_key = vni;
	m->dst_port_key = dest->port_key;
	m->out_ifindex = dest->ifindex;
	m->flags |= PKT_F_FROM_UNDERLAY | PKT_F_DST_LOCAL;
	if (bpf_xdp_adjust_head(ctx, off))
		return verdict(ctx, m, XDP_DROP, DROP_MALFORMED);
	err = parse_frame(ctx, &v); /* the inner frame gets the same validation */
	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	/* A load-balanced member's reply is reverse-NATed at its client's chassis, before
	 * the client's security groups see it: the LB stage (if loaded) returns to them. */
	m->stage = STAGE_LB;
	bpf_tail_call(ctx, &stages, STAGE_LB);
	return next_stage(ctx, m, STAGE_SG_INGRESS);
}

char _license[] SEC("license") = "GPL";
