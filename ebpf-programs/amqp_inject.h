/* traceparent insertion into AMQP 0-9-1 publishes (RabbitMQ), for sk_msg (sk_msg.h).
 *
 * A connection is followed from its protocol header ("AMQP\0\0\x09\x01", the client's
 * first bytes). Each send is walked frame by frame (type, channel, size, payload, 0xCE);
 * the content header frame that follows a basic.publish on the same channel gets a
 * `traceparent` entry in its `headers` table: first in the table when there is one
 * (never when the app's table already names traceparent), else a new table and the
 * property flag. The frame's size and the table's length grow with it. AMQP frames
 * carry no checksum. A content header is grown only when it is whole in the send and
 * stays under the smallest frame size a broker may negotiate (4096), so the frame
 * limit can never be passed. Whatever cannot be done safely is left alone and counted. */
#ifndef OTELCOL_EBPF_AMQP_INJECT_H
#define OTELCOL_EBPF_AMQP_INJECT_H

#include "common.h"
#include "context.h"
#include "insert.h"

#define AMQP_PROTO 0x0109000050514d41ULL /* "AMQP\0\0\x09\x01" read little endian */
#define AMQP_REQS 4	 /* publishes given a header per send */
#define AMQP_STEPS 256	 /* frames (or pieces of one) walked per send */
#define AMQP_FRAME_MIN 4096 /* frame-min-size: no broker negotiates less */
#define AMQP_HDR_SCAN 512   /* content-header bytes looked at; a power of two */
#define AMQP_ENTRY 72	    /* 11 "traceparent" 'S' <u32 55> "00-<32>-<16>-<2>" */
#define AMQP_MAX_FRAME (1U << 24) /* a bigger size means the walk is out of step */

struct amqp_tx {
	__u32 rem; /* bytes of the current frame still to come (payload and end byte) */
	__u32 expect_seq; /* TCP write_seq once the previous send is all queued */
	__u16 pub_ch; /* the channel of a basic.publish whose content header comes next */
	__u8 pub;
	__u8 seq_known;
	__u8 hdr[7]; /* a frame header split between sends */
	__u8 have;   /* ... its bytes so far */
	__u8 done;   /* not followed any more: frames lost */
};

/* One send's walk and what it will insert. */
struct amqp_plan {
	struct ctx_event ev[AMQP_REQS];
	__u32 frame[AMQP_REQS]; /* offset of the content header frame */
	__u32 at[AMQP_REQS]; /* where the entry (or the new table) goes */
	__u32 len[AMQP_REQS]; /* the frame's payload length before */
	__u32 table[AMQP_REQS]; /* offset of the headers table's length; 0: no table */
	__u32 table_len[AMQP_REQS];
	__u32 cnt;
	__u32 off; /* where the walk is */
	__u32 size;
	__u32 done_from; /* insertions [done_from, cnt) made */
	__u8 lost; /* the walk could not go on */
	__u8 drop; /* a frame could not be put right: the send must not go out */
};

struct amqp_sock {
	struct amqp_tx tx;
	struct amqp_plan p;
	struct line_buf field; /* (insert() reads whole words of a line_buf) */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct amqp_sock);
} amqp_socks SEC(".maps");

static __always_inline int amqp_protocol_header(struct sk_msg_md *msg)
{
	void *data = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if (data + 8 > end)
		return 0;
	return *(__u64 *)data == AMQP_PROTO;
}

/* The socket's AMQP state: kept since its protocol header, or new when this send opens
 * with it. NULL: not followed as AMQP (a send opening with the protocol header is no
 * HTTP/1 request either). */
