// SPDX-License-Identifier: GPL-2.0
/* The datapath bench's replay: BPF_PROG_TEST_RUN with `repeat` runs a program
 * again on the frame its previous run left (routed, encapsulated, NATed). This
 * program puts the configured frame back (its length, then its bytes) and
 * tail-calls the program under test, so every repetition takes the same path.
 * Its own cost is measured with an empty program behind it and subtracted. */
#include "lib/common.h"
#include "maps/trafficgen.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tg_replay);
} tg_replay_frame SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tg_replay_next SEC(".maps");

SEC("xdp")
int trafficgen_replay(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct tg_replay *replay = bpf_map_lookup_elem(&tg_replay_frame, &zero);
	int grown = (int)(ctx->data_end - ctx->data) - TG_REPLAY_LEN;
	void *data;

	if (!replay || (grown && bpf_xdp_adjust_head(ctx, grown)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	if (data + TG_REPLAY_LEN > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, replay->frame, TG_REPLAY_LEN);
	bpf_tail_call(ctx, &tg_replay_next, 0);
	return XDP_ABORTED;
}

char _license[] SEC("license") = "GPL";
