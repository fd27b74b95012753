/* The blackhole stage: an IPv4 frame to an address its network blackholes is dropped
 * (DROP_HOOK); anything else goes on down the pipeline. Built against dfxdp/hook.h, it
 * runs in a hook slot (a stage of the tree has its own slot in enum dfxdp_stage). */
#include <dfxdp/hook.h>

/* network key << 32 | IPv4 destination (host order) -> 1, written by app.py. Pinned by
 * name: the agent loads this object with its pipeline, so its reconciler owns the map. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} blackholes SEC(".maps");

SEC("xdp")
int blackhole(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct pkt_meta *m = dfxdp_hook_enter(ctx);
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	__u64 key;

	if (!m)
		return XDP_ABORTED;
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return dfxdp_hook_continue(ctx, m);
	key = (__u64)m->net_key << 32 | bpf_ntohl(ip->daddr);
	if (bpf_map_lookup_elem(&blackholes, &key))
		return dfxdp_hook_verdict(ctx, m, XDP_DROP);
	return dfxdp_hook_continue(ctx, m);
}

char _license[] SEC("license") = "GPL";
