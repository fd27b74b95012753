// SPDX-License-Identifier: GPL-2.0
/* Neutron's internal DNS, answered at the source chassis: a VM's UDP query to
 * its network's DNS server address (the DHCP port's) asking A or AAAA for a
 * name of the network, or PTR for one of its addresses, is turned into the
 * answer in place and sent back through the VM's ingress security groups, as
 * a reply from the server would be. Any other UDP query — other names and
 * types, DNSSEC OK, truncation, malformed ones — and every TCP segment to port
 * 53 are punted to the agent, which answers the network's names itself and
 * relays the rest to a real resolver (controller/apps/dns.py); fragments go on
 * unchanged. Every query is counted by what happened in `dns_stats`. */
#include "lib/csum.h"
#include "lib/dns.h"
#include "lib/dns_maps.h"
#include "lib/icmp.h"
#include "lib/pipeline.h"
#include "lib/punt.h"

#define DNS_OFF (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))
#define QNAME_OFF (DNS_OFF + DNS_HDR_LEN)
#define REPLY_MASK 511
#define DNS_OUR_UDP_SIZE 1232  /* advertised in our OPT: the DNS flag day's safe size */

static __always_inline void dns_stat(struct xdp_md *ctx, __u32 stat)
{
	count(&dns_stats, stat, ctx);
}

/* Up to the agent's relay to a real resolver, counted by why. */
static __always_inline int dns_up(struct xdp_md *ctx, struct pkt_meta *m, __u32 stat)
{
	dns_stat(ctx, stat);
	return punt(ctx, m, PUNT_DNS);
}

/* What the answer needs from the query besides the name. */
struct dns_query {
	__u16 qtype;
	__u16 qclass;
	__u16 flags;
	__u16 udp_size;   /* the client's, 0 without OPT */
	__u32 qend;       /* frame offset just after the question */
};

static __always_inline void put16(__u8 *buf, __u32 pos, __u16 v)
{
	buf[pos & REPLY_MASK] = v >> 8;
	buf[(pos + 1) & REPLY_MASK] = v;
}

static __always_inline void put32(__u8 *buf, __u32 pos, __u32 v)
{
	put16(buf, pos, v >> 16);
	put16(buf, pos + 2, v);
}

/* The fixed part of an answer record whose owner is the question (pointer to offset 12). */
static __always_inline void put_rr(__u8 *buf, __u32 pos, __u16 type, __u32 ttl, __u16 rdlen)
{
	put16(buf, pos, 0xc000 | DNS_HDR_LEN);
	put16(buf, pos + 2, type);
	put16(buf, pos + 4, DNS_CLASS_IN);
	put32(buf, pos + 6, ttl);
	put16(buf, pos + 10, rdlen);
}

static __always_inline void put_opt(__u8 *buf, __u32 pos)
{
	buf[pos & REPLY_MASK] = 0;
	put16(buf, pos + 1, DNS_TYPE_OPT);
	put16(buf, pos + 3, DNS_OUR_UDP_SIZE);
	put32(buf, pos + 5, 0);  /* extended rcode, version 0, no DO */
	put16(buf, pos + 9, 0);
}

/* Check the header, read the question and the optional OPT record: 0 to answer,
 * else the dns_stat that sends the query up. */
static __always_inline int dns_parse(struct xdp_md *ctx, __u32 payload_end, struct dns_scratch *s,
				     struct dns_question *q, struct dns_query *dq)
{
	struct dnshdr *h = frame_at(ctx, DNS_OFF, sizeof(*h));
	struct dns_opt opt;
	__u16 tail[2];
	__u16 arcount;
	int err;

	if (!h || payload_end < QNAME_OFF)
		return DNS_BAD_HEADER;
	dq->flags = bpf_ntohs(h->flags);
	arcount = bpf_ntohs(h->arcount);
	if (dq->flags & DNS_F_QR || h->ancount || h->nscount || arcount > 1)
		return DNS_BAD_HEADER;
	if (h->qdcount != bpf_htons(1))
		return DNS_BAD_QDCOUNT;
	if (dq->flags & (DNS_F_OPCODE | DNS_F_TC))
		return DNS_PASS_FLAGS;
	err = dns_read_name(ctx, QNAME_OFF, payload_end - QNAME_OFF, s, q);
	if (err)
		return err;
	dq->qend = QNAME_OFF + q->len + sizeof(tail);
	if (dq->qend > payload_end || bpf_xdp_load_bytes(ctx, QNAME_OFF + q->len, tail, sizeof(tail)))
		return DNS_BAD_TRUNCATED;
	dq->qtype = bpf_ntohs(tail[0]);
	dq->qclass = bpf_ntohs(tail[1]);
	dq->udp_size = 0;
	if (!arcount)
		return dq->qend == payload_end ? 0 : DNS_BAD_TRAILING;
	if (dq->qend + sizeof(opt) > payload_end || bpf_xdp_load_bytes(ctx, dq->qend, &opt, sizeof(opt)))
		return DNS_BAD_OPT;
	if (opt.root || opt.type != bpf_htons(DNS_TYPE_OPT))
		return DNS_BAD_OPT;
	if (dq->qend + sizeof(opt) + bpf_ntohs(opt.rdlen) != payload_end)
		return DNS_BAD_TRAILING;
	if (opt.version || opt.flags & bpf_htons(EDNS_F_DO))
		return DNS_PASS_FLAGS;  /* BADVERS or DNSSEC: the resolver's job */
	/* RFC 6891: a size below 512 is taken as 512; options (cookies …) are not echoed */
	dq->udp_size = bpf_ntohs(opt.udp_size) < DNS_CLASSIC_UDP ? DNS_CLASSIC_UDP : bpf_ntohs(opt.udp_size);
	return 0;
}

