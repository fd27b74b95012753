/* DNS wire format (RFC 1035): the header, the question's name read once into
 * scratch (lowercased, hashed, label starts marked), in-addr.arpa names. Every
 * loop is bounded by DNS_NAME_MAX and every index masked to the buffer. */
#ifndef DFXDP_LIB_DNS_H
#define DFXDP_LIB_DNS_H

#include "common.h"
#include "maps/dns.h"

#define DNS_PORT 53
#define DNS_HDR_LEN 12
#define DNS_TYPE_A 1
#define DNS_TYPE_PTR 12
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_OPT 41
#define DNS_CLASS_IN 1
#define DNS_F_QR 0x8000
#define DNS_F_OPCODE 0x7800
#define DNS_F_AA 0x0400
#define DNS_F_TC 0x0200
#define DNS_F_RD 0x0100
#define DNS_F_RA 0x0080
#define DNS_RCODE_NXDOMAIN 3
#define DNS_OPT_LEN 11        /* an OPT record for the root without options */
#define EDNS_F_DO 0x8000      /* DNSSEC OK */
#define DNS_CLASSIC_UDP 512   /* a client without EDNS takes no more */
#define FNV32_OFFSET 2166136261u
#define FNV32_PRIME 16777619u
#define NAME_MASK (DNS_NAME_BUF - 1)
#define DNS_WALK_STRIDE 8     /* bytes per bpf_loop step */

struct dnshdr {
	__be16 id;
	__be16 flags;
	__be16 qdcount;
	__be16 ancount;
	__be16 nscount;
	__be16 arcount;
};

/* The OPT pseudo-record's fixed part (RFC 6891), after its root name byte. */
struct dns_opt {
	__u8 root;
	__be16 type;
	__be16 udp_size;
	__u8 ext_rcode;
	__u8 version;
	__be16 flags;
	__be16 rdlen;
} __attribute__((packed));

struct dns_question {
	__u32 len;   /* wire length of the name, final zero included */
	__u32 hash;  /* FNV-1a 32 of the lowercased wire name */
};

/* The loops over names run through bpf_loop(): the verifier checks each body once
 * instead of walking up to 255 iterations of every path into it. Each step does
 * DNS_WALK_STRIDE bytes, unrolled. */
struct dns_name_walk {
	struct dns_scratch *s;
	__u32 avail;  /* bytes of the datagram copied into s->name */
	__u32 next;   /* offset of the next label's length byte */
	__u32 hash;
	__u32 len;    /* set at the final zero */
	__u32 err;
};

/* Eight bytes per call: a call costs more than a byte's work. */
static long dns_name_step(__u32 i, void *data)
{
	struct dns_name_walk *w = data;

#pragma unroll
	for (__u32 k = 0; k < DNS_WALK_STRIDE; k++) {
		__u32 pos = i * DNS_WALK_STRIDE + k;
		__u8 c;

		if (pos >= DNS_NAME_MAX)
			return 1;  /* no final zero within 255 bytes: too long */
		if (pos >= w->avail) {
			w->err = DNS_BAD_TRUNCATED;
			return 1;
		}
		c = w->s->name[pos & NAME_MASK];
		if (pos == w->next) {
			if (c & 0xc0) {  /* a compression pointer or an extended label type */
				w->err = DNS_BAD_LABEL;
				return 1;
			}
			w->s->label_starts[(pos >> 5) & 7] |= 1u << (pos & 31);
			w->hash = (w->hash ^ c) * FNV32_PRIME;
			if (c == 0) {
				w->len = pos + 1;
				return 1;
			}
			w->next = pos + 1 + c;
			continue;
		}
		if (c >= 'A' && c <= 'Z') {
			c += 'a' - 'A';
			w->s->name[pos & NAME_MASK] = c;
		}
		w->hash = (w->hash ^ c) * FNV32_PRIME;
	}
	return 0;
}

/* Read the question's name at `off` (up to `avail` bytes of datagram) into s->name,
 * lowercased, its label starts marked. Returns 0 or a DNS_BAD_* reason. */
static __always_inline int dns_read_name(struct xdp_md *ctx, __u32 off, __u32 avail, struct dns_scratch *s,
					 struct dns_question *q)
{
	struct dns_name_walk w = { .s = s, .hash = FNV32_OFFSET };
	__u32 n = avail < DNS_NAME_BUF ? avail : DNS_NAME_BUF;

