/* HTTP/2 connections seen from their client preface: their records carry the frame
 * headers and the non-DATA payloads of each call, and leave DATA payloads out.
 *
 * Why in the kernel: one call moves up to tens of KiB, a record holds 4 KiB. A plain
 * capture loses whatever follows the first 4 KiB: the HEADERS of the next stream after a
 * large DATA frame, the END_STREAM flag of a response's last frame, and with a lost
 * header block the HPACK table of the whole connection. Walking frame headers here costs
 * about two loop steps per frame and keeps every header.
 *
 * Each socket keeps, per direction, where it is in its frame stream (struct
 * h2_frame_state, in its `socks` entry); every record starts with that state so
 * userspace can walk the same frames and account the left-out bytes. */
#ifndef OTELCOL_EBPF_H2_H
#define OTELCOL_EBPF_H2_H

#include "common.h"
#include "h2_wire.h"
#include "context.h"
#include "capture.h"
#include "ends.h"
#include "go_calls.h"

#define H2_STEPS 4096 /* loop steps per call: ~2 per frame, 1 per iovec */
#define SEEN_RECV 1
#define SEEN_SEND 2
/* sock_info.h2: which end sent the preface we saw */
#define H2_SERVER 1
#define H2_CLIENT 2
/* emit_h2's `total` carries two flags above the length (a call of 1 GiB or more is
 * walked as 1 GiB, and lost): 4 arguments keep the callers' stack as it was (a fifth, or
 * a call to go_caller in emit_call, goes past the 512 bytes on on_ssl_ret's path). */
#define H2_REPORT_CALLER 0x80000000u
#define H2_DIR_SEND_BIT 0x40000000u
#define H2_LEN_MASK 0x3fffffffu

/* Appends the next n bytes of the chunk to the record. */
static __always_inline void h2_copy(struct data_scratch *sc, __u32 n)
{
	struct h2_walk *w = &sc->h2;
	if (w->full || w->pos >= CAPTURE_MAX - 1) {
		w->full = 1;
		return;
	}
	__u32 room = CAPTURE_MAX - 1 - w->pos;
	__u32 k = n < room ? n : room;
	__u32 at = w->pos;
	BOUND(at, CAPTURE_MAX - 1);
	BOUND(k, CAPTURE_MAX - 1);
	/* The scratch record has CAPTURE_MAX bytes of slack after data[]: at + k fits. */
	if (k && bpf_probe_read_user(&sc->e.data[at], k, (const void *)w->base)) {
		w->full = 1;
		return;
	}
	w->pos += k;
	if (k < n)
		w->full = 1;
}

/* bpf_loop body: the next iovec, or the next piece of a frame (a header, or payload). */
static long h2_step(__u32 i, void *unused)
{
	__u32 zero = 0;
	struct data_scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return 1;
	struct h2_walk *w = &sc->h2;
	if (!w->cur) {
		if (!w->left || !w->iov || w->idx >= w->iovcnt)
			return 1;
		struct iovec v = {};
		if (bpf_probe_read_user(&v, sizeof(v), &w->iov[w->idx]))
			return 1;
		w->idx++;
		w->base = (__u64)v.iov_base;
		w->cur = v.iov_len < w->left ? v.iov_len : w->left;
		w->left -= w->cur;
		return 0;
	}
	__u32 n;
	if (w->st.rem) {
		n = w->st.rem < w->cur ? w->st.rem : w->cur;
		if (!w->st.is_data)
			h2_copy(sc, n);
		w->st.rem -= n;
	} else if (!w->st.hdr_have && w->cur >= 9) {
		/* A whole frame header: its length and type (and the reserved bit, clear). */
		__u64 x = 0;
		n = 9;
		if (bpf_probe_read_user(&x, 8, (const void *)w->base))
			return 1;
		__u32 head = bpf_ntohl((__u32)x);
		if ((head & 0xff) > H2_MAX_TYPE || ((x >> 40) & 0x80)) {
			w->bad = 1;
			return 1;
		}
		h2_copy(sc, n);
		w->st.rem = head >> 8;
		w->st.is_data = (head & 0xff) == 0;
		if (w->note_heads && (head & 0xff) == H2_HEADERS && w->nheads < H2_HEADS_MAX) {
			__u32 sid = 0;
			if (!bpf_probe_read_user(&sid, 4, (const void *)(w->base + 5)))
				w->heads[w->nheads++ & (H2_HEADS_MAX - 1)] = bpf_ntohl(sid) & 0x7fffffff;
		}
	} else {
		/* A header split between chunks or calls: a byte at a time. */
		__u8 b = 0;
		n = 1;
		if (bpf_probe_read_user(&b, 1, (const void *)w->base))
			return 1;
		__u32 have = w->st.hdr_have;
		if ((have == 3 && b > H2_MAX_TYPE) || (have == 5 && (b & 0x80))) {
			w->bad = 1;
			return 1;
		}
		h2_copy(sc, n);
		if (have < 4)
			w->st.head = w->st.head << 8 | b;
		if (++have >= 9) {
			w->st.rem = w->st.head >> 8;
			w->st.is_data = (w->st.head & 0xff) == 0;
			w->st.head = 0;
			have = 0;
		}
		w->st.hdr_have = have;
	}
	w->base += n;
	w->cur -= n;
	return 0;
}

