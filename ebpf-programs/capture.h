/* Data records of socket calls: the per-socket state (socks), the scratch record, and
 * the copies of one buffer or of an iovec array into it. */
#ifndef OTELCOL_EBPF_CAPTURE_H
#define OTELCOL_EBPF_CAPTURE_H

#include "common.h"
#include "context.h"
#include "server_request.h"

#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define MAX_IOV 1024 /* iovecs walked per readv/writev/recvmsg/sendmsg */

/* Sockets we reported data on. Their close is taken from the TCP state change to
 * TCP_CLOSE, which names the socket itself: at close(2)'s exit the fd is released and may
 * already belong to a socket another thread just accepted. LRU: bounded, self-cleaning. */
struct sock_info {
	__u8 seen; /* SEEN_* (h2.h): directions whose first bytes were looked at */
	__u8 h2; /* HTTP/2 followed from its preface: records carry frames (h2.h) */
	__u8 noted; /* recorded in client_ends at its first send */
	__u8 skip; /* SKIP_*: an unsampled exchange is being left out (server_request.h) */
	__u32 peer_pid; /* the process of the client end, once known (ends.h) */
	struct h2_frame_state dirs[2]; /* by enum direction */
	__u64 caller; /* Go: the caller last reported on it (go_calls.h) */
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

#define H2_HEADS_MAX 8

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
	/* Keep the stream ids of HEADERS frames (a Go client's sends). A frame header split
	 * between chunks is not noted: its stream goes without a parent (counted). */
	__u32 note_heads;
	__u32 nheads;
	__u32 heads[H2_HEADS_MAX];
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

/* Gives a read that starts a request its ids (server_request.h) and says whether the record
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

#endif /* OTELCOL_EBPF_CAPTURE_H */
