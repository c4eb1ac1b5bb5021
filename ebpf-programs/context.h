/* Trace context kept in the kernel, for `context_propagation: headers`: the contexts,
 * sock_ops choosing the sockets sk_msg runs for, and the HTTP/1 request scan both sides use.
 *
 * A header is inserted synchronously inside the sender's sendmsg, so the ids it carries
 * must be known in the kernel by then:
 * - server side (tp_btf/sys_exit, server_request.h): when a traced thread reads the start
 *   of an HTTP/1 request, the request gets its ids: the incoming traceparent's trace id and flags
 *   (or a new trace) and a new span id. They are kept per thread and reported (CTX_SERVER)
 *   so the SERVER span uses exactly them.
 * - client side (sk_msg on sockets traced processes connected, sk_msg.h): a request the
 *   thread sends gets a new span id and `traceparent` (and the server's `tracestate`),
 *   unless it has a traceparent already; the ids are reported (CTX_INJECTED).
 * The thread's context ends when it writes on the socket it read the request from (the
 * response). A thread with several requests open at once (an event loop) cannot tell
 * which one a call belongs to: its calls start new traces (flagged AMBIGUOUS). */
#ifndef OTELCOL_EBPF_CONTEXT_H
#define OTELCOL_EBPF_CONTEXT_H

#include "common.h"

#define SCAN_MAX 4096 /* header bytes looked at; a power of two */
#define TS_MAX 256    /* tracestate bytes carried; a power of two */

const volatile __u8 propagate = 0;
/* Head sampling (config `sampling`): a new trace is sampled when the top 63 bits of its
 * trace id's last 8 bytes (big endian) are below sample_bound = ratio * 2^63, as
 * OpenTelemetry's TraceIdRatioBased does, so SDKs downstream agree. parent_based: an
 * incoming traceparent's sampled flag decides instead. */
const volatile __u64 sample_bound = 1ULL << 63;
const volatile __u8 parent_based = 1;

struct thread_ctx {
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 flags;
	__u8 inflight; /* requests read and not yet answered */
	__u8 ambiguous;
	__u8 _pad;
	__u32 ts_len;
	char tracestate[TS_MAX];
};

/* pid_tgid of a server thread -> the context of the request it serves. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct thread_ctx);
} thread_ctxs SEC(".maps");

/* Processes whose threads say nothing about the request a call belongs to (Go: goroutines
 * move between threads). Their calls start new traces; userspace fills this. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} no_thread_ctx SEC(".maps");

/* Server socket with a request read and not answered -> the thread that read it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} serving SEC(".maps");

/* Sockets traced processes are connecting (by cookie): put in inject_socks once
 * established (a socket can only enter a sockhash then). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
} connecting SEC(".maps");

/* The only sockets on_msg runs for: client sockets of traced processes. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} inject_socks SEC(".maps");

struct hdr_buf {
	char b[SCAN_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hdr_buf);
} hdr_bufs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct thread_ctx);
} ctx_tmpl SEC(".maps");

/* What one pass over a header block found (offsets into hdr_buf; 0 = not found). */
struct scan {
	__u32 base; /* where the request starts */
	__u32 n;
	__u32 line_start;
	__u32 line_end; /* just past the request line's LF */
	__u32 head_end; /* just past the blank line ending the header block */
	__u32 tp_line;  /* start of the traceparent line */
	__u32 ts_line;  /* start of the tracestate line */
	__u32 ts_end;   /* the LF ending it */
	__u32 dup;      /* traceparent or tracestate given twice */
	__u32 cl_line;  /* start of the content-length line */
	__u32 te;       /* a transfer-encoding header: a body we do not follow */
};

#define B(h, i) ((h)->b[(i) & (SCAN_MAX - 1)])

static __always_inline int name_is(struct hdr_buf *h, __u32 p, const char *name, int len)
{
#pragma unroll
	for (int k = 0; k < len; k++)
		if ((B(h, p + k) | 0x20) != name[k])
			return 0;
	return 1;
}

