/* Security group policy: a few hash lookups, whatever the number of rules. */
#ifndef DFXDP_LIB_SG_H
#define DFXDP_LIB_SG_H

#include "conntrack.h"

#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED_T 11
#define ICMP_PARAM_PROBLEM 12

/* Bit v (0..255) of a 256-bit set. */
static __always_inline int sg_bit(const __u32 *set, __u32 v)
{
	return (set[(v >> 5) & 7] >> (v & 31)) & 1;
}

/* Does the class allow `proto` to the destination port (or ICMP type << 8 | code) v?
 * The summary entry answers whole chunks; a chunk's own entry only the others. */
static __always_inline int sg_l4_allows(__u32 policy, __u32 dir, __u32 class_id, __u8 proto, __u32 v)
{
	struct sg_l4_key key = { .policy = policy, .class_id = class_id, .direction = dir, .proto = proto,
				 .chunk = SG_L4_SUMMARY };
	__u32 chunk = (v >> 8) & 0xff;
	struct sg_l4_set *s = bpf_map_lookup_elem(&sg_l4, &key);

	if (!s || sg_bit(s->partial, chunk) == 0)
		return s && sg_bit(s->set, chunk);
	key.chunk = chunk;
	s = bpf_map_lookup_elem(&sg_l4, &key);
	return s && sg_bit(s->set, v & 0xff);
}

static __always_inline int sg_class_allows(__u32 flags, __u32 policy, __u32 dir, __u32 class_id, __u8 proto, __u32 v)
{
	if (flags & SG_CLASS_F_ALL)
		return 1;
	return (flags & SG_CLASS_F_L4) && sg_l4_allows(policy, dir, class_id, proto, v);
}

/* The class of a remote address: one exact lookup per prefix length the policy's
 * rules use (bit i of `lens`: a /32 - i), longest first, so the first hit is the
 * longest matching prefix. The cost follows the number of lengths, not of rules. */
static __always_inline struct sg_class *sg_remote_class(__u32 policy, __u32 dir, __u32 lens, __be32 remote)
{
	struct sg_remote_key key = { .policy = policy, .direction = dir };
	__u32 host = bpf_ntohl(remote);

	for (__u32 i = 0; i < 32 && lens; i++, lens >>= 1) {
		struct sg_class *cls;

		if (!(lens & 1))
			continue;
		key.prefix_len = 32 - i;
		key.addr = bpf_htonl(host & (0xffffffffu << i));
		cls = bpf_map_lookup_elem(&sg_remote, &key);
		if (cls)
			return cls;
	}
	return NULL;
}

/* Does the port's policy, on its `dir` side, allow a new flow f with this remote address? */
static __always_inline int sg_policy_allows(const struct sg_port *port, __u32 dir, const struct flow *f,
					    __be32 remote)
{
	__u32 v = f->proto == IPPROTO_ICMP ? ((__u32)f->icmp_type << 8) | f->icmp_code : bpf_ntohs(f->dport);
	struct sg_class *cls;

	if (sg_class_allows(port->any_flags[dir], port->policy, dir, SG_CLASS_ANY, f->proto, v))
		return 1;
	cls = sg_remote_class(port->policy, dir, port->remote_lens[dir], remote);
	return cls && sg_class_allows(cls->flags, port->policy, dir, cls->class_id, f->proto, v);
}

/* The flow of an IPv4 frame; returns 0 or a DROP_* reason. ICMP echo ids stand in for ports. */
static __always_inline int flow_of(struct xdp_md *ctx, __u32 off, struct flow *f)
{
	struct iphdr *ip = frame_at(ctx, off, sizeof(*ip));

	if (!ip)
		return DROP_TRUNCATED;
	__builtin_memset(f, 0, sizeof(*f));
	f->saddr = ip->saddr;
	f->daddr = ip->daddr;
	f->proto = ip->protocol;
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0; /* a later fragment: addresses only */
	off += ip->ihl * 4;
	if (f->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = frame_at(ctx, off, sizeof(*tcp));

		if (!tcp)
			return DROP_TRUNCATED;
		f->sport = tcp->source;
		f->dport = tcp->dest;
		f->tcp_flags = ((__u8 *)tcp)[13];
	} else if (f->proto == IPPROTO_UDP) {
		struct udphdr *udp = frame_at(ctx, off, sizeof(*udp));

		if (!udp)
			return DROP_TRUNCATED;
		f->sport = udp->source;
		f->dport = udp->dest;
	} else if (f->proto == IPPROTO_ICMP) {
		struct icmp_hdr *icmp = frame_at(ctx, off, sizeof(*icmp));

		if (!icmp)
			return DROP_TRUNCATED;
		f->icmp_type = icmp->type;
		f->icmp_code = icmp->code;
		if (icmp->type == 0 || icmp->type == 8)
			f->sport = f->dport = icmp->id; /* request and reply share the id: symmetric */
	}
	return 0;
}

