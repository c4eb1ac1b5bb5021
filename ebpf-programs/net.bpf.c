// SPDX-License-Identifier: GPL-2.0
/* Syscall capture for traced processes: one tp_btf/sys_exit program (the cheapest hook on
 * this kernel, see docs/kernel-support.md) plus process lifecycle tracepoints. Selection
 * happens here, so an untraced process costs one bitmask test and one map lookup. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "events.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define MSG_PEEK 2
#define EINPROGRESS 115
#define MAX_IOV 1024 /* iovecs walked per readv/writev/recvmsg/sendmsg */

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
const volatile __u8 trace_all = 0; /* no discovery block: every process not excluded */
const volatile __u8 watch_exec = 0; /* exe_path selectors exist: report execs */
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

/* Sockets we reported data on. Their close is taken from the TCP state change to
 * TCP_CLOSE, which names the socket itself: at close(2)'s exit the fd is released and may
 * already belong to a socket another thread just accepted. LRU: bounded, self-cleaning. */
struct sock_info {
	__u8 seen; /* SEEN_* (h2.h): directions whose first bytes were looked at */
	__u8 h2; /* HTTP/2 followed from its preface: records carry frames (h2.h) */
	__u8 noted; /* recorded in client_ends at its first send */
	__u8 skip; /* SKIP_*: an unsampled exchange is being left out (context.h) */
	__u32 peer_pid; /* the process of the client end, once known (ends.h) */
	struct h2_frame_state dirs[2]; /* by enum direction */
};

/* sock_info.skip */
#define SKIP_ON 1 /* the exchange under way is left out */
#define SKIP_GAP_RECV 2 /* records of this direction were left out since the last one sent */
#define SKIP_GAP_SEND 4

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_info);
} socks SEC(".maps");

/* State of the loops that copy a call's bytes (emit_iov, emit_h2). It lives in the
 * scratch map, not on the stack: the verifier then sees unknown values at each step and
 * checks a loop body once, instead of following the values step after step. */
struct iov_walk {
	const struct iovec *iov;
	__u64 iovcnt;
	__u32 left; /* bytes of the syscall not walked yet */
	__u32 pos;  /* bytes captured */
};

struct h2_walk {
	const struct iovec *iov; /* NULL: one buffer (base, cur) */
	__u64 iovcnt;
	__u64 idx; /* next iovec */
	__u64 base; /* user address of the current chunk */
	__u32 cur; /* bytes left in the current chunk */
	__u32 left; /* bytes of the call not in a chunk yet */
	__u32 pos; /* bytes in data[] */
	__u32 full; /* data[] had no room for bytes it needed: nothing more is copied */
	__u32 bad; /* a frame header no HTTP/2 peer sends: the walk is out of step */
	struct h2_frame_state st;
};

/* A record being built, with room after data[] so copies at an offset stay in bounds. */
struct data_scratch {
	struct data_event e;
	__u8 slack[CAPTURE_MAX];
	struct iov_walk iov;
	struct h2_walk h2;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_scratch);
} scratch SEC(".maps");

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

/* fd -> struct sock of a TCP socket over IPv4/IPv6, or NULL. */
static __always_inline struct sock *sock_of_fd(__u32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock || BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return NULL;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	return sk;
}

