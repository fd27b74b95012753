/* MAC address helpers. */
#ifndef DFXDP_LIB_MAC_H
#define DFXDP_LIB_MAC_H

#include "common.h"

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return ((__u32 *)a)[0] == ((__u32 *)b)[0] && ((__u16 *)a)[2] == ((__u16 *)b)[2];
}

/* Broadcast and multicast share the group bit. */
static __always_inline int mac_is_group(const __u8 *mac)
{
	return mac[0] & 1;
}

#endif
