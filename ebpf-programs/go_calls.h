/* Go calls that carry no inserted header (database drivers, HTTP/1 over TLS) still get
 * the request their goroutine serves as parent: when a Go process sends on a socket, the
 * sending goroutine's context (goroutine.h) is reported as a CTX_CALLER event just before
 * the data record, with the record's timestamp. Only changes are reported, per socket
 * (sock_info.caller): a pooled connection used by request after request costs one event
 * per request, not per write. "No request" is reported too, so a call from a goroutine
 * that serves none never inherits the last caller's parent. */
#ifndef OTELCOL_EBPF_GO_CALLS_H
#define OTELCOL_EBPF_GO_CALLS_H

#include "common.h"
#include "context.h"
#include "capture.h"
#include "goroutine.h"
#include "go_grpc.h"

/* sock_info.caller: 0 = nothing reported on this socket yet; this = "no request". */
#define CALLER_NONE (~0ULL)

/* The record being built: off the stack, which emit_call's callers use up. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ctx_event);
} go_caller_ev SEC(".maps");

/* A send by `h`'s thread on `h`'s socket. Global: verified once, not per caller. */
__noinline int go_caller(struct event_header *h, struct sock_info *si)
{
	if (!h)
		return 0;
	__u32 pid = h->pid;
	__u64 *off = bpf_map_lookup_elem(&go_goid_off, &pid);
	if (!off) /* not a Go process (or its goroutines cannot be read) */
		return 0;
	struct go_key k = {.pid = pid};
	struct thread_ctx *tc = NULL;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 g = 0;
	/* An unreadable goroutine counts as one without a request: no parent, never a stale one. */
	if (regs && !bpf_probe_read_kernel(&g, sizeof(g), &regs->r14) && g &&
	    !bpf_probe_read_user(&k.id, sizeof(k.id), (void *)(g + *off)))
		tc = bpf_map_lookup_elem(&go_ctxs, &k);
	__u64 span = CALLER_NONE;
	if (tc)
		__builtin_memcpy(&span, tc->span_id, 8);
	if (si && si->caller == span)
		return 0;
	__u32 zero = 0;
	struct ctx_event *ev = bpf_map_lookup_elem(&go_caller_ev, &zero);
	if (!ev)
		return 0;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->hdr = *h;
	ev->hdr.kind = EVENT_CTX;
	ev->ctx_kind = CTX_CALLER;
	if (tc) {
		__builtin_memcpy(ev->trace_id, tc->trace_id, 16);
		__builtin_memcpy(ev->parent_span_id, tc->span_id, 8);
		ev->trace_flags = tc->flags;
	}
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), BPF_RB_NO_WAKEUP)) {
		count(COUNTER_RINGBUF_FULL, 1);
		return 0; /* not recorded as reported: the next send tries again */
	}
	if (si)
		si->caller = span;
	return 0;
}

/* grpc-go's connection writer (one goroutine) sends every stream's HEADERS, several in
 * one record, so the socket's caller says nothing about them: each stream the record
 * opens gets its caller's context (go_grpc.h) as a CTX_CALLER with its stream id, before
 * the record. Over TLS that is the only way (nothing can be inserted there); on h2c a
 * stream's context is normally taken by h2_inject.h first. Global: verified once. */
__noinline int go_stream_callers(struct event_header *h, struct h2_walk *w)
{
	if (!h || !w || !w->nheads)
		return 0;
	__u32 pid = h->pid;
	__u64 goid = 0;
	if (current_goid(pid, &goid))
		return 0;
	__u32 zero = 0;
	struct ctx_event *ev = bpf_map_lookup_elem(&go_caller_ev, &zero);
	if (!ev)
		return 0;
	for (__u32 i = 0; i < H2_HEADS_MAX; i++) {
		if (i >= w->nheads)
			break;
		__u32 stream = w->heads[i];
		struct thread_ctx *tc = go_stream_ctx(pid, goid, stream);
		if (!tc)
			continue;
		__builtin_memset(ev, 0, sizeof(*ev));
		ev->hdr = *h;
		ev->hdr.kind = EVENT_CTX;
		ev->ctx_kind = CTX_CALLER;
		ev->stream_id = stream;
		__builtin_memcpy(ev->trace_id, tc->trace_id, 16);
		__builtin_memcpy(ev->parent_span_id, tc->span_id, 8);
		ev->trace_flags = tc->flags;
		if (bpf_ringbuf_output(&events, ev, sizeof(*ev), BPF_RB_NO_WAKEUP))
			count(COUNTER_RINGBUF_FULL, 1);
		go_stream_done(pid, goid, stream);
	}
	return 0;
}

#endif /* OTELCOL_EBPF_GO_CALLS_H */
