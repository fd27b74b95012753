/* Security groups compiled into hash lookups. Ports with the same groups share
 * one compiled policy (its id is in sg_ports). Per policy and direction, the
 * remote address picks a class (the set of rules whose prefix holds it) by one
 * exact lookup per remote prefix length the policy uses, longest first; then
 * (class, protocol) gives the allowed destination ports (or ICMP type << 8 | code)
 * as 256-bit sets: one or two lookups, whatever the number of rules.
 * Connection state stays per port (maps/conntrack.h). */
#ifndef DFXDP_MAPS_SG_H
#define DFXDP_MAPS_SG_H

#include <linux/types.h>

#define SG_INGRESS 0
#define SG_EGRESS 1
#define SG_CLASS_ANY 0      /* rules with no remote restriction */
#define SG_PORT_FILTERED 1  /* port security on: rules apply */

/* A class's flags (struct sg_class, and sg_port.any_flags for class SG_CLASS_ANY). */
#define SG_CLASS_F_ALL 1    /* a rule for any protocol: every packet is allowed */
#define SG_CLASS_F_L4 2     /* rules for some protocols: look (class, protocol) up in sg_l4 */

/* map `sg_ports`: port_key -> struct sg_port. The per-direction fields ([SG_INGRESS],
 * [SG_EGRESS]) describe the port's policy, so a packet needs no policy lookup. */
struct sg_port {
	__u32 flags;
	__u32 policy;           /* the compiled policy of this port's set of groups */
	__u32 remote_lens[2];   /* bit 32 - L: sg_remote holds /L prefixes of the policy (1..32) */
	__u32 any_flags[2];     /* SG_CLASS_F_* of the rules with no remote restriction */
};

/* map `sg_remote` (hash): (policy, direction, L, remote address / L) -> its class,
 * for the prefixes of the policy's rules (a remote group's members as /32s). */
struct sg_remote_key {
	__u32 policy;
	__u8 direction;
	__u8 prefix_len;
	__u16 pad;
	__be32 addr;        /* the remote address with its last 32 - prefix_len bits cleared */
};

struct sg_class {
	__u32 class_id;
	__u32 flags;        /* SG_CLASS_F_* */
};

/* map `sg_l4` (hash): the destination ports (or ICMP type << 8 | code) a class allows
 * for one protocol, v in 0..65535, cut into 256 chunks of 256 values. The summary
 * entry (chunk SG_L4_SUMMARY) has bit c of `set` when every value of chunk c is
 * allowed, and bit c of `partial` when some are; then chunk c's own entry has bit
 * v & 255 of `set` for each allowed v. Bit b of a set is bit b & 31 of word b >> 5. */
#define SG_L4_SUMMARY 256
struct sg_l4_key {
	__u32 policy;
	__u32 class_id;
	__u8 direction;
	__u8 proto;
	__u16 chunk;        /* v >> 8, or SG_L4_SUMMARY */
};

struct sg_l4_set {
	__u32 set[8];
	__u32 partial[8];   /* summary entries only */
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