/* Write the records after the question into s->reply; returns their count and sets *len,
 * or -1 (with *stat set) when the query goes up. */
static __always_inline int dns_answer(struct dns_scratch *s, const struct dns_question *q,
				      const struct dns_query *dq, __u32 net_key, const struct dns_server *srv,
				      __u32 *len, __u16 *rcode, __u32 *stat)
{
	int n = 0;

	*rcode = 0;
	*len = 0;
	if (dq->qclass != DNS_CLASS_IN) {
		*stat = DNS_PASS_TYPE;
		return -1;
	}
	if (dq->qtype == DNS_TYPE_PTR) {
		struct dns_reverse_key rkey = { .net_key = net_key };
		struct dns_reverse_entry *r;
		__u32 nlen;

		if (!dns_reverse_ipv4(s, q->len, &rkey.ip) || !(r = bpf_map_lookup_elem(&dns_reverse, &rkey))) {
			*stat = DNS_PASS_UNKNOWN;
			return -1;
		}
		nlen = r->name_len;
		if (nlen < 1 || nlen > DNS_NAME_MAX) {
			*stat = DNS_PASS_UNKNOWN;
			return -1;
		}
		put_rr(s->reply, 0, DNS_TYPE_PTR, srv->ttl, nlen);
		__builtin_memcpy(&s->reply[12], r->name, DNS_NAME_BUF);  /* its zero padding is never sent */
		*len = 12 + nlen;
		*stat = DNS_ANSWERED;
		return 1;
	}
	if (dq->qtype == DNS_TYPE_A || dq->qtype == DNS_TYPE_AAAA) {
		struct dns_name_key key = { .net_key = net_key, .hash = q->hash };
		struct dns_name_entry *e = bpf_map_lookup_elem(&dns_names, &key);

		if (!e) {
			if (!dns_under_domain(s, q->len, srv)) {
				*stat = DNS_PASS_UNKNOWN;
				return -1;
			}
			*rcode = DNS_RCODE_NXDOMAIN;
			*stat = DNS_NXDOMAIN;
			return 0;
		}
		if (e->name_len != q->len || !dns_bytes_equal(s->name, 0, e->name, q->len)) {
			*stat = DNS_HASH_COLLISION;
			return -1;
		}
		if (dq->qtype == DNS_TYPE_A) {
#pragma unroll
			for (int k = 0; k < DNS_ADDRS_MAX; k++) {
				if (k >= e->ipv4_count)
					break;
				put_rr(s->reply, k * 16, DNS_TYPE_A, srv->ttl, 4);
				__builtin_memcpy(&s->reply[k * 16 + 12], &e->ipv4[k], 4);
				n++;
			}
		} else {
#pragma unroll
			for (int k = 0; k < DNS_ADDRS_MAX; k++) {
				if (k >= e->ipv6_count)
					break;
				put_rr(s->reply, k * 28, DNS_TYPE_AAAA, srv->ttl, 16);
				__builtin_memcpy(&s->reply[k * 28 + 12], e->ipv6[k], 16);
				n++;
			}
		}
		*len = n * (dq->qtype == DNS_TYPE_A ? 16 : 28);
		*stat = n ? DNS_ANSWERED : DNS_NODATA;
		return n;
	}
	*stat = DNS_PASS_TYPE;
	return -1;
}

