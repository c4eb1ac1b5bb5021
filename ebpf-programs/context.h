/* Trace context kept in the kernel, for `context_propagation: headers`. Included by
 * net.bpf.c (the maps are shared with its programs).
 *
 * A header is inserted synchronously inside the sender's sendmsg, so the ids it carries
 * must be known in the kernel by then:
 * - server side (tp_btf/sys_exit): when a traced thread reads the start of an HTTP/1
 *   request, the request gets its ids here: the incoming traceparent's trace id and flags
 *   (or a new trace) and a new span id. They are kept per thread and reported (CTX_SERVER)
 *   so the SERVER span uses exactly them.
 * - client side (sk_msg on sockets traced processes connected): a request the thread sends
 *   gets a new span id and `traceparent` (and the server's `tracestate`) after its request
 *   line, unless it has a traceparent already; the ids are reported (CTX_INJECTED).
 * The thread's context ends when it writes on the socket it read the request from (the
 * response). A thread with several requests open at once (an event loop) cannot tell
 * which one a call belongs to: its calls start new traces (flagged AMBIGUOUS). */

#define SCAN_MAX 4096 /* header bytes looked at; a power of two */
#define TS_MAX 256    /* tracestate bytes carried; a power of two */
#define TP_LINE 70    /* "traceparent: 00-<32>-<16>-<2>\r\n" */
#define LINE_MAX (TP_LINE + 14 + TS_MAX)
#define LINE_BUF 512 /* a power of two above LINE_MAX */
#define SK_PASS 1

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

struct line_buf {
	char b[LINE_BUF];
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
	__type(value, struct line_buf);
} line_bufs SEC(".maps");

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
/* n &= mask in a way clang 14 keeps, so the verifier sees the bound. */
#define BOUND(n, mask) asm volatile("%[v] &= %[m]" : [v] "+r"(n) : [m] "i"(mask))

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

#include "amqp_deliver.h"

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
	if (!amqp && (n < 16 || !method_start((const char *)e->data)))
		return REQ_NONE;
	struct hdr_buf *h = bpf_map_lookup_elem(&hdr_bufs, &zero);
	struct thread_ctx *tc = bpf_map_lookup_elem(&ctx_tmpl, &zero);
	if (!h || !tc)
		return REQ_NONE;
	BOUND(n, SCAN_MAX - 1);
	if (bpf_probe_read_kernel(h->b, n, e->data))
		return REQ_NONE;
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
	if (bpf_map_lookup_elem(&no_thread_ctx, &pid))
		goto report; /* the request still gets its ids; the thread does not keep them */
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
	ev.hdr.tid = e->hdr.tid;
	ev.hdr.fd = e->hdr.fd;
	ev.hdr.ts_ns = e->hdr.ts_ns;
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

#define MAX_REQS 4 /* pipelined requests looked at in one send */

/* What on_msg is about to insert, per CPU (too big for the stack). */
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
	__builtin_memcpy(o, "traceparent: 00-", 16);
	put_hex(o + 16, ev->trace_id, 16);
	o[48] = '-';
	put_hex(o + 49, ev->span_id, 8);
	o[65] = '-';
	put_hex(o + 66, &ev->trace_flags, 1);
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

/* The thread's context for the calls it makes, when it can be trusted. */
static __always_inline struct thread_ctx *thread_ctx_of(__u64 pid_tgid)
{
	struct thread_ctx *tc = bpf_map_lookup_elem(&thread_ctxs, &pid_tgid);
	__u32 pid = pid_tgid >> 32;
	if (tc && bpf_map_lookup_elem(&no_thread_ctx, &pid))
		return NULL; /* kept before userspace knew the process: not to be trusted */
	return tc;
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

#include "h2_inject.h"
#include "amqp_inject.h"

SEC("sk_msg")
int on_msg(struct sk_msg_md *msg)
{
	__u32 zero = 0;
	if (!propagate)
		return SK_PASS;
	/* HTTP/2 connections are followed from their preface. */
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return SK_PASS;
	struct h2_sock *hs = bpf_sk_storage_get(&h2_socks, sk, NULL, 0);
	if (hs)
		return h2_msg(msg, hs, sk);
	if (h2_preface(msg)) {
		hs = bpf_sk_storage_get(&h2_socks, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
		if (!hs)
			return SK_PASS;
		hs->tx.rem = 24;
		return h2_msg(msg, hs, sk);
	}
	/* AMQP connections are followed from their protocol header. */
	struct amqp_sock *as = bpf_sk_storage_get(&amqp_socks, sk, NULL, 0);
	if (as)
		return amqp_msg(msg, as, sk);
	if (amqp_protocol_header(msg)) {
		as = bpf_sk_storage_get(&amqp_socks, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
		if (!as)
			return SK_PASS;
		as->tx.rem = 8; /* the protocol header is not a frame */
		return amqp_msg(msg, as, sk);
	}
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

	struct thread_ctx *tc = thread_ctx_of(pid_tgid);
	__u64 now = bpf_ktime_get_ns();
	for (__u32 i = 0; i < MAX_REQS && i < cnt; i++)
		fill_ids(&plan->ev[i], tc, pid_tgid, now, (__u64)msg->sk);
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
