/* Conntrack for security groups: find, advance and create flow entries. */
#ifndef DFXDP_LIB_CONNTRACK_H
#define DFXDP_LIB_CONNTRACK_H

#include "parse.h"
#include "sg_maps.h"

#define NSEC_PER_SEC 1000000000ULL
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* What the pipeline knows of a packet's flow. */
struct flow {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
};

static __always_inline __u64 ct_timeout(__u32 state)
{
	switch (state) {
	case CT_SYN_SENT: return CT_TIMEOUT_SYN * NSEC_PER_SEC;
	case CT_ESTABLISHED: return CT_TIMEOUT_ESTABLISHED * NSEC_PER_SEC;
	case CT_CLOSING: return CT_TIMEOUT_CLOSING * NSEC_PER_SEC;
	case CT_FIN_ORIG:
	case CT_FIN_REPLY: return CT_TIMEOUT_HALF_CLOSED * NSEC_PER_SEC;
	case CT_UDP: return CT_TIMEOUT_UDP * NSEC_PER_SEC;
	case CT_ICMP: return CT_TIMEOUT_ICMP * NSEC_PER_SEC;
	default: return CT_TIMEOUT_OTHER * NSEC_PER_SEC;
	}
}

static __always_inline void ct_key_of(struct ct_key *k, __u32 port, __u32 dir, const struct flow *f, int reverse)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->port_key = port;
	k->direction = dir;
	k->proto = f->proto;
	k->saddr = reverse ? f->daddr : f->saddr;
	k->daddr = reverse ? f->saddr : f->daddr;
	k->sport = reverse ? f->dport : f->sport;
	k->dport = reverse ? f->sport : f->dport;
}

/* Has the entry outlived its timeout? Both directions of a flow stamp its entry,
 * often on two CPUs at once: one that read the clock a moment before another
 * stamped the entry sees last_seen ahead of its `now`. As an unsigned difference
 * that moment wraps to ~2^64 ns and a live entry looks expired; signed, it is
 * a small negative age: fresh. */
static __always_inline int ct_expired(const struct ct_entry *e, __u64 now)
{
	return (__s64)(now - e->last_seen_ns) > (__s64)ct_timeout(e->state);
}

/* The live entry for key, or NULL (an expired one is removed on the way). */
static __always_inline struct ct_entry *ct_find(struct ct_key *key, __u64 now)
{
	struct ct_entry *e = bpf_map_lookup_elem(&conntrack, key);

	if (e && ct_expired(e, now)) {
		bpf_map_delete_elem(&conntrack, key);
		return NULL;
	}
	return e;
}

/* The TCP state after a segment of the flow. A FIN half-closes: the other end may
 * still send, after a pause too (a request, then a slow answer); FINs both ways or
 * an RST close. */
static __always_inline __u32 ct_tcp_next(__u32 state, __u8 tcp_flags, int reply)
{
	__u32 fin_here = reply ? CT_FIN_REPLY : CT_FIN_ORIG;
	__u32 fin_there = reply ? CT_FIN_ORIG : CT_FIN_REPLY;

	if (tcp_flags & TCP_FLAG_RST)
		return CT_CLOSING;
	if (tcp_flags & TCP_FLAG_FIN)
		return state == fin_there || state == CT_CLOSING ? CT_CLOSING : fin_here;
	if (reply && state == CT_SYN_SENT)
		return CT_ESTABLISHED;
	return state;
}

/* A packet of a tracked flow: move its state along. Both directions write the
 * entry, on different CPUs, without atomics: only changes are stored, so that
 * plain stores rarely meet (a state lost to a concurrent one only changes when
 * the entry expires; a lost `packets` increment, a count). */
static __always_inline void ct_advance(struct ct_entry *e, const struct flow *f, int reply, __u64 now)
{
	__u32 state;

	e->last_seen_ns = now;
	e->packets++;
	if (reply && !(e->flags & CT_F_REPLIED))
		e->flags |= CT_F_REPLIED;
	if (f->proto != IPPROTO_TCP)
		return;
	state = ct_tcp_next(e->state, f->tcp_flags, reply);
	if (state != e->state)
		e->state = state;
}

static __always_inline __u32 ct_initial_state(const struct flow *f)
{
	if (f->proto == IPPROTO_TCP)
		return CT_SYN_SENT;  /* only a SYN opens a TCP flow (sg_filter) */
	if (f->proto == IPPROTO_UDP)
		return CT_UDP;
	if (f->proto == IPPROTO_ICMP)
		return CT_ICMP;
	return CT_OTHER;
}

/* Start tracking; returns 0, or DROP_CT_FULL when the table has no room. */
static __always_inline int ct_create(struct ct_key *key, const struct flow *f, __u64 now)
{
	struct ct_entry e = { .last_seen_ns = now, .packets = 1, .state = ct_initial_state(f) };
	long err = bpf_map_update_elem(&conntrack, key, &e, BPF_NOEXIST);

	if (err == 0 || err == -17 /* EEXIST: another CPU was first */)
		return 0;
	return DROP_CT_FULL;
}

#endif