	if (n < 1)
		return DNS_BAD_TRUNCATED;
	if (bpf_xdp_load_bytes(ctx, off, s->name, n))
		return DNS_BAD_TRUNCATED;
	w.avail = n;
#pragma unroll
	for (int k = 0; k < DNS_NAME_BUF / 32; k++)
		s->label_starts[k] = 0;
	bpf_loop((DNS_NAME_MAX + DNS_WALK_STRIDE - 1) / DNS_WALK_STRIDE, dns_name_step, &w, 0);
	if (w.err)
		return w.err;
	if (!w.len)
		return DNS_BAD_TOO_LONG;
	q->len = w.len;
	q->hash = w.hash;
	return 0;
}

struct dns_bytes_cmp {
	const __u8 *a;     /* DNS_NAME_BUF bytes, and 7 more readable after them */
	const __u8 *b;     /* DNS_NAME_BUF bytes */
	__u32 a_off;
	__u32 len;
	__u32 differ;
};

/* Eight 8-byte words per call: a name of up to 64 bytes is one call. The words are
 * loaded unaligned (map values; this architecture loads them so), the last one
 * masked to the bytes of the name. */
static long dns_cmp_step(__u32 i, void *data)
{
	struct dns_bytes_cmp *c = data;

#pragma unroll
	for (__u32 k = 0; k < DNS_WALK_STRIDE; k++) {
		__u32 pos = (i * DNS_WALK_STRIDE + k) * 8, left;
		__u64 diff;

		if (pos >= c->len)
			return 1;
		/* a: scratch, with room past its name; b: a name buffer, read at a multiple of 8 below its end */
		diff = *(const __u64 *)&c->a[(c->a_off + pos) & NAME_MASK] ^ *(const __u64 *)&c->b[pos & (NAME_MASK & ~7)];
		left = c->len - pos;
		if (left < 8)
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			diff &= (1ULL << (left * 8)) - 1;  /* the name's bytes are the low ones */
#else
			diff &= ~0ULL << ((8 - left) * 8);
#endif
		if (diff) {
			c->differ = 1;
			return 1;
		}
	}
	return 0;
}

/* Are a[a_off, a_off + len) and b[0, len) the same bytes? */
static __always_inline int dns_bytes_equal(const __u8 *a, __u32 a_off, const __u8 *b, __u32 len)
{
	struct dns_bytes_cmp c = { .a = a, .b = b, .a_off = a_off, .len = len };

	if (len > DNS_NAME_MAX)
		return 0;
	bpf_loop((len + DNS_WALK_STRIDE * 8 - 1) / (DNS_WALK_STRIDE * 8), dns_cmp_step, &c, 0);
	return !c.differ;
}

/* Does the name end with `domain` at a label boundary, with at least one label before it? */
static __always_inline int dns_under_domain(const struct dns_scratch *s, __u32 len, const struct dns_server *srv)
{
	__u32 dlen = srv->domain_len, start;

	if (dlen < 2 || dlen > DNS_NAME_MAX || len <= dlen)
		return 0;
	start = (len - dlen) & NAME_MASK;
	if (!(s->label_starts[(start >> 5) & 7] & (1u << (start & 31))))
		return 0;
	return dns_bytes_equal(s->name, start, srv->domain, dlen);
}

/* "d.c.b.a.in-addr.arpa." -> a.b.c.d; returns 1 when the name is exactly that. */
static __always_inline int dns_reverse_ipv4(const struct dns_scratch *s, __u32 len, __be32 *ip)
{
	static const __u8 suffix[14] = "\7in-addr\4arpa";  /* and the final zero */
	__u8 octets[4];
	__u32 pos = 0;

#pragma unroll
	for (int k = 0; k < 4; k++) {
		__u32 digits = s->name[pos & NAME_MASK], value = 0;

		if (digits < 1 || digits > 3)
			return 0;
		if (digits > 1 && s->name[(pos + 1) & NAME_MASK] == '0')
			return 0;  /* "01": not how an address is written */
		for (__u32 d = 0; d < 3; d++) {
			__u8 c = s->name[(pos + 1 + d) & NAME_MASK];

			if (d >= digits)
				break;
			if (c < '0' || c > '9')
				return 0;
			value = value * 10 + (c - '0');
		}
		if (value > 255)
			return 0;
		octets[3 - k] = value;
		pos += 1 + digits;
	}
	if (len != pos + sizeof(suffix))
		return 0;
#pragma unroll
	for (int i = 0; i < (int)sizeof(suffix); i++)
		if (s->name[(pos + i) & NAME_MASK] != suffix[i])
			return 0;
	__builtin_memcpy(ip, octets, 4);
	return 1;
}

#endif
