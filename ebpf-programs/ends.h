/* Which sockets are the client ends of traced connections, so that a server reading a
 * request knows at once whether the client's span will come (same-node linking waits for
 * it) or never will (an untraced local client: the server span goes out without waiting),
 * and whether the client is this collector (its own exports never become spans).
 *
 * A client end is recorded when a traced process connects (before the server can accept),
 * and at the first send of any socket of a traced process (connections older than the
 * collector). A process still waiting for its exe-path decision is recorded too: userspace,
 * which decides it before it reads the server's record, drops the flag if it is not
 * traced (the record carries the client's pid). Keyed like userspace's LinkKey: both ends
 * compute the same key, addresses v4-mapped, with the network namespace when an address is
 * loopback. */
#ifndef OTELCOL_EBPF_ENDS_H
#define OTELCOL_EBPF_ENDS_H

#include "common.h"
#include "capture.h"

struct link_key {
	__u8 caddr[16];
	__u8 saddr[16];
	__u16 cport;
	__u16 sport;
	__u32 netns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct link_key);
	__type(value, __u32); /* the client's process (tgid) */
} client_ends SEC(".maps");

/* `in` as a v4-mapped or plain IPv6 address into `out`; whether it is loopback. */
static __always_inline int addr_norm(__u8 *out, const __u8 *in, __u16 family)
{
	if (family == AF_INET) {
		__builtin_memset(out, 0, 10);
		out[10] = 0xff;
		out[11] = 0xff;
		__builtin_memcpy(out + 12, in, 4);
		return in[0] == 127;
	}
	__builtin_memcpy(out, in, 16);
	__u32 w0, w1, w2, w3;
	__builtin_memcpy(&w0, in, 4);
	__builtin_memcpy(&w1, in + 4, 4);
	__builtin_memcpy(&w2, in + 8, 4);
	__builtin_memcpy(&w3, in + 12, 4);
	if (w0 || w1)
		return 0;
	if (w2 == bpf_htonl(0xffff))
		return in[12] == 127;
	return !w2 && w3 == bpf_htonl(1);
}

/* The key of the connection `t` (seen from its own socket) when that socket is the
 * client end (`client`) or the server end. */
static __always_inline void link_key_of(struct link_key *k, const struct conn_tuple *t, int client)
{
	int lo = addr_norm(client ? k->caddr : k->saddr, t->saddr, t->family);
	lo |= addr_norm(client ? k->saddr : k->caddr, t->daddr, t->family);
	k->cport = client ? t->sport : t->dport;
	k->sport = client ? t->dport : t->sport;
	k->netns = lo ? t->netns : 0;
}

static __always_inline void note_client_end(const struct conn_tuple *t, __u32 pid)
{
	struct link_key k;
	link_key_of(&k, t, 1);
	bpf_map_update_elem(&client_ends, &k, &pid, BPF_ANY);
}

/* DATA_FLAG_PEER_* for a record read from a socket whose client end may be known, and
 * the client's pid in the record; cached in the socket's entry once known. */
static __always_inline __u8 peer_flags(struct sock_info *si, struct data_event *e)
{
	__u32 pid = si ? si->peer_pid : 0;
	if (!pid) {
		struct link_key k;
		link_key_of(&k, &e->tuple, 0);
		__u32 *v = bpf_map_lookup_elem(&client_ends, &k);
		if (!v)
			return 0;
		pid = *v;
		if (si)
			si->peer_pid = pid;
	}
	e->peer_pid = pid;
	return pid == self_tgid ? DATA_FLAG_PEER_COLLECTOR : DATA_FLAG_PEER_TRACED;
}

#endif /* OTELCOL_EBPF_ENDS_H */
