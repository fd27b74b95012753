/* The bench's traffic generator (bpf/trafficgen.c), its sink (bpf/trafficsink.c) and the
 * datapath bench's frame replay (bpf/trafficgen_replay.c). */
#ifndef DFXDP_MAPS_TRAFFICGEN_H
#define DFXDP_MAPS_TRAFFICGEN_H

#include <linux/types.h>

#define TG_HEADER_LEN 34    /* Ethernet + IPv4 without options */
#define TG_PORT 5201        /* the flows' server port: what the sink counts */

/* map `tg_config` (ARRAY, one entry): where the generator sends and the headers it
 * writes into every frame (a router on the way rewrites them in the recycled page) */
struct tg_config {
	__u32 ifindex;
	__u8 header[TG_HEADER_LEN];
	__u8 pad[2];
};

/* map `tg_delivered` (PER-CPU ARRAY, one entry): frames the sink counted and dropped */
struct tg_counter {
	__u64 packets;
	__u64 bytes;
};

#define TG_REPLAY_LEN 64    /* every frame the datapath bench replays has this length */
#define TG_REPLAY_MAX 128   /* the longest frame put back (the DNS bench's queries) */

/* map `tg_replay_frame` (ARRAY, one entry): the frame put back before each run */
struct tg_replay {
	__u32 len;       /* TG_REPLAY_LEN .. TG_REPLAY_MAX */
	__u32 at_tail;   /* the program under test grows the frame at its end (an answer written in place) */
	__u8 frame[TG_REPLAY_MAX];
};

#endif
