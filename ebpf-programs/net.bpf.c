// SPDX-License-Identifier: GPL-2.0
/* Syscall capture for traced processes: one tp_btf/sys_exit program (the cheapest hook on
 * this kernel, see docs/kernel-support.md) plus process lifecycle tracepoints. Selection
 * happens here, so an untraced process costs one bitmask test and one map lookup. */
#include "common.h"
#include "context.h"
#include "capture.h"
#include "ends.h"
#include "h2.h"
#include "tls.h"
#include "go_h2server.h"

char LICENSE[] SEC("license") = "GPL";

#define MSG_PEEK 2
#define EINPROGRESS 115

#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDFILE 40
#define NR_CONNECT 42
#define NR_ACCEPT 43
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define NR_ACCEPT4 288

#define BIT(n) (1ULL << (n))
#define SYSCALL_MASK (BIT(NR_READ) | BIT(NR_WRITE) | BIT(NR_READV) | \
	BIT(NR_WRITEV) | BIT(NR_SENDFILE) | BIT(NR_CONNECT) | BIT(NR_ACCEPT) | BIT(NR_SENDTO) | \
	BIT(NR_RECVFROM) | BIT(NR_SENDMSG) | BIT(NR_RECVMSG))

/* Set by userspace before load. */
const volatile __u8 watch_exec = 0; /* selectors on processes (exe, cgroup) exist: report execs */

static __always_inline void emit_simple(__u32 kind, __u32 pid, __u32 tid, __u32 fd, __u64 sock_id)
{
	struct close_event e = {};
	e.hdr.kind = kind;
	e.hdr.pid = pid;
	e.hdr.tid = tid;
	e.hdr.fd = fd;
	e.hdr.ts_ns = bpf_ktime_get_ns();
	e.hdr.sock_id = sock_id;
	if (bpf_ringbuf_output(&events, &e, sizeof(e), BPF_RB_NO_WAKEUP))
		count(COUNTER_RINGBUF_FULL, 1);
}

/* connect/accept of a process not yet selected: select or exclude it by port. */
static __always_inline void select_by_port(__u32 pid, __u32 *state, __u32 fd, int remote)
{
	struct sock *sk = sock_of_fd(fd);
	if (!sk)
		return;
	__u16 port = remote ? bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport))
			    : BPF_CORE_READ(sk, __sk_common.skc_num);
	__u8 f = port_flag(port);
	__u32 next;
	if (state && *state == PROC_PENDING) {
		/* The selector flags it used, for userspace's exec decision: a process no
		 * process selector names is still selected by a port selector's port. */
		__u8 hit = f & (PORT_INSTRUMENT | PORT_INSTRUMENT_WITH_EXE);
		if (hit) {
			__u8 *old = bpf_map_lookup_elem(&port_hits, &pid);
			if (old)
				hit |= *old;
			bpf_map_update_elem(&port_hits, &pid, &hit, BPF_ANY);
		}
		return;
	}
	if (f & PORT_DISCOVERY_EXCLUDE)
		next = PROC_EXCLUDED;
	else if ((f & PORT_INSTRUMENT) && !state)
		next = PROC_TRACED;
	else if ((f & (PORT_INSTRUMENT | PORT_INSTRUMENT_WITH_EXE)) && state && *state == PROC_ELIGIBLE)
		next = PROC_TRACED;
	else
		return;
	bpf_map_update_elem(&proc_state, &pid, &next, BPF_ANY);
}

/* A connect by a traced process (or by the collector): its socket is a client end a
 * server on this host may read from before the client's first record arrives. */
