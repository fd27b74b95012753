/* Per-CPU counters: one slot per stage, verdict and drop reason. */
#ifndef DFXDP_LIB_STATS_H
#define DFXDP_LIB_STATS_H

#include "pipeline_maps.h"

static __always_inline void count(void *map, __u32 slot, struct xdp_md *ctx)
{
	struct counter *c = bpf_map_lookup_elem(map, &slot);

	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
}

#endif
