/* Distributed routing and floating IPs: router ports, routes, NAT. */
#ifndef DFXDP_MAPS_L3_H
#define DFXDP_MAPS_L3_H

#include <linux/types.h>

#define ROUTE_F_CONNECTED 1   /* the destination is on the out network itself */
#define ROUTE_F_EXTERNAL 2    /* leaves through the external NIC (floating IP SNAT) */

/* map `router_ports`: (network, MAC) of a router port -> the router. Frames to
 * such a MAC are routed. Floating IPs count as ports of their router. */
struct router_port_key {
	__u32 net_key;
	__u8 mac[6];
	__u16 pad;
};

struct router_port {
	__u32 router_key;
	__be32 ip;             /* the port's address: source of ICMP errors sent from it */
};

/* map `router_ips`: addresses a router answers ping on */
struct router_ip_key {
	__u32 router_key;
	__be32 ip;
};

/* map `routes` (LPM trie): prefixlen = ROUTE_PREFIX_BASE (router) + destination prefix length */
#define ROUTE_PREFIX_BASE 32
struct route_key {
	__u32 prefixlen;
	__u32 router_key;
	__be32 dst;
};

struct route {
	__u32 out_net_key;
	__be32 nexthop;        /* 0 for connected routes: the destination itself */
	__u8 src_mac[6];       /* the router's port on the out network */
	__u16 flags;           /* ROUTE_F_* */
	__be32 src_ip;
	__u32 out_ifindex;     /* the external NIC for ROUTE_F_EXTERNAL */
};

/* map `fip_dnat`: floating IP hosted here -> the fixed IP behind it */
struct fip_dnat {
	__be32 fixed_ip;
	__u32 router_key;
};

/* map `fip_snat`: (network, fixed IP) -> its floating IP */
struct fip_snat_key {
	__u32 net_key;
	__be32 fixed_ip;
};

struct fip_snat {
	__be32 floating_ip;
	__u8 mac[6];           /* the floating IP's own MAC on the external network */
	__u16 pad;
};

#endif