static __always_inline void connected(__u32 pid, __u32 fd)
{
	if (pid != self_tgid && !is_traced(pid))
		return;
	struct sock *sk = sock_of_fd(fd);
	if (!sk)
		return;
	struct conn_tuple t = {};
	read_tuple(sk, &t);
	note_client_end(&t, pid);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;
	if (nr != NR_ACCEPT4 && (nr < 0 || nr > 63 || !(SYSCALL_MASK & BIT(nr))))
		return 0;
	if (ret < 0 && !(nr == NR_CONNECT && ret == -EINPROGRESS))
		return 0;

	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	__u32 *state = bpf_map_lookup_elem(&proc_state, &pid);
	int traced = trace_all;
	if (state) {
		__u32 st = *state;
		traced = st == PROC_TRACED || st == PROC_PENDING ||
			 (st == PROC_ELIGIBLE && bpf_map_lookup_elem(&port_hits, &pid));
	}

	if (nr == NR_CONNECT || nr == NR_ACCEPT || nr == NR_ACCEPT4) {
		if (!trace_all && (!state || *state != PROC_EXCLUDED))
			select_by_port(pid, state, nr == NR_CONNECT ? regs->di : ret, nr == NR_CONNECT);
		if (nr == NR_CONNECT)
			connected(pid, regs->di);
		return 0;
	}
	if (!traced)
		return 0;

	__u32 fd = regs->di; /* out_fd for sendfile */
	if (ret == 0)
		return 0;
	if (nr == NR_RECVFROM && (regs->r10 & MSG_PEEK))
		return 0;
	if (nr == NR_RECVMSG && (regs->dx & MSG_PEEK))
		return 0;

	struct sock *sk = sock_of_fd(fd);
	if (!sk)
		return 0;
	struct data_event *e = record_for(sk);
	if (!e)
		return 0;

	__u64 sid = (__u64)sk;
	if (tls_ciphertext(pid_tgid, sid, fd, &e->tuple))
		return 0; /* its plaintext comes from the SSL library's probes */
	struct sock_info *si = bpf_map_lookup_elem(&socks, &sid);
	if (!si) { /* a lookup is much cheaper than an update */
		struct sock_info fresh = {};
		bpf_map_update_elem(&socks, &sid, &fresh, BPF_NOEXIST);
		si = bpf_map_lookup_elem(&socks, &sid);
	}
	data_header(e, pid_tgid, fd, sid, state && *state == PROC_PENDING ? DATA_FLAG_PENDING : 0);

	int recv = nr == NR_READ || nr == NR_RECVFROM || nr == NR_READV || nr == NR_RECVMSG;
	__u64 ctx_tid = propagate && recv ? pid_tgid : 0;
	if (propagate && !recv)
		answered(sid);

	switch (nr) {
	case NR_READ:
	case NR_RECVFROM:
		e->direction = DIR_RECV;
		emit_call(e, si, (const void *)regs->si, NULL, 0, ret, ctx_tid);
		break;
	case NR_WRITE:
	case NR_SENDTO:
		e->direction = DIR_SEND;
		emit_call(e, si, (const void *)regs->si, NULL, 0, ret, 0);
		break;
	case NR_READV:
	case NR_WRITEV:
		e->direction = nr == NR_READV ? DIR_RECV : DIR_SEND;
		emit_call(e, si, NULL, (const struct iovec *)regs->si, regs->dx, ret, ctx_tid);
		break;
	case NR_RECVMSG:
	case NR_SENDMSG: {
		struct user_msghdr m = {};
		e->direction = nr == NR_RECVMSG ? DIR_RECV : DIR_SEND;
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)regs->si))
			emit_call(e, si, NULL, NULL, 0, ret, 0);
		else
			emit_call(e, si, NULL, m.msg_iov, m.msg_iovlen, ret, ctx_tid);
		break;
	}
	case NR_SENDFILE: /* file bytes: only their count matters for framing */
		e->direction = DIR_SEND;
		if (si && (si->skip & SKIP_ON)) { /* the body of a response left out */
			si->skip |= SKIP_GAP_SEND;
			break;
		}
		if (si && si->h2) { /* file bytes cannot be walked as frames */
			si->h2 = 0;
			count(COUNTER_H2_WALK_LOST, 1);
		}
		emit_data(e, NULL, ret, 0);
		break;
	}
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ppid = BPF_CORE_READ(parent, tgid);
	__u32 cpid = BPF_CORE_READ(child, tgid);
	if (ppid == cpid) /* a new thread */
		return 0;
	__u32 *state = bpf_map_lookup_elem(&proc_state, &ppid);
	if (state) {
		__u32 s = *state;
		bpf_map_update_elem(&proc_state, &cpid, &s, BPF_ANY);
	}
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (!watch_exec)
		return 0;
	__u32 pid = BPF_CORE_READ(p, tgid);
	__u32 *state = bpf_map_lookup_elem(&proc_state, &pid);
	struct exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL, 1);
		return 0;
	}
	e->hdr.kind = EVENT_EXEC;
	e->hdr.pid = pid;
	e->hdr.tid = BPF_CORE_READ(p, pid);
	e->hdr.fd = 0;
	e->hdr.ts_ns = bpf_ktime_get_ns();
	e->hdr.sock_id = 0;
	e->prev_state = state ? *state : 0;
	e->_pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	const char *fname = BPF_CORE_READ(bprm, filename);
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), fname) < 0)
		e->filename[0] = 0;
	bpf_map_delete_elem(&port_hits, &pid);
	/* PENDING even when it inherited EXCLUDED: an exe that an instrument selector names
	 * is traced from its first call (a curl run by an excluded shell), and what it sends
	 * before userspace decides is dropped there if it stays excluded. Without discovery
	 * only default_exclude is asked: the process stays traced meanwhile, as PENDING
	 * would keep its first connects from getting headers (a curl connects microseconds
	 * after its exec). */
	if (!trace_all) {
		__u32 pending = PROC_PENDING;
		bpf_map_update_elem(&proc_state, &pid, &pending, BPF_ANY);
	}
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, tgid);
	if (BPF_CORE_READ(p, signal, live.counter) != 0) /* other threads live on */
		return 0;
	__u32 *state = bpf_map_lookup_elem(&proc_state, &pid);
	/* Without discovery every process without an entry was traced: userspace must hear
	 * of its exit too (its connections and /proc details go, and the pid may be reused). */
	int report = state ? *state != PROC_EXCLUDED : trace_all;
	if (state)
		bpf_map_delete_elem(&proc_state, &pid);
	bpf_map_delete_elem(&no_thread_ctx, &pid);
	bpf_map_delete_elem(&go_goid_off, &pid);
	if (report)
		emit_simple(EVENT_EXIT, pid, BPF_CORE_READ(p, pid), 0, 0);
	return 0;
}

#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_sock_state, const struct sock *sk, int oldstate, int newstate)
{
	__u64 sid = (__u64)sk;
	if (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV) {
		/* A socket is born (connect, or a listener's child). A call whose exit came
		 * after its socket's TCP_CLOSE (a peer's RST racing a read) left an entry that
		 * the next socket at this address would inherit: no preface check, or TLS. */
		bpf_map_delete_elem(&socks, &sid);
		if (tls_on)
			bpf_map_delete_elem(&tls_socks, &sid);
		if (propagate)
			answered(sid); /* a read that ended after the old one's close */
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	if (propagate) {
		answered(sid); /* closed unanswered: the thread no longer serves it */
	}
	if (tls_on) /* the next socket at this address is not TLS */
		bpf_map_delete_elem(&tls_socks, &sid);
	if (!bpf_map_lookup_elem(&socks, &sid))
		return 0;
	bpf_map_delete_elem(&socks, &sid);
	/* Runs in whatever context moved the socket (often softirq): no pid. */
	emit_simple(EVENT_CLOSE, 0, 0, 0, sid);
	return 0;
}

/* Last: it calls every inserter. */
#include "sk_msg.h"
