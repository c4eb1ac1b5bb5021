/* traceparent into the requests of plaintext HTTP/2 (h2c, gRPC) connections that traced
 * processes open. sk_msg.h hands it the sockets whose first send was the client preface.
 *
 * HPACK compresses a header block against a table both ends keep: the kernel cannot
 * re-encode a block, but it can append a field. A literal field without indexing leaves
 * both tables as they were, so the HEADERS frame that opens a stream gets `traceparent`
 * appended to its block and its length grown; nothing else on the connection changes.
 *
 * sk_msg sees every byte a marked socket sends, in order, from the first: the client
 * preface says HTTP/2, and from there the frames are followed across sends (struct h2_sock
 * in the socket's own storage: it goes with the socket, and the socket lock serialises its
 * sends). The walk is checked against TCP's write sequence at each send: a send the kernel
 * took only in part, frame lengths no peer sends, anything unexpected leaves the connection
 * alone from then on, counted. A connection whose app names traceparent in a header block
 * is left alone too: the name appears literally (plain or Huffman-coded) the first time an
 * encoder sends it, and the kernel sees every block from the preface on. Wrong bytes must
 * never reach the wire: every doubt means "do not insert". */
#ifndef OTELCOL_EBPF_H2_INJECT_H
#define OTELCOL_EBPF_H2_INJECT_H

#include "common.h"
#include "h2_wire.h"
#include "context.h"
#include "insert.h"
#include "go_grpc.h"

#define H2TX_STEPS 1024 /* frames (and pieces of frames) walked per send */
#define H2TX_REQS 16 /* requests given a header per send; a power of two */
#define H2_FIELD (14 + TP_VALUE) /* 0x00, 11, "traceparent", 55, the value */
#define NAME_TAIL 7 /* bytes of a block piece kept to find a name cut between pieces */
/* "tracepar" as sent plain, and "traceparent" as HPACK's Huffman code writes it (8
 * bytes), as little-endian words. */
#define TP_NAME_PLAIN 0x7261706563617274ULL
#define TP_NAME_HUFF 0x3fa9851d6b21834dULL

struct h2_tx {
	__u32 rem; /* payload bytes of the current frame still to come */
	__u32 last_stream; /* the highest stream the client opened */
	__u32 expect_seq; /* TCP write_seq once the previous send is all queued */
	__u8 seq_known;
	__u8 hdr[9]; /* a frame header split between sends */
	__u8 have; /* ... its bytes so far */
	__u8 block; /* the current frame carries a header block: scan the rest of it */
	__u8 in_block; /* a header block is open: CONTINUATION may follow */
	__u8 done; /* not followed any more: the app's own header, or frames lost */
	__u8 tail_len;
	__u8 tail[NAME_TAIL]; /* the end of the previous piece of the open header block */
};

/* One send's walk and what it will insert. */
struct h2_plan {
	struct ctx_event ev[H2TX_REQS];
	__u32 frame[H2TX_REQS]; /* offset of the HEADERS frame */
	__u32 at[H2TX_REQS]; /* the end of its header block */
	__u32 len[H2TX_REQS]; /* its payload length before */
	__u32 stream[H2TX_REQS];
	__u32 cnt;
	__u32 off; /* where the walk is */
	__u32 size;
	__u32 done_from; /* insertions [done_from, cnt) made */
	__u8 own; /* a block names traceparent */
	__u8 lost; /* the walk could not go on */
	__u8 first; /* the block's first byte (the pad length of a PADDED frame) */
	__u8 drop; /* a frame could not be put right: the send must not go out */
};

struct h2_sock {
	struct h2_tx tx;
	struct h2_plan p;
	struct line_buf field; /* (insert() reads whole words of a line_buf) */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct h2_sock);
} h2_socks SEC(".maps");

struct h2_walk_ctx {
	struct sk_msg_md *msg;
	struct h2_sock *hs;
};

struct name_scan {
	struct hdr_buf *h;
	__u32 found;
};

static long name_step(__u32 i, struct name_scan *s)
{
	if (i > SCAN_MAX - 9)
		return 1;
	__u64 w;
	__builtin_memcpy(&w, &s->h->b[i], 8);
	if (w == TP_NAME_PLAIN || w == TP_NAME_HUFF) {
		s->found = 1;
		return 1;
	}
	return 0;
}

/* Whether bytes [from, from+n) of the message, a piece of a header block, name
 * traceparent (with the previous piece's tail in front: a name cut between pieces): 1
 * yes, 0 no, -1 unknown. Keeps this piece's tail. */