/* bpf_loop body: one byte per call; work happens at line ends only. */
static long scan_step(__u32 k, struct scan *s)
{
	__u32 zero = 0, i = s->base + k;
	struct hdr_buf *h = bpf_map_lookup_elem(&hdr_bufs, &zero);
	if (!h || i >= s->n)
		return 1;
	if (B(h, i) != '\n')
		return 0;
	if (!s->line_end) {
		s->line_end = i + 1;
	} else if (i - s->line_start <= 1) {
		s->head_end = i + 1;
		return 1;
	}
	if (s->ts_line && !s->ts_end)
		s->ts_end = i;
	__u32 p = i + 1;
	s->line_start = p;
	if (p + 12 > s->n)
		return 0;
	char c = B(h, p) | 0x20;
	if (c == 'c' && name_is(h, p, "content-length:", 15)) {
		s->cl_line = p;
		return 0;
	}
	if (c != 't')
		return 0;
	if (name_is(h, p, "transfer-encoding:", 18)) {
		s->te = 1;
	} else if (name_is(h, p, "traceparent:", 12)) {
		if (s->tp_line)
			s->dup = 1;
		s->tp_line = p;
	} else if (name_is(h, p, "tracestate:", 11)) {
		if (s->ts_line)
			s->dup = 1;
		s->ts_line = p;
	}
	return 0;
}

/* Scans hdr_buf from `base` to `n`. True when a HTTP/1 request line starts at `base`. */
/* Global: verified once, not at each call. */
__noinline int scan_request(struct hdr_buf *h, __u32 base, __u32 n, struct scan *s)
{
	if (!h || !s)
		return 0;
	struct scan st = {}; /* bpf_loop's context must be on this stack */
	st.base = base;
	st.n = n;
	st.line_start = base;
	bpf_loop(SCAN_MAX, scan_step, &st, 0);
	*s = st;
	__u32 e = st.line_end; /* "... HTTP/1.x\r\n" */
	if (e < base + 16)
		return 0;
	return B(h, e - 2) == '\r' && B(h, e - 11) == ' ' && B(h, e - 10) == 'H' &&
	       B(h, e - 9) == 'T' && B(h, e - 8) == 'T' && B(h, e - 7) == 'P' &&
	       B(h, e - 6) == '/' && B(h, e - 5) == '1' && B(h, e - 4) == '.';
}

/* The first bytes of a request ("GET ", "POST", ...): a cheap filter before scanning. */
static __always_inline int method_start(const char *p)
{
	__u32 w = (__u8)p[0] | (__u8)p[1] << 8 | (__u8)p[2] << 16 | (__u32)(__u8)p[3] << 24;
#define W(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)
	return w == W('G', 'E', 'T', ' ') || w == W('P', 'O', 'S', 'T') ||
	       w == W('P', 'U', 'T', ' ') || w == W('H', 'E', 'A', 'D') ||
	       w == W('D', 'E', 'L', 'E') || w == W('P', 'A', 'T', 'C') ||
	       w == W('O', 'P', 'T', 'I');
#undef W
}