/* Resize the frame to the answer and turn it around: Ethernet, IPv4, UDP, DNS header. */
static __always_inline int dns_rewrite(struct xdp_md *ctx, struct dns_scratch *s, const struct dns_query *dq,
				       __u32 records_len, int ancount, __u16 rcode)
{
	__u32 tail_len = records_len + (dq->udp_size ? DNS_OPT_LEN : 0);
	__u32 new_len = dq->qend + tail_len;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct udphdr *udp;
	struct dnshdr *h;
	__be32 addr;
	__be16 port;

	if (dq->udp_size)
		put_opt(s->reply, records_len);
	if (bpf_xdp_adjust_tail(ctx, (int)new_len - (int)bpf_xdp_get_buff_len(ctx)))
		return -1;
	tail_len &= REPLY_MASK;
	if (tail_len && bpf_xdp_store_bytes(ctx, dq->qend, s->reply, tail_len))
		return -1;
	eth = frame_at(ctx, 0, DNS_OFF + sizeof(*h));
	if (!eth)
		return -1;
	ip = (void *)(eth + 1);
	udp = (void *)(ip + 1);
	h = (void *)(udp + 1);
	swap_macs(eth);
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	ip->tot_len = bpf_htons(new_len - sizeof(*eth));
	ip->ttl = 64;
	ip->check = ipv4_hdr_csum(ip);
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->len = bpf_htons(new_len - sizeof(*eth) - sizeof(*ip));
	udp->check = 0;  /* optional over IPv4 */
	h->flags = bpf_htons(DNS_F_QR | DNS_F_AA | DNS_F_RA | (dq->flags & DNS_F_RD) | rcode);
	h->ancount = bpf_htons(ancount);
	h->nscount = 0;
	h->arcount = bpf_htons(dq->udp_size ? 1 : 0);
	return 0;
}

SEC("xdp")
int stage_dns(struct xdp_md *ctx)
{
	struct pkt_meta *m = pkt_meta_get();
	struct dns_server_key skey = {};
	struct dns_question q = {};
	struct dns_query dq = {};
	struct dns_server *srv;
	struct dns_scratch *s;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 zero = 0, stat, records_len, payload_end, limit;
	__u16 rcode;
	int ancount;

	if (!m)
		return XDP_ABORTED;
	stage_enter(ctx, m, STAGE_DNS);
	if (m->flags & PKT_F_FROM_UNDERLAY || !m->src_port_key)
		return next_stage(ctx, m, STAGE_DNS + 1);
	eth = frame_at(ctx, 0, sizeof(*eth) + sizeof(*ip));
	if (!eth || eth->h_proto != ETH_P_IP_BE)
		return next_stage(ctx, m, STAGE_DNS + 1);
	ip = (void *)(eth + 1);
	if (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP)
		return next_stage(ctx, m, STAGE_DNS + 1);
	skey.net_key = m->net_key;
	skey.ip = ip->daddr;
	if (ip->ihl != 5 || ip->frag_off & bpf_htons(0x3fff)) {
		if (bpf_map_lookup_elem(&dns_servers, &skey))
			dns_stat(ctx, DNS_PASS_IP);
		return next_stage(ctx, m, STAGE_DNS + 1);
	}
	/* the destination port before the server lookup: most traffic is not DNS and
	 * costs no hash lookup here (UDP and TCP both have it at offset 2) */
	udp = frame_at(ctx, sizeof(*eth) + sizeof(*ip), sizeof(*udp));
	if (!udp || udp->dest != bpf_htons(DNS_PORT))
		return next_stage(ctx, m, STAGE_DNS + 1);
	srv = bpf_map_lookup_elem(&dns_servers, &skey);
	if (!srv)
		return next_stage(ctx, m, STAGE_DNS + 1);  /* not to a DNS server of the network */
	/* DNS over TCP (a client retrying a truncated answer, or asking so): every
	 * segment goes to the agent, which holds the connection (controller/dns_tcp.py) */
	if (ip->protocol == IPPROTO_TCP)
		return dns_up(ctx, m, DNS_PASS_TCP);
	s = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!s)
		return next_stage(ctx, m, STAGE_DNS + 1);
	/* the datagram ends where IPv4 says (the entry checked it fits the frame), not at Ethernet padding */
	payload_end = sizeof(*eth) + bpf_ntohs(ip->tot_len);
	if (bpf_ntohs(udp->len) != payload_end - sizeof(*eth) - sizeof(*ip)) {
		dns_stat(ctx, DNS_BAD_HEADER);
		return next_stage(ctx, m, STAGE_DNS + 1);
	}
	stat = dns_parse(ctx, payload_end, s, &q, &dq);
	if (stat)
		return dns_up(ctx, m, stat);
	ancount = dns_answer(s, &q, &dq, m->net_key, srv, &records_len, &rcode, &stat);
	if (ancount < 0)
		return dns_up(ctx, m, stat);
	limit = dq.udp_size ? dq.udp_size : DNS_CLASSIC_UDP;
	if (dq.qend - DNS_OFF + records_len + (dq.udp_size ? DNS_OPT_LEN : 0) > limit)
		return dns_up(ctx, m, DNS_PASS_TOO_BIG);
	if (dns_rewrite(ctx, s, &dq, records_len, ancount, rcode))
		return verdict(ctx, m, XDP_DROP, DROP_MALFORMED);
	dns_stat(ctx, stat);
	/* Back to the sender through its ingress security groups: the query opened the flow at egress. */
	m->dst_port_key = m->src_port_key;
	m->out_ifindex = m->in_ifindex;
	m->flags |= PKT_F_DST_LOCAL;
	return next_stage(ctx, m, STAGE_SG_INGRESS);
}

char _license[] SEC("license") = "GPL";
