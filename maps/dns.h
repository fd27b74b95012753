/* The DNS responder: the networks' DNS server addresses, their names and
 * addresses, and why each query was answered or passed up. Names are stored
 * as lowercase DNS wire format ("\3web\16openstacklocal\0"). */
#ifndef DFXDP_MAPS_DNS_H
#define DFXDP_MAPS_DNS_H

#include <linux/types.h>

#define DNS_NAME_MAX 255    /* RFC 1035: a name in wire format, the final zero included */
#define DNS_NAME_BUF 256    /* a power of two: indexes are masked with DNS_NAME_BUF - 1 */
#define DNS_ADDRS_MAX 4     /* addresses of each family answered for one name */

/* map `dns_servers`: (network, address of its DHCP port) -> how its names are answered */
struct dns_server_key {
	__u32 net_key;
	__be32 ip;
};

struct dns_server {
	__u32 ttl;                    /* seconds, of every answer */
	__u32 domain_len;             /* wire length of domain, final zero included */
	__u8 domain[DNS_NAME_BUF];    /* the network's dns_domain: unknown names under it are NXDOMAIN */
};

/* map `dns_names`: (network, FNV-1a 32 of the lowercase wire name) -> its addresses.
 * The full name is stored and compared: a hash collision is never answered. */
struct dns_name_key {
	__u32 net_key;
	__u32 hash;
};

/* The IPv6 slots last: most names have none, and the agent keeps each value without its
 * trailing zeros (controller/reconciler.py), so an IPv4-only name costs its name only. */
struct dns_name_entry {
	__u32 name_len;
	__u32 ipv4_count;
	__u32 ipv6_count;
	__be32 ipv4[DNS_ADDRS_MAX];
	__u8 name[DNS_NAME_BUF];
	__u8 ipv6[DNS_ADDRS_MAX][16];
};

/* map `dns_reverse`: (network, IPv4) -> the name PTR queries get */
struct dns_reverse_key {
	__u32 net_key;
	__be32 ip;
};

struct dns_reverse_entry {
	__u32 name_len;
	__u8 name[DNS_NAME_BUF];
};

/* per-CPU scratch of one query (too big for the BPF stack) */
struct dns_scratch {
	__u8 name[DNS_NAME_BUF];      /* the question's name, lowercased */
	__u8 reply[DNS_NAME_BUF + 64]; /* what follows the question in the answer */
	__u32 label_starts[DNS_NAME_BUF / 32]; /* bit per offset in name where a label starts */
};

/* What happened to queries to a DNS server address (index of `dns_stats`). */
enum dns_stat {
	DNS_ANSWERED = 0,        /* A/AAAA with addresses, or PTR */
	DNS_NODATA = 1,          /* a known name without an address of the asked family */
	DNS_NXDOMAIN = 2,        /* an unknown name under the network's domain */
	DNS_PASS_UNKNOWN = 3,    /* a name outside the domain, or an address of no port: punted to the relay */
	DNS_PASS_TYPE = 4,       /* another type or class: up */
	DNS_PASS_FLAGS = 5,      /* not a plain query: opcode, TC, DNSSEC OK, EDNS version > 0 */
	DNS_PASS_IP = 6,         /* IP options or a fragment */
	DNS_PASS_TOO_BIG = 7,    /* the answer would not fit the client's UDP size */
	DNS_BAD_HEADER = 8,      /* shorter than a header, QR set, or answer/authority records */
	DNS_BAD_QDCOUNT = 9,     /* not exactly one question */
	DNS_BAD_LABEL = 10,      /* a compression pointer or a reserved label type in the question */
	DNS_BAD_TRUNCATED = 11,  /* the question runs past the datagram */
	DNS_BAD_TOO_LONG = 12,   /* a name longer than 255 bytes */
	DNS_BAD_TRAILING = 13,   /* bytes after the question (and OPT) */
	DNS_BAD_OPT = 14,        /* an additional record that is not one OPT for the root */
	DNS_HASH_COLLISION = 15, /* the hash found another name: up */
	DNS_PASS_TCP = 16,       /* a TCP segment to port 53: up to the agent's TCP responder */
	DNS_STAT_MAX = 17,
};

#endif