static __always_inline struct amqp_sock *amqp_sock_of(struct sk_msg_md *msg, struct bpf_sock *sk)
{
	struct amqp_sock *as = bpf_sk_storage_get(&amqp_socks, sk, NULL, 0);
	if (as || !amqp_protocol_header(msg))
		return as;
	as = bpf_sk_storage_get(&amqp_socks, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (as)
		as->tx.rem = 8; /* the protocol header is not a frame */
	return as;
}

struct amqp_walk_ctx {
	struct sk_msg_md *msg;
	struct amqp_sock *as;
};

struct amqp_name_scan {
	struct hdr_buf *h;
	__u32 from;
	__u32 found;
};

/* bpf_loop body: whether the table names traceparent (its length byte and name). */
static long amqp_name_step(__u32 i, struct amqp_name_scan *s)
{
	__u32 k = s->from + i;
	if (k > AMQP_HDR_SCAN - 12)
		return 1;
	BOUND(k, AMQP_HDR_SCAN - 1);
	if (B(s->h, k) == 11 && B(s->h, k + 1) == 't' && B(s->h, k + 2) == 'r' &&
	    B(s->h, k + 3) == 'a' && B(s->h, k + 4) == 'c' && B(s->h, k + 5) == 'e' &&
	    B(s->h, k + 6) == 'p' && B(s->h, k + 7) == 'a' && B(s->h, k + 8) == 'r' &&
	    B(s->h, k + 9) == 'e' && B(s->h, k + 10) == 'n' && B(s->h, k + 11) == 't') {
		s->found = 1;
		return 1;
	}
	return 0;
}

#define HB(h, i) ((__u8)(h)->b[(i) & (AMQP_HDR_SCAN - 1)])

/* Plans the insertion into the content header frame at `frame` (payload at `pos`, `len`
 * bytes, whole in this send). */
static __always_inline void amqp_plan_header(struct sk_msg_md *msg, struct amqp_plan *p,
					     __u32 frame, __u32 pos, __u32 len)
{
	__u32 zero = 0;
	if (p->cnt >= AMQP_REQS || len < 14 || len > AMQP_HDR_SCAN - 16 ||
	    len + 8 + 4 + AMQP_ENTRY > AMQP_FRAME_MIN) {
		count(COUNTER_AMQP_INJECT_SKIPPED, 1);
		return;
	}
	struct hdr_buf *h = bpf_map_lookup_elem(&hdr_bufs, &zero);
	if (!h || bpf_msg_pull_data(msg, pos, pos + len, 0)) {
		count(COUNTER_AMQP_INJECT_SKIPPED, 1);
		return;
	}
	void *data = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	__u32 n = len;
	if ((long)end - (long)data < (long)n) {
		count(COUNTER_AMQP_INJECT_SKIPPED, 1);
		return;
	}
	BOUND(n, AMQP_HDR_SCAN - 1);
	if (bpf_probe_read_kernel(h->b, n, data)) {
		count(COUNTER_AMQP_INJECT_SKIPPED, 1);
		return;
	}
	/* class-id 60, weight, body size (8), property flags (2) */
	if (HB(h, 0) != 0 || HB(h, 1) != 60) {
		count(COUNTER_AMQP_INJECT_SKIPPED, 1);
		return;
	}
	__u16 flags = (__u16)HB(h, 12) << 8 | HB(h, 13);
	if (flags & 1) { /* more flag words: properties no client sends */
		count(COUNTER_AMQP_INJECT_SKIPPED, 1);
		return;
	}
	__u32 q = 14;
	if (flags & 0x8000) /* content-type */
		q += 1 + HB(h, q);
	if (flags & 0x4000) /* content-encoding */
		q += 1 + HB(h, q);
	if (q > len) {
		count(COUNTER_AMQP_INJECT_SKIPPED, 1);
		return;
	}
	__u32 i = p->cnt & (AMQP_REQS - 1);
	if (flags & 0x2000) {
		if (q + 4 > len) {
			count(COUNTER_AMQP_INJECT_SKIPPED, 1);
			return;
		}
		__u32 t = (__u32)HB(h, q) << 24 | (__u32)HB(h, q + 1) << 16 |
			  (__u32)HB(h, q + 2) << 8 | HB(h, q + 3);
		if (t > len - q - 4) {
			count(COUNTER_AMQP_INJECT_SKIPPED, 1);
			return;
		}
		struct amqp_name_scan sc = {.h = h, .from = q + 4};
		if (t >= 12)
			bpf_loop(t - 11, amqp_name_step, &sc, 0);
		if (sc.found) { /* the app propagates itself */
			count(COUNTER_INJECT_HAS_HEADER, 1);
			return;
		}
		p->table[i] = pos + q;
		p->table_len[i] = t;
		p->at[i] = pos + q + 4;
	} else {
		p->table[i] = 0;
		p->table_len[i] = 0;
		p->at[i] = pos + q;
	}
	p->frame[i] = frame;
	p->len[i] = len;
	p->cnt++;
}

/* bpf_loop body: the next frame header, or the next piece of a frame. */
static long amqp_frame_step(__u32 i, struct amqp_walk_ctx *c)
{
	struct sk_msg_md *msg = c->msg;
	struct amqp_sock *as = c->as;
	if (!as)
		return 1;
	struct amqp_tx *tx = &as->tx;
	struct amqp_plan *p = &as->p;
	__u32 off = p->off, size = p->size;
	if (off >= size)
		return 1;
	if (tx->rem) {
		__u32 k = tx->rem < size - off ? tx->rem : size - off;
		tx->rem -= k;
		p->off = off + k;
		return 0;
	}
	/* A frame header (7 bytes), perhaps begun in the previous send. */
	__u8 b[24] = {};
	__u32 have = tx->have, k = 0;
	int got = msg_frame_header(msg, off, size, tx->hdr, &tx->have, 7, b, &k);
	if (got) {
		if (got < 0)
			p->lost = 1;
		else
			p->off = size;
		return 1;
	}
	__u8 type = b[0];
	__u16 ch = (__u16)b[1] << 8 | b[2];
	__u32 len = (__u32)b[3] << 24 | (__u32)b[4] << 16 | (__u32)b[5] << 8 | b[6];
	if ((type != 1 && type != 2 && type != 3 && type != 8) || len >= AMQP_MAX_FRAME) {
		p->lost = 1; /* out of step */
		p->cnt = 0;
		return 1;
	}
	__u32 pos = off + k;
	__u32 avail = size - pos;
	if (type == 1) {
		tx->pub = 0;
		if (len >= 4 && avail >= 4) {
			if (bpf_msg_pull_data(msg, pos, pos + 4, 0)) {
				p->lost = 1;
				return 1;
			}
			__u8 *d = (void *)(long)msg->data, *e = (void *)(long)msg->data_end;
			if ((void *)(d + 4) > (void *)e) {
				p->lost = 1;
				return 1;
			}
			if (d[0] == 0 && d[1] == 60 && d[2] == 0 && d[3] == 40) { /* basic.publish */
				tx->pub = 1;
				tx->pub_ch = ch;
			}
		} else if (len >= 4) {
			count(COUNTER_AMQP_INJECT_SKIPPED, 1); /* a publish cannot be told apart */
		}
	} else if (type == 2 && tx->pub && ch == tx->pub_ch) {
		tx->pub = 0;
		if (!have && len < avail)
			amqp_plan_header(msg, p, off, pos, len);
		else
			count(COUNTER_AMQP_INJECT_SKIPPED, 1);
	}
	__u32 whole = len + 1; /* the frame-end octet */
	__u32 take = whole < avail ? whole : avail;
	tx->rem = whole - take;
	p->off = pos + take;
	return 0;
}

/* Writes the 4-byte big-endian value at `at`. */
static __always_inline int amqp_put_u32(struct sk_msg_md *msg, __u32 at, __u32 v)
{
	if (bpf_msg_pull_data(msg, at, at + 4, 0))
		return -1;
	__u8 *d = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if ((void *)(d + 4) > (void *)end)
		return -1;
	d[0] = v >> 24;
	d[1] = v >> 16;
	d[2] = v >> 8;
	d[3] = v;
	return 0;
}

/* Sets the headers property flag of the content header whose payload is at `pos`. */
static __always_inline int amqp_set_headers_flag(struct sk_msg_md *msg, __u32 pos)
{
	if (bpf_msg_pull_data(msg, pos + 12, pos + 13, 0))
		return -1;
	__u8 *d = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if ((void *)(d + 1) > (void *)end)
		return -1;
	d[0] |= 0x20;
	return 0;
}

/* The bytes to insert: [table length] 11 "traceparent" 'S' <u32 55> "00-...". */
static __always_inline __u32 amqp_field(char *o, struct ctx_event *ev, int new_table)
{
	__u32 k = 0;
	if (new_table) {
		o[0] = 0;
		o[1] = 0;
		o[2] = 0;
		o[3] = AMQP_ENTRY;
		k = 4;
	}
	char *e = o + k;
	e[0] = 11;
	__builtin_memcpy(e + 1, "traceparent", 11);
	e[12] = 'S';
	e[13] = 0;
	e[14] = 0;
	e[15] = 0;
	e[16] = TP_VALUE;
	put_traceparent(e + 17, ev);
	return k + AMQP_ENTRY;
}

struct amqp_ins_ctx {
	struct sk_msg_md *msg;
	struct amqp_sock *as;
};

/* bpf_loop body: the k-th insertion from the last publish back. Each is whole or not at
 * all: the entry first, then the lengths before it (offsets the insertion did not move). */
static long amqp_insert_step(__u32 k, struct amqp_ins_ctx *c)
{
	struct amqp_sock *as = c->as;
	if (!as)
		return 1;
	struct amqp_plan *p = &as->p;
	if (k >= p->cnt || p->cnt > AMQP_REQS)
		return 1;
	__u32 i = (p->cnt - 1 - k) & (AMQP_REQS - 1);
	int new_table = p->table[i] == 0;
	__u32 n = amqp_field(as->field.b, &p->ev[i], new_table);
	if (insert(c->msg, p->at[i], &as->field, n))
		return 1;
	int bad = amqp_put_u32(c->msg, p->frame[i] + 3, p->len[i] + n);
	if (!bad)
		bad = new_table ? amqp_set_headers_flag(c->msg, p->frame[i] + 7)
				: amqp_put_u32(c->msg, p->table[i], p->table_len[i] + n);
	if (bad) {
		/* Put the frame back as it was; if even that fails it must not go out. */
		if (bpf_msg_pop_data(c->msg, p->at[i], n, 0) ||
		    amqp_put_u32(c->msg, p->frame[i] + 3, p->len[i]))
			p->drop = 1;
		return 1;
	}
	p->done_from = i;
	return 0;
}

/* One send on a followed AMQP connection: walk its frames, then insert a traceparent
 * into the content header of each publish it carries (at most AMQP_REQS). */
static __always_inline int amqp_msg(struct sk_msg_md *msg, struct amqp_sock *as,
				    struct bpf_sock *sk)
{
	struct amqp_tx *tx = &as->tx;
	struct amqp_plan *p = &as->p;
	if (tx->done)
		return SK_PASS;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp) {
		tx->done = 1;
		count(COUNTER_AMQP_INJECT_LOST, 1);
		return SK_PASS;
	}
	/* Everything sent before was queued whole: the walk is where the stream is. */
	__u32 seq = tp->write_seq;
	if (tx->seq_known && seq != tx->expect_seq) {
		tx->done = 1;
		count(COUNTER_AMQP_INJECT_LOST, 1);
		return SK_PASS;
	}
	p->cnt = 0;
	p->off = 0;
	p->size = msg->size;
	p->lost = 0;
	p->drop = 0;
	struct amqp_walk_ctx c = {.msg = msg, .as = as};
	bpf_loop(AMQP_STEPS, amqp_frame_step, &c, 0);
	if (p->lost || p->off < p->size) {
		tx->done = 1;
		count(COUNTER_AMQP_INJECT_LOST, 1);
	}
	__u32 cnt = p->cnt;
	if (cnt > AMQP_REQS)
		cnt = 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (cnt && (!traces(pid_tgid >> 32, 0) ||
		    !room_to_grow(tp, p->size, cnt * (AMQP_ENTRY + 4)))) {
		count(COUNTER_AMQP_INJECT_SKIPPED, cnt);
		cnt = 0;
	}
	if (cnt) {
		struct thread_ctx *tc = thread_ctx_of(pid_tgid);
		__u64 now = bpf_ktime_get_ns();
		for (__u32 i = 0; i < AMQP_REQS && i < cnt; i++)
			fill_ids(&p->ev[i], tc, pid_tgid, now, (__u64)sk);
		p->done_from = cnt;
		struct amqp_ins_ctx ic = {.msg = msg, .as = as};
		bpf_loop(cnt, amqp_insert_step, &ic, 0);
		if (p->drop)
			return SK_DROP;
		__u32 from = p->done_from;
		if (from > cnt)
			from = cnt;
		if (from) {
			tx->done = 1;
			count(COUNTER_INJECT_FAILED, from);
		}
		count(COUNTER_INJECTED, cnt - from);
		for (__u32 i = 0; i < AMQP_REQS && i < cnt; i++)
			if (i >= from)
				emit_ctx(&p->ev[i]);
		/* One buffer again (see http1_msg: Nagle and the pieces of a split buffer). */
		bpf_msg_pull_data(msg, 0, msg->size < SCAN_MAX ? msg->size : SCAN_MAX, 0);
	}
	tx->expect_seq = seq + msg->size;
	tx->seq_known = 1;
	return SK_PASS;
}

#endif /* OTELCOL_EBPF_AMQP_INJECT_H */
