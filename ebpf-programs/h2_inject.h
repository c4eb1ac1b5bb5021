/* traceparent into the requests of plaintext HTTP/2 (h2c, gRPC) connections that traced
 * processes open. Included by context.h; on_msg calls h2_msg.
 *
 * HPACK compresses a header block against a table both ends keep: the kernel cannot
 * re-encode a block, but it can append a field. A literal field without indexing leaves
 * both tables as they were, so the HEADERS frame that opens a stream gets `traceparent`
 * appended to its block and its length grown; nothing else on the connection changes.
 *
 * sk_msg sees every byte a marked socket sends, in order, from the first: the client
 * preface says HTTP/2, and from there the frames are followed across sends (struct h2_tx
 * per socket). A connection whose frames are lost from sight is left alone, counted. A
 * connection whose app names traceparent in a header block is left alone too: the name
 * appears literally (plain or Huffman-coded) the first time an encoder sends it, and
 * the kernel sees every block from the preface on. */

#define H2TX_STEPS 1024 /* frames (and pieces of frames) walked per send */
#define H2TX_REQS 16 /* requests given a header per send; a power of two */
#define H2_FIELD 69 /* 0x00, 11, "traceparent", 55, "00-<32>-<16>-<2>" */
#define H2_FRAME_FLOOR 16384 /* SETTINGS_MAX_FRAME_SIZE's floor: every peer takes it */
#define H2_HEADERS 1
#define H2_CONTINUATION 9
#define H2_END_HEADERS 0x4
#define H2_PADDED 0x8
#define H2TX_MAX_TYPE 0x10
/* "tracepar" as sent plain, and "traceparent" as HPACK's Huffman code writes it (8
 * bytes), as little-endian words. */
#define TP_NAME_PLAIN 0x7261706563617274ULL
#define TP_NAME_HUFF 0x3fa9851d6b21834dULL
#define PREFACE_0 0x5448202a20495250ULL
#define PREFACE_1 0x0a0d302e322f5054ULL
#define PREFACE_2 0x0a0d0a0d4d530a0dULL

struct h2_tx {
	__u32 rem; /* payload bytes of the current frame still to come */
	__u32 last_stream; /* the highest stream the client opened */
	__u8 hdr[9]; /* a frame header split between sends */
	__u8 have; /* ... its bytes so far */
	__u8 block; /* the current frame carries a header block: scan the rest of it */
	__u8 done; /* not followed any more: the app's own header, or frames lost */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct h2_tx);
} h2_txs SEC(".maps");

