/* VLAN provider networks on external NICs (maps/port.h): the 802.1Q tag is
 * taken off a frame that enters by the NIC and put on one that leaves by it. */
#ifndef DFXDP_LIB_VLAN_H
#define DFXDP_LIB_VLAN_H

#include "parse.h"
#include "pipeline_maps.h"

#define VLAN_VID_MASK 0x0fff

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, struct ext_vlan_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ext_vlan_in SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only the agent writes it */
	__type(key, struct ext_vlan_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ext_vlan_out SEC(".maps");

struct vlan_tag {
	__be16 tci;
	__be16 proto; /* the ethertype of what the tag carries */
};

/* A frame that entered by an external NIC: an untagged one stays in the NIC's
 * flat network (m->net_key); an 802.1Q-tagged one moves to the network of its
 * VLAN, untagged, or is dropped when no network here claims that VLAN (fail
 * closed: it is no network's), as is any 802.1ad one. 0 or a drop reason. */
static __always_inline int vlan_pop(struct xdp_md *ctx, struct pkt_meta *m)
{
	struct ext_vlan_key key = { .ifindex = m->in_ifindex };
	struct vlan_tag *tag;
	struct ethhdr *eth;
	__u8 macs[12];
	__u32 *net;

	eth = frame_at(ctx, 0, sizeof(*eth));
	if (!eth)
		return DROP_TRUNCATED;
	if (eth->h_proto == bpf_htons(ETH_P_8021AD))
		return DROP_VLAN_UNKNOWN; /* an 802.1ad service tag: networks are 802.1Q VLANs */
	if (eth->h_proto != bpf_htons(ETH_P_8021Q))
		return 0;
	eth = frame_at(ctx, 0, sizeof(*eth) + sizeof(*tag));
	if (!eth)
		return DROP_TRUNCATED;
	tag = (void *)(eth + 1);
	key.id = bpf_ntohs(tag->tci) & VLAN_VID_MASK;
	net = bpf_map_lookup_elem(&ext_vlan_in, &key);
	if (!net)
		return DROP_VLAN_UNKNOWN;
	m->net_key = *net;
	m->flags |= PKT_F_VLAN;
	/* the MACs move 4 bytes on, over the tag: the carried ethertype becomes the frame's */
	__builtin_memcpy(macs, eth, sizeof(macs));
	if (bpf_xdp_adjust_head(ctx, sizeof(*tag)))
		return DROP_MALFORMED;
	eth = frame_at(ctx, 0, sizeof(*eth));
	if (!eth)
		return DROP_TRUNCATED;
	__builtin_memcpy(eth, macs, sizeof(macs));
	return 0;
}

/* The VLAN id network `net_key` has on NIC `ifindex`, NULL for flat networks and taps. */
static __always_inline __u32 *vlan_of(__u32 ifindex, __u32 net_key)
{
	struct ext_vlan_key key = { .ifindex = ifindex, .id = net_key };

	return bpf_map_lookup_elem(&ext_vlan_out, &key);
}

/* Push an 802.1Q tag with VLAN id `vid` in front of the frame's ethertype. 0 or a drop reason. */
static __always_inline int vlan_push(struct xdp_md *ctx, __u32 vid)
{
	struct vlan_tag *tag;
	struct ethhdr *eth;
	__u8 macs[12];

	eth = frame_at(ctx, 0, sizeof(*eth));
	if (!eth)
		return DROP_TRUNCATED;
	__builtin_memcpy(macs, eth, sizeof(macs));
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(*tag)))
		return DROP_REDIRECT_FAILED; /* no headroom: it cannot leave tagged */
	eth = frame_at(ctx, 0, sizeof(*eth) + sizeof(*tag));
	if (!eth)
		return DROP_TRUNCATED;
	/* the old ethertype is where the tag's carried ethertype goes: only MACs, TPID and TCI to write */
	__builtin_memcpy(eth, macs, sizeof(macs));
	eth->h_proto = bpf_htons(ETH_P_8021Q);
	tag = (void *)(eth + 1);
	tag->tci = bpf_htons(vid & VLAN_VID_MASK);
	return 0;
}

/* A frame that came tagged (PKT_F_VLAN) going back out of its NIC, or to the
 * kernel: it gets its network's tag again. One whose network is no VLAN of
 * that NIC any more (routed on, or the mapping just went) is dropped rather
 * than handed over untagged, into the flat network. 0 or a drop reason. */
static __always_inline int vlan_retag(struct xdp_md *ctx, struct pkt_meta *m)
{
	__u32 *vid = vlan_of(m->in_ifindex, m->net_key);

	if (!vid)
		return DROP_VLAN_UNKNOWN;
	return vlan_push(ctx, *vid);
}

#endif
