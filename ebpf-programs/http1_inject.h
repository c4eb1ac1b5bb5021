/* traceparent (and the thread's tracestate) into the HTTP/1 requests traced processes
 * send: a line after each request line, unless the app sent its own. */
#ifndef OTELCOL_EBPF_HTTP1_INJECT_H
#define OTELCOL_EBPF_HTTP1_INJECT_H

#include "common.h"
#include "context.h"
#include "insert.h"
#include "goroutine.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct line_buf);
} line_bufs SEC(".maps");

#define MAX_REQS 4 /* pipelined requests looked at in one send */

/* What http1_msg is about to insert, per CPU (too big for the stack). */
struct inject_plan {
	struct ctx_event ev[MAX_REQS];
	__u32 at[MAX_REQS];
	__u32 len[MAX_REQS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inject_plan);
} plans SEC(".maps");

/* The Content-Length value on the line at `line`, or -1. */
static __always_inline long content_length(struct hdr_buf *h, __u32 line, __u32 n)
{
	__u32 v = skip_ows(h, line + 15);
	long len = 0;
	int digits = 0;
#pragma unroll
	for (int k = 0; k < 10; k++) {
		char c = B(h, v + k);
		if (v + k >= n || c < '0' || c > '9')
			break;
		len = len * 10 + (c - '0');
		digits++;
	}
	return digits ? len : -1;
}

/* The header line(s) carrying `ev` (and the thread's tracestate), into l; their length. */
static __always_inline __u32 header_lines(struct line_buf *l, struct ctx_event *ev,
					  struct thread_ctx *tc, __u32 ts_len)
{
	char *o = l->b;
	__builtin_memcpy(o, "traceparent: ", 13);
	put_traceparent(o + 13, ev);
	o[68] = '\r';
	o[69] = '\n';
	if (!tc || !ts_len || ts_len >= TS_MAX)
		return TP_LINE;
	__builtin_memcpy(o + TP_LINE, "tracestate: ", 12);
	BOUND(ts_len, TS_MAX - 1);
	if (bpf_probe_read_kernel(o + TP_LINE + 12, ts_len, tc->tracestate))
		return TP_LINE;
	__u32 t = (TP_LINE + 12 + ts_len) & (LINE_BUF - 1);
	if (t + 2 > LINE_MAX)
		return TP_LINE;
	o[t] = '\r';
	o[t + 1] = '\n';
	ev->ctx_flags |= CTX_FLAG_TRACESTATE;
	return t + 2;
}

/* One send on a socket no other inserter follows: traceparent after the request line of
 * each whole HTTP/1 request head in it (up to MAX_REQS). */
static __always_inline int http1_msg(struct sk_msg_md *msg)
{
	__u32 zero = 0;
	void *data = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if (data + 16 > end || !method_start(data))
		return SK_PASS;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!traces(pid_tgid >> 32, 0))
		return SK_PASS;

	__u32 n = msg->size < SCAN_MAX - 1 ? msg->size : SCAN_MAX - 1;
	if (end - data < n) {
		if (bpf_msg_pull_data(msg, 0, n, 0)) {
			count(COUNTER_INJECT_FAILED, 1);
			return SK_PASS;
		}
		data = (void *)(long)msg->data;
		end = (void *)(long)msg->data_end;
	}
	if (end - data < n)
		n = end - data;
	struct hdr_buf *h = bpf_map_lookup_elem(&hdr_bufs, &zero);
	struct line_buf *l = bpf_map_lookup_elem(&line_bufs, &zero);
	struct inject_plan *plan = bpf_map_lookup_elem(&plans, &zero);
	if (!h || !l || !plan)
		return SK_PASS;
	BOUND(n, SCAN_MAX - 1);
	if (bpf_probe_read_kernel(h->b, n, data))
		return SK_PASS;

	/* The requests in this send (pipelining puts several in one), in order. */
	struct scan s;
	__u32 base = 0, cnt = 0;
	for (int r = 0; r < MAX_REQS; r++) {
		if (base + 16 > n)
			break;
		__u32 w = (__u8)B(h, base) | (__u8)B(h, base + 1) << 8 |
			  (__u8)B(h, base + 2) << 16 | (__u32)(__u8)B(h, base + 3) << 24;
		if (!method_start((const char *)&w) || !scan_request(h, base, n, &s))
			break;
		if (s.tp_line) { /* the app propagates itself */
			count(COUNTER_INJECT_HAS_HEADER, 1);
		} else if (!s.head_end) { /* a later segment could still carry a traceparent */
			count(COUNTER_INJECT_SPLIT, 1);
			break;
		} else if (cnt < MAX_REQS) {
			plan->at[cnt & (MAX_REQS - 1)] = s.line_end;
			cnt++;
		}
		if (!s.head_end || s.te)
			break;
		long cl = s.cl_line ? content_length(h, s.cl_line, n) : 0;
		if (cl < 0)
			break;
		base = s.head_end + cl;
	}
	if (!cnt)
		return SK_PASS;

	__u32 pid = pid_tgid >> 32;
	int go = bpf_map_lookup_elem(&no_thread_ctx, &pid) != NULL;
	struct thread_ctx *tc = go ? go_ctx_of(pid) : thread_ctx_of(pid_tgid);
	__u64 now = bpf_ktime_get_ns();
	for (__u32 i = 0; i < MAX_REQS && i < cnt; i++) {
		fill_ids(&plan->ev[i], tc, pid_tgid, now, (__u64)msg->sk);
		if (go && tc)
			plan->ev[i].ctx_flags |= CTX_FLAG_GOROUTINE;
	}
	__u32 ts_len = tc && !tc->ambiguous ? tc->ts_len : 0;
	/* Last request first: earlier offsets stay valid. */
	for (int i = MAX_REQS - 1; i >= 0; i--) {
		if (i >= cnt)
			continue;
		__u32 len = header_lines(l, &plan->ev[i], tc, ts_len);
		plan->len[i] = len;
		if (insert(msg, plan->at[i], l, len)) {
			/* Nearest first: each removal puts the next back at its offset. */
			for (int j = 0; j < MAX_REQS; j++)
				if (j > i && j < cnt)
					bpf_msg_pop_data(msg, plan->at[j], plan->len[j], 0);
			count(COUNTER_INJECT_FAILED, cnt);
			return SK_PASS;
		}
	}
	/* Each insertion split a buffer in three, and tcp_bpf sends every piece with its own
	 * push: the first small segment goes out, Nagle holds the rest until the peer's
	 * delayed ACK (40 ms a request). One buffer again for what was scanned. */
	__u32 grown = 0;
	for (int i = 0; i < MAX_REQS; i++)
		if (i < cnt)
			grown += plan->len[i];
	bpf_msg_pull_data(msg, 0, n + grown, 0);
	count(COUNTER_INJECTED, cnt);
	for (__u32 i = 0; i < MAX_REQS && i < cnt; i++)
		emit_ctx(&plan->ev[i]);
	return SK_PASS;
}

#endif /* OTELCOL_EBPF_HTTP1_INJECT_H */
