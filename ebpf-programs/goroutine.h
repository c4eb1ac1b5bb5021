/* Trace context per goroutine for Go processes (issue 14): goroutines move between threads,
 * so a Go program's context is kept under (process, goroutine id), not under the thread.
 *
 * The current goroutine's `g` is in R14 (Go's register ABI, amd64): in a uprobe after a
 * function's stack check, and in the user registers saved at a syscall (the function
 * issuing SYSCALL never writes R14): measured 128000 of 128000 writes naming their
 * goroutine, go1.18, 1.23 and 1.26. The goid's offset in runtime.g depends on the release
 * (userspace: loader/goruntime.rs, go_goid_off).
 * - A request read by a goroutine (server_request) becomes that goroutine's context.
 * - net/http's client hands a request to the connection's writeLoop goroutine: the
 *   caller's context follows the *http.Request from persistConn.roundTrip (caller) to
 *   Request.write (writer), so the writer's send is inserted with the caller's context.
 * - runtime.newproc1 gives a new goroutine its creator's context (fan-out).
 * - net/http's server ends it when the handler has returned ((*response).finishRequest, in
 *   the connection's goroutine): a later read that is not seen as a request start leaves
 *   no stale context behind.
 * A goroutine without a context sends with none: unknown means no parent, never a wrong
 * one. */
#ifndef OTELCOL_EBPF_GOROUTINE_H
#define OTELCOL_EBPF_GOROUTINE_H

#include "common.h"
#include "context.h"

struct go_key {
	__u32 pid;
	__u32 _pad;
	__u64 id; /* a goroutine id, or the address of an *http.Request */
};

/* Go processes whose goroutine ids can be read: pid -> offset of goid in runtime.g. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} go_goid_off SEC(".maps");

/* (pid, goid) -> the context of the request the goroutine works for. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_key);
	__type(value, struct thread_ctx);
} go_ctxs SEC(".maps");

/* (pid, *http.Request) -> its caller's context, until the writer picks it up. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct go_key);
	__type(value, struct thread_ctx);
} go_reqs SEC(".maps");

/* (pid, *http.Request) -> the goroutine that handed it over: the writer checks that this
 * goroutine still serves that request, so a hand-off left behind (a dial that failed after
 * roundTrip) never parents a later request at the same address. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct go_key);
	__type(value, __u64);
} go_req_callers SEC(".maps");

/* Thread running runtime.newproc1 -> the creating goroutine's id. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} go_spawning SEC(".maps");

static __always_inline int goid_of(__u32 pid, __u64 g, __u64 *goid)
{
	__u64 *off = bpf_map_lookup_elem(&go_goid_off, &pid);
	if (!off || !g)
		return -1;
	return bpf_probe_read_user(goid, sizeof(*goid), (void *)(g + *off));
}

/* The goroutine making the current syscall (R14 as the syscall saved it). */
static __always_inline int current_goid(__u32 pid, __u64 *goid)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 g = 0;
	if (!regs || bpf_probe_read_kernel(&g, sizeof(g), &regs->r14))
		return -1;
	return goid_of(pid, g, goid);
}

/* The context of the goroutine sending now, in a Go process. */
static __always_inline struct thread_ctx *go_ctx_of(__u32 pid)
{
	struct go_key k = {.pid = pid};
	if (current_goid(pid, &k.id))
		return NULL;
	return bpf_map_lookup_elem(&go_ctxs, &k);
}

/* A goroutine of `pid` read the request `tc` describes: its context from now on.
 * Global: verified once, outside the sys_exit program's paths. */
__noinline int go_serving(__u32 pid, struct thread_ctx *tc)
{
	struct go_key k = {.pid = pid};
	if (!tc || current_goid(pid, &k.id)) {
		count(COUNTER_GO_CTX_NO_GOID, 1);
		return 0;
	}
	tc->inflight = 1;
	tc->ambiguous = 0;
	bpf_map_update_elem(&go_ctxs, &k, tc, BPF_ANY);
	return 0;
}

/* net/http.(*persistConn).roundTrip(pc, req *transportRequest), in the calling goroutine:
 * transportRequest starts with the *http.Request, which the writer gets. */
