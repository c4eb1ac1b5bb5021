/* Plaintext of TLS connections, from uprobes on OpenSSL's SSL_read/SSL_write and their
 * _ex forms (curl uses the first pair, Python 3.11 the second).
 *
 * An SSL object is tied to its socket by the read or write syscall OpenSSL makes while
 * one of those calls runs on the thread: tp_btf/sys_exit sees it, records ssl -> socket,
 * and drops the ciphertext. At the call's return the plaintext goes out as an ordinary
 * data record of that socket, flagged TLS. */
#ifndef OTELCOL_EBPF_TLS_H
#define OTELCOL_EBPF_TLS_H

#include "common.h"
#include "context.h"
#include "capture.h"
#include "h2.h"

const volatile __u8 tls_on = 0;

struct ssl_call {
	__u64 ssl;
	__u64 buf;
	__u64 len_ptr; /* _ex forms: where the byte count is written */
	__u8 ex;
	__u8 write;
	__u8 _pad[6];
};

/* pid_tgid -> the SSL call it is in. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_call);
} ssl_calls SEC(".maps");

struct ssl_sock {
	__u64 sid;
	__u32 fd;
	__u32 _pad;
	struct conn_tuple tuple;
};

/* SSL object -> its socket. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct ssl_sock);
} ssl_socks SEC(".maps");

/* Sockets carrying TLS: their ciphertext is never captured. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} tls_socks SEC(".maps");

/* The socket carries TLS: its ciphertext is dropped from now on, and its `socks` entry
 * starts afresh (the handshake was seen as its first bytes: the plaintext's are checked
 * for an HTTP/2 preface). Its close must be reported too: the address is reused. */
static __always_inline void mark_tls(__u64 sid)
{
	if (bpf_map_lookup_elem(&tls_socks, &sid))
		return;
	/* Only the first to mark it resets it: a Go reader goroutine may mark the socket on
	 * one CPU after its writer already sent the HTTP/2 preface on another. */
	__u8 one = 1;
	if (bpf_map_update_elem(&tls_socks, &sid, &one, BPF_NOEXIST))
		return;
	struct sock_info fresh = {};
	bpf_map_update_elem(&socks, &sid, &fresh, BPF_ANY);
}

/* At sys_exit of a traced syscall on socket `sid`: true when its bytes are ciphertext
 * (the thread is inside an SSL call, or the socket is known to carry TLS). */
static __always_inline int tls_ciphertext(__u64 pid_tgid, __u64 sid, __u32 fd, struct conn_tuple *t)
{
	if (!tls_on)
		return 0;
	struct ssl_call *call = bpf_map_lookup_elem(&ssl_calls, &pid_tgid);
	if (call) {
		struct ssl_sock ss = {.sid = sid, .fd = fd};
		__builtin_memcpy(&ss.tuple, t, sizeof(ss.tuple));
		bpf_map_update_elem(&ssl_socks, &call->ssl, &ss, BPF_ANY);
		mark_tls(sid);
		return 1;
	}
	return bpf_map_lookup_elem(&tls_socks, &sid) != NULL;
}

static __always_inline int ssl_enter(struct pt_regs *ctx, __u8 write, __u8 ex)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_traced(pid_tgid >> 32))
		return 0;
	struct ssl_call c = {
		.ssl = PT_REGS_PARM1(ctx),
		.buf = PT_REGS_PARM2(ctx),
		.len_ptr = ex ? PT_REGS_PARM4(ctx) : 0,
		.ex = ex,
		.write = write,
	};
	bpf_map_update_elem(&ssl_calls, &pid_tgid, &c, BPF_ANY);
	return 0;
}

SEC("uprobe")
int on_ssl_write(struct pt_regs *ctx)
{
	return ssl_enter(ctx, 1, 0);
}

SEC("uprobe")
int on_ssl_write_ex(struct pt_regs *ctx)
{
	return ssl_enter(ctx, 1, 1);
}

SEC("uprobe")
int on_ssl_read(struct pt_regs *ctx)
{
	return ssl_enter(ctx, 0, 0);
}

SEC("uprobe")
int on_ssl_read_ex(struct pt_regs *ctx)
{
	return ssl_enter(ctx, 0, 1);
}

/* The return of any of the four: the plaintext moved, as a data record of the socket. */
SEC("uretprobe")
int on_ssl_ret(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ssl_call *cp = bpf_map_lookup_elem(&ssl_calls, &pid_tgid);
	if (!cp)
		return 0;
	struct ssl_call c = *cp;
	bpf_map_delete_elem(&ssl_calls, &pid_tgid);
	long ret = PT_REGS_RC(ctx);
	__u64 n = 0;
	if (c.ex) {
		if (ret != 1 || bpf_probe_read_user(&n, sizeof(n), (const void *)c.len_ptr))
			return 0;
	} else if (ret > 0) {
		n = ret;
	}
	if (!n || n > 0x7fffffff)
		return 0;
	struct ssl_sock *ss = bpf_map_lookup_elem(&ssl_socks, &c.ssl);
	if (!ss) { /* no syscall seen for this SSL object yet */
		count(COUNTER_TLS_NO_SOCKET, 1);
		return 0;
	}
	__u32 zero = 0;
	struct data_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	__builtin_memcpy(&e->tuple, &ss->tuple, sizeof(e->tuple));
	if ((port_flag(e->tuple.sport) | port_flag(e->tuple.dport)) & PORT_NO_SPANS)
		return 0;
	data_header(e, pid_tgid, ss->fd, ss->sid, DATA_FLAG_TLS);
	e->direction = c.write ? DIR_SEND : DIR_RECV;
	if (propagate && c.write)
		answered(ss->sid);
	struct sock_info *si = bpf_map_lookup_elem(&socks, &ss->sid);
	emit_call(e, si, (const void *)c.buf, NULL, 0, n, propagate && !c.write ? pid_tgid : 0);
	return 0;
}