static __always_inline int names_traceparent(struct sk_msg_md *msg, struct h2_tx *tx, __u32 from,
					     __u32 n)
{
	__u32 zero = 0;
	if (!n)
		return 0;
	if (n > SCAN_MAX - 1 - NAME_TAIL)
		return -1;
	struct hdr_buf *h = bpf_map_lookup_elem(&hdr_bufs, &zero);
	if (!h || bpf_msg_pull_data(msg, from, from + n, 0))
		return -1;
	void *data = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if ((long)end - (long)data < (long)n)
		return -1;
	__u32 t = tx->tail_len;
	if (t > NAME_TAIL)
		return -1;
	__builtin_memcpy(h->b, tx->tail, NAME_TAIL);
	BOUND(n, SCAN_MAX - 1 - NAME_TAIL);
	if (bpf_probe_read_kernel(&h->b[t], n, data))
		return -1;
	__u32 total = t + n;
	/* The tail for the next piece. */
	__u32 keep = total < NAME_TAIL ? total : NAME_TAIL;
	__u32 at = (total - keep) & (SCAN_MAX - 1 - NAME_TAIL);
	__builtin_memcpy(tx->tail, &h->b[at], NAME_TAIL);
	tx->tail_len = keep;
	if (total < 8)
		return 0;
	struct name_scan sc = {.h = h};
	bpf_loop(total - 7, name_step, &sc, 0);
	return sc.found;
}

/* Whether a frame header is one a client sends: type, reserved bit, and the lengths and
 * streams RFC 9113 fixes. The only way to notice the walk being out of step. */
static __always_inline int frame_ok(__u8 type, __u32 len, __u32 stream, __u8 r_bit, int in_block)
{
	if (type > H2_MAX_TYPE || r_bit)
		return 0;
	if (in_block != (type == H2_CONTINUATION))
		return 0; /* a header block is followed by its CONTINUATIONs, and only there */
	switch (type) {
	case H2_DATA:
	case H2_HEADERS:
	case H2_CONTINUATION:
		return stream != 0;
	case H2_PRIORITY:
		return stream != 0 && len == 5;
	case H2_RST_STREAM:
		return stream != 0 && len == 4;
	case H2_SETTINGS:
		return stream == 0 && len % 6 == 0;
	case H2_PING:
		return stream == 0 && len == 8;
	case H2_WINDOW_UPDATE:
		return len == 4;
	}
	return 1;
}

/* bpf_loop body: the next frame header, or the next piece of a frame's payload. */
static long h2_frame_step(__u32 i, struct h2_walk_ctx *c)
{
	struct sk_msg_md *msg = c->msg;
	struct h2_sock *hs = c->hs;
	if (!hs)
		return 1;
	struct h2_tx *tx = &hs->tx;
	struct h2_plan *p = &hs->p;
	__u32 off = p->off, size = p->size;
	if (off >= size)
		return 1;
	if (tx->rem) {
		__u32 k = tx->rem < size - off ? tx->rem : size - off;
		if (tx->block) {
			int r = names_traceparent(msg, tx, off, k);
			if (r < 0) {
				p->lost = 1;
				return 1;
			}
			if (r)
				p->own = 1;
		}
		tx->rem -= k;
		p->off = off + k;
		return 0;
	}
	/* A frame header, perhaps begun in the previous send. */
	__u8 b[24] = {};
	__u32 have = tx->have, k = 0;
	int got = msg_frame_header(msg, off, size, tx->hdr, &tx->have, 9, b, &k);
	if (got) {
		if (got < 0)
			p->lost = 1;
		else
			p->off = size;
		return 1;
	}
	__u32 len = (__u32)b[0] << 16 | (__u32)b[1] << 8 | b[2];
	__u8 type = b[3], flags = b[4];
	__u32 stream = (__u32)(b[5] & 0x7f) << 24 | (__u32)b[6] << 16 | (__u32)b[7] << 8 | b[8];
	if (!frame_ok(type, len, stream, b[5] & 0x80, tx->in_block)) {
		/* Out of step: what this send's walk found cannot be trusted either. */
		p->lost = 1;
		p->cnt = 0;
		return 1;
	}
	__u32 pos = off + k;
	__u32 take = len < size - pos ? len : size - pos;
	int block = type == H2_HEADERS || type == H2_CONTINUATION;
	__u32 first = 0;
	if (block) {
		if (type == H2_HEADERS)
			tx->tail_len = 0; /* a new block */
		int r = names_traceparent(msg, tx, pos, take);
		if (r < 0) {
			p->lost = 1;
			return 1;
		}
		if (r)
			p->own = 1;
		tx->in_block = !(flags & H2_END_HEADERS);
		if ((flags & H2_PADDED) && take) {
			/* The pad length, read from the message itself. */
			if (bpf_msg_pull_data(msg, pos, pos + 1, 0)) {
				p->lost = 1;
				return 1;
			}
			__u8 *d = (void *)(long)msg->data, *e = (void *)(long)msg->data_end;
			if ((void *)(d + 1) > (void *)e) {
				p->lost = 1;
				return 1;
			}
			first = d[0];
		}
	}
	if (type == H2_HEADERS && (stream & 1) && stream > tx->last_stream) {
		/* A request: the client opens a stream with its headers. */
		tx->last_stream = stream;
		__u32 pad = flags & H2_PADDED ? 1 + first : 0;
		__u32 n = p->cnt;
		if (!have && take == len && (flags & H2_END_HEADERS) && pad < len &&
		    len + H2_FIELD <= H2_FRAME_FLOOR && n < H2TX_REQS) {
			n &= H2TX_REQS - 1;
			p->frame[n] = off;
			p->at[n] = pos + len - (pad ? pad - 1 : 0);
			p->len[n] = len;
			p->stream[n] = stream;
			p->cnt++;
		} else {
			count(COUNTER_H2_INJECT_SKIPPED, 1);
		}
	}
	tx->rem = len - take;
	tx->block = block && tx->rem;
	p->off = pos + take;
	return 0;
}

