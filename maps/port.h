/* Per-interface configuration: what the pipeline knows about the interface a
 * frame arrived on (map `if_config`, key: __u32 ifindex). */
#ifndef DFXDP_MAPS_PORT_H
#define DFXDP_MAPS_PORT_H

#include <linux/types.h>

#define IF_F_PORT 1          /* a bound VM/container port */
#define IF_F_PORTSEC 2       /* port security on: check source MAC/IP */
#define IF_F_UNDERLAY 4      /* the chassis' underlay NIC (VXLAN) */
/* an external (provider) network NIC: untagged frames are in its flat network (net_key, 0 if
 * none), tagged ones in their VLAN's network (ext_vlan_in) */
#define IF_F_EXTERNAL 8

struct port_record {
	__u32 net_key;    /* network key = VNI */
	__u32 port_key;
	__u32 flags;      /* IF_F_* */
	__be32 ipv4;      /* primary fixed IPv4, 0 if none */
	__u8 mac[6];
	__u16 pad;
};

/* maps `ext_vlan_in` (id: VLAN id -> __u32 network key) and `ext_vlan_out` (id: network key ->
 * __u32 VLAN id): the VLAN external networks each external NIC carries, one tag per network. */
struct ext_vlan_key {
	__u32 ifindex;
	__u32 id;
};

#endif
