/* AMQP 0-9-1 deliveries (basic.deliver) read by a traced consumer thread (context.h's server_request):
 * the message's `traceparent` (from its content header's `headers` table, where a traced
 * publisher's kernel or an SDK put it) becomes the thread's context, like an HTTP
 * request's, so the calls it makes while handling the message are the CONSUMER span's
 * children. Only when the read holds exactly one whole delivery: a read of several
 * cannot tell which message a call belongs to, so the thread's calls then start new
 * traces (AMBIGUOUS). The context ends when the thread next writes on the connection (its
 * basic.ack), or with the next delivery. */

#define AMQP_DELIVER 60 /* basic.deliver */

/* Whether a read starts with a basic.deliver method frame. (A basic.get-ok answers the
 * thread's own call: its message is a link of that CLIENT span, not the thread's new
 * context.) */
static __always_inline int amqp_delivery_start(const __u8 *d)
{
	return d[0] == 1 && d[7] == 0 && d[8] == 60 && d[9] == 0 && d[10] == AMQP_DELIVER;
}

static __always_inline __u32 be32_at(struct hdr_buf *h, __u32 p)
{
	return (__u32)(__u8)B(h, p) << 24 | (__u32)(__u8)B(h, p + 1) << 16 |
	       (__u32)(__u8)B(h, p + 2) << 8 | (__u8)B(h, p + 3);
}

struct amqp_tp_scan {
	struct hdr_buf *h;
	__u32 from;
	__u32 at; /* the value's offset once found */
};

/* bpf_loop body: an entry named traceparent holding a 55-byte long string. */
static long amqp_tp_step(__u32 i, struct amqp_tp_scan *s)
{
	__u32 k = s->from + i;
	if (k > SCAN_MAX - 80)
		return 1;
	BOUND(k, SCAN_MAX - 1);
	struct hdr_buf *h = s->h;
	if (B(h, k) == 11 && B(h, k + 1) == 't' && B(h, k + 2) == 'r' && B(h, k + 3) == 'a' &&
	    B(h, k + 4) == 'c' && B(h, k + 5) == 'e' && B(h, k + 6) == 'p' && B(h, k + 7) == 'a' &&
	    B(h, k + 8) == 'r' && B(h, k + 9) == 'e' && B(h, k + 10) == 'n' && B(h, k + 11) == 't' &&
	    B(h, k + 12) == 'S' && B(h, k + 13) == 0 && B(h, k + 14) == 0 && B(h, k + 15) == 0 &&
	    B(h, k + 16) == 55) {
		s->at = k + 17;
		return 1;
	}
	return 0;
}

#define AMQP_NONE -1 /* not a delivery this can read */
#define AMQP_HEADER 1 /* tc holds the message's traceparent */
#define AMQP_ALONE 2  /* the read is exactly this delivery */

/* The delivery at the start of h->b[0..n) (`total`: the read's length): its traceparent
 * into tc, and whether it is alone in the read. */
static __always_inline int amqp_delivery(struct hdr_buf *h, __u32 n, __u32 total,
					 struct thread_ctx *tc)
{
	__u32 f2 = 7 + be32_at(h, 3) + 1; /* the content header frame */
	if (f2 > SCAN_MAX - 32 || f2 + 7 + 14 > n)
		return AMQP_NONE;
	BOUND(f2, SCAN_MAX - 1);
	if (B(h, f2) != 2)
		return AMQP_NONE;
	__u32 len = be32_at(h, f2 + 3), p = f2 + 7;
	BOUND(p, SCAN_MAX - 1);
	if (len < 14 || len > SCAN_MAX || p + len + 1 > n)
		return AMQP_NONE;
	int r = 0;
	/* One body frame right after, ending the read: alone. (A body of several frames, or
	 * more after it, is not told apart from another delivery.) */
	__u32 hi = be32_at(h, p + 4), lo = be32_at(h, p + 8);
	__u32 f3 = p + len + 1;
	if (!hi && ((!lo && f3 == total) || (lo && f3 + 7 + lo + 1 == total)))
		r |= AMQP_ALONE;
	__u16 flags = (__u16)(__u8)B(h, p + 12) << 8 | (__u8)B(h, p + 13);
	if (!(flags & 0x2000) || (flags & 1))
		return r;
	__u32 q = p + 14;
	BOUND(q, SCAN_MAX - 1);
	if (flags & 0x8000)
		q += 1 + (__u8)B(h, q);
	BOUND(q, SCAN_MAX - 1);
	if (flags & 0x4000)
		q += 1 + (__u8)B(h, q);
	if (q + 4 > p + len)
		return r;
	BOUND(q, SCAN_MAX - 1);
	__u32 t = be32_at(h, q);
	if (t > p + len - q - 4 || t < 72)
		return r;
	struct amqp_tp_scan sc = {.h = h, .from = q + 4};
	bpf_loop(t - 71, amqp_tp_step, &sc, 0);
	__u32 at = sc.at;
	if (at < 12 || at > SCAN_MAX - 64)
		return r;
	BOUND(at, SCAN_MAX - 1);
	if (!parse_traceparent(h, at - 12, at + 55, tc))
		r |= AMQP_HEADER;
	return r;
}