SEC("uprobe")
int on_go_round_trip(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_key g = {.pid = pid}, r = {.pid = pid};
	if (goid_of(pid, ctx->r14, &g.id) ||
	    bpf_probe_read_user(&r.id, sizeof(r.id), (void *)ctx->bx) || !r.id)
		return 0;
	struct thread_ctx *tc = bpf_map_lookup_elem(&go_ctxs, &g);
	if (!tc) {
		/* The caller serves no request known here: its call starts a trace. */
		count(COUNTER_GO_CTX_NONE, 1);
		bpf_map_delete_elem(&go_reqs, &r);
		return 0;
	}
	bpf_map_update_elem(&go_reqs, &r, tc, BPF_ANY);
	bpf_map_update_elem(&go_req_callers, &r, &g.id, BPF_ANY);
	return 0;
}

/* Whether goroutine `caller` of `pid` still works for the request of `tc` (a hand-off
 * left behind never parents a later request). */
static __always_inline int go_still_serving(__u32 pid, __u64 caller, struct thread_ctx *tc)
{
	struct go_key c = {.pid = pid, .id = caller};
	struct thread_ctx *now = bpf_map_lookup_elem(&go_ctxs, &c);
	if (!now)
		return 0;
	__u64 a[3], b[3];
	__builtin_memcpy(a, now->trace_id, 16);
	__builtin_memcpy(&a[2], now->span_id, 8);
	__builtin_memcpy(b, tc->trace_id, 16);
	__builtin_memcpy(&b[2], tc->span_id, 8);
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2];
}

/* Whether the goroutine that handed `tc` over still works for that request. */
static __always_inline int go_handoff_live(struct go_key *r, struct thread_ctx *tc)
{
	__u64 *caller = bpf_map_lookup_elem(&go_req_callers, r);
	return caller && go_still_serving(r->pid, *caller, tc);
}

/* net/http.(*Request).write(r, ...), in the connection's writeLoop goroutine: the writer
 * sends with the context of the request it writes, or none. */
SEC("uprobe")
int on_go_request_write(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_key g = {.pid = pid}, r = {.pid = pid, .id = ctx->ax};
	if (goid_of(pid, ctx->r14, &g.id))
		return 0;
	struct thread_ctx *tc = bpf_map_lookup_elem(&go_reqs, &r);
	if (!tc) {
		bpf_map_delete_elem(&go_ctxs, &g);
		return 0;
	}
	if (go_handoff_live(&r, tc)) {
		bpf_map_update_elem(&go_ctxs, &g, tc, BPF_ANY);
	} else {
		count(COUNTER_GO_CTX_STALE, 1);
		bpf_map_delete_elem(&go_ctxs, &g);
	}
	bpf_map_delete_elem(&go_reqs, &r);
	bpf_map_delete_elem(&go_req_callers, &r);
	return 0;
}

/* net/http.(*response).finishRequest, in the goroutine that served the request. */
SEC("uprobe")
int on_go_request_done(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_key g = {.pid = pid};
	if (!goid_of(pid, ctx->r14, &g.id))
		bpf_map_delete_elem(&go_ctxs, &g);
	return 0;
}

/* runtime.newproc1(fn, callergp *g, ...) runs on the system stack: R14 is g0, the
 * creator comes as an argument. */
SEC("uprobe")
int on_go_newproc(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), goid;
	if (goid_of(id >> 32, ctx->bx, &goid))
		return 0;
	bpf_map_update_elem(&go_spawning, &id, &goid, BPF_ANY);
	return 0;
}

/* The new goroutine `g` gets the context of the one runtime.newproc1 was entered for
 * on this thread. */
static __always_inline int go_inherit(__u64 g)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *parent = bpf_map_lookup_elem(&go_spawning, &id);
	if (!parent)
		return 0;
	struct go_key p = {.pid = id >> 32, .id = *parent}, c = {.pid = id >> 32};
	bpf_map_delete_elem(&go_spawning, &id);
	if (goid_of(c.pid, g, &c.id))
		return 0;
	struct thread_ctx *tc = bpf_map_lookup_elem(&go_ctxs, &p);
	if (tc)
		bpf_map_update_elem(&go_ctxs, &c, tc, BPF_ANY);
	else
		bpf_map_delete_elem(&go_ctxs, &c);
	return 0;
}

/* At a RET of runtime.newproc1: RAX is the new goroutine's g. */
SEC("uprobe")
int on_go_newproc_ret(struct pt_regs *ctx)
{
	return go_inherit(ctx->ax);
}

/* At runtime.newproc's `CALL runtime.runqput(pp, newg, true)`, right after newproc1
 * returned: RBX is the new g. The kernel emulates a CALL; a RET is single-stepped, two
 * traps instead of one (loader/gonewproc.rs). */
SEC("uprobe")
int on_go_newproc_queued(struct pt_regs *ctx)
{
	return go_inherit(ctx->bx);
}

#endif /* OTELCOL_EBPF_GOROUTINE_H */
