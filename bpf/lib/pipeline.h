/* Moving a frame through the stages: metadata, tail calls, verdicts. */
#ifndef DFXDP_LIB_PIPELINE_H
#define DFXDP_LIB_PIPELINE_H

#include "stats.h"
#include "vlan.h"

static __always_inline struct pkt_meta *pkt_meta_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&pkt_scratch, &zero);
}

/* Every frame leaves the pipeline through here, so verdicts are always counted. */
static __always_inline int verdict(struct xdp_md *ctx, struct pkt_meta *m, int action, __u32 reason)
{
	/* the kernel gets a frame of a VLAN network as it came: tagged */
	if (action == XDP_PASS && m && (m->flags & PKT_F_VLAN)) {
		reason = vlan_retag(ctx, m);
		if (reason)
			action = XDP_DROP;
	}
	if (action == XDP_DROP || action == XDP_ABORTED) {
		count(&drop_stats, reason, ctx);
		if (m)
			m->drop_reason = reason;
	}
	count(&verdict_stats, action, ctx);
	return action;
}

static __always_inline void stage_enter(struct xdp_md *ctx, struct pkt_meta *m, __u32 stage)
{
	count(&stage_stats, stage, ctx);
	if (stage < 32)
		m->stages_seen |= 1u << stage;
}

/* Send the (rewritten) frame back where it came from (with the VLAN tag it
 * came with, bpf/lib/vlan.h). Not XDP_TX: on a veth,
 * XDP_TX only reaches the peer when the peer runs an XDP program itself, while
 * a redirect needs just NAPI (GRO) there — measured on 6.18. */
static __always_inline int reply_to_sender(struct xdp_md *ctx, struct pkt_meta *m)
{
	int err = (m->flags & PKT_F_VLAN) ? vlan_retag(ctx, m) : 0;

	if (err)
		return verdict(ctx, m, XDP_DROP, err);
	m->out_ifindex = m->in_ifindex;
	return verdict(ctx, m, bpf_redirect(m->in_ifindex, 0), DROP_REDIRECT_FAILED);
}

/* Continue with the first loaded stage at or after `from`, in the order of
 * enum dfxdp_stage. An empty optional slot is skipped; an empty mandatory one
 * (STAGE_MANDATORY: port security, security groups) drops the frame, for every
 * port: the stage that decides what is filtered is the one missing, so nothing
 * may pass unfiltered (fail closed). After the last stage the frame leaves
 * untouched (XDP_PASS: kernel and OVS fallback). */
static __always_inline int next_stage(struct xdp_md *ctx, struct pkt_meta *m, __u32 from)
{
#pragma unroll
	for (__u32 s = 0; s < STAGE_MAX; s++) {
		if (s < from)
			continue;
		m->stage = s; /* the callee's own slot: a hook continues from there */
		bpf_tail_call(ctx, &stages, s);
		if (STAGE_MANDATORY & (1u << s))
			return verdict(ctx, m, XDP_DROP, DROP_STAGE_MISSING);
	}
	return verdict(ctx, m, XDP_PASS, DROP_NONE);
}

#endif
