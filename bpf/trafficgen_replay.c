// SPDX-License-Identifier: GPL-2.0
/* The datapath bench's replay: BPF_PROG_TEST_RUN with `repeat` runs a program
 * again on the frame its previous run left (routed, encapsulated, NATed). This
 * program puts the configured frame back (its length, then its bytes) and
 * tail-calls the program under test, so every repetition takes the same path.
 * The datapath bench's frames are TG_REPLAY_LEN bytes; the DNS bench's queries
 * are longer, up to TG_REPLAY_MAX.
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
	__u64 len;  /* 64 bits: the bounds below hold on the register the helper gets */
	struct tg_replay *replay = bpf_map_lookup_elem(&tg_replay_frame, &zero);
	int grown;
	void *data;

	if (!replay)
		return XDP_ABORTED;
	len = replay->len;
	asm volatile("" : "+r"(len));  /* checked on this register, not a reload */
	if (len < TG_REPLAY_LEN || len > TG_REPLAY_MAX)
		return XDP_ABORTED;
	/* back to the frame's length where the last run changed it: encapsulation moves
	 * the head, an answer written in place grows the tail */
	grown = (int)(ctx->data_end - ctx->data) - (int)len;
	if (grown && (replay->at_tail ? bpf_xdp_adjust_tail(ctx, -grown) : bpf_xdp_adjust_head(ctx, grown)))
		return XDP_ABORTED;
	if (len == TG_REPLAY_LEN) {  /* the datapath bench's frames: copied inline, as cheap as it gets */
		data = (void *)(long)ctx->data;
		if (data + TG_REPLAY_LEN > (void *)(long)ctx->data_end)
			return XDP_ABORTED;
		__builtin_memcpy(data, replay->frame, TG_REPLAY_LEN);
	} else if (bpf_xdp_store_bytes(ctx, 0, replay->frame, len)) {
		return XDP_ABORTED;
	}
	bpf_tail_call(ctx, &tg_replay_next, 0);
	return XDP_ABORTED;
}

char _license[] SEC("license") = "GPL";
