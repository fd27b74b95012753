// SPDX-License-Identifier: GPL-2.0
/* The bench's traffic generator, run by BPF_PROG_RUN in live-frames mode: each
 * frame of the run gets the configured Ethernet and IPv4 headers written again
 * (the page is recycled after a router rewrote MACs and TTL in it; the L4 header
 * and payload, which no router on the bench's paths changes, come from the run's
 * input frame: one flow per input) and is redirected into the configured veth. */
#include "lib/common.h"
#include "maps/trafficgen.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tg_config);
} tg_config SEC(".maps");

SEC("xdp")
int trafficgen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct tg_config *cfg = bpf_map_lookup_elem(&tg_config, &zero);

	if (!cfg || data + TG_HEADER_LEN > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, cfg->header, TG_HEADER_LEN);
	return bpf_redirect(cfg->ifindex, 0);
}

char _license[] SEC("license") = "GPL";
