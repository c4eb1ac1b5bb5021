/* The server side of the kernel's trace context: a traced thread's read that starts a
 * request (HTTP/1, or an AMQP delivery: amqp_deliver.h) gives it its ids (context.h). */
#ifndef OTELCOL_EBPF_SERVER_REQUEST_H
#define OTELCOL_EBPF_SERVER_REQUEST_H

#include "common.h"
#include "context.h"
#include "amqp_deliver.h"
#include "goroutine.h"

/* The read's client end is a process traced here (or that may yet be): its request will
 * name the trace, so the decision is not final at the read. A process noted as a client
 * while it waited for its exe-path decision (a load generator connects microseconds after
 * its exec) and then found untraced no longer counts. */
static __always_inline int peer_may_be_traced(const struct data_event *e)
{
	if (!(e->flags & DATA_FLAG_PEER_TRACED))
		return 0;
	__u32 pid = e->peer_pid;
	__u32 *st = bpf_map_lookup_elem(&proc_state, &pid);
	if (!st)
		return trace_all;
	return *st != PROC_EXCLUDED;
}

/* A 1-byte read by a Go program: net/http's background reader (watching for the client
 * closing while a handler runs) takes the first byte of the next keep-alive request, and
 * the serving goroutine's read then starts in its second. Kept per socket so that read is
 * still seen as a request start. */
struct held_byte {
	__u64 ts_ns; /* the 1-byte read's record: userspace starts the request there */
	__u8 b;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* sock_id */
	__type(value, struct held_byte);
} go_held_bytes SEC(".maps");

/* For a read that does not start a request: keeps a Go program's 1-byte read, or returns
 * the byte a Go program read just before this read on the same socket (removed). */
static __always_inline int go_held(const struct data_event *e, struct held_byte *out)
{
	__u32 pid = e->hdr.pid;
	if (!bpf_map_lookup_elem(&no_thread_ctx, &pid))
		return 0;
	__u64 sid = e->hdr.sock_id;
	if (e->total_len == 1 && e->captured_len == 1) {
		struct held_byte hb = {.ts_ns = e->hdr.ts_ns, .b = e->data[0]};
		bpf_map_update_elem(&go_held_bytes, &sid, &hb, BPF_ANY);
		return 0;
	}
	struct held_byte *hb = bpf_map_lookup_elem(&go_held_bytes, &sid);
	if (!hb)
		return 0;
	*out = *hb;
	bpf_map_delete_elem(&go_held_bytes, &sid);
	return 1;
}

/* server_request's verdicts on a read. */
#define REQ_NONE 0 /* no request starts here */
#define REQ_KEEP 1 /* a request starts: record it */
#define REQ_SKIP 2 /* an unsampled request starts: leave its exchange out */

/* A traced thread read `e->data` from socket e->hdr.sock_id: when it starts a request,
 * give the request its ids and make them the thread's. Called before the data record is
 * written, so userspace has the ids when it parses the request.
 *
 * An unsampled request is left out whole (REQ_SKIP: neither its records nor its
 * response's reach userspace) when that cannot confuse userspace: no earlier request on
 * the socket is unanswered (pipelining), and the decision is final here (taken from the
 * request's own header, or its client is not traced on this host, whose request would
 * re-label the trace). Its thread keeps the unsampled context, so the calls it makes
 * carry flag 00. */
