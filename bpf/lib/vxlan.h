/* VXLAN (RFC 7348) over IPv4/UDP: encapsulation toward a remote chassis,
 * decapsulation of what arrives for this one. VNI = network key. */
#ifndef DFXDP_LIB_VXLAN_H
#define DFXDP_LIB_VXLAN_H

#include "csum.h"
#include "parse.h"
#include "l2_maps.h"

#define VXLAN_FLAG_VNI 0x08

struct vxlanhdr {
	__u8 flags;
	__u8 reserved1[3];
	__be32 vni_reserved; /* VNI in the upper 24 bits */
};

#define VXLAN_OVERHEAD (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) + sizeof(struct vxlanhdr))
/* What the outer IPv4 packet adds to the inner frame: the underlay's MTU bounds their sum. */
#define VXLAN_IP_OVERHEAD (sizeof(struct iphdr) + sizeof(struct udphdr) + sizeof(struct vxlanhdr))

/* Does the frame still fit the underlay toward ep once encapsulated? XDP never
 * fragments, and the outer header has DF: a frame too big would be lost. */
static __always_inline int vxlan_fits(struct xdp_md *ctx, struct tunnel_endpoint *ep)
{
	return !ep->mtu || ctx->data_end - ctx->data + VXLAN_IP_OVERHEAD <= ep->mtu;
}

/* The largest untagged inner IPv4 packet the tunnel toward ep carries. */
static __always_inline __u32 vxlan_ip_mtu(struct tunnel_endpoint *ep)
{
	__u32 room = sizeof(struct ethhdr) + VXLAN_IP_OVERHEAD;

	return ep->mtu > room ? ep->mtu - room : 0;
}

/* A source port from the inner flow, so ECMP and RSS on the underlay spread tunnels. */
static __always_inline __be16 vxlan_src_port(struct xdp_md *ctx)
{
	struct ethhdr *eth = frame_at(ctx, 0, sizeof(*eth));
	struct iphdr *ip;
	__u32 h = 0x9e3779b9;

	if (!eth)
		return bpf_htons(49152);
	h ^= ((__u32 *)eth->h_source)[0] * 31 + ((__u16 *)eth->h_dest)[2];
	if (eth->h_proto == ETH_P_IP_BE) {
		ip = frame_at(ctx, sizeof(*eth), sizeof(*ip));
		if (ip)
			h ^= ip->saddr * 0x85ebca6b ^ ip->daddr * 0xc2b2ae35 ^ ip->protocol;
	}
	h ^= h >> 16;
	return bpf_htons(49152 + (h & 0x3fff));
}

/* Prepend outer Ethernet/IPv4/UDP/VXLAN headers for `vni` toward ep/dst.
 * Returns 0 on success, a DROP_* reason otherwise. */
static __always_inline int vxlan_encap(struct xdp_md *ctx, struct tunnel_endpoint *ep, __be32 dst, __u32 vni)
{
	__u32 inner_len = ctx->data_end - ctx->data;
	__be16 sport = vxlan_src_port(ctx);
	struct ethhdr *eth;
	struct iphdr *ip;
	struct udphdr *udp;
	struct vxlanhdr *vx;

	if (bpf_xdp_adjust_head(ctx, -(int)VXLAN_OVERHEAD))
		return DROP_REDIRECT_FAILED;
	eth = frame_at(ctx, 0, VXLAN_OVERHEAD);
	if (!eth)
		return DROP_TRUNCATED;
	ip = (void *)(eth + 1);
	udp = (void *)(ip + 1);
	vx = (void *)(udp + 1);

	__builtin_memcpy(eth->h_dest, ep->dmac, 6);
	__builtin_memcpy(eth->h_source, ep->smac, 6);
	eth->h_proto = ETH_P_IP_BE;

	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(inner_len + sizeof(*ip) + sizeof(*udp) + sizeof(*vx));
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); /* DF: the underlay MTU is sized for VXLAN */
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->saddr = ep->src_ip;
	ip->daddr = dst;
	ip->check = ipv4_hdr_csum(ip);

	udp->source = sport;
	udp->dest = bpf_htons(VXLAN_PORT);
	udp->len = bpf_htons(inner_len + sizeof(*udp) + sizeof(*vx));
	udp->check = 0; /* allowed for VXLAN over IPv4 */

	vx->flags = VXLAN_FLAG_VNI;
	vx->reserved1[0] = vx->reserved1[1] = vx->reserved1[2] = 0;
	vx->vni_reserved = bpf_htonl(vni << 8);
	return 0;
}

/* If this IPv4 frame is VXLAN for `local_ip`, the VNI and the inner frame's
 * offset; returns 1 then, 0 when it is something else, <0 (-DROP_*) when broken. */
static __always_inline int vxlan_parse(struct xdp_md *ctx, struct l3_view *v, __be32 local_ip,
				       __u32 *vni, __u32 *inner_off)
{
	struct udphdr *udp;
	struct vxlanhdr *vx;

	if (!v->ip || v->ip->protocol != IPPROTO_UDP || v->ip->daddr != local_ip || !v->l4_off)
		return 0;
	udp = frame_at(ctx, v->l4_off, sizeof(*udp));
	if (!udp)
		return -DROP_TRUNCATED;
	if (udp->dest != bpf_htons(VXLAN_PORT))
		return 0;
	vx = frame_at(ctx, v->l4_off + sizeof(*udp), sizeof(*vx));
	if (!vx)
		return -DROP_TRUNCATED;
	if (!(vx->flags & VXLAN_FLAG_VNI))
		return -DROP_MALFORMED;
	*vni = bpf_ntohl(vx->vni_reserved) >> 8;
	*inner_off = v->l4_off + sizeof(*udp) + sizeof(*vx);
	if (!frame_at(ctx, *inner_off, sizeof(struct ethhdr)))
		return -DROP_TRUNCATED;
	return 1;
}

#endif
