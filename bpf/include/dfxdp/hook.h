/* dfxdp user hooks: the contract between a user's XDP program and the pipeline.
 *
 * A hook runs in one of the pipeline's hook slots (STAGE_HOOK_0 … in
 * maps/pipeline.h): after port security and security-group egress, before the
 * load balancer, DNS and forwarding. It sees every frame a bound port or the
 * external NIC sends (not frames decapsulated from the underlay) and must end
 * in one of two ways:
 *
 *	return dfxdp_hook_continue(ctx, m);           the rest of the pipeline decides
 *	return dfxdp_hook_verdict(ctx, m, XDP_DROP);  the hook decides (counted as DROP_HOOK)
 *
 *	#include <dfxdp/hook.h>
 *
 *	SEC("xdp")
 *	int my_hook(struct xdp_md *ctx)
 *	{
 *		struct pkt_meta *m = dfxdp_hook_enter(ctx);
 *
 *		if (!m)
 *			return XDP_ABORTED;
 *		… look at the frame, at m->in_ifindex, m->net_key, m->src_port_key …
 *		return dfxdp_hook_continue(ctx, m);
 *	}
 *	char _license[] SEC("license") = "GPL";
 *
 * Build: clang -O2 -g -target bpf $(dfxdp hook cflags) -c my_hook.c -o my_hook.o
 * Load:  dfxdp hook attach --chassis NAME my_hook.o      (docs/hooks.md)
 *
 * The pipeline's maps (if_config, stages, pkt_scratch and the counters) come
 * with this header, pinned by name: the hook shares the chassis' instances. A
 * hook's own maps must not be pinned.
 */
#ifndef DFXDP_HOOK_H
#define DFXDP_HOOK_H

#include "lib/pipeline.h"

/* Begin a hook: the frame's metadata, the frame counted in this slot's stage_stats
 * (what `dfxdp hook list` shows). NULL only if the per-CPU scratch is missing. */
static __always_inline struct pkt_meta *dfxdp_hook_enter(struct xdp_md *ctx)
{
	struct pkt_meta *m = pkt_meta_get();

	if (m)
		stage_enter(ctx, m, m->stage);
	return m;
}

/* Hand the frame on to the stages after this hook's slot (the next hook first). */
static __always_inline int dfxdp_hook_continue(struct xdp_md *ctx, struct pkt_meta *m)
{
	return next_stage(ctx, m, m->stage + 1);
}

/* End the frame here with an XDP action, counted like the pipeline's own
 * verdicts; a drop is counted with the reason DROP_HOOK. */
static __always_inline int dfxdp_hook_verdict(struct xdp_md *ctx, struct pkt_meta *m, int action)
{
	return verdict(ctx, m, action, DROP_HOOK);
}

#endif
