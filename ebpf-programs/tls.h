/* Plaintext of TLS connections, from uprobes on OpenSSL's SSL_read/SSL_write and their
 * _ex forms (curl uses the first pair, Python 3.11 the second). Included by net.bpf.c.
 *
 * An SSL object is tied to its socket by the read or write syscall OpenSSL makes while
 * one of those calls runs on the thread: tp_btf/sys_exit sees it, records ssl -> socket,
 * and drops the ciphertext. At the call's return the plaintext goes out as an ordinary
 * data record of that socket, flagged TLS. */

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
		__u8 one = 1;
		if (!bpf_map_lookup_elem(&tls_socks, &sid)) {
			bpf_map_update_elem(&tls_socks, &sid, &one, BPF_ANY);
			/* Its close must be reported too: the address is reused by later sockets. */
			struct sock_info fresh = {};
			bpf_map_update_elem(&socks, &sid, &fresh, BPF_ANY);
		}
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
	e->hdr.kind = EVENT_DATA;
	e->hdr.pid = pid_tgid >> 32;
	e->hdr.tid = (__u32)pid_tgid;
	e->hdr.fd = ss->fd;
	e->hdr.ts_ns = bpf_ktime_get_ns();
	e->hdr.sock_id = ss->sid;
	e->direction = c.write ? DIR_SEND : DIR_RECV;
	e->flags = DATA_FLAG_TLS;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (propagate && c.write)
		answered(ss->sid);
	struct sock_info *si = bpf_map_lookup_elem(&socks, &ss->sid);
	emit_call(e, si, (const void *)c.buf, NULL, 0, n, propagate && !c.write ? pid_tgid : 0);
	return 0;
}
