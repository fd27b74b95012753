/* Security groups compiled into lookups. Ports with the same groups share one
 * compiled policy (its id is in sg_ports): per policy and direction, the
 * remote address picks a class (the set of rules whose prefix holds it), then
 * (class, protocol, port or ICMP type/code prefix) says allowed or not.
 * Connection state stays per port (maps/conntrack.h). */
#ifndef DFXDP_MAPS_SG_H
#define DFXDP_MAPS_SG_H

#include <linux/types.h>

#define SG_INGRESS 0
#define SG_EGRESS 1
#define SG_PROTO_ANY 0
#define SG_CLASS_ANY 0      /* rules with no remote restriction */
#define SG_PORT_FILTERED 1  /* port security on: rules apply */

/* map `sg_ports`: port_key -> struct sg_port */
struct sg_port {
	__u32 flags;
	__u32 policy;       /* the compiled policy of this port's set of groups */
};

/* map `sg_remote` (LPM): prefixlen = SG_REMOTE_PREFIX_BASE (policy, direction)
 * + remote prefix length */
#define SG_REMOTE_PREFIX_BASE 64
struct sg_remote_key {
	__u32 prefixlen;
	__u32 policy;
	__u32 direction;
	__be32 addr;
};

struct sg_remote {
	__u32 class_id;
};

/* map `sg_allow` (LPM): prefixlen = SG_ALLOW_PREFIX_BASE (policy … pad) + bits of
 * `l4` that matter (16 for a port, fewer for a port range block, 8 for an ICMP type alone). */
#define SG_ALLOW_PREFIX_BASE 112
struct sg_allow_key {
	__u32 prefixlen;
	__u32 policy;
	__u32 direction;
	__u32 class_id;
	__u8 proto;
	__u8 pad;
	__be16 l4;          /* destination port, or ICMP type << 8 | code */
};

/* map `sg_stats` (per-CPU): verdicts per port and direction */
struct sg_stats_key {
	__u32 port_key;
	__u32 direction;
};

struct sg_counters {
	__u64 allowed_packets;
	__u64 allowed_bytes;
	__u64 denied_packets;
	__u64 denied_bytes;
};

#endif