static __always_inline int hexv(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes `len` bytes of lowercase hex at `p`; -1 when not hex or all zero. */
static __always_inline int unhex(struct hdr_buf *h, __u32 p, __u8 *out, int len)
{
	__u8 any = 0;
#pragma unroll
	for (int k = 0; k < len; k++) {
		int hi = hexv(B(h, p + 2 * k)), lo = hexv(B(h, p + 2 * k + 1));
		if (hi < 0 || lo < 0)
			return -1;
		out[k] = hi << 4 | lo;
		any |= out[k];
	}
	return any ? 0 : -1;
}

static __always_inline __u32 skip_ows(struct hdr_buf *h, __u32 p)
{
#pragma unroll
	for (int k = 0; k < 4; k++)
		if (B(h, p) == ' ' || B(h, p) == '\t')
			p++;
	return p;
}

/* W3C traceparent, version 00: "00-<trace id>-<parent id>-<flags>". */
static __noinline int parse_traceparent(struct hdr_buf *h, __u32 line, __u32 n, struct thread_ctx *tc)
{
	__u8 span[8], fl[1];
	__u32 v = skip_ows(h, line + 12);
	if (v + 55 > n || B(h, v) != '0' || B(h, v + 1) != '0' || B(h, v + 2) != '-' ||
	    B(h, v + 35) != '-' || B(h, v + 52) != '-')
		return -1;
	if (unhex(h, v + 3, tc->trace_id, 16) || unhex(h, v + 36, span, 8))
		return -1;
	if (hexv(B(h, v + 53)) < 0 || hexv(B(h, v + 54)) < 0)
		return -1;
	fl[0] = hexv(B(h, v + 53)) << 4 | hexv(B(h, v + 54));
	if (v + 55 < n) {
		char c = B(h, v + 55);
		if (c != '\r' && c != '\n' && c != ' ' && c != '\t')
			return -1;
	}
	tc->flags = fl[0];
	return 0;
}

static __always_inline __u8 sampled_by_ratio(const __u8 *trace_id)
{
	__u64 x = 0;
#pragma unroll
	for (int k = 8; k < 16; k++)
		x = x << 8 | trace_id[k];
	return (x >> 1) < sample_bound;
}

static __always_inline void random_bytes(__u8 *p, int n)
{
#pragma unroll
	for (int i = 0; i < n; i += 4) {
		__u32 r = bpf_get_prandom_u32();
		__builtin_memcpy(p + i, &r, 4);
	}
}

/* The thread no longer serves one of its requests. */
static __always_inline void release(__u64 tid)
{
	struct thread_ctx *tc = bpf_map_lookup_elem(&thread_ctxs, &tid);
	if (!tc)
		return;
	if (tc->inflight <= 1)
		bpf_map_delete_elem(&thread_ctxs, &tid);
	else
		tc->inflight--;
}

/* A traced thread wrote on `sid`: if it is a server socket with a request open, that
 * request is being answered. */
static __always_inline void answered(__u64 sid)
{
	__u64 *who = bpf_map_lookup_elem(&serving, &sid);
	if (!who)
		return;
	release(*who);
	bpf_map_delete_elem(&serving, &sid);
}

static __always_inline void emit_ctx(struct ctx_event *ev)
{
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), BPF_RB_NO_WAKEUP))
		count(COUNTER_RINGBUF_FULL, 1);
}

/* The thread's context for the calls it makes, when it can be trusted. */
static __always_inline struct thread_ctx *thread_ctx_of(__u64 pid_tgid)
{
	struct thread_ctx *tc = bpf_map_lookup_elem(&thread_ctxs, &pid_tgid);
	__u32 pid = pid_tgid >> 32;
	if (tc && bpf_map_lookup_elem(&no_thread_ctx, &pid))
		return NULL; /* kept before userspace knew the process: not to be trusted */
	return tc;
}

/* Whether `pid` is (or becomes, by this connect) a traced process. PENDING ones are not
 * touched: userspace has not decided yet. */
static __always_inline int traces(__u32 pid, __u16 remote_port)
{
	__u32 *state = bpf_map_lookup_elem(&proc_state, &pid);
	__u8 f = port_flag(remote_port);
	if (f & PORT_NO_SPANS)
		return 0;
	if (!state)
		return trace_all || ((f & PORT_INSTRUMENT) && !(f & PORT_DISCOVERY_EXCLUDE));
	if (*state == PROC_TRACED)
		return 1;
	if (*state == PROC_ELIGIBLE)
		return (f & (PORT_INSTRUMENT | PORT_INSTRUMENT_WITH_EXE)) ||
		       bpf_map_lookup_elem(&port_hits, &pid) != NULL;
	return 0;
}

SEC("sockops")
int on_sockops(struct bpf_sock_ops *skops)
{
	if (!propagate)
		return 1;
	__u32 op = skops->op;
	if (op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
		/* In the connecting task: the owner is known here, and only here. */
		if (skops->family != AF_INET && skops->family != AF_INET6)
			return 1;
		__u32 pid = bpf_get_current_pid_tgid() >> 32;
		if (!traces(pid, bpf_ntohl(skops->remote_port)))
			return 1;
		__u64 cookie = bpf_get_socket_cookie(skops);
		__u8 one = 1;
		bpf_map_update_elem(&connecting, &cookie, &one, BPF_ANY);
	} else if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		__u64 cookie = bpf_get_socket_cookie(skops);
		if (!bpf_map_lookup_elem(&connecting, &cookie))
			return 1;
		bpf_map_delete_elem(&connecting, &cookie);
		bpf_sock_hash_update(skops, &inject_socks, &cookie, BPF_NOEXIST);
	}
	return 1;
}

#endif /* OTELCOL_EBPF_CONTEXT_H */

