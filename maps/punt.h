/* The punt path: frames the datapath hands to the agent (Dragonflow's packet-in)
 * through the `punt_ring` ring buffer, rate-limited per port (see bpf/lib/punt.h). */
#ifndef DFXDP_MAPS_PUNT_H
#define DFXDP_MAPS_PUNT_H

#include <linux/types.h>

/* Why a frame was punted: the agent hands it to the apps registered for the reason. */
enum dfxdp_punt_reason {
	PUNT_DHCP = 1,   /* DHCP request from a port */
	PUNT_DNS = 2,    /* DNS query XDP cannot answer */
	PUNT_IGMP = 3,   /* IGMP membership report or leave */
	PUNT_REASON_MAX = 4,
};

/* Largest frame handed up; bigger ones are dropped (DROP_PUNT_TOO_BIG): a cut
 * DHCP or DNS message would be useless to the agent. Room for 1500 bytes of
 * payload behind Ethernet and two VLAN tags. */
#define PUNT_FRAME_MAX 1536

/* Per-port limit when `punt_limit` holds no setting: no VM can flood the agent. */
#define PUNT_DEFAULT_PACKETS 100
#define PUNT_DEFAULT_INTERVAL_MS 1000

/* One record of `punt_ring`: this header, then frame_len bytes of the frame. */
struct punt_header {
	__u32 ifindex;    /* the interface the frame came in on */
	__u32 port_key;
	__u32 net_key;
	__u16 reason;     /* enum dfxdp_punt_reason */
	__u16 frame_len;
};

/* map `punt_limit` (ARRAY, key 0): at most `packets` punts per port in every
 * `interval_ms`; packets == 0 means the defaults above. */
struct punt_limit {
	__u32 packets;
	__u32 interval_ms;
};

/* map `punt_buckets` (LRU hash, key: __u32 ifindex): the port's current window. */
struct punt_bucket {
	__u64 window_start_ns;
	__u64 count;      /* punts tried in this window, admitted or not */
};

#endif
