/* Server context for HTTP/2 requests served by Go's net/http (issue 14). An HTTP/2
 * request is never one read: its HEADERS are decoded in the connection's reader
 * goroutine and handed to the serve goroutine, which starts the handler goroutine from
 * (*serverConn).processHeaders(f *MetaHeadersFrame). A uprobe at that function's entry
 * gives the stream its ids (the incoming traceparent's trace, or a new one; a new span
 * id), makes them the serve goroutine's context, so the handler goroutine started inside
 * inherits them (goroutine.h, runtime.newproc1), and reports them (CTX_SERVER with the
 * socket and the stream id) so the SERVER span userspace builds for that stream uses
 * exactly them. At the function's RETs the serve goroutine's context is dropped: a
 * handler it starts later (one queued past the stream limit) gets none, never a wrong one.
 *
 * Layouts (the same in go1.18 .. 1.26 net/http's h2_bundle, x/net/http2 and go1.27's
 * net/http/internal/http2): MetaHeadersFrame = {*HeadersFrame, Fields []HeaderField, ...};
 * HeadersFrame starts with FrameHeader {valid, Type, Flags u8; Length u32; StreamID u32}
 * (StreamID at 8); hpack.HeaderField = {Name, Value string; Sensitive bool} (40 bytes).
 * serverConn = {srv *Server, hs *http.Server, conn net.Conn, ...}: conn at 16; go1.27's
 * hs is an interface (ServerConfig), conn at 24. net/http: only TLS connections are
 * followed (the conn's data word is a *tls.Conn, as tls.h reads it): h2c is counted, left
 * without. grpc-go's (*http2Server).operateHeaders takes the same frame: h2c and TLS. */
#ifndef OTELCOL_EBPF_GO_H2SERVER_H
#define OTELCOL_EBPF_GO_H2SERVER_H

#include "common.h"
#include "context.h"
#include "goroutine.h"
#include "tls.h"

#define H2_FIELDS_MAX 64 /* header fields looked at; more: unknown (counted) */
#define H2_FIELD_SIZE 40
#define TP_LEN 55 /* "00-" 32 "-" 16 "-" 2 */

struct go_h2_field {
	__u64 name;
	__u64 name_len;
	__u64 value;
	__u64 value_len;
};

/* Where the traceparent and tracestate fields of a HEADERS frame are. */
struct go_h2_scan {
	__u64 fields;
	__u64 n;
	__u64 tp, tp_len, ts, ts_len;
	__u32 tp_count, ts_count;
	__u32 failed;
};

static __always_inline int same(const char *a, const char *b, int n)
{
#pragma unroll
	for (int k = 0; k < n; k++)
		if (a[k] != b[k])
			return 0;
	return 1;
}

static long go_h2_field(__u32 i, struct go_h2_scan *s)
{
	if (i >= s->n)
		return 1;
	struct go_h2_field f;
	if (bpf_probe_read_user(&f, sizeof(f), (void *)(s->fields + (__u64)i * H2_FIELD_SIZE))) {
		s->failed = 1;
		return 1;
	}
	if (f.name_len != 11 && f.name_len != 10)
		return 0;
	char name[11] = {};
	if (bpf_probe_read_user(name, f.name_len == 11 ? 11 : 10, (void *)f.name)) {
		s->failed = 1;
		return 1;
	}
	/* HTTP/2 field names are lowercase. */
	if (f.name_len == 11 && same(name, "traceparent", 11)) {
		s->tp = f.value;
		s->tp_len = f.value_len;
		s->tp_count++;
	} else if (f.name_len == 10 && same(name, "tracestate", 10)) {
		s->ts = f.value;
		s->ts_len = f.value_len;
		s->ts_count++;
	}
	return 0;
}

/* The stream's ids in `tc`, from its header when valid (as server_request.h does for
 * HTTP/1); true when the header gave them. */
static __always_inline int go_h2_ids(struct go_h2_scan *s, struct thread_ctx *tc)
{
	__u32 zero = 0;
	struct hdr_buf *h = bpf_map_lookup_elem(&hdr_bufs, &zero);
	int header = 0;
	tc->ts_len = 0;
	if (h && s->tp_count == 1 && s->ts_count <= 1 && s->tp_len == TP_LEN) {
		/* parse_traceparent reads a header line: give it one. */
		__builtin_memcpy(h->b, "traceparent:", 12);
		if (!bpf_probe_read_user(&h->b[12], TP_LEN, (void *)s->tp) &&
		    !parse_traceparent(h, 0, 12 + TP_LEN, tc))
			header = 1;
	}
	if (header) {
		__u64 len = s->ts_len;
		if (len >= TS_MAX) {
			count(COUNTER_TRACESTATE_DROPPED, 1);
		} else if (len) {
			BOUND(len, TS_MAX - 1);
			if (!bpf_probe_read_user(tc->tracestate, len, (void *)s->ts))
				tc->ts_len = len;
		}
		if (!parent_based)
			tc->flags = (tc->flags & ~1) | sampled_by_ratio(tc->trace_id);
	} else {
		random_bytes(tc->trace_id, 16);
		tc->flags = sampled_by_ratio(tc->trace_id);
	}
	random_bytes(tc->span_id, 8);
	return header;
}

/* grpc-go's http2Server.conn (at 16): the listener's *net.TCPConn for h2c, or for TLS a
 * credentials wrapper {net.Conn (the *tls.Conn), syscall.Conn}. Each reading is checked
 * against what the capture knows of the socket: h2c must not be TLS, TLS must be. */
