/* Distributed L2: where each MAC of a network lives, the ARP answers, port
 * security's allowed sources, and the underlay next hop of remote chassis. */
#ifndef DFXDP_MAPS_L2_H
#define DFXDP_MAPS_L2_H

#include <linux/types.h>

#define FDB_F_LOCAL 1    /* a port bound on this chassis: redirect to ifindex */
#define FDB_F_REMOTE 2   /* a port on another chassis: VXLAN to tunnel_ip */

/* map `fdb`: (network, MAC) -> the port's location */
struct fdb_key {
	__u32 net_key;
	__u8 mac[6];
	__u16 pad;
};

struct fdb_entry {
	__u32 ifindex;     /* local tap, 0 when remote */
	__be32 tunnel_ip;  /* chassis hosting it, 0 when local */
	__u32 port_key;
	__u32 flags;       /* FDB_F_* */
};

/* map `arp_table`: every IPv4 known in a network -> its MAC (ARP responder, next hops) */
struct arp_key {
	__u32 net_key;
	__be32 ip;
};

struct arp_entry {
	__u8 mac[6];
	__u16 pad;
};

/* map `portsec` (LPM trie): which sources a port may use. prefixlen counts the
 * bits after itself: PORTSEC_PREFIX_BASE (ifindex) + the address prefix length. */
#define PORTSEC_PREFIX_BASE 32
struct portsec_key {
	__u32 prefixlen;
	__u32 ifindex;
	__be32 addr;
};

struct portsec_entry {
	__u8 mac[6];       /* the MAC allowed with this address */
	__u16 pad;
};

/* map `tunnel_endpoints`: remote chassis tunnel IP -> how to reach it on the underlay */
struct tunnel_endpoint {
	__u8 dmac[6];      /* underlay next hop */
	__u8 smac[6];      /* our underlay NIC */
	__u32 ifindex;     /* our underlay NIC */
	__be32 src_ip;     /* our tunnel IP */
	__u32 mtu;         /* the underlay's IP MTU toward it; 0: unknown, frames are not checked */
};

/* map `net_mtu` (LPM trie): what a frame too big for the tunnel gets back.
 * prefixlen = NET_MTU_PREFIX_BASE (network) + the subnet's prefix length, looked
 * up with the sender's address; the network-wide entry (prefixlen
 * NET_MTU_PREFIX_BASE) covers senders in none of its subnets and routed frames
 * (looked up in the out network). */
#define NET_MTU_PREFIX_BASE 32
struct net_mtu_key {
	__u32 prefixlen;
	__u32 net_key;
	__be32 addr;
};

struct net_mtu {
	__u32 mtu;         /* the network's MTU (NB), 0 if unset: the tunnel's room is the cap */
	__be32 icmp_src;   /* source of "fragmentation needed" when bridged; 0: none, nothing sent */
};

#define VXLAN_PORT 4789

#endif
