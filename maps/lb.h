/* The L4 load balancer: VIPs, their pools' Maglev rings, members, and the
 * per-flow NAT that pins each flow to the member it first got. */
#ifndef DFXDP_MAPS_LB_H
#define DFXDP_MAPS_LB_H

#include <linux/types.h>

#define LB_RING_SIZE 65537   /* slots of a pool's ring: prime, as Maglev needs (Katran's size) */
#define LB_MAX_RINGS 4096    /* pools with a ring on one chassis */

#define LB_UDP_IDLE_SEC 60   /* a UDP flow idle this long is over: its next datagram is a new flow */

#define LB_F_HASH_SRC_IP 1   /* the client's address alone picks the slot (SOURCE_IP, persistence) */
#define LB_F_ROUND_ROBIN 2   /* new flows take successive slots of a round-robin ring */
#define LB_F_FLOATING 4      /* a floating IP on the VIP's port: served to frames from the external NIC only */

/* map `lb_vips`: what a VIP serves. {vip, 0, IPPROTO_ICMP} marks an address
 * that answers ping; {vip, port, TCP|UDP} a listener. */
struct lb_vip_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb_vip {
	__u32 ring_key;      /* the pool's ring in `lb_rings` (its NB key) */
	__u32 flags;         /* LB_F_* */
	__u8 mac[6];         /* the VIP port's MAC: frames sent to it are bridged to the member */
	__u8 gw_mac[6];      /* the VIP subnet's router port: members not on the VIP's network */
};

/* map `lb_rings` (HASH_OF_MAPS): ring key -> an ARRAY of LB_RING_SIZE member
 * keys (0: an empty slot). The controller fills a new array and swaps it in
 * whole, so a frame sees the old ring or the new one, never a mix. */

/* map `lb_backends`: member key -> its address.
 * map `lb_reverse` (LRU): the member's side of a balanced flow -> the VIP to answer from.
 * The value says what to write into the frame's destination (DNAT) or source
 * (reverse NAT) address and port. */
struct lb_nat {
	__be32 addr;
	__be16 port;
	__u16 flags;         /* LB_NAT_F_*, in `lb_reverse` */
};

#define LB_NAT_F_FLOATING 1  /* answer as a floating IP: routed out of the external NIC here (lb_fip_out) */

/* map `lb_flows` (LRU): a client's flow to a VIP -> the member it was given. */
struct lb_flow {
	struct lb_nat member;
	__u64 last_seen_ns;  /* bpf_ktime_get_ns(), refreshed at most once a second (UDP idle timeout) */
};

struct lb_flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* A VIP reached from outside through a floating IP (docs/load-balancer.md). One
 * chassis hosts the floating IP: it answers ARP for it, balances with lb_vips
 * entries {floating IP, port, proto} (LB_F_FLOATING) and sends the members'
 * answers out itself.
 *
 * map `lb_fip_out` (that chassis): floating IP -> how its answers leave. */
struct lb_fip_out {
	__u32 net_key;       /* the external network */
	__u32 ifindex;       /* the external NIC */
	__u8 mac[6];         /* the floating IP's own MAC */
	__u16 pad;
};

/* map `lb_fip_return` (chassis hosting members): a member's service socket ->
 * where its answers to outside clients go, when this chassis holds no flow for
 * them: tunnelled to the floating IP's chassis, to its MAC on the external network. */
struct lb_fip_return_key {
	__u32 net_key;       /* the member's network */
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb_fip_return {
	__be32 tunnel_ip;    /* the floating IP's chassis */
	__u32 net_key;       /* the external network (the VNI of the tunnelled frame) */
	__u8 mac[6];         /* the floating IP's MAC: that chassis delivers it to its external NIC */
	__u16 pad;
};

#endif