static __noinline int server_request(struct data_event *e, __u64 pid_tgid)
{
	__u32 zero = 0;
	__u32 n = e->captured_len;
	int amqp = n >= 32 && amqp_delivery_start(e->data);
	struct held_byte held = {};
	int after_held = 0;
	if (!amqp && (n < 16 || !method_start((const char *)e->data))) {
		after_held = (n == 1 || n >= 15) && go_held(e, &held);
		if (!after_held)
			return REQ_NONE;
	}
	struct hdr_buf *h = bpf_map_lookup_elem(&hdr_bufs, &zero);
	struct thread_ctx *tc = bpf_map_lookup_elem(&ctx_tmpl, &zero);
	if (!h || !tc)
		return REQ_NONE;
	if (after_held) {
		/* The request as the app reads it: the held byte, then this read. */
		if (n > SCAN_MAX - 2)
			n = SCAN_MAX - 2;
		BOUND(n, SCAN_MAX - 1);
		h->b[0] = held.b;
		if (bpf_probe_read_kernel(&h->b[1], n, e->data) || !method_start(h->b))
			return REQ_NONE;
		n++;
	} else {
		BOUND(n, SCAN_MAX - 1);
		if (bpf_probe_read_kernel(h->b, n, e->data))
			return REQ_NONE;
	}
	struct scan s = {};
	int delivery = 0;
	if (amqp) {
		delivery = amqp_delivery(h, n, e->total_len, tc);
		if (delivery == AMQP_NONE)
			return REQ_NONE;
	} else {
		if (!scan_request(h, 0, n, &s))
			return REQ_NONE;
		if (!s.head_end)
			count(COUNTER_HEAD_SPLIT, 1);
	}

	struct ctx_event ev = {};
	tc->ts_len = 0;
	if (amqp && (delivery & AMQP_HEADER)) {
		ev.ctx_flags |= CTX_FLAG_HEADER;
		if (!parent_based)
			tc->flags = (tc->flags & ~1) | sampled_by_ratio(tc->trace_id);
	} else if (!amqp && s.tp_line && !s.dup && !parse_traceparent(h, s.tp_line, n, tc)) {
		ev.ctx_flags |= CTX_FLAG_HEADER;
		if (s.ts_line && s.ts_end) {
			__u32 v = skip_ows(h, s.ts_line + 11), end = s.ts_end;
			if (end > v && B(h, end - 1) == '\r')
				end--;
			__u32 len = end > v ? end - v : 0;
			if (len >= TS_MAX) {
				count(COUNTER_TRACESTATE_DROPPED, 1);
			} else if (len) {
				BOUND(len, TS_MAX - 1);
				BOUND(v, SCAN_MAX - 1);
				if (!bpf_probe_read_kernel(tc->tracestate, len, &h->b[v]))
					tc->ts_len = len;
			}
		}
		if (!parent_based)
			tc->flags = (tc->flags & ~1) | sampled_by_ratio(tc->trace_id);
	} else {
		random_bytes(tc->trace_id, 16);
		tc->flags = sampled_by_ratio(tc->trace_id);
	}
	random_bytes(tc->span_id, 8);

	__u64 sid = e->hdr.sock_id;
	__u32 pid = pid_tgid >> 32;
	int verdict = REQ_KEEP;
	if (bpf_map_lookup_elem(&no_thread_ctx, &pid)) {
		/* Go: the goroutine keeps them, the thread does not. */
		go_serving(pid, tc);
		goto report;
	}
	struct thread_ctx *old = bpf_map_lookup_elem(&thread_ctxs, &pid_tgid);
	__u32 inflight = old ? old->inflight : 0;
	tc->ambiguous = old ? old->ambiguous : 0;
	__u64 *who = bpf_map_lookup_elem(&serving, &sid);
	/* (A message stream is never left out: its parser must see every frame.) */
	if (!amqp && !(tc->flags & 1) && !who &&
	    ((ev.ctx_flags & CTX_FLAG_HEADER) || !peer_may_be_traced(e)))
		verdict = REQ_SKIP;
	if (!who || *who != pid_tgid) {
		if (who) /* another thread read the last request here; it no longer serves it */
			release(*who);
		inflight++;
		bpf_map_update_elem(&serving, &sid, &pid_tgid, BPF_ANY);
	} /* else: the last request here is not answered yet (pipelining): replaced */
	if (inflight > 1 || (amqp && !(delivery & AMQP_ALONE)))
		tc->ambiguous = 1;
	tc->inflight = inflight > 255 ? 255 : inflight;
	bpf_map_update_elem(&thread_ctxs, &pid_tgid, tc, BPF_ANY);
	if (verdict == REQ_SKIP) {
		count(COUNTER_UNSAMPLED_SKIPPED, 1);
		return REQ_SKIP;
	}
report:

	ev.hdr.kind = EVENT_CTX;
	ev.hdr.pid = e->hdr.pid;
	ev.hdr.tid = e->hdr.tid; /* userspace: the thread whose read completed the head */
	ev.hdr.fd = e->hdr.fd;
	ev.hdr.ts_ns = after_held ? held.ts_ns : e->hdr.ts_ns;
	ev.hdr.sock_id = sid;
	__builtin_memcpy(ev.trace_id, tc->trace_id, 16);
	__builtin_memcpy(ev.span_id, tc->span_id, 8);
	ev.ctx_kind = CTX_SERVER;
	ev.trace_flags = tc->flags;
	if (tc->ambiguous)
		ev.ctx_flags |= CTX_FLAG_AMBIGUOUS;
	emit_ctx(&ev);
	return verdict;
}

#endif /* OTELCOL_EBPF_SERVER_REQUEST_H */
