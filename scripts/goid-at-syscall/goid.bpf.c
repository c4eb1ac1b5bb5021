/* The measuring side of run.sh: counts writes whose goroutine id, read through R14 at
 * the exit of the write, equals the write length - 1000. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
const volatile __u32 target = 0;
const volatile __u64 goid_off = 152;
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } res SEC(".maps");
static void bump(__u32 k) { __u64 *v = bpf_map_lookup_elem(&res, &k); if (v) __sync_fetch_and_add(v, 1); }
/* write(fd, buf, len) with len = 1000 + goid: does R14 at sys_exit lead to that goid? */
SEC("tp_btf/sys_exit")
int BPF_PROG(on_exit, struct pt_regs *regs, long ret)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target || regs->orig_ax != 1 || ret < 1000 || ret >= 100000)
		return 0;
	__u64 g = regs->r14, goid = 0;
	if (bpf_probe_read_user(&goid, 8, (void *)(g + goid_off)))
		bump(2);
	else if (goid == (__u64)ret - 1000)
		bump(0);
	else
		bump(1);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
