/* What the sk_msg inserters (http1_inject.h, h2_inject.h, amqp_inject.h) share: the ids a
 * sent request gets, the traceparent text, insert(), which grows a message or leaves it as
 * it was, and the frame-header reader of the frame walkers. */
#ifndef OTELCOL_EBPF_INSERT_H
#define OTELCOL_EBPF_INSERT_H

#include "common.h"
#include "context.h"

#define TP_VALUE 55   /* "00-<32>-<16>-<2>" */
#define TP_LINE 70    /* "traceparent: 00-<32>-<16>-<2>\r\n" */
#define LINE_MAX (TP_LINE + 14 + TS_MAX) /* the most insert() writes: HTTP/1's two lines */
#define LINE_BUF 512 /* a power of two above LINE_MAX */

/* sk_msg verdicts */
#define SK_PASS 1
#define SK_DROP 0

struct line_buf {
	char b[LINE_BUF];
};

static __always_inline char hexc(__u8 x)
{
	return x < 10 ? '0' + x : 'a' + x - 10;
}

static __always_inline void put_hex(char *out, const __u8 *in, int n)
{
#pragma unroll
	for (int k = 0; k < n; k++) {
		out[2 * k] = hexc(in[k] >> 4);
		out[2 * k + 1] = hexc(in[k] & 15);
	}
}

/* The traceparent value carrying `ev`, TP_VALUE bytes: every inserter writes the same. */
static __always_inline void put_traceparent(char *o, const struct ctx_event *ev)
{
	__builtin_memcpy(o, "00-", 3);
	put_hex(o + 3, ev->trace_id, 16);
	o[35] = '-';
	put_hex(o + 36, ev->span_id, 8);
	o[52] = '-';
	put_hex(o + 53, &ev->trace_flags, 1);
}

/* Inserts l->b[0..len) at offset `at` of the message. On failure nothing stays inserted:
 * bytes we could not write must never reach the wire. */
static __always_inline int insert(struct sk_msg_md *msg, __u32 at, struct line_buf *l, __u32 len)
{
	if (bpf_msg_push_data(msg, at, len, 0))
		return -1;
	if (bpf_msg_pull_data(msg, at, at + len, 0))
		goto undo;
	void *data = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if (data + 64 > end) /* (every access below is checked too) */
		goto undo;
	/* Eight bytes at a time (few steps for the verifier to walk), then the tail. */
	__u32 k = 0;
	for (int w = 0; w < LINE_MAX / 8; w++) {
		if (k + 8 > len)
			break;
		char *p = (char *)data + k;
		if ((void *)(p + 8) > end)
			goto undo;
		*(__u64 *)p = *(__u64 *)&l->b[k & (LINE_BUF - 8)];
		k += 8;
	}
	for (int t = 0; t < 7; t++) {
		if (k >= len)
			break;
		char *p = (char *)data + k;
		if ((void *)(p + 1) > end)
			goto undo;
		*p = l->b[k & (LINE_BUF - 1)];
		k++;
	}
	return 0;
undo:
	bpf_msg_pop_data(msg, at, len, 0);
	return -1;
}

/* Whether the socket's send queue has room for the send grown by `grow`: a send TCP takes
 * only in part returns a count that does not know of the inserted bytes. */
static __always_inline int room_to_grow(struct tcp_sock *tp, __u32 size, __u32 grow)
{
	int queued = tp->inet_conn.icsk_inet.sk.sk_wmem_queued;
	int sndbuf = tp->inet_conn.icsk_inet.sk.sk_sndbuf;
	return (long)queued + size + grow <= (long)sndbuf;
}

/* Ids for a request the thread sends: in the trace of the request it serves, or new. */
static __always_inline void fill_ids(struct ctx_event *ev, struct thread_ctx *tc, __u64 pid_tgid,
				     __u64 now, __u64 sock)
{
	__builtin_memset(ev, 0, sizeof(*ev));
	if (tc && !tc->ambiguous) {
		__builtin_memcpy(ev->trace_id, tc->trace_id, 16);
		__builtin_memcpy(ev->parent_span_id, tc->span_id, 8);
		ev->trace_flags = tc->flags;
	} else {
		random_bytes(ev->trace_id, 16);
		ev->trace_flags = sampled_by_ratio(ev->trace_id);
		if (tc)
			ev->ctx_flags |= CTX_FLAG_AMBIGUOUS;
	}
	random_bytes(ev->span_id, 8);
	ev->hdr.kind = EVENT_CTX;
	ev->hdr.pid = pid_tgid >> 32;
	ev->hdr.tid = (__u32)pid_tgid;
	ev->hdr.ts_ns = now; /* one time for the send: userspace takes them in order */
	ev->hdr.sock_id = sock;
	ev->ctx_kind = CTX_INJECTED;
}

/* The next frame header of a send, `n` bytes (a constant, at most 9), perhaps begun in the
 * previous send: `saved` holds its first `*have` bytes. The frame walkers (h2_inject.h,
 * amqp_inject.h) share it. Returns 0 with the whole header in b[0..n) and `*took` set to its
 * bytes in this send (from `off`); 1 when this send ends inside it (its bytes kept in
 * `saved` for the next); -1 when it cannot be read (the walk is lost). */
static __always_inline int msg_frame_header(struct sk_msg_md *msg, __u32 off, __u32 size, __u8 *saved,
					    __u8 *have, __u32 n, __u8 b[24], __u32 *took)
{
	__u32 h = *have;
	if (h >= n)
		return -1;
	__builtin_memcpy(b, saved, n);
	__u32 need = n - h;
	__u32 k = need < size - off ? need : size - off;
	if (bpf_msg_pull_data(msg, off, off + k, 0))
		return -1;
	void *data = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if ((long)end - (long)data < (long)k || k > n)
		return -1;
	BOUND(k, 15);
	if (bpf_probe_read_kernel(&b[h & 15], k, data))
		return -1;
	if (k < need) {
		__builtin_memcpy(saved, b, n);
		*have = h + k;
		return 1;
	}
	*have = 0;
	*took = k;
	return 0;
}

#endif /* OTELCOL_EBPF_INSERT_H */
