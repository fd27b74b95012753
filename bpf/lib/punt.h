/* Handing a frame to the agent: punt(ctx, m, reason) from any stage.
 *
 * The frame is copied into the `punt_ring` ring buffer with a punt_header
 * (maps/punt.h) and consumed here (XDP_DROP, reason DROP_PUNTED); the agent
 * reads the ring and passes the frame to the app registered for `reason`.
 * Each port may punt at most punt_limit.packets frames per interval: a fixed
 * window counted with an atomic add, so it needs no lock. Two CPUs opening a
 * new window at once may admit a few frames more; a window boundary may admit
 * up to twice the limit in a short time. Both stay bounded, which is the point. */
#ifndef DFXDP_LIB_PUNT_H
#define DFXDP_LIB_PUNT_H

#include "pipeline.h"
#include "maps/punt.h"

/* One record as reserved in the ring: the header, room for the largest frame. */
struct punt_record {
	struct punt_header hdr;
	__u8 frame[PUNT_FRAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* about 670 records of the largest frame */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} punt_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct punt_limit);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} punt_limit SEC(".maps");

/* LRU: a port that is gone (its ifindex never seen again) ages out by itself. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct punt_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} punt_buckets SEC(".maps");

/* May this port punt one more frame now? */
static __always_inline int punt_admit(__u32 ifindex)
{
	__u64 packets = PUNT_DEFAULT_PACKETS, interval = PUNT_DEFAULT_INTERVAL_MS * 1000000ULL;
	__u64 now = bpf_ktime_get_ns();
	struct punt_bucket *bucket;
	struct punt_limit *limit;
	__u32 zero = 0;

	limit = bpf_map_lookup_elem(&punt_limit, &zero);
	if (limit && limit->packets && limit->interval_ms) {
		packets = limit->packets;
		interval = limit->interval_ms * 1000000ULL;
	}
	bucket = bpf_map_lookup_elem(&punt_buckets, &ifindex);
	if (!bucket) {
		struct punt_bucket first = { .window_start_ns = now, .count = 1 };

		bpf_map_update_elem(&punt_buckets, &ifindex, &first, BPF_NOEXIST);
		return 1;
	}
	if (now - bucket->window_start_ns >= interval) {
		bucket->window_start_ns = now; /* racing CPUs both reset: a few extra frames at most */
		bucket->count = 0;
	}
	return __sync_fetch_and_add(&bucket->count, 1) < packets;
}

static __always_inline int punt(struct xdp_md *ctx, struct pkt_meta *m, __u32 reason)
{
	__u64 len = bpf_xdp_get_buff_len(ctx); /* multi-buffer frames included */
	struct punt_record *rec;

	if (len > PUNT_FRAME_MAX)
		return verdict(ctx, m, XDP_DROP, DROP_PUNT_TOO_BIG);
	if (!punt_admit(m->in_ifindex))
		return verdict(ctx, m, XDP_DROP, DROP_PUNT_RATE);
	rec = bpf_ringbuf_reserve(&punt_ring, sizeof(*rec), 0);
	if (!rec)
		return verdict(ctx, m, XDP_DROP, DROP_PUNT_QUEUE_FULL);
	rec->hdr.ifindex = m->in_ifindex;
	rec->hdr.port_key = m->src_port_key;
	rec->hdr.net_key = m->net_key;
	rec->hdr.reason = reason;
	rec->hdr.frame_len = len;
	/* the verifier needs the bound on the very register passed below: make the
	 * compiler check it again rather than reuse the first comparison */
	asm volatile("" : "+r"(len));
	if (len == 0 || len > PUNT_FRAME_MAX || bpf_xdp_load_bytes(ctx, 0, rec->frame, len)) {
		bpf_ringbuf_discard(rec, 0);
		return verdict(ctx, m, XDP_DROP, DROP_MALFORMED);
	}
	bpf_ringbuf_submit(rec, 0);
	return verdict(ctx, m, XDP_DROP, DROP_PUNTED);
}

#endif
