/* The sk_msg program: it runs for the sockets sock_ops put in inject_socks (context.h) and
 * hands each send to the inserter of its connection's protocol. Included last by
 * net.bpf.c: an inserter is one header and one line here. */
#ifndef OTELCOL_EBPF_SK_MSG_H
#define OTELCOL_EBPF_SK_MSG_H

#include "common.h"
#include "context.h"
#include "insert.h"
#include "http1_inject.h"
#include "h2_inject.h"
#include "amqp_inject.h"

SEC("sk_msg")
int on_msg(struct sk_msg_md *msg)
{
	if (!propagate)
		return SK_PASS;
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return SK_PASS;
	/* Protocols recognised by a connection's first send (HTTP/2's preface, AMQP's protocol
	 * header) keep state in the socket and are asked first; HTTP/1 is recognised in each
	 * send, by its request line. */
	struct h2_sock *hs = h2_sock_of(msg, sk);
	if (hs)
		return h2_msg(msg, hs, sk);
	struct amqp_sock *as = amqp_sock_of(msg, sk);
	if (as)
		return amqp_msg(msg, as, sk);
	return http1_msg(msg);
}

#endif /* OTELCOL_EBPF_SK_MSG_H */
