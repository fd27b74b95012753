/* The XDP pipeline's skeleton: stage slots, per-packet metadata, counters. */
#ifndef DFXDP_MAPS_PIPELINE_H
#define DFXDP_MAPS_PIPELINE_H

#include <linux/types.h>

/* The pipeline, declared once: the slots of the `stages` PROG_ARRAY in the order
 * a frame runs them. next_stage (bpf/lib/pipeline.h), Python's stage names, hook
 * slots and counters (dfxdp/datapath/pipeline.py) and `dfxdp trace` follow it. */
enum dfxdp_stage {
	STAGE_PORTSEC = 0,
	STAGE_SG_EGRESS = 1,
	STAGE_HOOK_0 = 2,       /* user hook slots, filled in priority order by `dfxdp hook` */
	STAGE_HOOK_1 = 3,
	STAGE_HOOK_2 = 4,
	STAGE_HOOK_3 = 5,
	STAGE_LB = 6,
	STAGE_DNS = 7,
	STAGE_L3 = 8,
	STAGE_L2 = 9,
	STAGE_SG_INGRESS = 10,
	STAGE_OUTPUT = 11,
	STAGE_MAX = 12,
};

/* Slots that must hold a program: when one is empty the frame is dropped
 * (DROP_STAGE_MISSING) rather than skipped, so security never fails open.
 * Every other empty slot is skipped. */
enum dfxdp_stage_policy {
	STAGE_MANDATORY = (1 << STAGE_PORTSEC) | (1 << STAGE_SG_EGRESS) | (1 << STAGE_SG_INGRESS),
};

/* Pseudo stages counted in `stage_stats` beside the slots above. */
enum dfxdp_stage_entry {
	STAGE_ENTRY_PORT = STAGE_MAX,
	STAGE_ENTRY_UNDERLAY = STAGE_MAX + 1,
	STAGE_STATS_MAX = STAGE_MAX + 2,
};

/* Why a frame was dropped (index of `drop_stats`). */
enum dfxdp_drop_reason {
	DROP_NONE = 0,
	DROP_MALFORMED = 1,        /* a header field is impossible (bad IHL, version …) */
	DROP_TRUNCATED = 2,        /* a header runs past the end of the frame */
	DROP_PORTSEC_MAC = 3,      /* source MAC is not the port's */
	DROP_PORTSEC_IP = 4,       /* source IP is neither the port's nor an allowed pair */
	DROP_SG_EGRESS = 5,        /* no egress security-group rule allows it */
	DROP_SG_INGRESS = 6,       /* no ingress security-group rule allows it */
	DROP_CT_FULL = 7,          /* conntrack table full: new flows are denied */
	DROP_NO_ROUTE = 8,         /* routed, but no route or no next hop */
	DROP_TTL_EXCEEDED = 9,     /* TTL ran out (an ICMP error is sent back) */
	DROP_NO_TUNNEL = 10,       /* remote port, but its chassis is unknown */
	DROP_REDIRECT_FAILED = 11, /* target interface is gone */
	DROP_NOT_LOCAL = 12,       /* decapsulated, but the destination is not on this chassis */
	DROP_CT_NOT_SYN = 13,      /* TCP segment of no tracked connection: only a SYN opens one */
	DROP_PORTSEC_ETHERTYPE = 14, /* port security on: neither ARP, IPv4 nor IPv6 (VLAN tags included) */
	DROP_SG_IPV6 = 15,         /* IPv6 to or from a port with security groups (no IPv6 rules yet) */
	DROP_FRAG_NEEDED = 16,     /* too big for the tunnel, DF set: ICMP "fragmentation needed" sent back */
	DROP_TOO_BIG = 17,         /* too big for the tunnel and not IPv4 with DF: dropped, nothing sent */
	DROP_STAGE_MISSING = 18,   /* a mandatory stage (port security, security groups) has no program */
	DROP_HOOK = 19,            /* a user hook program dropped it */
	DROP_PUNTED = 20,          /* handed to the agent (bpf/lib/punt.h): not lost, answered there */
	DROP_PUNT_RATE = 21,       /* the port punts more than its limit (maps/punt.h) */
	DROP_PUNT_QUEUE_FULL = 22, /* the agent's punt ring is full: the agent is slow or not running */
	DROP_PUNT_TOO_BIG = 23,    /* longer than PUNT_FRAME_MAX: not worth handing up */
	DROP_LB_NO_MEMBER = 24,    /* a new flow to a VIP whose pool has no member up */
	DROP_LB_NO_FLOW = 25,      /* a member's answer sent to a floating IP's chassis that holds no flow for it */
	DROP_VLAN_UNKNOWN = 26,    /* 802.1Q/802.1ad-tagged on an external NIC, no network of that VLAN here (bpf/lib/vlan.h) */
	DROP_REASON_MAX = 27,
};

/* Flags in pkt_meta.flags. */
#define PKT_F_FROM_UNDERLAY 1   /* arrived VXLAN-encapsulated from another chassis */
#define PKT_F_ROUTED 2          /* passed through the distributed router */
#define PKT_F_VLAN 4            /* arrived 802.1Q-tagged on an external NIC: replies get the tag back */
#define PKT_F_DST_LOCAL 8       /* out_ifindex is a port on this chassis */
#define PKT_F_DST_REMOTE 16     /* tunnel_dst is the chassis hosting the destination */
#define PKT_F_LB_DNAT 32        /* the LB stage DNATed a floating IP to a member: L3 routes it in */
#define PKT_F_FAST 64           /* forwarded by the established-flow fast path (maps/fastpath.h) */
#define PKT_F_FAST_PENDING 128  /* fast_pending holds this frame: stage_output caches the decision */
#define PKT_F_SG_EGRESS_OK 256  /* egress rules allowed it as a packet of an established flow (counted) */
#define PKT_F_SG_INGRESS_OK 512 /* the same for ingress rules */

/* Per-packet state handed from stage to stage (per-CPU scratch: XDP runs a
 * frame to completion on one CPU, tail calls included). */
struct pkt_meta {
	__u32 in_ifindex;
	__u32 net_key;        /* network the frame is in (VNI); may change when routed */
	__u32 src_port_key;
	__u32 dst_port_key;
	__u32 out_ifindex;    /* local destination port, or the underlay */
	__be32 tunnel_dst;    /* remote chassis for PKT_F_DST_REMOTE */
	__u32 flags;
	__u32 stages_seen;    /* bit per stage slot / entry that ran, for `dfxdp trace` */
	__u32 drop_reason;
	__u32 stage;          /* slot being entered: how a hook learns its own place */
	/* PKT_F_ROUTED: where an ICMP error goes back to (the router port the frame
	 * entered by, and the frame's MACs before the hop rewrote them) */
	__be32 router_ip;
	__u8 sender_mac[6];
	__u8 router_mac[6];
	__be32 learned_nexthop; /* the next hop's MAC came from ext_neigh (learned), for this IP */
};

/* A packets/bytes pair; per-CPU maps hold one per CPU, summed in Python. */
struct counter {
	__u64 packets;
	__u64 bytes;
};

#endif
