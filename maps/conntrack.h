/* Connection tracking for stateful security groups: one entry per port,
 * direction and flow, in the direction the flow was first seen there. */
#ifndef DFXDP_MAPS_CONNTRACK_H
#define DFXDP_MAPS_CONNTRACK_H

#include <linux/types.h>

enum ct_state {
	CT_SYN_SENT = 1,     /* TCP opened, no answer yet */
	CT_ESTABLISHED = 2,  /* TCP answered */
	CT_CLOSING = 3,      /* TCP FIN both ways, or RST */
	CT_UDP = 4,
	CT_ICMP = 5,
	CT_OTHER = 6,
	CT_FIN_ORIG = 7,     /* TCP half-closed by the end that opened it */
	CT_FIN_REPLY = 8,    /* TCP half-closed by the end that answered */
};

/* timeouts in seconds */
#define CT_TIMEOUT_SYN 30
#define CT_TIMEOUT_ESTABLISHED 3600
#define CT_TIMEOUT_CLOSING 10
#define CT_TIMEOUT_HALF_CLOSED 120  /* Linux conntrack's FIN_WAIT */
#define CT_TIMEOUT_UDP 60
#define CT_TIMEOUT_ICMP 30
#define CT_TIMEOUT_OTHER 60

#define CT_F_REPLIED 1

/* map `conntrack`: a plain hash, so a full table refuses new flows (counted
 * DROP_CT_FULL) instead of evicting live ones; expired entries are removed
 * when met and by the agent's sweep. */
struct ct_key {
	__u32 port_key;
	__u32 direction;     /* SG_INGRESS / SG_EGRESS where it was first seen */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;        /* ICMP: the echo id in sport, 0 in dport */
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct ct_entry {
	__u64 last_seen_ns;  /* bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC, tick resolution */
	__u64 packets;
	__u32 state;         /* enum ct_state */
	__u32 flags;         /* CT_F_* */
};

#endif