static __always_inline void read_tuple(struct sock *sk, struct conn_tuple *t)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->family = family;
	t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (family == AF_INET) {
		__builtin_memset(t->saddr, 0, 16);
		__builtin_memset(t->daddr, 0, 16);
		bpf_core_read(t->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(t->daddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(t->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(t->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

#include "context.h"

/* Gives a read that starts a request its ids (context.h) and says whether the record
 * goes out: not while the socket's current exchange is an unsampled one left out
 * (DATA_FLAG_SKIPPING, kept in the socket's entry by emit_call). Returns 1 to emit. */
static __always_inline int left_out(struct data_event *e, __u64 ctx_tid)
{
	int v = server_request(e, ctx_tid);
	if (v == REQ_SKIP)
		e->flags |= DATA_FLAG_SKIPPING;
	else if (v == REQ_KEEP)
		e->flags &= ~DATA_FLAG_SKIPPING;
	return !(e->flags & DATA_FLAG_SKIPPING);
}

/* Copies up to CAPTURE_MAX - 1 bytes of one user buffer into a record. `e` holds the
 * header and tuple already. `ctx_tid`: the reading thread when the bytes may start a
 * request whose trace context the kernel keeps (context.h), else 0. */
static __noinline int emit_data(struct data_event *e, const void *buf, __u32 len, __u64 ctx_tid)
{
	__u32 n = len;
	if (n > CAPTURE_MAX - 1) {
		n = CAPTURE_MAX - 1;
		count(COUNTER_TRUNCATED, 1);
		count(COUNTER_BYTES_NOT_CAPTURED, len - n);
	}
	/* clang 14 drops a plain mask and the verifier then sees an unbounded length. */
	asm volatile("%[n] &= %[mask]" : [n] "+r"(n) : [mask] "i"(CAPTURE_MAX - 1));
	e->total_len = len;
	e->captured_len = 0;
	if (buf && n && !bpf_probe_read_user(e->data, n, buf))
		e->captured_len = n;
	if (ctx_tid && e->captured_len && !left_out(e, ctx_tid))
		return 0;
	__u64 size = offsetof(struct data_event, data) + (e->captured_len & (CAPTURE_MAX - 1));
	if (bpf_ringbuf_output(&events, e, size, BPF_RB_NO_WAKEUP))
		count(COUNTER_RINGBUF_FULL, 1);
	return 0;
}

/* bpf_loop body: one iovec appended to the scratch record (verified once, however many
 * iovecs a call has). */
static long iov_step(__u32 i, void *unused)
{
	__u32 zero = 0;
	struct data_scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return 1;
	struct iov_walk *w = &sc->iov;
	struct data_event *e = &sc->e;
	if (i >= w->iovcnt || w->left == 0 || w->pos >= CAPTURE_MAX - 1)
		return 1;
	struct iovec v = {};
	if (bpf_probe_read_user(&v, sizeof(v), &w->iov[i]))
		return 1;
	__u32 len = v.iov_len < w->left ? v.iov_len : w->left;
	__u32 room = CAPTURE_MAX - 1 - w->pos;
	__u32 n = len < room ? len : room;
	__u32 at = w->pos;
	/* The scratch record has CAPTURE_MAX bytes of slack after data[]: at + n fits. */
	BOUND(at, CAPTURE_MAX - 1);
	BOUND(n, CAPTURE_MAX - 1);
	if (n && bpf_probe_read_user(&e->data[at], n, v.iov_base))
		return 1;
	w->pos += n;
	w->left -= len;
	return n < len;
}

/* Copies the iovecs one after another into one record (gRPC writes a slice per iovec,
 * up to hundreds per call: a record per iovec would cost too much, and a bound on the
 * iovecs walked would lose header bytes); what does not fit travels as a count. */
static __noinline int emit_iov(struct data_event *e, const struct iovec *iov, __u64 iovcnt, __u32 total,
			       __u64 ctx_tid)
{
	__u32 zero = 0;
	struct data_scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return 0;
	sc->iov.iov = iov;
	sc->iov.iovcnt = iovcnt;
	sc->iov.left = total;
	sc->iov.pos = 0;
	bpf_loop(MAX_IOV, iov_step, NULL, 0);
	__u32 pos = sc->iov.pos;
	if (pos > CAPTURE_MAX - 1)
		pos = CAPTURE_MAX - 1;
	if (total > pos) {
		count(COUNTER_TRUNCATED, 1);
		count(COUNTER_BYTES_NOT_CAPTURED, total - pos);
	}
	e->total_len = total;
	e->captured_len = pos;
	if (ctx_tid && pos && !left_out(e, ctx_tid))
		return 0;
	__u64 size = offsetof(struct data_event, data) + (pos & (CAPTURE_MAX - 1));
	if (bpf_ringbuf_output(&events, e, size, BPF_RB_NO_WAKEUP))
		count(COUNTER_RINGBUF_FULL, 1);
	return 0;
}

#include "ends.h"
#include "h2.h"

/* The scratch record with the tuple of `sk`, or NULL (none, or exclude_ports names one of
 * the connection's ports). */
static __always_inline struct data_event *record_for(struct sock *sk)
{
	__u32 zero = 0;
	struct data_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return NULL;
	read_tuple(sk, &e->tuple);
	if ((port_flag(e->tuple.sport) | port_flag(e->tuple.dport)) & PORT_NO_SPANS)
		return NULL;
	return e;
}

/* A data record's header; the tuple, direction and payload are set apart. */
static __always_inline void data_header(struct data_event *e, __u64 pid_tgid, __u32 fd, __u64 sid, __u8 flags)
{
	e->hdr.kind = EVENT_DATA;
	e->hdr.pid = pid_tgid >> 32;
	e->hdr.tid = (__u32)pid_tgid;
	e->hdr.fd = fd;
	e->hdr.ts_ns = bpf_ktime_get_ns();
	e->hdr.sock_id = sid;
	e->flags = flags;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
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

#include "tls.h"

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
		if (f & (PORT_INSTRUMENT | PORT_INSTRUMENT_WITH_EXE)) {
			__u8 one = 1;
			bpf_map_update_elem(&port_hits, &pid, &one, BPF_ANY);
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
	 * before userspace decides is dropped there if it stays excluded. */
	__u32 pending = PROC_PENDING;
	bpf_map_update_elem(&proc_state, &pid, &pending, BPF_ANY);
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
