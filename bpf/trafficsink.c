// SPDX-License-Identifier: GPL-2.0
/* The bench's sink: counts and drops the IPv4 UDP and TCP frames of the
 * generator's flows (either port TG_PORT, so a handshake's answer is taken too),
 * passes anything else (ARP, a readiness ping) to the kernel. */
#include "lib/common.h"
#include "maps/trafficgen.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tg_counter);
} tg_delivered SEC(".maps");

SEC("xdp")
int trafficsink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	__be16 *ports = data + sizeof(*eth) + sizeof(*ip);  /* source, destination: UDP and TCP alike */
	struct tg_counter *c;
	__u32 zero = 0;

	if ((void *)(ports + 2) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP))
		return XDP_PASS;
	if (ports[0] != bpf_htons(TG_PORT) && ports[1] != bpf_htons(TG_PORT))
		return XDP_PASS;
	c = bpf_map_lookup_elem(&tg_delivered, &zero);
	if (c) {
		c->packets++;
		c->bytes += data_end - data;
	}
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