/* One send's walk and what it will insert, per CPU. */
struct h2_plan {
	struct ctx_event ev[H2TX_REQS];
	__u32 frame[H2TX_REQS]; /* offset of the HEADERS frame */
	__u32 at[H2TX_REQS]; /* the end of its header block */
	__u32 len[H2TX_REQS]; /* its payload length before */
	__u32 stream[H2TX_REQS];
	__u32 cnt;
	__u32 off; /* where the walk is */
	__u32 size;
	__u8 own; /* a block names traceparent */
	__u8 lost; /* the walk could not go on */
	__u8 first; /* the block's first byte (the pad length of a PADDED frame) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct h2_plan);
} h2_plans SEC(".maps");

struct h2_walk_ctx {
	struct sk_msg_md *msg;
	struct h2_tx *tx;
	struct h2_plan *p;
};

struct name_scan {
	struct hdr_buf *h;
	__u32 found;
};

static long name_step(__u32 i, struct name_scan *s)
{
	if (i > SCAN_MAX - 9)
		return 1;
	__u64 w;
	__builtin_memcpy(&w, &s->h->b[i], 8);
	if (w == TP_NAME_PLAIN || w == TP_NAME_HUFF) {
		s->found = 1;
		return 1;
	}
	return 0;
}

/* Whether bytes [from, from+n) of the message name traceparent: 1 yes, 0 no, -1 unknown
 * (too long to look at). Keeps the first byte in p->first. */
static __always_inline int names_traceparent(struct sk_msg_md *msg, struct h2_plan *p, __u32 from,
					     __u32 n)
{
	__u32 zero = 0;
	if (!n)
		return 0;
	if (n > SCAN_MAX - 1)
		return -1;
	struct hdr_buf *h = bpf_map_lookup_elem(&hdr_bufs, &zero);
	if (!h || bpf_msg_pull_data(msg, from, from + n, 0))
		return -1;
	void *data = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if ((long)end - (long)data < (long)n)
		return -1;
	BOUND(n, SCAN_MAX - 1);
	if (bpf_probe_read_kernel(h->b, n, data))
		return -1;
	p->first = h->b[0];
	if (n < 8)
		return 0;
	struct name_scan s = {.h = h};
	bpf_loop(n - 7, name_step, &s, 0);
	return s.found;
}

/* bpf_loop body: the next frame header, or the next piece of a frame's payload. */
static long h2_frame_step(__u32 i, struct h2_walk_ctx *c)
{
	struct sk_msg_md *msg = c->msg;
	struct h2_tx *tx = c->tx;
	struct h2_plan *p = c->p;
	if (!tx || !p)
		return 1;
	__u32 off = p->off, size = p->size;
	if (off >= size)
		return 1;
	if (tx->rem) {
		__u32 k = tx->rem < size - off ? tx->rem : size - off;
		if (tx->block) {
			int r = names_traceparent(msg, p, off, k);
			if (r < 0)
				p->lost = 1;
			else if (r)
				p->own = 1;
		}
		tx->rem -= k;
		p->off = off + k;
		return 0;
	}
	/* A frame header, perhaps begun in the previous send. */
	__u8 b[20] = {};
	__u32 have = tx->have;
	if (have > 8) {
		p->lost = 1;
		return 1;
	}
	__builtin_memcpy(b, tx->hdr, 9);
	__u32 need = 9 - have;
	__u32 k = need < size - off ? need : size - off;
	if (bpf_msg_pull_data(msg, off, off + k, 0)) {
		p->lost = 1;
		return 1;
	}
	void *data = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if ((long)end - (long)data < (long)k || k > 9) {
		p->lost = 1;
		return 1;
	}
	BOUND(k, 15);
	if (bpf_probe_read_kernel(&b[have & 15], k, data)) {
		p->lost = 1;
		return 1;
	}
	if (k < need) {
		__builtin_memcpy(tx->hdr, b, 9);
		tx->have = have + k;
		p->off = size;
		return 1;
	}
	tx->have = 0;
	__u32 len = (__u32)b[0] << 16 | (__u32)b[1] << 8 | b[2];
	__u8 type = b[3], flags = b[4];
	__u32 stream = (__u32)(b[5] & 0x7f) << 24 | (__u32)b[6] << 16 | (__u32)b[7] << 8 | b[8];
	if (type > H2TX_MAX_TYPE || (b[5] & 0x80)) {
		p->lost = 1; /* not a frame header any peer sends: out of step */
		return 1;
	}
	__u32 pos = off + k;
	__u32 take = len < size - pos ? len : size - pos;
	int block = type == H2_HEADERS || type == H2_CONTINUATION;
	p->first = 0;
	if (block) {
		int r = names_traceparent(msg, p, pos, take);
		if (r < 0)
			p->lost = 1;
		else if (r)
			p->own = 1;
	}
	if (type == H2_HEADERS && (stream & 1) && stream > tx->last_stream) {
		/* A request: the client opens a stream with its headers. */
		tx->last_stream = stream;
		__u32 pad = flags & H2_PADDED ? 1 + p->first : 0;
		__u32 n = p->cnt;
		if (!have && take == len && (flags & H2_END_HEADERS) && pad < len &&
		    len + H2_FIELD <= H2_FRAME_FLOOR && n < H2TX_REQS) {
			n &= H2TX_REQS - 1;
			p->frame[n] = off;
			p->at[n] = pos + len - (pad ? pad - 1 : 0);
			p->len[n] = len;
			p->stream[n] = stream;
			p->cnt++;
		} else {
			count(COUNTER_H2_INJECT_SKIPPED, 1);
		}
	}
	tx->rem = len - take;
	tx->block = block && tx->rem;
	p->off = pos + take;
	return 0;
}

/* Writes the 3-byte length of the frame at `frame`. */
static __always_inline int set_frame_len(struct sk_msg_md *msg, __u32 frame, __u32 len)
{
	if (bpf_msg_pull_data(msg, frame, frame + 3, 0))
		return -1;
	__u8 *d = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if ((void *)(d + 3) > (void *)end)
		return -1;
	d[0] = len >> 16;
	d[1] = len >> 8;
	d[2] = len;
	return 0;
}

/* The HPACK field carrying ev: a literal without indexing, with a new name. */
static __always_inline void h2_field(struct line_buf *l, struct ctx_event *ev)
{
	char *o = l->b;
	o[0] = 0x00;
	o[1] = 11;
	__builtin_memcpy(o + 2, "traceparent", 11);
	o[13] = 55;
	__builtin_memcpy(o + 14, "00-", 3);
	put_hex(o + 17, ev->trace_id, 16);
	o[49] = '-';
	put_hex(o + 50, ev->span_id, 8);
	o[66] = '-';
	put_hex(o + 67, &ev->trace_flags, 1);
}

static __always_inline int h2_preface(struct sk_msg_md *msg)
{
	void *data = (void *)(long)msg->data, *end = (void *)(long)msg->data_end;
	if (data + 24 > end)
		return 0;
	return *(__u64 *)data == PREFACE_0 && *(__u64 *)(data + 8) == PREFACE_1 &&
	       *(__u64 *)(data + 16) == PREFACE_2;
}

struct h2_ins_ctx {
	struct sk_msg_md *msg;
	struct h2_plan *p;
	struct line_buf *l;
	__u32 undo_from; /* nonzero: insertions from this index on are to be undone */
};

/* bpf_loop body: the k-th insertion from the last request back. */
static long h2_insert_step(__u32 k, struct h2_ins_ctx *c)
{
	struct h2_plan *p = c->p;
	if (!p || !c->l || k >= p->cnt)
		return 1;
	__u32 i = (p->cnt - 1 - k) & (H2TX_REQS - 1);
	h2_field(c->l, &p->ev[i]);
	if (insert(c->msg, p->at[i], c->l, H2_FIELD)) {
		c->undo_from = i + 1;
		return 1;
	}
	if (set_frame_len(c->msg, p->frame[i], p->len[i] + H2_FIELD)) {
		bpf_msg_pop_data(c->msg, p->at[i], H2_FIELD, 0);
		c->undo_from = i + 1;
		return 1;
	}
	return 0;
}

/* bpf_loop body: undoes the insertion undo_from + k. */
static long h2_undo_step(__u32 k, struct h2_ins_ctx *c)
{
	struct h2_plan *p = c->p;
	if (!p)
		return 1;
	__u32 j = (c->undo_from + k) & (H2TX_REQS - 1);
	set_frame_len(c->msg, p->frame[j], p->len[j]);
	bpf_msg_pop_data(c->msg, p->at[j], H2_FIELD, 0);
	return 0;
}

/* One send on a followed HTTP/2 connection: walk its frames, then insert a traceparent
 * into each request it opens (at most H2TX_REQS; the others are counted). */
static __always_inline int h2_msg(struct sk_msg_md *msg, struct h2_tx *tx)
{
	__u32 zero = 0;
	if (tx->done)
		return SK_PASS;
	struct h2_plan *p = bpf_map_lookup_elem(&h2_plans, &zero);
	struct line_buf *l = bpf_map_lookup_elem(&line_bufs, &zero);
	if (!p || !l) {
		tx->done = 1;
		count(COUNTER_H2_INJECT_LOST, 1);
		return SK_PASS;
	}
	p->cnt = 0;
	p->off = 0;
	p->size = msg->size;
	p->own = 0;
	p->lost = 0;
	struct h2_walk_ctx c = {.msg = msg, .tx = tx, .p = p};
	bpf_loop(H2TX_STEPS, h2_frame_step, &c, 0);
	if (p->own) {
		tx->done = 1;
		count(COUNTER_INJECT_HAS_HEADER, 1);
		return SK_PASS;
	}
	if (p->lost || p->off < p->size) {
		/* The frames of later sends cannot be found: stop here, keep what was planned
		 * (those frames were read whole). */
		tx->done = 1;
		count(COUNTER_H2_INJECT_LOST, 1);
	}
	__u32 cnt = p->cnt;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!cnt || cnt > H2TX_REQS || !traces(pid_tgid >> 32, 0))
		return SK_PASS;
	struct thread_ctx *tc = thread_ctx_of(pid_tgid);
	__u64 now = bpf_ktime_get_ns();
	for (__u32 i = 0; i < H2TX_REQS && i < cnt; i++) {
		fill_ids(&p->ev[i], tc, pid_tgid, now, (__u64)msg->sk);
		p->ev[i].stream_id = p->stream[i];
	}
	/* Last request first: earlier offsets stay valid. */
	struct h2_ins_ctx ic = {.msg = msg, .p = p, .l = l};
	bpf_loop(cnt, h2_insert_step, &ic, 0);
	if (ic.undo_from) {
		/* Nearest first: each removal puts the next back at its offset. */
		bpf_loop(cnt - ic.undo_from, h2_undo_step, &ic, 0);
		/* A length that could not be put back would break the stream: stop here. */
		tx->done = 1;
		count(COUNTER_INJECT_FAILED, cnt);
		return SK_PASS;
	}
	count(COUNTER_INJECTED, cnt);
	for (__u32 i = 0; i < H2TX_REQS && i < cnt; i++)
		emit_ctx(&p->ev[i]);
	return SK_PASS;
}