/* Go's crypto/tls, linked into each Go program: uprobes on (*Conn).Write at its entry
 * (the plaintext is there) and on (*Conn).Read at its entry and at each of its RET
 * instructions. No uretprobes: Go copies goroutine stacks as they grow, and a return
 * address replaced by the kernel's trampoline breaks that. Go's register ABI (1.17+):
 * receiver in RAX, the slice's pointer and length in RBX and RCX, the count returned in
 * RAX; R14 holds the goroutine, which keys a Read from entry to return (a goroutine that
 * waits for data may resume on another thread). The socket comes from the Conn itself:
 * tls.Conn.conn (a net.Conn at offset 0; its data word is a *net.TCPConn, whose first
 * word is the *netFD, whose poll.FD has Sysfd after a 16-byte fdMutex). */
struct go_read_key {
	__u32 pid;
	__u32 _pad;
	__u64 g;
};

struct go_read {
	__u64 buf;
	__u64 sid;
	__u32 fd;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_read_key);
	__type(value, struct go_read);
} go_reads SEC(".maps");

static __always_inline struct sock *go_conn_sock(__u64 conn, __u32 *fd_out)
{
	__u64 data = 0, netfd = 0;
	__s64 fd = -1;
	if (bpf_probe_read_user(&data, sizeof(data), (const void *)(conn + 8)) || !data ||
	    bpf_probe_read_user(&netfd, sizeof(netfd), (const void *)data) || !netfd ||
	    bpf_probe_read_user(&fd, sizeof(fd), (const void *)(netfd + 16)) || fd < 0 || fd > 0x7fffffff)
		return NULL;
	*fd_out = fd;
	return sock_of_fd(fd);
}

/* Sends a Go TLS call's plaintext as a data record of its socket. */
static __always_inline int go_tls_emit(__u64 pid_tgid, struct sock *sk, __u32 fd, __u64 buf, __u64 n, int write)
{
	if (!n || n > 0x7fffffff)
		return 0;
	struct data_event *e = record_for(sk);
	if (!e)
		return 0;
	__u64 sid = (__u64)sk;
	mark_tls(sid);
	data_header(e, pid_tgid, fd, sid, DATA_FLAG_TLS);
	e->direction = write ? DIR_SEND : DIR_RECV;
	if (propagate && write)
		answered(sid);
	struct sock_info *si = bpf_map_lookup_elem(&socks, &sid);
	emit_call(e, si, (const void *)buf, NULL, 0, n, propagate && !write ? pid_tgid : 0);
	return 0;
}

SEC("uprobe")
int on_go_tls_write(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_traced(pid_tgid >> 32))
		return 0;
	__u32 fd = 0;
	struct sock *sk = go_conn_sock(ctx->ax, &fd);
	if (!sk) {
		count(COUNTER_TLS_NO_SOCKET, 1);
		return 0;
	}
	return go_tls_emit(pid_tgid, sk, fd, ctx->bx, ctx->cx, 1);
}

SEC("uprobe")
int on_go_tls_read(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_traced(pid_tgid >> 32))
		return 0;
	struct go_read r = {.buf = ctx->bx};
	struct sock *sk = go_conn_sock(ctx->ax, &r.fd);
	if (!sk) {
		count(COUNTER_TLS_NO_SOCKET, 1);
		return 0;
	}
	r.sid = (__u64)sk;
	mark_tls(r.sid); /* the read syscall inside brings ciphertext */
	struct go_read_key k = {.pid = pid_tgid >> 32, .g = ctx->r14};
	bpf_map_update_elem(&go_reads, &k, &r, BPF_ANY);
	return 0;
}

/* At a RET of (*Conn).Read: RAX is the count read into the slice. */
SEC("uprobe")
int on_go_tls_read_ret(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct go_read_key k = {.pid = pid_tgid >> 32, .g = ctx->r14};
	struct go_read *rp = bpf_map_lookup_elem(&go_reads, &k);
	if (!rp)
		return 0;
	struct go_read r = *rp;
	bpf_map_delete_elem(&go_reads, &k);
	__s64 n = ctx->ax;
	if (n <= 0)
		return 0;
	return go_tls_emit(pid_tgid, (struct sock *)r.sid, r.fd, r.buf, n, 0);
}

#endif /* OTELCOL_EBPF_TLS_H */