static __always_inline int icmp_is_error(const struct flow *f)
{
	return f->proto == IPPROTO_ICMP && (f->icmp_type == ICMP_DEST_UNREACH ||
					    f->icmp_type == ICMP_TIME_EXCEEDED_T ||
					    f->icmp_type == ICMP_PARAM_PROBLEM);
}

/* Stateful filtering for one port (its connections) and direction, under its
 * compiled policy; 0 to allow, else a drop reason. *state: the state of the flow
 * entry that allowed it (0: none, an ICMP error about a tracked flow). */
static __always_inline int sg_filter(struct xdp_md *ctx, __u32 port, const struct sg_port *rec, __u32 dir,
				     __u32 deny_reason, __u32 *state)
{
	__u32 other = dir == SG_INGRESS ? SG_EGRESS : SG_INGRESS;
	/* CLOCK_MONOTONIC at tick resolution, plenty for timeouts of seconds: the fine clock
	 * (a TSC read) cost ~26 ns a packet, as much as the conntrack lookup */
	__u64 now = bpf_ktime_get_coarse_ns();
	struct ct_entry *e;
	struct ct_key key;
	struct flow f;
	int err;

	err = flow_of(ctx, sizeof(struct ethhdr), &f);
	if (err)
		return err;
	/* this direction's own entry: the flow started here */
	ct_key_of(&key, port, dir, &f, 0);
	e = ct_find(&key, now);
	if (e) {
		ct_advance(e, &f, 0, now);
		*state = e->state;
		return 0;
	}
	/* the reply of a flow that started the other way at this port */
	ct_key_of(&key, port, other, &f, 1);
	e = ct_find(&key, now);
	if (e) {
		ct_advance(e, &f, 1, now);
		*state = e->state;
		return 0;
	}
	/* an ICMP error about a tracked flow: the quoted header is a packet that crossed
	 * this port the other way, either opening a flow there or answering one opened
	 * this way (a hop that cannot forward a server's reply tells the server) */
	if (icmp_is_error(&f)) {
		struct flow inner;
		__u32 off = sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct icmp_hdr);

		if (flow_of(ctx, off, &inner) == 0) {
			ct_key_of(&key, port, other, &inner, 0);
			if (ct_find(&key, now))
				return 0;
			ct_key_of(&key, port, dir, &inner, 1);
			if (ct_find(&key, now))
				return 0;
		}
	}
	if (!sg_policy_allows(rec, dir, &f, dir == SG_INGRESS ? f.saddr : f.daddr))
		return deny_reason;
	/* No mid-stream pickup: once a removed rule flushed a flow, its next segment
	 * (either way) must not quietly open it again. */
	if (f.proto == IPPROTO_TCP && (f.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN)
		return DROP_CT_NOT_SYN;
	ct_key_of(&key, port, dir, &f, 0);
	*state = ct_initial_state(&f);
	return ct_create(&key, &f, now);
}

static __always_inline void sg_count(struct xdp_md *ctx, __u32 port, __u32 dir, int allowed)
{
	struct sg_stats_key key = { .port_key = port, .direction = dir };
	struct sg_counters *c = bpf_map_lookup_elem(&sg_stats, &key);
	__u64 len = ctx->data_end - ctx->data;

	if (!c) {
		struct sg_counters zero = {};

		bpf_map_update_elem(&sg_stats, &key, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&sg_stats, &key);
		if (!c)
			return;
	}
	if (allowed) {
		c->allowed_packets++;
		c->allowed_bytes += len;
	} else {
		c->denied_packets++;
		c->denied_bytes += len;
	}
}

#endif