/* One call's bytes as frames into the scratch record (whose header and tuple are set):
 * `src` is the buffer's address, or the iovec array's when iovcnt > 0. `si` is the
 * socket, whose direction's frame state is advanced past them. H2_REPORT_CALLER: the
 * sending goroutine's request goes before the record (go_calls.h), reported here, off
 * emit_call's stack, which its callers use up. Returns nonzero when the walk could not
 * finish (the state is then unknown). Global: verified once, not per call site. */
__noinline int emit_h2(struct sock_info *si, __u64 src, __u64 iovcnt, __u32 total)
{
	__u32 zero = 0;
	struct data_scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc || !si)
		return 1;
	int report = total & H2_REPORT_CALLER;
	struct h2_frame_state *st = &si->dirs[total & H2_DIR_SEND_BIT ? DIR_SEND : DIR_RECV];
	total &= H2_LEN_MASK;
	struct h2_walk *w = &sc->h2;
	w->iov = iovcnt ? (const struct iovec *)src : NULL;
	w->iovcnt = iovcnt;
	w->idx = 0;
	w->base = iovcnt ? 0 : src;
	w->cur = iovcnt ? 0 : total;
	w->left = iovcnt ? total : 0;
	w->pos = sizeof(struct h2_frame_state);
	w->full = 0;
	w->bad = 0;
	w->nheads = 0;
	w->note_heads = report != 0;
	__builtin_memcpy(&w->st, st, sizeof(*st));
	__builtin_memcpy(sc->e.data, st, sizeof(*st));
	bpf_loop(H2_STEPS, h2_step, NULL, 0);
	int lost = w->cur || w->left || w->bad;
	if (!lost)
		__builtin_memcpy(st, &w->st, sizeof(*st));
	if (w->full)
		count(COUNTER_TRUNCATED, 1);
	__u32 pos = w->pos;
	if (pos > CAPTURE_MAX - 1)
		pos = CAPTURE_MAX - 1;
	if (report) {
		go_caller(&sc->e.hdr, si);
		go_stream_callers(&sc->e.hdr, w);
	}
	sc->e.flags |= DATA_FLAG_H2;
	sc->e.total_len = total;
	sc->e.captured_len = pos;
	__u64 size = offsetof(struct data_event, data) + (pos & (CAPTURE_MAX - 1));
	if (bpf_ringbuf_output(&events, &sc->e, size, BPF_RB_NO_WAKEUP))
		count(COUNTER_RINGBUF_FULL, 1);
	return lost;
}

static __always_inline int h2_preface_at(const void *p)
{
	__u64 b[3] = {};
	if (!p || bpf_probe_read_user(b, sizeof(b), p))
		return 0;
	return b[0] == H2_PREFACE_0 && b[1] == H2_PREFACE_1 && b[2] == H2_PREFACE_2;
}