/* Writes the 3-byte length of the frame at `frame`. */
static __always_inline int set_frame_len(struct sk_msg_md *msg, __u32 frame, __u32 len)
{
	if (bpf_msg_pull_data(msg, frame, frame + 3, 0))
		return -1;
	__u8 *d = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if ((void *)(d + 3) > (void *)end)
		return -1;
	d[0] = len >> 16;
	d[1] = len >> 8;
	d[2] = len;
	return 0;
}

/* The HPACK field carrying ev: a literal without indexing, with a new name. */
static __always_inline void h2_field(char *o, struct ctx_event *ev)
{
	o[0] = 0x00;
	o[1] = 11;
	__builtin_memcpy(o + 2, "traceparent", 11);
	o[13] = TP_VALUE;
	put_traceparent(o + 14, ev);
}


/* Puts the field at `at` (insert(): written whole or not at all) and grows the frame at
 * `frame`: 0 done, -1 nothing changed, -2 the frame could not be put right. */
static __always_inline int h2_insert_one(struct sk_msg_md *msg, struct line_buf *field, __u32 at,
					 __u32 frame, __u32 len)
{
	if (insert(msg, at, field, H2_FIELD))
		return -1;
	if (!set_frame_len(msg, frame, len + H2_FIELD))
		return 0;
	return bpf_msg_pop_data(msg, at, H2_FIELD, 0) ? -2 : -1;
}

struct h2_ins_ctx {
	struct sk_msg_md *msg;
	struct h2_sock *hs;
};

/* bpf_loop body: the k-th insertion from the last request back. */
static long h2_insert_step(__u32 k, struct h2_ins_ctx *c)
{
	struct h2_sock *hs = c->hs;
	if (!hs)
		return 1;
	struct h2_plan *p = &hs->p;
	if (k >= p->cnt || p->cnt > H2TX_REQS)
		return 1;
	__u32 i = (p->cnt - 1 - k) & (H2TX_REQS - 1);
	h2_field(hs->field.b, &p->ev[i]);
	int r = h2_insert_one(c->msg, &hs->field, p->at[i], p->frame[i], p->len[i]);
	if (r == -2)
		p->drop = 1;
	if (r)
		return 1;
	p->done_from = i;
	return 0;
}

/* One send on a followed HTTP/2 connection: walk its frames, then insert a traceparent
 * into each request it opens (at most H2TX_REQS; the others are counted). */
