/* grpc-go calls carry their caller's context (issue 14). A grpc-go client connection is one
 * HTTP/2 connection shared by every call: the caller goroutine queues a stream's headers on
 * the connection's control buffer, and the connection's loopyWriter goroutine encodes them
 * and writes them, several streams' HEADERS in one send. The context goes with the stream:
 * - caller: (*controlBuffer).executeAndPut(f, it cbItem) with f set (a new stream's
 *   headers; plain put() passes none): `it` is the *clientHeaders (older releases
 *   *headerFrame), whose header list `hf` (a fresh slice per stream) keys the caller's
 *   context;
 * - writer: (*loopyWriter).writeHeader(streamID, endStream, hf, onWrite), in the loopy
 *   goroutine: the list's address finds the caller's context, which is kept under
 *   (pid, writer goroutine, stream id) for h2_inject.h; the writer's sends carry their
 *   goroutine in R14, and a stream id is never reused on a connection.
 * Both signatures (f's own type aside), and `hf` at offset 8 after `streamID uint32`, are
 * the same in grpc-go v1.54.0, v1.72.1 and v1.84.0 (read from the sources; the e2e test
 * runs v1.84.0). The
 * offset is checked: the writer's hf length must equal the one read at the caller, and
 * what the caller side read must look like a slice. */
#ifndef OTELCOL_EBPF_GO_GRPC_H
#define OTELCOL_EBPF_GO_GRPC_H

#include "common.h"
#include "context.h"
#include "goroutine.h"

#define GRPC_HF_MAX 4096 /* header fields of one stream: more is not a header list */

/* (pid, address of a stream's header list) -> its caller's context, until written. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct go_key);
	__type(value, struct thread_ctx);
} go_grpc_hfs SEC(".maps");

struct grpc_caller {
	__u64 goid; /* the goroutine that queued the stream */
	__u64 hf_len;
};

/* Same key -> who handed the context over, and the list's length. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct go_key);
	__type(value, struct grpc_caller);
} go_grpc_callers SEC(".maps");

struct go_stream_key {
	__u32 pid;
	__u32 stream;
	__u64 goid; /* the writer goroutine: one per connection */
};

/* (pid, writer goroutine, stream id) -> the context its HEADERS carry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct go_stream_key);
	__type(value, struct thread_ctx);
} go_grpc_streams SEC(".maps");

/* (*controlBuffer).executeAndPut(c, f, it): RAX c, RBX f, RCX/RDI it (itab, data). */
SEC("uprobe")
int on_go_grpc_put(struct pt_regs *ctx)
{
	if (!ctx->bx || !ctx->di)
		return 0; /* no check function: not a stream's headers */
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_key g = {.pid = pid};
	__u64 hf[3]; /* ptr, len, cap */
	if (goid_of(pid, ctx->r14, &g.id) ||
	    bpf_probe_read_user(hf, sizeof(hf), (void *)(ctx->di + 8)))
		return 0;
	if (!hf[0] || !hf[1] || hf[1] > hf[2] || hf[2] > GRPC_HF_MAX)
		return 0; /* not a header list (another item queued with a check) */
	struct go_key k = {.pid = pid, .id = hf[0]};
	struct thread_ctx *tc = bpf_map_lookup_elem(&go_ctxs, &g);
	if (!tc) {
		/* The caller serves no known request: a leftover at this address must not
		 * parent its stream. */
		bpf_map_delete_elem(&go_grpc_hfs, &k);
		bpf_map_delete_elem(&go_grpc_callers, &k);
		return 0;
	}
	struct grpc_caller c = {.goid = g.id, .hf_len = hf[1]};
	bpf_map_update_elem(&go_grpc_hfs, &k, tc, BPF_ANY);
	bpf_map_update_elem(&go_grpc_callers, &k, &c, BPF_ANY);
	return 0;
}

/* (*loopyWriter).writeHeader(l, streamID, endStream, hf, onWrite): RAX l, RBX streamID,
 * RCX endStream, RDI/RSI/R8 hf (ptr, len, cap), in the connection's writer goroutine. */
SEC("uprobe")
int on_go_grpc_write_header(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_key k = {.pid = pid, .id = ctx->di};
	struct thread_ctx *tc = bpf_map_lookup_elem(&go_grpc_hfs, &k);
	struct grpc_caller *c = bpf_map_lookup_elem(&go_grpc_callers, &k);
	if (!tc || !c)
		return 0;
	struct go_stream_key s = {.pid = pid, .stream = (__u32)ctx->bx};
	if (c->hf_len == ctx->si && !goid_of(pid, ctx->r14, &s.goid)) {
		if (go_still_serving(pid, c->goid, tc))
			bpf_map_update_elem(&go_grpc_streams, &s, tc, BPF_ANY);
		else
			count(COUNTER_GO_CTX_STALE, 1);
	}
	bpf_map_delete_elem(&go_grpc_hfs, &k);
	bpf_map_delete_elem(&go_grpc_callers, &k);
	return 0;
}

/* The context the caller gave stream `stream`, written now by goroutine `goid` of `pid`. */
static __always_inline struct thread_ctx *go_stream_ctx(__u32 pid, __u64 goid, __u32 stream)
{
	struct go_stream_key s = {.pid = pid, .stream = stream, .goid = goid};
	return bpf_map_lookup_elem(&go_grpc_streams, &s);
}

/* Once its HEADERS went out (a stream opens once). */
static __always_inline void go_stream_done(__u32 pid, __u64 goid, __u32 stream)
{
	struct go_stream_key s = {.pid = pid, .stream = stream, .goid = goid};
	bpf_map_delete_elem(&go_grpc_streams, &s);
}

#endif /* OTELCOL_EBPF_GO_GRPC_H */
