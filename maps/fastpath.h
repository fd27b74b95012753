/* The established-flow fast path (bpf/lib/fastpath.h, docs/datapath.md): what the
 * stage chain decided for a flow, cached by the frame as it arrives, so the next
 * frames of the flow are forwarded by one lookup. */
#ifndef DFXDP_MAPS_FASTPATH_H
#define DFXDP_MAPS_FASTPATH_H

#include <linux/types.h>

/* A cached decision is re-derived by the stage chain at least this often, whatever
 * else happens: the flow's conntrack entries are stamped then, and a change no
 * writer announced (fast_gen) is picked up within this time. */
#define FAST_REVALIDATE_NS 1000000000

/* map `fast_flows` (LRU hash): a frame as it arrives on a port, everything the
 * stages looked at: interface, MACs, addresses, L4 ports, protocol. */
struct fast_key {
	__u32 ifindex;
	__u8 smac[6];
	__u8 dmac[6];
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* fast_entry.flags: what to do to the frame, in this order (the stages' order). */
#define FAST_F_NAT_SRC 1        /* source address -> nat_addr (a floating IP's SNAT, a VIP's answer) */
#define FAST_F_NAT_DST 2        /* destination address -> nat_addr (floating IP DNAT, a VIP's member) */
#define FAST_F_NAT_PORT 4       /* the NATed side's L4 port -> nat_port first (load balancer) */
#define FAST_F_TTL 8            /* routed: TTL - 1 */
#define FAST_F_LOCAL 16         /* redirect to out_ifindex (with vlan_id pushed, FAST_F_VLAN) */
#define FAST_F_TUNNEL 32        /* VXLAN (VNI net_key) to tunnel_dst */
#define FAST_F_VLAN 64
#define FAST_F_SG_EGRESS 128    /* counted as allowed egress of src_port_key (sg_stats) */
#define FAST_F_SG_INGRESS 256   /* counted as allowed ingress of dst_port_key */
#define FAST_F_LEARNED_SRC 512  /* came in on an external NIC: ext_neigh[saddr] must still be its MAC */
#define FAST_F_LEARNED_DST 1024 /* dmac is ext_neigh[neigh_ip] (learned): it must still be */
#define FAST_F_ROUTED 2048      /* PKT_F_ROUTED, for the metadata `dfxdp trace` reads */

struct fast_entry {
	__u64 generation;     /* fast_gen when the stages decided this; another value: stale */
	__u64 decided_ns;     /* bpf_ktime_get_coarse_ns() then */
	__u8 smac[6];         /* the MACs the frame leaves with */
	__u8 dmac[6];
	__u16 flags;          /* FAST_F_* */
	__be16 nat_port;
	__be32 nat_addr;
	__be32 neigh_ip;
	__u32 out_ifindex;    /* FAST_F_LOCAL */
	__be32 tunnel_dst;    /* FAST_F_TUNNEL */
	__u32 net_key;        /* the network the frame leaves in (the VNI) */
	__u32 vlan_id;
	__u32 src_port_key;
	__u32 dst_port_key;
};

/* map `fast_pending` (per-CPU, one slot): a frame that may record its flow, as it arrived. */
struct fast_pending {
	struct fast_key key;
	__u64 generation;
	__u8 ip_head[10];     /* its IPv4 header up to the protocol: what may not change but the TTL */
	__u16 pad;
	__u32 pad2;
};

/* map `fast_stats` (per-CPU array of struct counter): frames by what the fast path did. */
enum fast_stat {
	FAST_HIT = 0,         /* forwarded from the cache */
	FAST_MISS = 1,        /* eligible, no entry: the stages decide */
	FAST_STALE = 2,       /* an entry from an older generation, or due for revalidation */
	FAST_RECHECK = 3,     /* an entry whose learned neighbour, tunnel or size check failed: the stages decide */
	FAST_RECORDED = 4,    /* the stages' decision cached */
	FAST_STAT_MAX = 5,
};

#endif