static __always_inline struct sock *grpc_conn_sock(__u64 data, __u32 *fd)
{
	__u64 netfd = 0, inner = 0;
	__s64 raw = -1;
	if (!bpf_probe_read_user(&netfd, sizeof(netfd), (void *)data) && netfd &&
	    !bpf_probe_read_user(&raw, sizeof(raw), (void *)(netfd + 16)) && raw >= 0 && raw < 0x7fffffff) {
		struct sock *sk = sock_of_fd(raw);
		__u64 sid = (__u64)sk;
		if (sk && !bpf_map_lookup_elem(&tls_socks, &sid)) {
			*fd = raw;
			return sk;
		}
	}
	if (bpf_probe_read_user(&inner, sizeof(inner), (void *)(data + 8)) || !inner)
		return NULL;
	return go_conn_sock(inner, fd);
}

static __always_inline int go_h2_headers(struct pt_regs *ctx, __u64 f, __u64 conn_off, int grpc)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32, zero = 0;
	if (!propagate || !is_traced(pid))
		return 0;
	struct go_key g = {.pid = pid};
	if (goid_of(pid, ctx->r14, &g.id)) {
		count(COUNTER_GO_CTX_NO_GOID, 1);
		return 0;
	}
	/* Whatever the serve goroutine had is not this stream's. */
	bpf_map_delete_elem(&go_ctxs, &g);

	__u64 sc = ctx->ax, hf = 0, data = 0;
	__u32 stream = 0, fd = 0;
	struct go_h2_scan s = {};
	if (bpf_probe_read_user(&hf, sizeof(hf), (void *)f) || !hf ||
	    bpf_probe_read_user(&stream, sizeof(stream), (void *)(hf + 8)) ||
	    bpf_probe_read_user(&s.fields, sizeof(s.fields), (void *)(f + 8)) ||
	    bpf_probe_read_user(&s.n, sizeof(s.n), (void *)(f + 16))) {
		count(COUNTER_GO_H2_UNREAD, 1);
		return 0;
	}
	if (!(stream & 1))
		return 0; /* not a client's stream: processHeaders refuses it */
	if (s.n > H2_FIELDS_MAX) {
		count(COUNTER_GO_H2_UNREAD, 1);
		return 0;
	}
	bpf_loop(H2_FIELDS_MAX, go_h2_field, &s, 0);
	if (s.failed) {
		count(COUNTER_GO_H2_UNREAD, 1);
		return 0;
	}
	/* conn's data word: net/http's is the *tls.Conn (go_conn_sock takes the interface's
	 * address: the net.Conn it starts with). */
	struct sock *sk = NULL;
	if (!bpf_probe_read_user(&data, sizeof(data), (void *)(sc + conn_off + 8)) && data)
		sk = grpc ? grpc_conn_sock(data, &fd) : go_conn_sock(data, &fd);
	__u64 sid = (__u64)sk;
	if (!sk || (!grpc && !bpf_map_lookup_elem(&tls_socks, &sid))) {
		count(COUNTER_GO_H2_NO_SOCKET, 1);
		return 0;
	}

	struct thread_ctx *tc = bpf_map_lookup_elem(&ctx_tmpl, &zero);
	if (!tc)
		return 0;
	struct ctx_event ev = {};
	if (go_h2_ids(&s, tc))
		ev.ctx_flags |= CTX_FLAG_HEADER;
	tc->inflight = 1;
	tc->ambiguous = 0;
	bpf_map_update_elem(&go_ctxs, &g, tc, BPF_ANY);

	ev.hdr.kind = EVENT_CTX;
	ev.hdr.pid = pid;
	ev.hdr.tid = (__u32)pid_tgid;
	ev.hdr.fd = fd;
	ev.hdr.ts_ns = bpf_ktime_get_ns();
	ev.hdr.sock_id = sid;
	__builtin_memcpy(ev.trace_id, tc->trace_id, 16);
	__builtin_memcpy(ev.span_id, tc->span_id, 8);
	ev.ctx_kind = CTX_SERVER;
	ev.trace_flags = tc->flags;
	ev.stream_id = stream;
	emit_ctx(&ev);
	return 0;
}

/* (*serverConn).processHeaders(sc, f): net/http's h2_bundle (go1.18 .. 1.26), x/net/http2. */
SEC("uprobe")
int on_go_h2_headers(struct pt_regs *ctx)
{
	return go_h2_headers(ctx, ctx->bx, 16, 0);
}

/* The same in go1.27's net/http/internal/http2 (serverConn.hs is an interface). */
SEC("uprobe")
int on_go_h2_headers_27(struct pt_regs *ctx)
{
	return go_h2_headers(ctx, ctx->bx, 24, 0);
}

/* grpc-go: (*http2Server).operateHeaders(t, ctx context.Context, frame, handle), in the
 * connection's reader goroutine, which calls handle: grpc's server starts the stream's
 * goroutine there (`go f()`; with server workers a pooled goroutine runs it and gets none). */
SEC("uprobe")
int on_go_grpc_headers(struct pt_regs *ctx)
{
	return go_h2_headers(ctx, ctx->di, 16, 1);
}

/* At a RET of processHeaders (operateHeaders): the handler goroutine has its copy by now. */
SEC("uprobe")
int on_go_h2_headers_ret(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_key g = {.pid = pid};
	if (!goid_of(pid, ctx->r14, &g.id))
		bpf_map_delete_elem(&go_ctxs, &g);
	return 0;
}

#endif /* OTELCOL_EBPF_GO_H2SERVER_H */
