// SPDX-License-Identifier: GPL-2.0
/* The DNS bench's ceiling: each UDP datagram to port 53 is sent back where it
 * came from as its own answer — QR set, addresses and ports swapped,
 * nothing looked up. The cheapest responder there is, so what dnsperf measures
 * against it is dnsperf's own limit. Anything else goes on to the kernel. */
#include "lib/common.h"
#include "lib/icmp.h"

SEC("xdp")
int dns_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp = data + sizeof(*eth) + sizeof(*ip);
	__u8 *flags = (void *)(udp + 1) + 2;  /* the DNS header's flags, after its id */
	__be32 addr;
	__be16 port;

	if ((void *)(flags + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || udp->dest != bpf_htons(53))
		return XDP_PASS;
	swap_macs(eth);
	addr = ip->saddr;  /* swapped, the IPv4 checksum still holds */
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->check = 0;  /* optional over IPv4; the flags change below would break it */
	*flags |= 0x80;  /* QR */
	/* a redirect to the interface it came in on, as the pipeline sends its answers
	 * (XDP_TX on a veth does not reach the peer here) */
	return bpf_redirect(ctx->ingress_ifindex, 0);
}

char _license[] SEC("license") = "GPL";