/* Records one call's bytes: as frames on an HTTP/2 connection, else a plain capture. The
 * first bytes of each direction are checked for the client preface: the connection is
 * then followed from its start, both directions at a frame boundary. */
static __always_inline void emit_call(struct data_event *e, struct sock_info *si, const void *buf,
				      const struct iovec *iov, __u64 iovcnt, __u32 len, __u64 ctx_tid)
{
	__u8 dir = e->direction & 1;
	e->peer_pid = 0;
	if (dir == DIR_RECV) {
		e->flags |= peer_flags(si, e);
	} else if (si && !si->noted) {
		si->noted = 1;
		note_client_end(&e->tuple, e->hdr.pid);
	}
	if (si && !si->h2) {
		__u8 bit = dir == DIR_RECV ? SEEN_RECV : SEEN_SEND;
		if (!(si->seen & bit)) {
			si->seen |= bit;
			const void *first = buf;
			if (iov) {
				struct iovec v = {};
				first = NULL;
				if (iovcnt && !bpf_probe_read_user(&v, sizeof(v), iov) &&
				    v.iov_len >= H2_PREFACE_LEN)
					first = v.iov_base;
			}
			if (len >= H2_PREFACE_LEN && h2_preface_at(first)) {
				si->h2 = dir == DIR_SEND ? H2_CLIENT : H2_SERVER;
				__builtin_memset(si->dirs, 0, sizeof(si->dirs));
				si->dirs[dir].rem = H2_PREFACE_LEN;
			}
		}
	}
	if (si && si->h2) {
		/* Go's net/http client writes each stream's HEADERS, flushed alone, from a
		 * goroutine of the stream's own (started by the caller): the caller goes before
		 * the record, as for HTTP/1. Only client ends: a server's writer is shared. */
		__u32 bits = dir == DIR_SEND ? H2_DIR_SEND_BIT : 0;
		if (propagate && dir == DIR_SEND && si->h2 == H2_CLIENT)
			bits |= H2_REPORT_CALLER;
		if (emit_h2(si, iov ? (__u64)iov : (__u64)buf, iov ? iovcnt : 0,
			    (len > H2_LEN_MASK ? H2_LEN_MASK : len) | bits)) {
			si->h2 = 0; /* plain captures from now on: userspace resynchronises */
			count(COUNTER_H2_WALK_LOST, 1);
		}
		return;
	}
	/* Head sampling (server_request.h): while an unsampled exchange is left out, its response
	 * goes unrecorded; a read is looked at, since it may start the next request. */
	__u8 gap = dir == DIR_RECV ? SKIP_GAP_RECV : SKIP_GAP_SEND;
	__u8 skip = si ? si->skip : 0;
	if ((skip & SKIP_ON) && dir == DIR_SEND) {
		si->skip |= gap;
		return;
	}
	e->flags |= (skip & SKIP_ON ? DATA_FLAG_SKIPPING : 0) | (skip & gap ? DATA_FLAG_AFTER_SKIP : 0);
	if (propagate && dir == DIR_SEND) {
		__u64 id = (__u64)e->hdr.pid << 32 | e->hdr.tid;
		struct thread_ctx *tc = thread_ctx_of(id);
		if (tc && !(tc->flags & 1) && !tc->ambiguous)
			e->flags |= DATA_FLAG_UNSAMPLED;
		go_caller(&e->hdr, si);
	}
	if (iov)
		emit_iov(e, iov, iovcnt, len, ctx_tid);
	else
		emit_data(e, buf, len, ctx_tid);
	if (!si)
		return;
	if (e->flags & DATA_FLAG_SKIPPING)
		si->skip |= SKIP_ON | gap;
	else if (skip)
		si->skip &= ~(SKIP_ON | gap);
	e->flags &= ~DATA_FLAG_SKIPPING;
}

#endif /* OTELCOL_EBPF_H2_H */