static __always_inline int h2_msg(struct sk_msg_md *msg, struct h2_sock *hs, struct bpf_sock *sk)
{
	struct h2_tx *tx = &hs->tx;
	struct h2_plan *p = &hs->p;
	if (tx->done)
		return SK_PASS;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp) {
		tx->done = 1;
		count(COUNTER_H2_INJECT_LOST, 1);
		return SK_PASS;
	}
	/* Everything sent before was queued whole: the walk is where the stream is. */
	__u32 seq = tp->write_seq;
	if (tx->seq_known && seq != tx->expect_seq) {
		tx->done = 1;
		count(COUNTER_H2_INJECT_LOST, 1);
		return SK_PASS;
	}
	p->cnt = 0;
	p->off = 0;
	p->size = msg->size;
	p->own = 0;
	p->lost = 0;
	p->drop = 0;
	struct h2_walk_ctx c = {.msg = msg, .hs = hs};
	bpf_loop(H2TX_STEPS, h2_frame_step, &c, 0);
	if (p->own) {
		tx->done = 1;
		count(COUNTER_INJECT_HAS_HEADER, 1);
		return SK_PASS;
	}
	if (p->lost || p->off < p->size) {
		/* Later sends' frames cannot be found; what was planned was read whole. */
		tx->done = 1;
		count(COUNTER_H2_INJECT_LOST, 1);
	}
	__u32 cnt = p->cnt;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (cnt > H2TX_REQS)
		cnt = 0;
	if (cnt && (!traces(pid_tgid >> 32, 0) || !room_to_grow(tp, p->size, cnt * H2_FIELD) ||
		    bpf_msg_pull_data(msg, 0, p->at[(cnt - 1) & (H2TX_REQS - 1)], 0))) {
		/* (The pull puts every insertion point in the message's first buffer.) */
		count(COUNTER_H2_INJECT_SKIPPED, cnt);
		cnt = 0;
	}
	if (cnt) {
		/* A Go program's streams take the context their caller gave each (go_grpc.h),
		 * none when unknown. */
		__u32 pid = pid_tgid >> 32;
		__u64 goid = 0;
		int go = bpf_map_lookup_elem(&no_thread_ctx, &pid) != NULL;
		int have_goid = go && !current_goid(pid, &goid);
		struct thread_ctx *tc = go ? NULL : thread_ctx_of(pid_tgid);
		__u64 now = bpf_ktime_get_ns();
		for (__u32 i = 0; i < H2TX_REQS && i < cnt; i++) {
			struct thread_ctx *t = tc;
			if (have_goid)
				t = go_stream_ctx(pid, goid, p->stream[i]);
			fill_ids(&p->ev[i], t, pid_tgid, now, (__u64)sk);
			p->ev[i].stream_id = p->stream[i];
			if (go && t) {
				p->ev[i].ctx_flags |= CTX_FLAG_GOROUTINE;
				go_stream_done(pid, goid, p->stream[i]);
			} else if (go) {
				count(COUNTER_GO_CTX_GRPC_NONE, 1);
			}
		}
		/* Last request first: earlier offsets stay valid. A failure keeps what was
		 * done (each insertion is whole) and stops following the connection. */
		p->done_from = cnt;
		struct h2_ins_ctx ic = {.msg = msg, .hs = hs};
		bpf_loop(cnt, h2_insert_step, &ic, 0);
		if (p->drop)
			return SK_DROP; /* a frame that would go out wrong: the app sees an error */
		__u32 from = p->done_from;
		if (from > cnt)
			from = cnt;
		if (from) {
			tx->done = 1;
			count(COUNTER_INJECT_FAILED, from);
		}
		count(COUNTER_INJECTED, cnt - from);
		for (__u32 i = 0; i < H2TX_REQS && i < cnt; i++)
			if (i >= from)
				emit_ctx(&p->ev[i]);
	}
	tx->expect_seq = seq + msg->size;
	tx->seq_known = 1;
	return SK_PASS;
}

static __always_inline int h2_preface(struct sk_msg_md *msg)
{
	void *data = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if (data + H2_PREFACE_LEN > end)
		return 0;
	return *(__u64 *)data == H2_PREFACE_0 && *(__u64 *)(data + 8) == H2_PREFACE_1 &&
	       *(__u64 *)(data + 16) == H2_PREFACE_2;
}

/* The socket's HTTP/2 state: kept since its preface, or new when this send opens with it.
 * NULL: not followed as HTTP/2 (a send opening with the preface is no HTTP/1 request
 * either, so nothing else inserts into it). */
static __always_inline struct h2_sock *h2_sock_of(struct sk_msg_md *msg, struct bpf_sock *sk)
{
	struct h2_sock *hs = bpf_sk_storage_get(&h2_socks, sk, NULL, 0);
	if (hs || !h2_preface(msg))
		return hs;
	hs = bpf_sk_storage_get(&h2_socks, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (hs)
		hs->tx.rem = H2_PREFACE_LEN;
	return hs;
}

#endif /* OTELCOL_EBPF_H2_INJECT_H */
