/* What every part of net.bpf.c uses: the kernel headers, the ring buffer and counters,
 * and process selection (proc_state, port_flags), which userspace fills. */
#ifndef OTELCOL_EBPF_COMMON_H
#define OTELCOL_EBPF_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "events.h"

#define AF_INET 2
#define AF_INET6 10

/* n &= mask in a way clang 14 keeps, so the verifier sees the bound. */
#define BOUND(n, mask) asm volatile("%[v] &= %[m]" : [v] "+r"(n) : [m] "i"(mask))

/* Set by userspace before load. */
const volatile __u8 trace_all = 0; /* no discovery block: every process not excluded */
const volatile __u32 self_tgid = 0; /* the collector: never traced, its clients known */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} proc_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} port_flags SEC(".maps");

/* Processes that accepted/connected on a selected port while PENDING: if userspace then
 * finds them ELIGIBLE (exe matched a selector that also names ports), they are traced. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} port_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += n;
}

static __always_inline __u8 port_flag(__u16 port)
{
	__u32 k = port;
	__u8 *f = bpf_map_lookup_elem(&port_flags, &k);
	return f ? *f : 0;
}

/* Whether the process's traffic is captured (PENDING ones too: userspace decides later
 * whether to keep what they sent). */
static __always_inline int is_traced(__u32 pid)
{
	__u32 *state = bpf_map_lookup_elem(&proc_state, &pid);
	if (!state)
		return trace_all;
	__u32 st = *state;
	return st == PROC_TRACED || st == PROC_PENDING ||
	       (st == PROC_ELIGIBLE && bpf_map_lookup_elem(&port_hits, &pid));
}

#endif /* OTELCOL_EBPF_COMMON_H */
